//! The host side of the ABI: the [`HOST_API`] table every library gets, and
//! the host objects behind the opaque pointers (`wsy_plugin`, `wsy_error`,
//! `wsy_answer`) and the `wsy_request` views.
//!
//! Every `extern "C"` function here catches panics and checks every pointer;
//! none of them trusts a value a plugin controls:
//! * `wsy_plugin*` points to a [`PluginCtx`] that is leaked at load time, so
//!   it stays valid until exit as the header promises;
//! * `wsy_error*` points to an [`ErrorSlot`] on the caller's stack, valid
//!   during the call it is passed to;
//! * `wsy_answer*` is not an address at all but a never-reused handle,
//!   looked up in a table of the queries running now: an answer_* call after
//!   its query returned gets `WSY_ESTATE`, never a dangling write;
//! * `wsy_request*` is checked against the set of requests whose query is
//!   running before it is read.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, CStr};
use std::marker::PhantomData;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use websocksy_abi::{
    wsy_answer, wsy_backend, wsy_error, wsy_framing, wsy_header, wsy_host_api, wsy_plugin,
    wsy_request, wsy_status, wsy_str, WSY_ABI_MAJOR, WSY_ABI_MINOR, WSY_EEXIST, WSY_EINVAL,
    WSY_ERROR, WSY_ESTATE, WSY_EVERSION, WSY_LOG_DEBUG, WSY_LOG_ERROR, WSY_LOG_INFO, WSY_LOG_WARN,
    WSY_OK,
};

use super::one_line;
use crate::backend::Request;
use crate::framing::{Framing, Registry};
use crate::peer::PeerAddress;

/// The table passed to every library's entry. Valid until exit.
pub static HOST_API: wsy_host_api = wsy_host_api {
    size: size_of::<wsy_host_api>() as u32,
    abi_major: WSY_ABI_MAJOR,
    abi_minor: WSY_ABI_MINOR,
    log: Some(host_log),
    register_backend: Some(register_backend),
    register_framing: Some(register_framing),
    error_set: Some(error_set),
    answer_peer: Some(answer_peer),
    answer_framing: Some(answer_framing),
    answer_protocol: Some(answer_protocol),
    answer_header: Some(answer_header),
    answer_reject: Some(answer_reject),
    request_header: Some(request_header),
    request_cookie: Some(request_cookie),
};

/// The smallest descriptors ABI 2.0 accepts: a plugin's descriptor must be
/// at least this long. (They stay the 2.0 sizes when later minors append
/// fields.) A framing may end before `configure`, which was appended to 2.0
/// before its release: plugins built before that still load, without
/// options.
const BACKEND_SIZE_2_0: usize = 64;
const FRAMING_SIZE_2_0: usize = offset_of!(wsy_framing, configure);
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<wsy_backend>() == BACKEND_SIZE_2_0);
    assert!(FRAMING_SIZE_2_0 == 56);
    assert!(size_of::<wsy_framing>() == 64);
};

/// WSY_HAS_FIELD: a descriptor of `size` bytes holds all of the field at
/// `offset` of `len` bytes (a field it covers only in part is absent).
const fn has_field(size: u32, offset: usize, len: usize) -> bool {
    size as usize >= offset + len
}

// ---------------------------------------------------------------- plugins

/// A registered descriptor, copied out of the plugin.
#[derive(Clone, Copy)]
pub(crate) struct Desc<T>(pub T);

// SAFETY: a descriptor holds the plugin's function pointers, a static name
// and the plugin's userdata. The header makes the plugin responsible for
// userdata being usable from the threads it documents (query: any worker
// thread, concurrently; framing callbacks: the event loop thread only; the
// rest, a framing's configure included: the main thread), and the host keeps
// to those threads.
unsafe impl<T> Send for Desc<T> {}
// SAFETY: as above; the host never writes through a descriptor's pointers.
unsafe impl<T> Sync for Desc<T> {}

/// A backend a library registered.
#[derive(Clone)]
pub(crate) struct BackendDesc {
    pub name: String,
    pub raw: Desc<wsy_backend>,
}

/// A framing a library registered.
#[derive(Clone)]
pub(crate) struct FramingDesc {
    pub name: String,
    pub raw: Desc<wsy_framing>,
}

#[derive(Default)]
struct Registrations {
    backends: Vec<BackendDesc>,
    framings: Vec<FramingDesc>,
    /// Registrations refused, as one-line messages, for the loader to report.
    errors: Vec<String>,
}

