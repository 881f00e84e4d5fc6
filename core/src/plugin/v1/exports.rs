//! The functions the executable exports to v1 plugins, `core_register_framing`
//! and `core_framing` (kept in the dynamic symbol table by
//! `core/exports.dynlist`), and the registry state behind them: which name
//! maps to which framing, and which C function stands for which framing.

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use log::{debug, info, warn};

use super::abi::WsFraming;
use super::c_name;
use super::framing::V1Framing;
use super::trampolines::{
    builtin_auto, Slot, AUTO_TRAMPOLINE, SLOTS, TRAMPOLINES, TRAMPOLINE_SLOTS,
};
use crate::framing::{Framing, Registry};

/// Registry state shared by the exported functions and the loader.
pub(super) struct State {
    /// Registered since the last [`take_registered_framings`].
    pending: Vec<(String, Arc<dyn Framing>)>,
    /// Every v1 function registered by name (latest per name), so
    /// `core_framing` finds it before the final registry is set.
    by_name: Vec<(String, Arc<dyn Framing>)>,
    /// Every v1 wrapper made, by C function address: how a registry entry
    /// is recognised as C (and handed back as itself), and how a function a
    /// backend returns finds its name.
    wrappers: Vec<Wrapper>,
    /// The final registry (built-ins, v2 and v1 framings), once loaded.
    registry: Option<Registry>,
}

/// A C framing function and the [`V1Framing`] made for it.
struct Wrapper {
    func: WsFraming,
    framing: Arc<dyn Framing>,
    name: String,
}

static STATE: Mutex<State> = Mutex::new(State {
    pending: Vec::new(),
    by_name: Vec::new(),
    wrappers: Vec::new(),
    registry: None,
});

pub(super) fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The built-ins, made once: before the final registry is set, lookups must
/// keep returning the same framing (and so the same trampoline).
fn builtins() -> &'static Registry {
    static BUILTINS: OnceLock<Registry> = OnceLock::new();
    BUILTINS.get_or_init(Registry::with_builtins)
}

pub(super) fn same_framing(a: &Arc<dyn Framing>, b: &Arc<dyn Framing>) -> bool {
    ptr::eq(Arc::as_ptr(a).cast::<()>(), Arc::as_ptr(b).cast::<()>())
}

impl State {
    fn lookup(&self, name: &str) -> Option<Arc<dyn Framing>> {
        match &self.registry {
            Some(r) => r.get(name),
            None => self
                .by_name
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| f.clone())
                .or_else(|| builtins().get(name)),
        }
    }

    /// The C function for `framing`: itself if it is a v1 function, else a
    /// trampoline bound to it.
    fn c_function_for(&self, name: &str, framing: Arc<dyn Framing>) -> WsFraming {
        if let Some(w) = self
            .wrappers
            .iter()
            .find(|w| same_framing(&w.framing, &framing))
        {
            return w.func;
        }
        for (i, slot) in SLOTS.iter().enumerate() {
            if let Some(s) = slot.get() {
                if same_framing(&s.framing, &framing) {
                    return TRAMPOLINES[i];
                }
                continue;
            }
            // Slots are only filled under the STATE lock, which we hold.
            let _ = slot.set(Slot {
                name: name.to_string(),
                framing: framing.clone(),
            });
            return TRAMPOLINES[i];
        }
        warn!("v1: more than {TRAMPOLINE_SLOTS} Rust framings requested by v1 plugins; '{name}' falls back to auto");
        AUTO_TRAMPOLINE
    }

    /// The framing for a function a v1 backend returned.
    pub(super) fn framing_for_c(&mut self, f: Option<WsFraming>) -> (String, Arc<dyn Framing>) {
        let Some(f) = f else {
            // The original used its built-in auto directly here, not the registry entry.
            return ("auto".to_string(), builtin_auto().clone());
        };
        let addr = f as usize;
        if addr == AUTO_TRAMPOLINE as usize {
            return ("auto".to_string(), builtin_auto().clone());
        }
        if let Some(i) = TRAMPOLINES.iter().position(|t| *t as usize == addr) {
            if let Some(s) = SLOTS[i].get() {
                return (s.name.clone(), s.framing.clone());
            }
        }
        // The latest wrapper: a registration made after an anonymous wrap wins.
        if let Some(w) = self.wrappers.iter().rev().find(|w| w.func as usize == addr) {
            return (w.name.clone(), w.framing.clone());
        }
        let name = format!("v1@{addr:#x}");
        let framing = self.wrap(&name, f);
        (name, framing)
    }

    /// A new v1 wrapper, remembered by address.
    fn wrap(&mut self, name: &str, f: WsFraming) -> Arc<dyn Framing> {
        let framing: Arc<dyn Framing> = Arc::new(V1Framing {
            name: name.to_string(),
            func: f,
        });
        self.wrappers.push(Wrapper {
            func: f,
            framing: framing.clone(),
            name: name.to_string(),
        });
        framing
    }
}

