//! The handles a plugin holds: its library's context (`wsy_plugin*`, valid
//! until exit) and an error slot (`wsy_error*`, valid during one call), with
//! the host functions that take them, `log` and `error_set`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use websocksy_abi::{
    wsy_error, wsy_plugin, wsy_status, wsy_str, WSY_EEXIST, WSY_EINVAL, WSY_ERROR, WSY_ESTATE,
    WSY_EVERSION, WSY_LOG_DEBUG, WSY_LOG_ERROR, WSY_LOG_INFO, WSY_LOG_WARN, WSY_OK,
};

use super::registration::{BackendDesc, FramingDesc, Registrations};
use super::{bytes, guard, lock};
use crate::plugin::one_line;

/// What the host knows of one library; a `wsy_plugin*` points to one.
pub struct PluginCtx {
    /// The library's file stem, e.g. `backend_hello`.
    pub name: String,
    /// `websocksy::plugin::NAME`, the log target of its lines.
    pub target: String,
    pub path: PathBuf,
    pub(super) registering: AtomicBool,
    pub(super) regs: Mutex<Registrations>,
}

impl PluginCtx {
    /// A context for the library at `path`, leaked: plugins may log through
    /// it from any thread until the process exits.
    pub fn leak(name: &str, path: PathBuf) -> &'static PluginCtx {
        let ctx: &'static PluginCtx = Box::leak(Box::new(PluginCtx {
            name: name.to_string(),
            target: format!("websocksy::plugin::{name}"),
            path,
            registering: AtomicBool::new(false),
            regs: Mutex::new(Registrations::default()),
        }));
        PLUGIN_CTXS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ctx as *const PluginCtx as usize);
        ctx
    }

    pub fn as_ptr(&'static self) -> *mut wsy_plugin {
        (self as *const PluginCtx).cast_mut().cast()
    }

    /// Allow register_* while `f` (the entry call) runs.
    pub(crate) fn registering<R>(&self, f: impl FnOnce() -> R) -> R {
        self.registering.store(true, Ordering::SeqCst);
        let r = f();
        self.registering.store(false, Ordering::SeqCst);
        r
    }

    /// Everything registered, and the registrations refused.
    pub(crate) fn take(&self) -> (Vec<BackendDesc>, Vec<FramingDesc>, Vec<String>) {
        let mut r = lock(&self.regs);
        (
            std::mem::take(&mut r.backends),
            std::mem::take(&mut r.framings),
            std::mem::take(&mut r.errors),
        )
    }

    pub(crate) fn log(&self, level: log::Level, msg: &str) {
        log::log!(target: &self.target, level, "{msg}");
    }
}

/// Addresses of every [`PluginCtx`] made (they are never freed).
static PLUGIN_CTXS: RwLock<BTreeSet<usize>> = RwLock::new(BTreeSet::new());

/// The context behind a `wsy_plugin*`; `None` for NULL or a pointer the
/// host never gave out.
pub(super) fn plugin_ctx(p: *const wsy_plugin) -> Option<&'static PluginCtx> {
    let known = PLUGIN_CTXS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(p as usize));
    // SAFETY: a known address is a leaked, never freed PluginCtx.
    known.then(|| unsafe { &*p.cast::<PluginCtx>() })
}

/// Where a failing plugin function puts its message; a `wsy_error*`
/// points to its (heap, so stable) message cell, which is registered as
/// live until the slot drops.
pub struct ErrorSlot(Box<Mutex<Option<String>>>);

/// Addresses of the live error cells.
static ERRORS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

impl Default for ErrorSlot {
    fn default() -> Self {
        let slot = ErrorSlot(Box::new(Mutex::new(None)));
        lock(&ERRORS).insert(slot.as_ptr() as usize);
        slot
    }
}

impl Drop for ErrorSlot {
    fn drop(&mut self) {
        lock(&ERRORS).remove(&(self.as_ptr() as usize));
    }
}

impl ErrorSlot {
    pub fn as_ptr(&self) -> *mut wsy_error {
        (&*self.0 as *const Mutex<Option<String>>).cast_mut().cast()
    }

    /// The message set, if any, as one line.
    pub fn message(&self) -> Option<String> {
        lock(&self.0)
            .as_deref()
            .map(one_line)
            .filter(|m| !m.is_empty())
    }

    /// The message, or what `status` says.
    pub fn describe(&self, status: wsy_status) -> String {
        self.message()
            .unwrap_or_else(|| format!("failed with status {status} ({})", status_name(status)))
    }
}

pub fn status_name(s: wsy_status) -> &'static str {
    match s {
        WSY_OK => "WSY_OK",
        WSY_ERROR => "WSY_ERROR",
        WSY_EINVAL => "WSY_EINVAL",
        websocksy_abi::WSY_EUNKNOWN_KEY => "WSY_EUNKNOWN_KEY",
        WSY_EVERSION => "WSY_EVERSION",
        WSY_EEXIST => "WSY_EEXIST",
        WSY_ESTATE => "WSY_ESTATE",
        _ => "unknown status",
    }
}

pub(super) unsafe extern "C" fn host_log(plugin: *const wsy_plugin, level: u32, message: wsy_str) {
    guard((), || {
        let Some(ctx) = plugin_ctx(plugin) else {
            return;
        };
        let level = match level {
            0 | WSY_LOG_ERROR => log::Level::Error,
            WSY_LOG_WARN => log::Level::Warn,
            WSY_LOG_INFO => log::Level::Info,
            WSY_LOG_DEBUG => log::Level::Debug,
            _ => log::Level::Trace,
        };
        if !log::log_enabled!(target: &ctx.target, level) {
            return;
        }
        // SAFETY: the view is the plugin's, valid during this call.
        let msg = unsafe { bytes(message) }
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        ctx.log(level, &one_line(&msg));
    })
}

pub(super) unsafe extern "C" fn error_set(error: *mut wsy_error, message: wsy_str) {
    guard((), || {
        // SAFETY: the view is the plugin's, valid during this call.
        let msg = unsafe { bytes(message) }
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        // Held while writing, so the cell cannot be freed under us.
        let live = lock(&ERRORS);
        if !live.contains(&(error as usize)) {
            log::warn!(target: "websocksy::plugin", "error_set called with an error that is not live");
            return;
        }
        // SAFETY: a live address is the cell of an ErrorSlot not yet dropped
        // (Drop unregisters under the same lock before freeing it).
        let cell = unsafe { &*error.cast::<Mutex<Option<String>>>() };
        *lock(cell) = Some(msg);
    })
}

#[cfg(test)]
mod tests {
    use super::super::s;
    use super::*;

    #[test]
    fn errors_are_kept() {
        let slot = ErrorSlot::default();
        assert_eq!(slot.describe(-2), "failed with status -2 (WSY_EINVAL)");
        // SAFETY: a slot that outlives the calls; views of locals.
        unsafe {
            error_set(slot.as_ptr(), s("first"));
            error_set(slot.as_ptr(), s("bad\nvalue"));
            error_set(std::ptr::null_mut(), s("ignored"));
        }
        assert_eq!(slot.message().as_deref(), Some("bad value"));
    }
}