/// What the host knows of one library; a `wsy_plugin*` points to one.
pub struct PluginCtx {
    /// The library's file stem, e.g. `backend_hello`.
    pub name: String,
    /// `websocksy::plugin::NAME`, the log target of its lines.
    pub target: String,
    pub path: PathBuf,
    registering: AtomicBool,
    regs: Mutex<Registrations>,
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

/// A poisoned lock only means a panic elsewhere was caught; the data is
/// plain and still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Addresses of every [`PluginCtx`] made (they are never freed).
static PLUGIN_CTXS: RwLock<BTreeSet<usize>> = RwLock::new(BTreeSet::new());

/// The context behind a `wsy_plugin*`; `None` for NULL or a pointer the
/// host never gave out.
fn plugin_ctx(p: *const wsy_plugin) -> Option<&'static PluginCtx> {
    let known = PLUGIN_CTXS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(p as usize));
    // SAFETY: a known address is a leaked, never freed PluginCtx.
    known.then(|| unsafe { &*p.cast::<PluginCtx>() })
}

// ----------------------------------------------------------------- errors

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

// ---------------------------------------------------------------- answers

/// A backend's answer under construction.
pub(crate) struct Answer {
    plugin: &'static PluginCtx,
    backend: String,
    registry: Arc<Registry>,
    protocol_count: usize,
    pub peer: Option<PeerAddress>,
    pub framing: Option<(String, Arc<dyn Framing>, Option<String>)>,
    pub protocol: Option<usize>,
    pub headers: Vec<(String, String)>,
    pub reject: Option<(u16, String)>,
}

impl Answer {
    pub fn new(
        plugin: &'static PluginCtx,
        backend: &str,
        registry: Arc<Registry>,
        protocol_count: usize,
    ) -> Answer {
        Answer {
            plugin,
            backend: backend.to_string(),
            registry,
            protocol_count,
            peer: None,
            framing: None,
            protocol: None,
            headers: Vec::new(),
            reject: None,
        }
    }

    fn refuse(&self, what: &str, why: &str) -> wsy_status {
        self.plugin.log(
            log::Level::Warn,
            &format!("backend '{}': {what}: {why}", self.backend),
        );
        WSY_EINVAL
    }
}

type AnswerCell = Arc<Mutex<Option<Answer>>>;

/// The answers of the queries running now, by handle.
static ANSWERS: Mutex<BTreeMap<usize, AnswerCell>> = Mutex::new(BTreeMap::new());
/// Handles are never reused (0 is never given: it would read as NULL).
static NEXT_ANSWER: AtomicUsize = AtomicUsize::new(1);

/// An answer open for answer_* calls while it lives.
pub(crate) struct AnswerHandle {
    id: usize,
    cell: AnswerCell,
}

impl AnswerHandle {
    pub fn open(answer: Answer) -> AnswerHandle {
        let id = NEXT_ANSWER.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(Mutex::new(Some(answer)));
        lock(&ANSWERS).insert(id, Arc::clone(&cell));
        AnswerHandle { id, cell }
    }

    /// The opaque pointer given to the plugin: the handle, not an address.
    pub fn as_ptr(&self) -> *mut wsy_answer {
        self.id as *mut wsy_answer
    }

    /// Close the answer to further calls and return what it holds.
    pub fn close(self) -> Option<Answer> {
        lock(&ANSWERS).remove(&self.id);
        lock(&self.cell).take()
    }
}

impl Drop for AnswerHandle {
    fn drop(&mut self) {
        lock(&ANSWERS).remove(&self.id);
    }
}

/// Run `f` on the live answer `a`; `WSY_ESTATE` if it is not (any more).
fn with_answer(a: *mut wsy_answer, f: impl FnOnce(&mut Answer) -> wsy_status) -> wsy_status {
    if a.is_null() {
        return WSY_EINVAL;
    }
    let cell = lock(&ANSWERS).get(&(a as usize)).cloned();
    if let Some(cell) = cell {
        if let Some(answer) = lock(&cell).as_mut() {
            return f(answer);
        }
    }
    log::warn!(target: "websocksy::plugin", "answer_* called outside its query (WSY_ESTATE)");
    WSY_ESTATE
}

// --------------------------------------------------------------- requests

/// Addresses of the `wsy_request`s whose query is running now.
static REQUESTS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

/// A `wsy_request` viewing a [`Request`]; registered as live while it exists.
pub(crate) struct RequestView<'a> {
    raw: wsy_request,
    _headers: Vec<wsy_header>,
    _protocols: Vec<wsy_str>,
    _client: String,
    _request: PhantomData<&'a Request>,
}

