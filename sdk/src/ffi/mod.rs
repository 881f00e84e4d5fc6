//! The FFI boundary: the entry, the descriptors and the `extern "C"`
//! trampolines the host calls.
//!
//! Rules kept by every function here:
//! - the plugin's code runs inside [`catch_unwind`]; a panic becomes the
//!   failure value of that call (unwinding into C would abort the process);
//! - pointers from the host are NULL-checked before use;
//! - `unsafe` appears only to turn the host's pointers and views into
//!   references, each with the ABI rule that makes it sound.
//!
//! This module holds the entry, the [`Registrar`] and the boundary helpers;
//! the trampolines are in `framing` and `backend`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Once, OnceLock, RwLock};

use crate::abi::{self, wsy_backend, wsy_error, wsy_framing, wsy_host_api, wsy_plugin};
use crate::abi::{wsy_status, wsy_str};
use crate::{logging, Backend, ConfigError, Framing, Level};

mod backend;
mod framing;

use backend::{cleanup, configure, query, start};

/// The ABI minor the SDK's descriptors declare: the one it needs from the
/// host, not the one it was built with. Everything newer than 2.0 is read
/// only after checking the host's `size` (see `Request::user`), so 2.0
/// hosts may load plugins built with this crate; declaring
/// `WSY_ABI_MINOR` would make them refuse.
const SDK_ABI_MINOR: u16 = 0;

use framing::{configure_framing, finish, frame, state_free, state_new, FramingCell};

/// The host as the entry received it.
pub(crate) struct Host {
    /// A copy of the host's table as far as its `size` goes, the rest
    /// zero: an older host's table is shorter than this crate's struct
    /// (2.2 appended `answer_hub`), so it is never read past its end, and
    /// a function it lacks is NULL here.
    pub(crate) api: &'static wsy_host_api,
    /// The table the host passed, to tell a second entry call's apart.
    raw: *const wsy_host_api,
    pub(crate) plugin: *const wsy_plugin,
}

/// `host`'s table as far as its `size` says, the rest zero; made once per
/// process (the entry runs once) and kept until exit like the host's.
///
/// # Safety
/// `host` is non-NULL and readable for its `size` bytes.
unsafe fn copy_table(host: *const wsy_host_api, size: usize) -> &'static wsy_host_api {
    let mut t = std::mem::MaybeUninit::<wsy_host_api>::zeroed();
    let n = size.min(std::mem::size_of::<wsy_host_api>());
    // SAFETY: the host's table is readable for `size` bytes (the caller's
    // contract), the copy is writable for its whole size and `n` is at most
    // both; they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(host.cast::<u8>(), t.as_mut_ptr().cast::<u8>(), n) };
    // SAFETY: all-zero is a valid wsy_host_api (integers and Option<fn>),
    // and the copied prefix holds what the host wrote as the same C types.
    // A size that ends inside a function pointer would leave part of one:
    // `wsy_host_api::answer_hub` reads it only when `size` covers it whole.
    Box::leak(Box::new(unsafe { t.assume_init() }))
}

// SAFETY: the ABI makes the table and the plugin handle valid until exit and
// lets host functions be called from any thread; `Host` only reads them.
unsafe impl Send for Host {}
// SAFETY: as above; nothing in `Host` is mutated after the entry stored it.
unsafe impl Sync for Host {}

static HOST: OnceLock<Host> = OnceLock::new();

/// The host, once the entry ran.
pub(crate) fn host() -> Option<&'static Host> {
    HOST.get()
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

thread_local! {
    /// How many boundaries this thread is inside.
    static IN_BOUNDARY: Cell<u32> = const { Cell::new(0) };
    /// Where the last panic inside a boundary happened, for the boundary's
    /// log line.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install this library's panic hook (the library has its own copy of std,
/// so the host's hook is not touched). A panic inside a boundary is not
/// printed by the default hook: its location goes into the boundary's one
/// log line instead. Any other panic goes to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_BOUNDARY.with(Cell::get) == 0 {
                return previous(info);
            }
            let at = info
                .location()
                .map_or_else(|| "an unknown location".to_owned(), |l| l.to_string());
            // A backtrace is many lines: standard error, as the default
            // hook would, rather than the host's one-line log.
            let bt = std::backtrace::Backtrace::capture();
            if bt.status() == std::backtrace::BacktraceStatus::Captured {
                eprintln!("plugin panic at {at}, caught; backtrace:\n{bt}");
            }
            PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
        }));
    });
}

