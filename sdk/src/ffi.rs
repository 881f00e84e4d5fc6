//! The FFI boundary: the entry, the descriptors and the `extern "C"`
//! trampolines the host calls.
//!
//! Rules kept by every function here:
//! - the plugin's code runs inside [`catch_unwind`]; a panic becomes the
//!   failure value of that call (unwinding into C would abort the process);
//! - pointers from the host are NULL-checked before use;
//! - `unsafe` appears only to turn the host's pointers and views into
//!   references, each with the ABI rule that makes it sound.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once, OnceLock, PoisonError, RwLock};

use crate::abi::{
    self, wsy_backend, wsy_error, wsy_framing, wsy_host_api, wsy_opcode, wsy_plugin, wsy_request,
};
use crate::abi::{wsy_answer, wsy_status, wsy_str};
use crate::request::{Answer, Request};
use crate::{logging, Backend, ConfigError, Frame, Framing, Level};

/// The host as the entry received it.
pub(crate) struct Host {
    pub(crate) api: &'static wsy_host_api,
    pub(crate) plugin: *const wsy_plugin,
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
            abi_minor: abi::WSY_ABI_MINOR,
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
            abi_minor: abi::WSY_ABI_MINOR,
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
    if major != abi::WSY_ABI_MAJOR || (size as usize) < std::mem::size_of::<wsy_host_api>() {
        // Without a table we understand we cannot even call error_set.
        return abi::WSY_EVERSION;
    }
    // SAFETY: the table is ABI 2.x and at least as large as the 2.0 struct;
    // the ABI makes it valid until the process exits.
    let api: &'static wsy_host_api = unsafe { &*host };
    let _ = minor; // Any 2.x host has every function of 2.0.
    let stored = HOST.get_or_init(|| Host { api, plugin });
    if !std::ptr::eq(stored.api, api) {
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

// ---------------------------------------------------------------------------
// Framing trampolines. `userdata` is the `Box<FramingCell<F>>` leaked in
// `Registrar::framing`; `state` is a `Box<F::State>` made by `state_new`.

/// A framing, mutable while it is configured, then shared.
///
/// `configure` needs `&mut F`, the framing calls need `&F`, and the ABI
/// orders them: every configure runs on the main thread before the first
/// state_new, and frame/finish only ever follow a state_new. So the framing
/// starts in `setup`, where configure mutates it under the mutex, and the
/// first framing call moves it, under that same mutex, into `ready` (a
/// `OnceLock`), never to leave. From then on every call reads `ready`: one
/// acquire load, no lock and no reference count on the hot path (cheaper
/// than the read lock backends take, whose queries are far rarer than
/// frame calls). A configure that comes later finds `setup` empty and is
/// refused with `WSY_ESTATE`, so even a host that broke the order cannot
/// make a `&mut F` coexist with a `&F`: the scheme is sound without
/// trusting the host, and without `unsafe`.
pub(crate) struct FramingCell<F> {
    setup: Mutex<Option<F>>,
    ready: OnceLock<F>,
}

impl<F: Framing> FramingCell<F> {
    fn new(framing: F) -> FramingCell<F> {
        FramingCell {
            setup: Mutex::new(Some(framing)),
            ready: OnceLock::new(),
        }
    }

    /// The framing for a framing call, freezing its configuration on the
    /// first one. `None` only if the framing was lost to a panic, which the
    /// move below cannot cause.
    fn get(&self) -> Option<&F> {
        if let Some(f) = self.ready.get() {
            return Some(f);
        }
        let mut setup = self.setup.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = setup.take() {
            // `setup` held a value, so `ready` was empty (both change only
            // under this mutex): the set succeeds.
            let _ = self.ready.set(f);
        }
        drop(setup);
        self.ready.get()
    }

    /// Run `f` on the framing if it is still being configured.
    fn configure<R>(&self, f: impl FnOnce(&mut F) -> R) -> Option<R> {
        let mut setup = self.setup.lock().unwrap_or_else(PoisonError::into_inner);
        setup.as_mut().map(f)
    }
}

/// # Safety
/// `userdata` must be the leaked `FramingCell<F>` (non-NULL).
unsafe fn framing_cell<'a, F>(userdata: *mut c_void) -> &'a FramingCell<F> {
    // SAFETY: the caller's contract; the box is never freed.
    unsafe { &*userdata.cast::<FramingCell<F>>() }
}

/// The framing behind `userdata`, frozen; logs when it is gone.
///
/// # Safety
/// As [`framing_cell`].
unsafe fn framing_of<'a, F: Framing>(userdata: *mut c_void) -> Option<&'a F> {
    // SAFETY: forwarded from the caller.
    let got = unsafe { framing_cell::<F>(userdata) }.get();
    if got.is_none() {
        crate::log(
            Level::Error,
            format_args!("{}: the framing was lost to an earlier panic", F::NAME),
        );
    }
    got
}

unsafe extern "C" fn configure_framing<F: Framing>(
    userdata: *mut c_void,
    key: wsy_str,
    value: wsy_str,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("configure", F::NAME, error, abi::WSY_ERROR, || {
        let api = host().map(|h| h.api);
        if userdata.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: the host passes views valid during this call.
        let (key, value) = match unsafe { option(api, error, key, value) } {
            Ok(kv) => kv,
            Err(status) => return status,
        };
        // SAFETY: userdata is this framing's leaked cell.
        let cell = unsafe { framing_cell::<F>(userdata) };
        match cell.configure(|framing| framing.configure(key, value)) {
            Some(result) => config_status(api, error, key, result),
            None => {
                set_error(
                    api,
                    error,
                    "configure called after the framing was in use (the host broke the ABI's order)",
                );
                abi::WSY_ESTATE
            }
        }
    })
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

unsafe extern "C" fn state_new<F: Framing>(
    userdata: *mut c_void,
    config: wsy_str,
    state: *mut *mut c_void,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("state_new", F::NAME, error, abi::WSY_ERROR, || {
        if userdata.is_null() || state.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: userdata is the FramingCell<F> leaked at registration.
        let Some(framing) = (unsafe { framing_of::<F>(userdata) }) else {
            return abi::WSY_ERROR;
        };
        // SAFETY: the host passes a view valid during this call.
        let config = match unsafe { view(config) } {
            Ok(c) => c,
            Err(_) => {
                set_error(host().map(|h| h.api), error, "framing config is not UTF-8");
                return abi::WSY_EINVAL;
            }
        };
        match framing.new_state(config) {
            Ok(s) => {
                let p = Box::into_raw(Box::new(s)).cast::<c_void>();
                // SAFETY: `state` is non-NULL and points at the host's slot
                // for this connection's state.
                unsafe { *state = p };
                abi::WSY_OK
            }
            Err(msg) => {
                set_error(host().map(|h| h.api), error, &msg);
                abi::WSY_EINVAL
            }
        }
    })
}

unsafe extern "C" fn state_free<F: Framing>(_userdata: *mut c_void, state: *mut c_void) {
    boundary("state_free", F::NAME, std::ptr::null_mut(), (), || {
        if !state.is_null() {
            // SAFETY: `state` came from Box::into_raw in state_new and the
            // host frees each state exactly once.
            drop(unsafe { Box::from_raw(state.cast::<F::State>()) });
        }
    })
}

unsafe extern "C" fn frame<F: Framing>(
    userdata: *mut c_void,
    state: *mut c_void,
    data: *const u8,
    length: usize,
    last_read: usize,
    opcode: *mut wsy_opcode,
) -> i64 {
    boundary("frame", F::NAME, std::ptr::null_mut(), -1, || {
        if userdata.is_null()
            || state.is_null()
            || opcode.is_null()
            || (data.is_null() && length > 0)
        {
            crate::log(
                Level::Error,
                format_args!("frame of '{}' called with a NULL pointer", F::NAME),
            );
            return -1;
        }
        // SAFETY: userdata is the FramingCell<F> leaked at registration.
        let Some(framing) = (unsafe { framing_of::<F>(userdata) }) else {
            return -1;
        };
        // SAFETY: state is this connection's Box<F::State> from state_new;
        // the host never runs two callbacks of one connection at once.
        let state = unsafe { &mut *state.cast::<F::State>() };
        let bytes: &[u8] = if length == 0 {
            &[]
        } else {
            // SAFETY: the host passes `length` readable bytes at `data`
            // (non-NULL, checked above), valid during this call.
            unsafe { std::slice::from_raw_parts(data, length) }
        };
        let (len, op) = match framing.frame(state, bytes, last_read.min(length)) {
            Frame::More => return 0,
            Frame::Message { len, opcode } => (len, opcode.to_raw()),
            Frame::Discard(len) => (len, abi::WSY_OPCODE_DISCARD),
            Frame::Error(msg) => {
                crate::log(Level::Warn, format_args!("{}: {msg}", F::NAME));
                return -1;
            }
        };
        if len > length {
            crate::log(
                Level::Error,
                format_args!(
                    "{}: framed {len} bytes of {length} (a bug in the framing)",
                    F::NAME
                ),
            );
            return -1;
        }
        // SAFETY: `opcode` is the host's non-NULL out-parameter for this call.
        unsafe { *opcode = op };
        // len <= length <= isize::MAX, so it fits.
        len as i64
    })
}

unsafe extern "C" fn finish<F: Framing>(
    userdata: *mut c_void,
    state: *mut c_void,
    data: *const u8,
    length: usize,
    opcode: *mut wsy_opcode,
) -> wsy_status {
    boundary(
        "finish",
        F::NAME,
        std::ptr::null_mut(),
        abi::WSY_ERROR,
        || {
            if userdata.is_null()
                || state.is_null()
                || opcode.is_null()
                || (data.is_null() && length > 0)
            {
                return abi::WSY_EINVAL;
            }
            // SAFETY: as in `frame`.
            let Some(framing) = (unsafe { framing_of::<F>(userdata) }) else {
                return abi::WSY_ERROR;
            };
            // SAFETY: as in `frame`.
            let state = unsafe { &mut *state.cast::<F::State>() };
            let bytes: &[u8] = if length == 0 {
                &[]
            } else {
                // SAFETY: as in `frame`.
                unsafe { std::slice::from_raw_parts(data, length) }
            };
            let op = framing
                .finish(state, bytes)
                .map_or(abi::WSY_OPCODE_DISCARD, |o| o.to_raw());
            // SAFETY: `opcode` is the host's non-NULL out-parameter for this call.
            unsafe { *opcode = op };
            abi::WSY_OK
        },
    )
}

// ---------------------------------------------------------------------------
// Backend trampolines. `userdata` is the `Box<RwLock<B>>` leaked in
// `Registrar::backend`.

/// # Safety
/// `userdata` must be the leaked `RwLock<B>` (non-NULL).
unsafe fn cell<'a, B>(userdata: *mut c_void) -> &'a RwLock<B> {
    // SAFETY: the caller's contract; the box is never freed.
    unsafe { &*userdata.cast::<RwLock<B>>() }
}

unsafe extern "C" fn configure<B: Backend>(
    userdata: *mut c_void,
    key: wsy_str,
    value: wsy_str,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("configure", B::NAME, error, abi::WSY_ERROR, || {
        let api = host().map(|h| h.api);
        if userdata.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: the host passes views valid during this call.
        let (key, value) = match unsafe { option(api, error, key, value) } {
            Ok(kv) => kv,
            Err(status) => return status,
        };
        // SAFETY: userdata is this backend's leaked lock.
        let lock = unsafe { cell::<B>(userdata) };
        let mut backend = lock.write().unwrap_or_else(PoisonError::into_inner);
        let result = backend.configure(key, value);
        config_status(api, error, key, result)
    })
}

unsafe extern "C" fn start<B: Backend>(userdata: *mut c_void, error: *mut wsy_error) -> wsy_status {
    boundary("start", B::NAME, error, abi::WSY_ERROR, || {
        if userdata.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: userdata is this backend's leaked lock.
        let lock = unsafe { cell::<B>(userdata) };
        let mut backend = lock.write().unwrap_or_else(PoisonError::into_inner);
        match backend.start() {
            Ok(()) => abi::WSY_OK,
            Err(msg) => {
                set_error(host().map(|h| h.api), error, &msg);
                abi::WSY_ERROR
            }
        }
    })
}

unsafe extern "C" fn query<B: Backend>(
    userdata: *mut c_void,
    request: *const wsy_request,
    answer: *mut wsy_answer,
) -> wsy_status {
    boundary(
        "query",
        B::NAME,
        std::ptr::null_mut(),
        abi::WSY_ERROR,
        || {
            let Some(host) = host() else {
                return abi::WSY_ESTATE;
            };
            if userdata.is_null() || request.is_null() || answer.is_null() {
                return abi::WSY_EINVAL;
            }
            // SAFETY: `request` is non-NULL; `size` is its first field in every
            // version.
            let size = unsafe { (*request).size };
            if (size as usize) < std::mem::size_of::<wsy_request>() {
                crate::log(
                    Level::Error,
                    format_args!(
                        "{}: the host's request struct is too small ({size})",
                        B::NAME
                    ),
                );
                return abi::WSY_EVERSION;
            }
            // SAFETY: the host passes a request valid during this call, with
            // every view valid as long (the ABI's rule), and `size` covers the
            // 2.0 struct.
            let request = unsafe { Request::from_raw(&*request) };
            // SAFETY: `answer` is this query's handle, for the host's table.
            let mut answer = unsafe { Answer::from_raw(answer, host.api) };
            // SAFETY: userdata is this backend's leaked lock.
            let lock = unsafe { cell::<B>(userdata) };
            let backend = lock.read().unwrap_or_else(PoisonError::into_inner);
            match backend.query(&request, &mut answer) {
                Ok(()) => abi::WSY_OK,
                Err(msg) => {
                    crate::log(
                        Level::Warn,
                        format_args!(
                            "{}: {} {}: {msg}",
                            B::NAME,
                            request.client_address(),
                            request.target()
                        ),
                    );
                    abi::WSY_ERROR
                }
            }
        },
    )
}

unsafe extern "C" fn cleanup<B: Backend>(userdata: *mut c_void) {
    boundary("cleanup", B::NAME, std::ptr::null_mut(), (), || {
        if userdata.is_null() {
            return;
        }
        // SAFETY: userdata is this backend's leaked lock.
        let lock = unsafe { cell::<B>(userdata) };
        lock.write()
            .unwrap_or_else(PoisonError::into_inner)
            .cleanup();
    })
}