impl<'a> RequestView<'a> {
    pub fn new(req: &'a Request) -> Box<RequestView<'a>> {
        let headers: Vec<wsy_header> = req
            .headers
            .iter()
            .map(|(n, v)| wsy_header {
                name: wsy_str::from_str(n),
                value: wsy_str::from_str(v),
            })
            .collect();
        let protocols: Vec<wsy_str> = req.protocols.iter().map(|p| wsy_str::from_str(p)).collect();
        let client = req.client.to_string();
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.target.as_str(), None),
        };
        let raw = wsy_request {
            size: size_of::<wsy_request>() as u32,
            target: wsy_str::from_str(&req.target),
            path: wsy_str::from_str(path),
            query: wsy_str::from_opt(query),
            headers: if headers.is_empty() {
                std::ptr::null()
            } else {
                headers.as_ptr()
            },
            header_count: headers.len(),
            protocols: if protocols.is_empty() {
                std::ptr::null()
            } else {
                protocols.as_ptr()
            },
            protocol_count: protocols.len(),
            // The String's heap buffer does not move when the String does.
            client_address: wsy_str::from_str(&client),
            tls: u32::from(req.tls),
            reserved: 0,
        };
        let view = Box::new(RequestView {
            raw,
            _headers: headers,
            _protocols: protocols,
            _client: client,
            _request: PhantomData,
        });
        lock(&REQUESTS).insert(view.as_ptr() as usize);
        view
    }

    pub fn as_ptr(&self) -> *const wsy_request {
        &self.raw
    }
}

impl Drop for RequestView<'_> {
    fn drop(&mut self) {
        lock(&REQUESTS).remove(&(self.as_ptr() as usize));
    }
}

// ------------------------------------------------------------- functions

/// The bytes of a view, `None` when absent.
///
/// # Safety
/// The plugin's promise: a non-NULL `s.ptr` is readable for `s.len` bytes
/// during the call.
unsafe fn bytes<'a>(s: wsy_str) -> Option<&'a [u8]> {
    if !s.ptr.is_null() && s.len > isize::MAX as usize {
        return None;
    }
    // SAFETY: forwarded from the caller.
    unsafe { s.as_bytes() }
}

/// A view as UTF-8 text; `Err` names the problem.
///
/// # Safety
/// As [`bytes`].
unsafe fn text<'a>(s: wsy_str, what: &str) -> Result<&'a str, String> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(s) }.ok_or_else(|| format!("{what} is absent (NULL)"))?;
    std::str::from_utf8(b).map_err(|_| format!("{what} is not valid UTF-8"))
}

/// Catch a panic in host code so it never unwinds into the plugin.
fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!(target: "websocksy::plugin", "internal error in a host function (panic caught)");
        fallback
    })
}

unsafe extern "C" fn host_log(plugin: *const wsy_plugin, level: u32, message: wsy_str) {
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

unsafe extern "C" fn error_set(error: *mut wsy_error, message: wsy_str) {
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

/// Descriptor types the host copies (OBS style, `size` first).
///
/// # Safety
/// All-zero bytes must be a valid value (integers, raw pointers, `Option`
/// of function pointers), and the struct must start with `uint32_t size,
/// uint16_t abi_major, uint16_t abi_minor`.
unsafe trait Descriptor: Copy {
    const KIND: &'static str;
    const SIZE_2_0: usize;
}
// SAFETY: integers, pointers and Option<fn>; header layout as required.
unsafe impl Descriptor for wsy_backend {
    const KIND: &'static str = "backend";
    const SIZE_2_0: usize = BACKEND_SIZE_2_0;
}
// SAFETY: as above.
unsafe impl Descriptor for wsy_framing {
    const KIND: &'static str = "framing";
    const SIZE_2_0: usize = FRAMING_SIZE_2_0;
}

/// Copy a descriptor: the first `size` bytes, the rest zero. Checks the
/// version and the size.
///
/// # Safety
/// `src` is non-NULL and readable for the `size` it declares (the plugin's
/// promise).
unsafe fn copy_descriptor<T: Descriptor>(src: *const T) -> Result<T, (wsy_status, String)> {
    let src = src.cast::<u8>();
    // SAFETY: every descriptor starts with a uint32_t size.
    let size = unsafe { src.cast::<u32>().read_unaligned() } as usize;
    if size < 8 {
        return Err((
            WSY_EINVAL,
            format!(
                "{} descriptor has size {size}, too small to be one",
                T::KIND
            ),
        ));
    }
    // SAFETY: size >= 8 covers abi_major at 4 and abi_minor at 6.
    let (major, minor) = unsafe {
        (
            src.add(4).cast::<u16>().read_unaligned(),
            src.add(6).cast::<u16>().read_unaligned(),
        )
    };
    if major != WSY_ABI_MAJOR || minor > WSY_ABI_MINOR {
        return Err((
            WSY_EVERSION,
            format!(
                "{} built for ABI {major}.{minor}, host supports {WSY_ABI_MAJOR}.{WSY_ABI_MINOR}",
                T::KIND
            ),
        ));
    }
    if size < T::SIZE_2_0 {
        return Err((
            WSY_EINVAL,
            format!(
                "{} descriptor has size {size}, smaller than ABI 2.0's {}",
                T::KIND,
                T::SIZE_2_0
            ),
        ));
    }
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: `src` is readable for `size` bytes, `out` writable for
    // size_of::<T>(), we copy the smaller; they cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().cast::<u8>(), size.min(size_of::<T>()))
    };
    // SAFETY: zero is valid for every field (Descriptor's contract), and the
    // copied prefix holds values the plugin wrote as the same C types.
    Ok(unsafe { out.assume_init() })
}

/// A descriptor's `name`: non-empty UTF-8 without spaces or control characters.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string (the plugin's promise).
unsafe fn descriptor_name(kind: &str, name: *const c_char) -> Result<String, (wsy_status, String)> {
    if name.is_null() {
        return Err((WSY_EINVAL, format!("{kind} descriptor has no name (NULL)")));
    }
    // SAFETY: per the contract, NUL-terminated.
    let raw = unsafe { CStr::from_ptr(name) };
    let s = raw
        .to_str()
        .map_err(|_| (WSY_EINVAL, format!("{kind} name is not valid UTF-8")))?;
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            WSY_EINVAL,
            format!("{kind} name '{}' is empty or has spaces", one_line(s)),
        ));
    }
    Ok(s.to_string())
}