/// Run `f`, turning a panic into `on_panic` plus a log line (and the error
/// message, when the host passed a `wsy_error`).
fn boundary<R>(
    what: &str,
    name: &str,
    error: *mut wsy_error,
    on_panic: R,
    f: impl FnOnce() -> R,
) -> R {
    IN_BOUNDARY.with(|c| c.set(c.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_BOUNDARY.with(|c| c.set(c.get() - 1));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let at = PANIC_AT.with(|p| p.borrow_mut().take());
            let msg = format!(
                "{what} of '{name}' panicked: {}",
                panic_message(payload.as_ref())
            );
            match at {
                Some(at) => crate::log(Level::Error, format_args!("{msg} (at {at})")),
                None => crate::log(Level::Error, format_args!("{msg}")),
            }
            set_error(host().map(|h| h.api), error, &msg);
            on_panic
        }
    }
}

/// `host->error_set(error, msg)` when both are there.
fn set_error(api: Option<&wsy_host_api>, error: *mut wsy_error, msg: &str) {
    if error.is_null() {
        return;
    }
    if let Some(f) = api.and_then(|a| a.error_set) {
        // SAFETY: `error` is the non-NULL handle the host passed into the
        // current call; the view borrows `msg`, which the host copies.
        unsafe { f(error, wsy_str::from_str(msg)) }
    }
}

/// The key and value of a `configure` call (an absent value is empty), or
/// the status to return with the error already set.
///
/// # Safety
/// As [`view`], for both views.
unsafe fn option<'a>(
    api: Option<&wsy_host_api>,
    error: *mut wsy_error,
    key: wsy_str,
    value: wsy_str,
) -> Result<(&'a str, &'a str), wsy_status> {
    // SAFETY: the caller's contract.
    match unsafe { (view(key), view(value)) } {
        (Ok(Some(k)), Ok(v)) => Ok((k, v.unwrap_or(""))),
        _ => {
            set_error(api, error, "option key or value is missing or not UTF-8");
            Err(abi::WSY_EINVAL)
        }
    }
}

/// A configure result as the status the host expects.
fn config_status(
    api: Option<&wsy_host_api>,
    error: *mut wsy_error,
    key: &str,
    result: Result<(), ConfigError>,
) -> wsy_status {
    match result {
        Ok(()) => abi::WSY_OK,
        Err(ConfigError::UnknownKey) => {
            set_error(api, error, &format!("unknown option '{key}'"));
            abi::WSY_EUNKNOWN_KEY
        }
        Err(ConfigError::Invalid(msg)) => {
            set_error(api, error, &msg);
            abi::WSY_EINVAL
        }
    }
}

/// A view from the host as `&str`: `Ok(None)` when absent, `Err` when not
/// UTF-8.
///
/// # Safety
/// `s` must be NULL or valid for reads for `'a`.
unsafe fn view<'a>(s: wsy_str) -> Result<Option<&'a str>, std::str::Utf8Error> {
    // SAFETY: the caller's contract.
    match unsafe { s.as_bytes() } {
        None => Ok(None),
        Some(b) => std::str::from_utf8(b).map(Some),
    }
}

fn leak_name(name: &'static str) -> Result<*const std::ffi::c_char, String> {
    let c = CString::new(name).map_err(|_| format!("plugin name {name:?} contains a NUL byte"))?;
    // Leaked on purpose: the ABI wants descriptor names valid until exit.
    Ok(Box::leak(c.into_boxed_c_str()).as_ptr())
}

/// Registers the values given to [`export!`](crate::export) with the host.
/// Used by the macro only.
pub struct Registrar {
    api: &'static wsy_host_api,
    plugin: *mut wsy_plugin,
    error: *mut wsy_error,
}

impl Registrar {
    fn fail(&self, msg: &str, status: wsy_status) -> wsy_status {
        set_error(Some(self.api), self.error, msg);
        status
    }

