//! Rust framings as v1 framing functions: `core_framing` must return a
//! callable C function even for the built-ins and v2 framings. A fixed table
//! of `extern "C"` trampolines, each bound to one slot, implements the v1
//! calling convention over the slot's [`FramingState`].

use std::ffi::{c_char, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, OnceLock};

use log::warn;

use super::abi::{WsFraming, WS_FRAME_BINARY, WS_FRAME_DISCARD, WS_FRAME_TEXT};
use super::c_name;
use crate::framing::{Auto, Framed, Framing, FramingState, Opcode};

/// How many distinct Rust framings `core_framing` can hand out to C.
pub const TRAMPOLINE_SLOTS: usize = 64;

/// A Rust framing bound to a trampoline.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) framing: Arc<dyn Framing>,
}

pub(super) static SLOTS: [OnceLock<Slot>; TRAMPOLINE_SLOTS] =
    [const { OnceLock::new() }; TRAMPOLINE_SLOTS];

/// The slot index of [`AUTO_TRAMPOLINE`], the built-in `auto` (used when the
/// table is full, so `core_framing` never returns NULL).
const AUTO_SLOT: usize = TRAMPOLINE_SLOTS;

/// The trampoline of the built-in `auto`, outside the table of slots.
pub(super) const AUTO_TRAMPOLINE: WsFraming = trampoline::<AUTO_SLOT>;

pub(super) fn builtin_auto() -> &'static Arc<dyn Framing> {
    static AUTO: OnceLock<Arc<dyn Framing>> = OnceLock::new();
    AUTO.get_or_init(|| Arc::new(Auto))
}

/// What a trampoline keeps in `*framing_data`.
struct TrampolineState {
    slot: usize,
    state: Box<dyn FramingState>,
}

/// The v1 calling convention over the Rust framing in `slot`.
///
/// # Safety
/// The arguments follow the v1 contract: `framing_data` points to a `void*`
/// that is NULL or was set by this same trampoline; `data` is NULL (the
/// cleanup call) or points to `length` readable bytes; `opcode` is NULL or
/// writable; `config` is NULL or NUL-terminated.
unsafe fn trampoline_call(
    slot: usize,
    data: *mut u8,
    length: usize,
    last_read: usize,
    opcode: *mut c_uint,
    framing_data: *mut *mut c_void,
    config: *const c_char,
) -> i64 {
    let (name, framing) = if slot == AUTO_SLOT {
        ("auto", builtin_auto())
    } else {
        match SLOTS[slot].get() {
            Some(s) => (s.name.as_str(), &s.framing),
            None => return -1,
        }
    };
    if framing_data.is_null() {
        return -1;
    }
    // SAFETY: framing_data is non-NULL and points to the caller's void*.
    let current = unsafe { *framing_data }.cast::<TrampolineState>();
    if data.is_null() {
        if !current.is_null() {
            // SAFETY: a non-NULL state was made by Box::into_raw below.
            drop(unsafe { Box::from_raw(current) });
            // SAFETY: as above, the caller's void*.
            unsafe { *framing_data = ptr::null_mut() };
        }
        return 0;
    }
    let st: &mut TrampolineState = if current.is_null() {
        let config = c_name(config);
        let state = match framing.new_state(config.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                warn!("v1: framing '{name}' rejected its config: {e}");
                return -1;
            }
        };
        let raw = Box::into_raw(Box::new(TrampolineState { slot, state }));
        // SAFETY: the caller's void*; it now owns the box until the cleanup call.
        unsafe { *framing_data = raw.cast() };
        // SAFETY: just allocated, uniquely referenced here.
        unsafe { &mut *raw }
    } else {
        // SAFETY: set by this trampoline family (checked by slot below).
        unsafe { &mut *current }
    };
    if st.slot != slot {
        warn!("v1: framing state of another framing passed to '{name}'");
        return -1;
    }
    if length == 0 {
        return 0;
    }
    // SAFETY: data points to `length` readable bytes (v1 contract).
    let bytes = unsafe { std::slice::from_raw_parts(data, length) };
    let set = |op: c_uint| {
        if !opcode.is_null() {
            // SAFETY: a non-NULL opcode pointer is writable (v1 contract).
            unsafe { *opcode = op };
        }
    };
    match st.state.frame(bytes, last_read.min(length)) {
        Framed::More => 0,
        Framed::Message { len, opcode } if len > 0 && len <= length => {
            set(match opcode {
                Opcode::Text => WS_FRAME_TEXT,
                Opcode::Binary => WS_FRAME_BINARY,
            });
            len as i64
        }
        Framed::Discard(len) if len > 0 && len <= length => {
            set(WS_FRAME_DISCARD);
            len as i64
        }
        Framed::Error(e) => {
            warn!("v1: framing '{name}' failed: {e}");
            -1
        }
        other => {
            warn!("v1: framing '{name}' returned {other:?} for {length} bytes");
            -1
        }
    }
}

/// One trampoline per slot, and [`AUTO_TRAMPOLINE`] for [`AUTO_SLOT`].
///
/// # Safety
/// See [`trampoline_call`].
unsafe extern "C" fn trampoline<const SLOT: usize>(
    data: *mut u8,
    length: usize,
    last_read: usize,
    opcode: *mut c_uint,
    framing_data: *mut *mut c_void,
    config: *const c_char,
) -> i64 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded unchanged; the caller keeps the v1 contract.
        unsafe { trampoline_call(SLOT, data, length, last_read, opcode, framing_data, config) }
    }))
    .unwrap_or(-1)
}