/// The common part of register_backend and register_framing.
///
/// # Safety
/// `desc` NULL or a
/// descriptor readable for its `size`.
unsafe fn register<T: Descriptor>(
    plugin: *mut wsy_plugin,
    desc: *const T,
    check: impl FnOnce(&T) -> Result<String, (wsy_status, String)>,
    add: impl FnOnce(&mut Registrations, String, T) -> Result<(), (wsy_status, String)>,
) -> wsy_status {
    let Some(ctx) = plugin_ctx(plugin) else {
        return WSY_EINVAL;
    };
    let result = if !ctx.registering.load(Ordering::SeqCst) {
        Err((
            WSY_ESTATE,
            format!("register_{} called outside the entry", T::KIND),
        ))
    } else if desc.is_null() {
        Err((WSY_EINVAL, format!("register_{} called with NULL", T::KIND)))
    } else {
        // SAFETY: per the contract.
        unsafe { copy_descriptor(desc) }
            .and_then(|d| check(&d).map(|name| (name, d)))
            .and_then(|(name, d)| {
                let mut regs = lock(&ctx.regs);
                add(&mut regs, name, d)
            })
    };
    match result {
        Ok(()) => WSY_OK,
        Err((status, msg)) => {
            if status == WSY_ESTATE {
                ctx.log(log::Level::Warn, &msg);
            } else {
                lock(&ctx.regs).errors.push(msg);
            }
            status
        }
    }
}

unsafe extern "C" fn register_backend(
    plugin: *mut wsy_plugin,
    backend: *const wsy_backend,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let check = |d: &wsy_backend| {
            // SAFETY: `name` is the plugin's static string (or NULL).
            let name = unsafe { descriptor_name("backend", d.name) }?;
            if d.query.is_none() {
                return Err((
                    WSY_EINVAL,
                    format!("backend '{name}' has no query function"),
                ));
            }
            Ok(name)
        };
        let add = |r: &mut Registrations, name: String, d: wsy_backend| {
            if r.backends.iter().any(|b| b.name == name) {
                return Err((WSY_EEXIST, format!("backend '{name}' is registered twice")));
            }
            r.backends.push(BackendDesc { name, raw: Desc(d) });
            Ok(())
        };
        // SAFETY: the pointers the plugin passed, checked inside.
        unsafe { register(plugin, backend, check, add) }
    })
}

unsafe extern "C" fn register_framing(
    plugin: *mut wsy_plugin,
    framing: *const wsy_framing,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let check = |d: &wsy_framing| {
            // SAFETY: `name` is the plugin's static string (or NULL).
            let name = unsafe { descriptor_name("framing", d.name) }?;
            if d.frame.is_none() {
                return Err((
                    WSY_EINVAL,
                    format!("framing '{name}' has no frame function"),
                ));
            }
            Ok(name)
        };
        let add = |r: &mut Registrations, name: String, mut d: wsy_framing| {
            if r.framings.iter().any(|f| f.name == name) {
                return Err((WSY_EEXIST, format!("framing '{name}' is registered twice")));
            }
            // copy_descriptor zeroed what lies past `size`; a size that ends
            // inside `configure` would leave part of a pointer: drop it.
            let (at, len) = (
                offset_of!(wsy_framing, configure),
                size_of::<Option<websocksy_abi::wsy_configure_fn>>(),
            );
            if !has_field(d.size, at, len) {
                d.configure = None;
            }
            r.framings.push(FramingDesc { name, raw: Desc(d) });
            Ok(())
        };
        // SAFETY: the pointers the plugin passed, checked inside.
        unsafe { register(plugin, framing, check, add) }
    })
}

unsafe extern "C" fn answer_peer(answer: *mut wsy_answer, peer: wsy_str) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            // SAFETY: the view is the plugin's, valid during this call.
            let url = match unsafe { text(peer, "peer") } {
                Ok(u) => u,
                Err(e) => return a.refuse("answer_peer", &e),
            };
            match PeerAddress::parse(url, None) {
                Ok(p) => {
                    a.peer = Some(p);
                    WSY_OK
                }
                Err(e) => a.refuse("answer_peer", &format!("invalid peer: {}", one_line(&e))),
            }
        })
    })
}