    /// Register a framing; `Err` carries the status the entry returns.
    pub fn framing<F: Framing>(&mut self, framing: F) -> Result<(), wsy_status> {
        let name = leak_name(F::NAME).map_err(|m| self.fail(&m, abi::WSY_EINVAL))?;
        let register = self
            .api
            .register_framing
            .ok_or_else(|| self.fail("host has no register_framing", abi::WSY_ERROR))?;
        // Leaked on purpose: the host may call the framing until exit and
        // never unloads the library, so there is no time to free it. The
        // cell lets configure have `&mut F` and the framing calls `&F`.
        let userdata = Box::into_raw(Box::new(FramingCell::new(framing))).cast::<c_void>();
        let d = wsy_framing {
            size: std::mem::size_of::<wsy_framing>() as u32,
            abi_major: abi::WSY_ABI_MAJOR,
            abi_minor: SDK_ABI_MINOR,
            name,
            userdata,
            state_new: Some(state_new::<F>),
            state_free: Some(state_free::<F>),
            frame: Some(frame::<F>),
            finish: Some(finish::<F>),
            configure: Some(configure_framing::<F>),
        };
        // SAFETY: we are inside the entry call, as register_framing requires;
        // `plugin` is the entry's handle and `d` lives across the call (the
        // host copies it).
        let status = unsafe { register(self.plugin, &d) };
        if status != abi::WSY_OK {
            let msg = format!(
                "registering framing '{}' failed: {}",
                F::NAME,
                crate::HostError(status)
            );
            return Err(self.fail(&msg, status));
        }
        Ok(())
    }

    /// Register a backend; `Err` carries the status the entry returns.
    pub fn backend<B: Backend>(&mut self, backend: B) -> Result<(), wsy_status> {
        let name = leak_name(B::NAME).map_err(|m| self.fail(&m, abi::WSY_EINVAL))?;
        let register = self
            .api
            .register_backend
            .ok_or_else(|| self.fail("host has no register_backend", abi::WSY_ERROR))?;
        // Leaked on purpose, as for framings. The lock lets configure/start
        // have `&mut B` and concurrent queries `&B` (see the crate docs).
        let userdata = Box::into_raw(Box::new(RwLock::new(backend))).cast::<c_void>();
        let d = wsy_backend {
            size: std::mem::size_of::<wsy_backend>() as u32,
            abi_major: abi::WSY_ABI_MAJOR,
            abi_minor: SDK_ABI_MINOR,
            name,
            userdata,
            flags: if B::NONBLOCKING {
                abi::WSY_BACKEND_NONBLOCKING
            } else {
                0
            },
            configure: Some(configure::<B>),
            start: Some(start::<B>),
            query: Some(query::<B>),
            cleanup: Some(cleanup::<B>),
        };
        // SAFETY: as in `framing`.
        let status = unsafe { register(self.plugin, &d) };
        if status != abi::WSY_OK {
            let msg = format!(
                "registering backend '{}' failed: {}",
                B::NAME,
                crate::HostError(status)
            );
            return Err(self.fail(&msg, status));
        }
        Ok(())
    }
}

/// The body of the entry symbol [`export!`](crate::export) emits.
///
/// # Safety
/// To be called by the host as `websocksy_plugin_v2`: `host` NULL or a host
/// table valid until exit, `plugin` and `error` the host's handles.
pub unsafe fn entry(
    plugin: *mut wsy_plugin,
    host: *const wsy_host_api,
    error: *mut wsy_error,
    register: impl FnOnce(&mut Registrar) -> Result<(), wsy_status>,
) -> wsy_status {
    if host.is_null() || plugin.is_null() {
        return abi::WSY_EINVAL;
    }
    // SAFETY: `host` is non-NULL and points at a table of at least the
    // 2.0 prefix (size, abi_major, abi_minor are its first fields in every
    // version); reading these fields does not touch the rest.
    let (size, major, minor) = unsafe { ((*host).size, (*host).abi_major, (*host).abi_minor) };
    if major != abi::WSY_ABI_MAJOR || (size as usize) < wsy_host_api::SIZE_2_0 {
        // Without a table we understand we cannot even call error_set.
        return abi::WSY_EVERSION;
    }
    let _ = minor; // Any 2.x host has every function of 2.0.
    let stored = HOST.get_or_init(|| Host {
        // SAFETY: the table is ABI 2.x, readable for its `size` (at least
        // the 2.0 struct); the ABI makes it valid until the process exits.
        api: unsafe { copy_table(host, size as usize) },
        raw: host,
        plugin,
    });
    let api = stored.api;
    if !std::ptr::eq(stored.raw, host) {
        set_error(
            Some(api),
            error,
            "websocksy_plugin_v2 called twice with different hosts",
        );
        return abi::WSY_ESTATE;
    }
    logging::install();
    install_panic_hook();
    boundary(
        "the entry",
        "websocksy_plugin_v2",
        error,
        abi::WSY_ERROR,
        || {
            let mut registrar = Registrar { api, plugin, error };
            match register(&mut registrar) {
                Ok(()) => abi::WSY_OK,
                Err(status) => status,
            }
        },
    )
}