macro_rules! trampolines {
    ($($n:literal)*) => {
        pub(super) static TRAMPOLINES: [WsFraming; TRAMPOLINE_SLOTS] = [$(trampoline::<$n>,)*];
    };
}

trampolines!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
);

#[cfg(test)]
mod tests {
    use super::super::exports::{self, core_framing, same_framing, set_registry};
    use super::super::test_plugins::serial;
    use super::*;
    use crate::framing::Registry;
    use std::ffi::CStr;

    /// Call a `ws_framing` the way a v1 plugin would.
    fn call(
        f: WsFraming,
        data: &mut Vec<u8>,
        last_read: usize,
        state: &mut *mut c_void,
        config: &CStr,
    ) -> (i64, c_uint) {
        let mut opcode = WS_FRAME_DISCARD;
        let len = data.len();
        data.push(0);
        // SAFETY: a test caller keeping the v1 contract.
        let r = unsafe {
            f(
                data.as_mut_ptr(),
                len,
                last_read,
                &mut opcode,
                state,
                config.as_ptr(),
            )
        };
        data.pop();
        (r, opcode)
    }

    fn cleanup(f: WsFraming, state: &mut *mut c_void, config: &CStr) -> i64 {
        // SAFETY: the v1 cleanup call.
        unsafe {
            f(
                ptr::null_mut(),
                0,
                0,
                ptr::null_mut(),
                state,
                config.as_ptr(),
            )
        }
    }

    #[test]
    fn core_framing_gives_callable_rust_framings() {
        let _g = serial();
        let registry = Registry::with_builtins();
        set_registry(&registry);
        let newline = core_framing(c"newline".as_ptr().cast_mut()).unwrap();
        assert_eq!(
            core_framing(c"newline".as_ptr().cast_mut()).map(|f| f as usize),
            Some(newline as usize)
        );
        let mut state: *mut c_void = ptr::null_mut();
        let mut data = b"ab\ncd".to_vec();
        // Opcode preset to discard: the trampoline sets it for every frame.
        assert_eq!(
            call(newline, &mut data, 5, &mut state, c"lf"),
            (3, WS_FRAME_TEXT)
        );
        assert!(!state.is_null());
        let mut data = b"cd".to_vec();
        assert_eq!(call(newline, &mut data, 2, &mut state, c"lf").0, 0);
        assert_eq!(cleanup(newline, &mut state, c"lf"), 0);
        assert!(state.is_null());
        assert_eq!(cleanup(newline, &mut state, c"lf"), 0);

        // A bad config is an error return, not a crash.
        let sep = core_framing(c"separator".as_ptr().cast_mut()).unwrap();
        let mut data = b"x".to_vec();
        assert_eq!(call(sep, &mut data, 1, &mut state, c"\\x4").0, -1);
        assert!(state.is_null());
        // A state from another framing is refused.
        let mut data = b"a\n".to_vec();
        assert_eq!(call(newline, &mut data, 2, &mut state, c"lf").0, 2);
        assert_eq!(call(sep, &mut data, 2, &mut state, c";").0, -1);
        assert_eq!(cleanup(newline, &mut state, c"lf"), 0);
        // SAFETY: a NULL state pointer is refused before anything is read.
        assert_eq!(
            unsafe {
                newline(
                    data.as_mut_ptr(),
                    2,
                    2,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    ptr::null(),
                )
            },
            -1
        );

        // NULL and unknown names are auto.
        let auto = core_framing(c"auto".as_ptr().cast_mut()).map(|f| f as usize);
        assert_eq!(core_framing(ptr::null_mut()).map(|f| f as usize), auto);
        assert_eq!(
            core_framing(c"no-such-framing".as_ptr().cast_mut()).map(|f| f as usize),
            auto
        );
        let mut data = b"\xff".to_vec();
        let mut state: *mut c_void = ptr::null_mut();
        let auto = core_framing(ptr::null_mut()).unwrap();
        assert_eq!(
            call(auto, &mut data, 1, &mut state, c""),
            (1, WS_FRAME_BINARY)
        );
        cleanup(auto, &mut state, c"");

        // A trampoline returned by a backend maps straight back.
        let (name, framing) = exports::state().framing_for_c(Some(newline));
        assert_eq!(name, "newline");
        assert!(same_framing(&framing, &registry.get("newline").unwrap()));
        let (name, framing) = exports::state().framing_for_c(None);
        assert_eq!(name, "auto");
        assert!(same_framing(&framing, builtin_auto()));

        // The fallback when every slot is taken: the built-in auto, callable
        // and mapped back like any trampoline.
        let mut data = "é".as_bytes().to_vec();
        let mut state: *mut c_void = ptr::null_mut();
        assert_eq!(
            call(AUTO_TRAMPOLINE, &mut data, 2, &mut state, c""),
            (2, WS_FRAME_TEXT)
        );
        assert_eq!(cleanup(AUTO_TRAMPOLINE, &mut state, c""), 0);
        assert!(state.is_null());
        let (name, framing) = exports::state().framing_for_c(Some(AUTO_TRAMPOLINE));
        assert_eq!(name, "auto");
        assert!(same_framing(&framing, builtin_auto()));
    }
}