unsafe extern "C" fn answer_framing(
    answer: *mut wsy_answer,
    name: wsy_str,
    config: wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            // SAFETY: the views are the plugin's, valid during this call.
            let (name, config) = match unsafe { (text(name, "framing name"), bytes(config)) } {
                (Ok(n), c) => (n, c),
                (Err(e), _) => return a.refuse("answer_framing", &e),
            };
            let config = match config.map(std::str::from_utf8) {
                None => None,
                Some(Ok(c)) => Some(c.to_string()),
                Some(Err(_)) => {
                    return a.refuse("answer_framing", "framing config is not valid UTF-8")
                }
            };
            match a.registry.get(name) {
                Some(f) => {
                    a.framing = Some((name.to_string(), f, config));
                    WSY_OK
                }
                None => {
                    let why = format!(
                        "unknown framing '{}' (available: {})",
                        one_line(name),
                        a.registry.names().join(", ")
                    );
                    a.refuse("answer_framing", &why)
                }
            }
        })
    })
}

unsafe extern "C" fn answer_protocol(answer: *mut wsy_answer, index: usize) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            if index >= a.protocol_count {
                let why = format!("index {index} out of range ({} offered)", a.protocol_count);
                return a.refuse("answer_protocol", &why);
            }
            a.protocol = Some(index);
            WSY_OK
        })
    })
}

/// Headers the host writes itself in a 101 response.
const HANDSHAKE_HEADERS: [&str; 7] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-version",
    "content-length",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

unsafe extern "C" fn answer_header(
    answer: *mut wsy_answer,
    name: wsy_str,
    value: wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            // SAFETY: the views are the plugin's, valid during this call.
            let (name, value) =
                match unsafe { (text(name, "header name"), text(value, "header value")) } {
                    (Ok(n), Ok(v)) => (n, v),
                    (Err(e), _) | (_, Err(e)) => return a.refuse("answer_header", &e),
                };
            if !is_token(name) {
                return a.refuse(
                    "answer_header",
                    &format!("invalid header name '{}'", one_line(name)),
                );
            }
            if HANDSHAKE_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            {
                return a.refuse("answer_header", &format!("'{name}' is set by the host"));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return a.refuse(
                    "answer_header",
                    &format!("value of '{name}' has control characters"),
                );
            }
            a.headers.push((name.to_string(), value.trim().to_string()));
            WSY_OK
        })
    })
}

unsafe extern "C" fn answer_reject(
    answer: *mut wsy_answer,
    status: u16,
    reason: wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            if !(400..=599).contains(&status) {
                return a.refuse("answer_reject", &format!("status {status} is not 400-599"));
            }
            // SAFETY: the view is the plugin's, valid during this call.
            let reason = unsafe { bytes(reason) }
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            a.reject = Some((status, one_line(&reason)));
            WSY_OK
        })
    })
}

/// Look a name up in a live request: `find` gets the request's headers and
/// returns the value's bytes (a sub-slice of the request's memory).
///
/// # Safety
/// `value` NULL or writable; `name` a valid view (the plugin's promise).
unsafe fn lookup(
    request: *const wsy_request,
    name: wsy_str,
    value: *mut wsy_str,
    find: impl Fn(&[wsy_header], &[u8]) -> Option<wsy_str>,
) -> wsy_status {
    // SAFETY: the caller's promise; checked for NULL.
    let Some(out) = (unsafe { value.as_mut() }) else {
        return WSY_EINVAL;
    };
    *out = wsy_str::NONE;
    // SAFETY: the view is the plugin's, valid during this call.
    let Some(name) = (unsafe { bytes(name) }) else {
        return WSY_EINVAL;
    };
    if request.is_null() {
        return WSY_EINVAL;
    }
    // Held while reading, so the request cannot be freed under us.
    let live = lock(&REQUESTS);
    if !live.contains(&(request as usize)) {
        log::warn!(target: "websocksy::plugin", "request_* called with a request whose query is over (WSY_ESTATE)");
        return WSY_ESTATE;
    }
    // SAFETY: `request` is a RequestView's wsy_request, alive while in REQUESTS.
    let req = unsafe { &*request };
    let headers: &[wsy_header] = if req.headers.is_null() {
        &[]
    } else {
        // SAFETY: built by RequestView::new from a Vec of header_count headers.
        unsafe { std::slice::from_raw_parts(req.headers, req.header_count) }
    };
    match find(headers, name) {
        Some(v) => {
            *out = v;
            WSY_OK
        }
        None => WSY_ERROR,
    }
}

/// The bytes of a header view the host built.
fn host_bytes<'a>(s: wsy_str) -> &'a [u8] {
    // SAFETY: only called on views RequestView::new made from Strings that
    // outlive the query, and only inside `lookup`'s `find`, while the
    // request is held live.
    unsafe { s.as_bytes() }.unwrap_or_default()
}