/// Framings registered through `core_register_framing` by v1 plugin
/// constructors since the last call (they run inside dlopen).
pub fn take_registered_framings() -> Vec<(String, Arc<dyn Framing>)> {
    std::mem::take(&mut state().pending)
}

/// Give `core_framing()` the final registry once all plugins are loaded.
pub fn set_registry(registry: &Registry) {
    state().registry = Some(registry.clone());
}

/// Keep the exported functions in the executable: the linker drops what no
/// one references, and v1 plugins reference them only at dlopen time.
pub fn keep_exports() {
    std::hint::black_box((
        core_register_framing as *const (),
        core_framing as *const (),
    ));
}
/// `int core_register_framing(char* name, ws_framing func)`: 0 on success,
/// 1 on failure (NULL name or function). Re-registering a name replaces it.
#[no_mangle]
pub extern "C" fn core_register_framing(name: *mut c_char, func: Option<WsFraming>) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        let (Some(name), Some(func)) = (c_name(name), func) else {
            warn!("v1: core_register_framing called with a NULL name or function");
            return 1;
        };
        let mut st = state();
        // The loader reports names replaced in the registry; here, a plugin
        // registering one name twice, or a registration after start-up.
        let replaced = st.pending.iter().any(|(n, _)| *n == name)
            || st.registry.as_ref().is_some_and(|r| r.get(&name).is_some());
        if replaced {
            info!("Replacing framing {name}");
        } else {
            debug!("v1: registered framing {name}");
        }
        let framing = st.wrap(&name, func);
        st.by_name.retain(|(n, _)| *n != name);
        st.by_name.push((name.clone(), framing.clone()));
        st.pending.retain(|(n, _)| *n != name);
        st.pending.push((name.clone(), framing.clone()));
        if let Some(r) = st.registry.as_mut() {
            // Registered after start-up: visible to core_framing from now on.
            r.register(&name, framing);
        }
        0
    }))
    .unwrap_or(1)
}

/// `ws_framing core_framing(char* name)`: the framing registered under
/// `name`; NULL or an unknown name gives the one registered as `auto`.
#[no_mangle]
pub extern "C" fn core_framing(name: *mut c_char) -> Option<WsFraming> {
    catch_unwind(AssertUnwindSafe(|| {
        let name = c_name(name);
        let st = state();
        let found = name
            .as_deref()
            .and_then(|n| st.lookup(n).map(|f| (n.to_string(), f)));
        let (name, framing) = found
            .or_else(|| st.lookup("auto").map(|f| ("auto".to_string(), f)))
            .unwrap_or_else(|| ("auto".to_string(), builtin_auto().clone()));
        Some(st.c_function_for(&name, framing))
    }))
    .unwrap_or(Some(AUTO_TRAMPOLINE))
}

#[cfg(test)]
mod tests {
    use super::super::test_plugins::{lines, msg, serial, threes};
    use super::*;
    use crate::framing::drive;
    use crate::framing::Opcode;
    use std::ffi::{c_uint, c_void};

    #[test]
    fn registered_v1_functions_come_back_as_themselves() {
        let _g = serial();
        set_registry(&Registry::with_builtins());
        assert_eq!(core_register_framing(ptr::null_mut(), Some(lines)), 1);
        assert_eq!(
            core_register_framing(c"t-null".as_ptr().cast_mut(), None),
            1
        );
        assert_eq!(
            core_register_framing(c"t-lines".as_ptr().cast_mut(), Some(threes)),
            0
        );
        assert_eq!(
            core_register_framing(c"t-lines".as_ptr().cast_mut(), Some(lines)),
            0
        );
        let taken = take_registered_framings();
        let mine: Vec<&String> = taken
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("t-"))
            .collect();
        assert_eq!(mine, ["t-lines"], "a replaced name is registered once");
        let f = core_framing(c"t-lines".as_ptr().cast_mut()).unwrap();
        assert_eq!(f as usize, lines as WsFraming as usize);
        // A backend returning it gets the registered wrapper back, by name.
        let (name, framing) = super::state().framing_for_c(Some(lines));
        assert_eq!(name, "t-lines");
        let mut st = framing.new_state(None).unwrap();
        let (ev, _) = drive(st.as_mut(), &[b"x\n"]);
        assert_eq!(ev, [msg(Opcode::Text, b"x\n")]);
        // An unregistered function is wrapped once and reused.
        let (name, _) = state().framing_for_c(Some(threes_unregistered));
        assert!(name.starts_with("v1@0x"), "{name}");
        assert_eq!(state().framing_for_c(Some(threes_unregistered)).0, name);
    }

    unsafe extern "C" fn threes_unregistered(
        data: *mut u8,
        length: usize,
        last_read: usize,
        opcode: *mut c_uint,
        framing_data: *mut *mut c_void,
        config: *const c_char,
    ) -> i64 {
        // SAFETY: forwarded unchanged.
        unsafe { threes(data, length, last_read, opcode, framing_data, config) }
    }
}