fn view(b: &[u8]) -> wsy_str {
    wsy_str {
        ptr: b.as_ptr().cast(),
        len: b.len(),
    }
}

unsafe extern "C" fn request_header(
    request: *const wsy_request,
    name: wsy_str,
    value: *mut wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let find = |headers: &[wsy_header], name: &[u8]| {
            headers
                .iter()
                .find(|h| host_bytes(h.name).eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        // SAFETY: the plugin's pointers, checked inside.
        unsafe { lookup(request, name, value, find) }
    })
}

/// The value of cookie `name` in one Cookie header value.
pub(crate) fn find_cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let (n, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (n.trim_ascii() == name).then(|| v.trim_ascii())
    })
}

unsafe extern "C" fn request_cookie(
    request: *const wsy_request,
    name: wsy_str,
    value: *mut wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let find = |headers: &[wsy_header], name: &[u8]| {
            headers
                .iter()
                .filter(|h| host_bytes(h.name).eq_ignore_ascii_case(b"cookie"))
                .find_map(|h| find_cookie(host_bytes(h.value), name))
                .map(view)
        };
        // SAFETY: the plugin's pointers, checked inside.
        unsafe { lookup(request, name, value, find) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> wsy_str {
        wsy_str::from_str(v)
    }

    fn request() -> Request {
        Request {
            target: "/a/b?x=1".into(),
            headers: vec![
                ("Host".into(), "h".into()),
                ("Cookie".into(), "a=1; sid=abc".into()),
                ("X-Token".into(), "t1".into()),
                ("cookie".into(), "SID=upper;b=2;empty=".into()),
                ("x-token".into(), "t2".into()),
            ],
            protocols: vec!["p1".into(), "p2".into()],
            client: "[::1]:4000".parse().unwrap(),
            tls: false,
        }
    }

    fn get(
        f: unsafe extern "C" fn(*const wsy_request, wsy_str, *mut wsy_str) -> wsy_status,
        r: *const wsy_request,
        name: &str,
    ) -> (wsy_status, Option<String>) {
        let mut out = s("junk");
        // SAFETY: valid pointers to locals.
        let st = unsafe { f(r, s(name), &mut out) };
        // SAFETY: NULL or a view into the live request.
        let v = unsafe { out.as_bytes() }.map(|b| String::from_utf8(b.to_vec()).unwrap());
        (st, v)
    }

    #[test]
    fn request_views() {
        let req = request();
        let v = RequestView::new(&req);
        let r = v.as_ptr();
        // SAFETY: a live view.
        let raw = unsafe { &*r };
        // SAFETY: views into `req`.
        unsafe {
            assert_eq!(raw.path.as_bytes(), Some(&b"/a/b"[..]));
            assert_eq!(raw.query.as_bytes(), Some(&b"x=1"[..]));
            assert_eq!(raw.client_address.as_bytes(), Some(&b"[::1]:4000"[..]));
        }
        assert_eq!((raw.header_count, raw.protocol_count), (5, 2));
        assert_eq!(
            get(request_header, r, "x-TOKEN"),
            (WSY_OK, Some("t1".into()))
        );
        assert_eq!(get(request_header, r, "nope"), (WSY_ERROR, None));
        assert_eq!(get(request_cookie, r, "sid"), (WSY_OK, Some("abc".into())));
        assert_eq!(
            get(request_cookie, r, "SID"),
            (WSY_OK, Some("upper".into()))
        );
        assert_eq!(get(request_cookie, r, "b"), (WSY_OK, Some("2".into())));
        assert_eq!(
            get(request_cookie, r, "empty"),
            (WSY_OK, Some(String::new()))
        );
        assert_eq!(get(request_cookie, r, "Sid"), (WSY_ERROR, None));
        let mut out = wsy_str::NONE;
        // SAFETY: NULL checks only.
        unsafe {
            assert_eq!(
                request_header(r, s("Host"), std::ptr::null_mut()),
                WSY_EINVAL
            );
            assert_eq!(
                request_header(std::ptr::null(), s("Host"), &mut out),
                WSY_EINVAL
            );
            assert_eq!(request_header(r, wsy_str::NONE, &mut out), WSY_EINVAL);
        }
        drop(v);
        // The request's query is over: refused without reading it.
        assert_eq!(get(request_header, r, "Host"), (WSY_ESTATE, None));

        let bare = Request {
            target: "/p".into(),
            headers: vec![],
            protocols: vec![],
            ..req
        };
        let v = RequestView::new(&bare);
        // SAFETY: a live view.
        let raw = unsafe { &*v.as_ptr() };
        assert!(raw.query.ptr.is_null() && raw.headers.is_null());
        assert_eq!(get(request_cookie, v.as_ptr(), "a"), (WSY_ERROR, None));
    }

    #[test]
    fn cookies() {
        assert_eq!(find_cookie(b"a=1; b = 2 ;c=x=y", b"b"), Some(&b"2"[..]));
        assert_eq!(find_cookie(b"a=1; b = 2 ;c=x=y", b"c"), Some(&b"x=y"[..]));
        assert_eq!(find_cookie(b"flag; a=1", b"flag"), Some(&b""[..]));
        assert_eq!(find_cookie(b"", b"a"), None);
    }

    fn answer() -> AnswerHandle {
        let ctx = PluginCtx::leak("unit", PathBuf::from("unit.so"));
        AnswerHandle::open(Answer::new(
            ctx,
            "b",
            Arc::new(Registry::with_builtins()),
            2,
        ))
    }

    #[test]
    fn answers_validate() {
        let h = answer();
        let a = h.as_ptr();
        // SAFETY: a live handle and views of locals.
        unsafe {
            assert_eq!(answer_peer(a, s("tcp://[::1]:80")), WSY_OK);
            assert_eq!(answer_peer(a, s("bogus://x")), WSY_EINVAL);
            assert_eq!(answer_peer(a, wsy_str::NONE), WSY_EINVAL);
            assert_eq!(answer_framing(a, s("newline"), s("lf")), WSY_OK);
            assert_eq!(answer_framing(a, s("nope"), wsy_str::NONE), WSY_EINVAL);
            assert_eq!(answer_protocol(a, 1), WSY_OK);
            assert_eq!(answer_protocol(a, 2), WSY_EINVAL);
            assert_eq!(answer_header(a, s("X-A"), s("1")), WSY_OK);
            assert_eq!(answer_header(a, s("X A"), s("1")), WSY_EINVAL);
            assert_eq!(answer_header(a, s("X-B"), s("1\r\nEvil: 1")), WSY_EINVAL);
            assert_eq!(
                answer_header(a, s("sec-websocket-accept"), s("x")),
                WSY_EINVAL
            );
            assert_eq!(answer_reject(a, 200, s("no")), WSY_EINVAL);
            assert_eq!(answer_reject(a, 600, s("no")), WSY_EINVAL);
            assert_eq!(
                answer_reject(std::ptr::null_mut(), 403, s("no")),
                WSY_EINVAL
            );
        }
        let got = h.close().unwrap();
        assert_eq!(
            got.peer.as_ref().map(ToString::to_string),
            Some("tcp://[::1]:80".to_string())
        );
        let (name, _, config) = got.framing.as_ref().unwrap();
        assert_eq!((name.as_str(), config.as_deref()), ("newline", Some("lf")));
        assert_eq!(got.protocol, Some(1));
        assert_eq!(got.headers, [("X-A".to_string(), "1".to_string())]);
        assert!(got.reject.is_none());
        // SAFETY: a closed handle is refused, not dereferenced.
        unsafe {
            assert_eq!(answer_peer(a, s("mirror://")), WSY_ESTATE);
            assert_eq!(answer_reject(a, 403, s("late")), WSY_ESTATE);
        }
        let h2 = answer();
        assert_ne!(h2.as_ptr(), a, "handles are never reused");
    }

    #[test]
    fn reject_reason_is_one_line() {
        let h = answer();
        // SAFETY: a live handle and a view of a local.
        let status = unsafe { answer_reject(h.as_ptr(), 403, s("go\naway")) };
        assert_eq!(status, WSY_OK);
        assert_eq!(
            h.close().unwrap().reject,
            Some((403, "go away".to_string()))
        );
    }

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

    fn framing_desc(size: u32, major: u16, minor: u16) -> wsy_framing {
        unsafe extern "C" fn frame(
            _: *mut std::ffi::c_void,
            _: *mut std::ffi::c_void,
            _: *const u8,
            _: usize,
            _: usize,
            _: *mut u32,
        ) -> i64 {
            0
        }
        wsy_framing {
            size,
            abi_major: major,
            abi_minor: minor,
            name: c"f1".as_ptr(),
            userdata: std::ptr::null_mut(),
            state_new: None,
            state_free: None,
            frame: Some(frame),
            finish: None,
            configure: Some(configure),
        }
    }

    unsafe extern "C" fn configure(
        _: *mut std::ffi::c_void,
        _: wsy_str,
        _: wsy_str,
        _: *mut wsy_error,
    ) -> wsy_status {
        WSY_OK
    }

    #[test]
    fn registration_rules() {
        let ctx = PluginCtx::leak("reg", PathBuf::from("reg.so"));
        let p = ctx.as_ptr();
        let good = framing_desc(FRAMING_SIZE_2_0 as u32, 2, 0);
        // SAFETY: descriptors on the stack, a leaked context.
        unsafe {
            assert_eq!(register_framing(p, &good), WSY_ESTATE, "outside the entry");
            ctx.registering(|| {
                assert_eq!(register_framing(p, &good), WSY_OK);
                assert_eq!(register_framing(p, &good), WSY_EEXIST);
                assert_eq!(register_framing(p, &framing_desc(64, 1, 0)), WSY_EVERSION);
                assert_eq!(register_framing(p, &framing_desc(64, 2, 99)), WSY_EVERSION);
                assert_eq!(register_framing(p, &framing_desc(40, 2, 0)), WSY_EINVAL);
                assert_eq!(register_framing(p, std::ptr::null()), WSY_EINVAL);
                assert_eq!(register_framing(std::ptr::null_mut(), &good), WSY_EINVAL);
                let mut no_frame = good;
                no_frame.frame = None;
                no_frame.name = c"f2".as_ptr();
                assert_eq!(register_framing(p, &no_frame), WSY_EINVAL);
                let mut spaced = good;
                spaced.name = c"a b".as_ptr();
                assert_eq!(register_framing(p, &spaced), WSY_EINVAL);
            });
        }
        let (b, f, errors) = ctx.take();
        assert!(b.is_empty());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "f1");
        assert!(
            errors
                .iter()
                .any(|e| e == "framing built for ABI 1.0, host supports 2.0"),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e == "framing built for ABI 2.99, host supports 2.0"),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("smaller than ABI 2.0's 56")),
            "{errors:?}"
        );
    }

    #[test]
    fn configure_is_read_only_when_size_covers_it() {
        let ctx = PluginCtx::leak("sizes", PathBuf::from("sizes.so"));
        let p = ctx.as_ptr();
        let full = size_of::<wsy_framing>() as u32;
        let old = offset_of!(wsy_framing, configure) as u32;
        let names = [c"full", c"old", c"partial"];
        // SAFETY: descriptors on the stack, readable for their whole sizeof
        // (so for any smaller declared size too); a leaked context.
        unsafe {
            ctx.registering(|| {
                for (name, size) in names.iter().zip([full, old, old + 4]) {
                    // Every descriptor has `configure` set in memory; only
                    // the declared size says whether it is there.
                    let mut d = framing_desc(size, 2, 0);
                    d.name = name.as_ptr();
                    assert_eq!(register_framing(p, &d), WSY_OK, "size {size}");
                }
                // One byte short of the first 2.0 layout is refused.
                assert_eq!(
                    register_framing(p, &framing_desc(old - 1, 2, 0)),
                    WSY_EINVAL
                );
            });
        }
        let (_, f, errors) = ctx.take();
        let got: Vec<(&str, u32, bool)> = f
            .iter()
            .map(|d| (d.name.as_str(), d.raw.0.size, d.raw.0.configure.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("full", full, true),
                ("old", old, false),
                ("partial", old + 4, false)
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("smaller than ABI 2.0's 56"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_larger_descriptor_is_read_up_to_what_the_host_knows() {
        #[repr(C)]
        struct Future {
            d: wsy_framing,
            extra: u64,
        }
        let mut f = Future {
            d: framing_desc(size_of::<Future>() as u32, 2, 0),
            extra: 7,
        };
        f.d.size = size_of::<Future>() as u32;
        // SAFETY: readable for its declared size.
        let copied = unsafe { copy_descriptor((&f as *const Future).cast::<wsy_framing>()) }
            .ok()
            .unwrap();
        assert_eq!(copied.size as usize, size_of::<Future>());
        assert!(copied.frame.is_some());
        assert_eq!(f.extra, 7);
    }

    #[test]
    fn unknown_pointers_are_refused() {
        let mut bogus = [0u64; 16];
        let p = bogus.as_mut_ptr().cast::<wsy_plugin>();
        let good = framing_desc(FRAMING_SIZE_2_0 as u32, 2, 0);
        // SAFETY: the host must not dereference pointers it did not make.
        unsafe {
            host_log(p, WSY_LOG_ERROR, s("never printed"));
            assert_eq!(register_framing(p, &good), WSY_EINVAL);
            error_set(bogus.as_mut_ptr().cast(), s("ignored"));
        }
        assert_eq!(bogus, [0u64; 16]);
        let slot = ErrorSlot::default();
        let stale = slot.as_ptr();
        drop(slot);
        // SAFETY: a dropped slot is refused, not written.
        unsafe { error_set(stale, s("late")) };
    }

    #[test]
    fn host_table_is_complete() {
        assert_eq!(HOST_API.size as usize, size_of::<wsy_host_api>());
        assert_eq!((HOST_API.abi_major, HOST_API.abi_minor), (2, 0));
        let t = HOST_API;
        assert!(t.log.is_some() && t.register_backend.is_some() && t.register_framing.is_some());
        assert!(t.error_set.is_some() && t.answer_peer.is_some() && t.answer_framing.is_some());
        assert!(
            t.answer_protocol.is_some() && t.answer_header.is_some() && t.answer_reject.is_some()
        );
        assert!(t.request_header.is_some() && t.request_cookie.is_some());
    }
}
