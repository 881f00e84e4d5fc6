//! The original websocksy's plugins (API version 1), loaded unmodified.
//!
//! A v1 plugin is built against the original `websocksy.h` (a copy written
//! from the published ABI facts lives in `tests/plugins/v1/websocksy.h`):
//!
//! * a **backend** exports `init` (required, returns 1), `configure`
//!   (optional), `query` (required) and `cleanup` (optional), found by name;
//! * a **framing plugin** registers `ws_framing` functions from an ELF
//!   constructor by calling `core_register_framing`, which the executable
//!   exports (with `core_framing`) through the dynamic-symbol list in
//!   `core/exports.dynlist` (`core/build.rs`).
//!
//! This module mirrors the v1 types (`#[repr(C)]`, checked against the
//! header by a test that compiles a C program), implements the two exported
//! functions, wraps a C `ws_framing` as a [`Framing`], and a v1 backend as a
//! [`Backend`].
//!
//! # Decisions
//!
//! **The data pointer.** `ws_framing` takes a mutable `uint8_t* data`, and
//! the original handed out its own peer buffer with a NUL written at
//! `data[length]`. The core's [`FramingState`] only gets `&[u8]`; giving C a
//! `*mut` to it would be undefined behaviour the moment a plugin writes. So
//! each v1 state keeps its own copy of the unframed bytes (a *mirror*) plus
//! one NUL byte, and passes a pointer into that. To stay linear, the mirror
//! is kept in step with the host instead of being rebuilt per call: after a
//! frame of n bytes it drops n bytes (the host removed them), after "need
//! more" it appends only what arrived since. Whenever the host's slice is
//! not the expected continuation (its buffer moved or grew, the host
//! dropped bytes through `finish`) the mirror is rebuilt from the slice.
//! Plugins may therefore write anywhere in `data[0..=length]`, as in the
//! original; the writes stay in the plugin's view (later calls see them)
//! but what goes to the client is always the bytes the peer sent.
//! (Measured: 64 MiB of 100-byte lines through a 64 KiB buffer take about
//! 40 ms with the mirror and 590 ms when the whole slice is copied per call.)
//!
//! **The opcode** is preset to `ws_frame_binary` before *every* call, not once
//! per `recv()` as in the original: the original's sticky opcode (spec B49)
//! is a defect no plugin can have relied on usefully. Only text, binary and
//! discard are accepted; any other opcode (continuation, close, ping, pong,
//! garbage), a negative return (the original hung the whole server) or an
//! overrun is a framing error: that connection closes with 1011 and the
//! bridge keeps serving.
//!
//! **The config** is never NULL: a route or an answer without a
//! `framing-config` gives v1 framings `""`. The original's plugins read the
//! string without checking it (`framing_dynamic32.c` walks `config[u]`,
//! `framing_fixedlength.c` calls `strtoul(config, ...)`) and treat `""` as
//! "all defaults"; a NULL took the whole process down at the first peer
//! bytes.
//!
//! **Threads.** The original was single-threaded and v1 plugins were written
//! for that. Framing functions are only called on the event-loop thread (as
//! all framings are), so they never run concurrently with each other. v1
//! backend queries run on the worker pool ([`Backend::blocking`] is true), so
//! a slow query never stalls the loop, but one mutex per backend serializes
//! `configure`/`query`/`cleanup`: a v1 backend never sees two calls at once.
//! (A framing call can overlap a query of another library; the original
//! could not, but a plugin sharing state between its backend and its
//! framing is not something the v1 contract promised.)
//!
//! **Framings that are Rust.** `core_framing` must return a callable C
//! function even for the built-ins and v2 framings. A fixed table of
//! [`TRAMPOLINE_SLOTS`] `extern "C"` trampolines, each bound to one slot,
//! implements the v1 calling convention over the slot's [`FramingState`]
//! (kept in `*framing_data`, freed by the NULL-data call). When a v1 backend
//! returns a trampoline in `ws_peer_info.framing`, it is mapped straight
//! back to the Rust framing, with no C round trip; a v1 function registered
//! through `core_register_framing` comes back from `core_framing` as itself.
//!
//! **Memory.** `host`, `port` and `framing_config` of the returned
//! `ws_peer_info` were `malloc`ed by the plugin (v1 contract); they are copied
//! and released with `free` right after `query` returns. Strings handed to
//! the plugin (endpoint, protocols, headers, option keys and values) are
//! writable NUL-terminated copies owned by the host for the duration of the
//! call. The `websocket` struct is zeroed and filled as far as the bridge
//! knows the values (no socket descriptors: `ws_fd` and `peer_fd` are -1).
//!
//! **Lifecycle.** `init` must return 1; each option goes to `configure`
//! (an error names the option's origin; options for a backend without
//! `configure` are an error, where the original crashed); `cleanup` runs once,
//! at [`Backend::shutdown`] (or when the backend is dropped), after which
//! queries are answered 503 without calling the plugin. A backend returning
//! `framing == NULL` gets the built-in `auto`, as in the original (not the
//! registry's `auto`, which a plugin may have replaced).
//!
//! The function pointers taken from a library stay valid because the loader
//! never unloads libraries before exit.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use log::{debug, info, warn};

use crate::backend::{Backend, Decision, PeerChoice, Request};
use crate::config::BackendOption;
use crate::framing::{Auto, Framed, Framing, FramingState, Opcode, Registry};
use crate::peer::PeerAddress;

// ------------------------------------------------------------------ the ABI

/// `WEBSOCKSY_API_VERSION`: what a v1 backend's `init` returns.
pub const WEBSOCKSY_API_VERSION: u64 = 1;
/// `WS_MAX_LINE`: size of `websocket.read_buffer`.
pub const WS_MAX_LINE: usize = 16384;
/// `PEER_BUFFER_SIZE`: size of `websocket.peer_buffer`.
pub const PEER_BUFFER_SIZE: usize = 16384;
/// `WS_HEADER_LIMIT`: at most this many "other" headers reach a backend.
pub const WS_HEADER_LIMIT: usize = 10;

/// `ws_state` value `ws_http`: the state a backend sees during `query`.
pub const WS_HTTP: c_uint = 1;

/// `ws_operation` values a framing function may set.
pub const WS_FRAME_TEXT: c_uint = 1;
pub const WS_FRAME_BINARY: c_uint = 2;
pub const WS_FRAME_DISCARD: c_uint = 11;

/// `peer_transport` values.
pub const PEER_TRANSPORT_DETECT: c_uint = 0;
pub const PEER_TCP_CLIENT: c_uint = 1;
pub const PEER_UDP_CLIENT: c_uint = 2;
pub const PEER_FIFO_TX: c_uint = 3;
pub const PEER_FIFO_RX: c_uint = 4;
pub const PEER_UNIX_STREAM: c_uint = 5;
pub const PEER_UNIX_DGRAM: c_uint = 6;

/// `ws_framing`. The `ws_operation*` is a `c_uint*`: C enums without
/// negative values are `unsigned int` sized (and any value a plugin writes
/// must be readable, so never a Rust enum).
pub type WsFraming = unsafe extern "C" fn(
    data: *mut u8,
    length: usize,
    last_read: usize,
    opcode: *mut c_uint,
    framing_data: *mut *mut c_void,
    config: *const c_char,
) -> i64;

/// `ws_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WsHttpHeader {
    pub tag: *mut c_char,
    pub value: *mut c_char,
}

/// `ws_peer_info`, returned by value from `query`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WsPeerInfo {
    pub transport: c_uint,
    pub host: *mut c_char,
    pub port: *mut c_char,
    pub framing: Option<WsFraming>,
    pub framing_config: *mut c_char,
    pub protocol: usize,
}

/// `websocket`, the original's per-connection struct, passed to `query`.
#[repr(C)]
pub struct Websocket {
    pub ws_fd: c_int,
    pub read_buffer: [u8; WS_MAX_LINE],
    pub read_buffer_offset: usize,
    pub state: c_uint,
    pub last_event: libc::time_t,

    pub headers: usize,
    pub header: [WsHttpHeader; WS_HEADER_LIMIT],

    pub request_path: *mut c_char,
    pub websocket_version: c_uint,
    pub socket_key: *mut c_char,
    pub want_upgrade: c_uint,

    pub protocols: usize,
    pub protocol: *mut *mut c_char,

    pub peer: WsPeerInfo,
    pub peer_fd: c_int,
    pub peer_buffer: [u8; PEER_BUFFER_SIZE],
    pub peer_buffer_offset: usize,
    pub peer_framing_data: *mut c_void,
}

impl Websocket {
    /// A zeroed struct on the heap (33 KB: not for the stack).
    fn zeroed() -> Box<Websocket> {
        let layout = std::alloc::Layout::new::<Websocket>();
        // SAFETY: the layout is non-zero-sized; all-zero bytes are a valid
        // Websocket (integers, byte arrays, null pointers, `None` function
        // pointers), so the allocation may be owned as a Box of it.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<Websocket>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(p)
        }
    }
}

type InitFn = unsafe extern "C" fn() -> u64;
type ConfigureFn = unsafe extern "C" fn(key: *mut c_char, value: *mut c_char) -> u64;
type QueryFn = unsafe extern "C" fn(
    endpoint: *mut c_char,
    protocols: usize,
    protocol: *mut *mut c_char,
    headers: usize,
    header: *mut WsHttpHeader,
    ws: *mut Websocket,
) -> WsPeerInfo;
type CleanupFn = unsafe extern "C" fn();

// ------------------------------------------------------- framing registry

/// How many distinct Rust framings `core_framing` can hand out to C.
pub const TRAMPOLINE_SLOTS: usize = 64;

/// Registry state shared by the exported functions and the loader.
struct State {
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

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A Rust framing bound to a trampoline.
struct Slot {
    name: String,
    framing: Arc<dyn Framing>,
}

static SLOTS: [OnceLock<Slot>; TRAMPOLINE_SLOTS] = [const { OnceLock::new() }; TRAMPOLINE_SLOTS];

/// The slot index of [`AUTO_TRAMPOLINE`], the built-in `auto` (used when the
/// table is full, so `core_framing` never returns NULL).
const AUTO_SLOT: usize = TRAMPOLINE_SLOTS;

/// The trampoline of the built-in `auto`, outside the table of slots.
const AUTO_TRAMPOLINE: WsFraming = trampoline::<AUTO_SLOT>;

fn builtin_auto() -> &'static Arc<dyn Framing> {
    static AUTO: OnceLock<Arc<dyn Framing>> = OnceLock::new();
    AUTO.get_or_init(|| Arc::new(Auto))
}

/// The built-ins, made once: before the final registry is set, lookups must
/// keep returning the same framing (and so the same trampoline).
fn builtins() -> &'static Registry {
    static BUILTINS: OnceLock<Registry> = OnceLock::new();
    BUILTINS.get_or_init(Registry::with_builtins)
}

fn same_framing(a: &Arc<dyn Framing>, b: &Arc<dyn Framing>) -> bool {
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
    fn framing_for_c(&mut self, f: Option<WsFraming>) -> (String, Arc<dyn Framing>) {
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

fn c_name(name: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: a non-NULL name from a v1 plugin is a NUL-terminated string
    // (the v1 contract), valid for the duration of the call.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
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

// ------------------------------------------------------------ trampolines

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
        static TRAMPOLINES: [WsFraming; TRAMPOLINE_SLOTS] = [$(trampoline::<$n>,)*];
    };
}

trampolines!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
);

// ------------------------------------------------------------ v1 framings

/// A C `ws_framing` function as a [`Framing`].
pub struct V1Framing {
    name: String,
    func: WsFraming,
}

impl Framing for V1Framing {
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        // No config is "": the original's plugins read `config` without a
        // NULL check (its core always had a string to give them) and treat
        // "" as all defaults.
        let config = CString::new(config.unwrap_or(""))
            .map_err(|_| "the framing-config contains a NUL byte".to_string())?;
        Ok(Box::new(V1State {
            name: self.name.clone(),
            func: self.func,
            data: ptr::null_mut(),
            config,
            mirror: Mirror::default(),
        }))
    }
}

/// One connection of a v1 framing.
struct V1State {
    name: String,
    func: WsFraming,
    /// The plugin's `void* framing_data`.
    data: *mut c_void,
    /// Never NULL for the plugin (see [`V1Framing::new_state`]).
    config: CString,
    mirror: Mirror,
}

// SAFETY: `data` is the plugin's per-connection pointer, only ever passed
// back to the plugin's own function, one call at a time (the state is used
// by one thread at a time, `&mut self`). The original moved no state across
// threads, but a v1 framing has no way to tell which thread calls it.
unsafe impl Send for V1State {}

impl FramingState for V1State {
    fn frame(&mut self, data: &[u8], last_read: usize) -> Framed {
        let length = data.len();
        let buf = self.mirror.prepare(data, last_read);
        let mut opcode = WS_FRAME_BINARY;
        let config = self.config.as_ptr();
        // SAFETY: `buf` points to `length` bytes plus a NUL, all writable and
        // owned by the mirror; `opcode` and `self.data` are live locals/fields;
        // `config` is a CString we own. The function is the plugin's.
        let n = unsafe {
            (self.func)(
                buf,
                length,
                last_read.min(length),
                &mut opcode,
                &mut self.data,
                config,
            )
        };
        let framed = match n {
            0 => Framed::More,
            n if n < 0 => Framed::Error(format!("v1 framing '{}' returned {n}", self.name)),
            n if n as u64 > length as u64 => Framed::Error(format!(
                "Overrun by framing function '{}', have {length} bytes, framed {n}",
                self.name
            )),
            n => {
                let len = n as usize;
                match opcode {
                    WS_FRAME_TEXT => Framed::Message { len, opcode: Opcode::Text },
                    WS_FRAME_BINARY => Framed::Message { len, opcode: Opcode::Binary },
                    WS_FRAME_DISCARD => Framed::Discard(len),
                    op => Framed::Error(format!(
                        "v1 framing '{}' set opcode {op}; only text (1), binary (2) and discard (11) are supported",
                        self.name
                    )),
                }
            }
        };
        if let Framed::Message { len, .. } | Framed::Discard(len) = framed {
            self.mirror.consumed(len);
        }
        framed
    }

    fn finish(&mut self, data: &[u8]) -> Option<Opcode> {
        // The host drops these bytes after this call.
        self.mirror.reset();
        Some(Opcode::detect(data))
    }
}

impl Drop for V1State {
    fn drop(&mut self) {
        if self.data.is_null() {
            return;
        }
        let config = self.config.as_ptr();
        // SAFETY: the v1 cleanup call `(NULL, 0, 0, NULL, &state, config)`,
        // made once, with the state the plugin stored.
        unsafe {
            (self.func)(
                ptr::null_mut(),
                0,
                0,
                ptr::null_mut(),
                &mut self.data,
                config,
            )
        };
        self.data = ptr::null_mut();
    }
}

/// The plugin's writable copy of a connection's unframed bytes, with a NUL
/// after them (see the module docs). `buf[off..buf.len() - 1]` mirrors the
/// host's slice; `expect` is where the host's slice should start next time
/// if it is the continuation of the last one.
#[derive(Default)]
struct Mirror {
    buf: Vec<u8>,
    off: usize,
    expect: usize,
}

impl Mirror {
    fn live(&self) -> usize {
        self.buf.len().saturating_sub(self.off + 1)
    }

    /// Bring the mirror in step with `data` and return its start.
    fn prepare(&mut self, data: &[u8], last_read: usize) -> *mut u8 {
        let live = self.live();
        let continued = live > 0
            && data.as_ptr() as usize == self.expect
            && data.len() >= live
            && data.len() - live <= last_read;
        if !continued {
            self.buf.clear();
            self.buf.extend_from_slice(data);
            self.buf.push(0);
            self.off = 0;
        } else if data.len() > live {
            // Only the new bytes are copied; the dead prefix goes at the same time.
            self.buf.truncate(self.off + live);
            self.buf.drain(..self.off);
            self.off = 0;
            self.buf.extend_from_slice(&data[live..]);
            self.buf.push(0);
        } else {
            // The plugin may have overwritten the terminator.
            let end = self.buf.len() - 1;
            self.buf[end] = 0;
        }
        self.expect = data.as_ptr() as usize;
        self.buf[self.off..].as_mut_ptr()
    }

    /// The host removed `n` framed bytes from the front.
    fn consumed(&mut self, n: usize) {
        self.off = (self.off + n).min(self.buf.len().saturating_sub(1));
        self.expect = self.expect.wrapping_add(n);
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.off = 0;
    }
}

// ------------------------------------------------------------ v1 backends

/// A v1 backend library.
struct V1Backend {
    name: String,
    query: QueryFn,
    cleanup: Option<CleanupFn>,
    /// v1 plugins were written for a single thread: one call at a time.
    /// True once `cleanup` ran: the plugin is not called again.
    lock: Mutex<bool>,
}

impl V1Backend {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run the plugin's `cleanup` once.
    fn cleanup(&self) {
        let mut done = self.lock();
        if std::mem::replace(&mut *done, true) {
            return;
        }
        if let Some(cleanup) = self.cleanup {
            // SAFETY: the v1 `cleanup()`, called once, at exit, with no other
            // call of this plugin running (we hold its lock).
            unsafe { cleanup() };
        }
    }
}

/// The backend's name as `-b` gives it: `backend_NAME.so` → `NAME`.
fn backend_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.strip_prefix("backend_")
        .map(str::to_string)
        .unwrap_or(stem)
}

/// `s` as a writable NUL-terminated C string (an interior NUL ends it early for C).
fn c_buf(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// If `lib` is a v1 backend library (exports `init` and `query`), initialise
/// and configure it; `Ok(None)` if it is not a v1 backend.
///
/// `lib` must stay loaded for as long as the returned backend lives (the
/// loader never unloads libraries). `framings` is given to `core_framing`
/// so that `configure` can already look framings up.
pub fn backend(
    lib: &libloading::Library,
    path: &Path,
    options: &[BackendOption],
    framings: &Registry,
) -> Result<Option<Arc<dyn Backend>>, String> {
    // SAFETY: looking symbols up calls nothing; the types are the v1
    // header's, which is the contract of a library exporting these names.
    let (init, configure, query, cleanup) = unsafe {
        (
            lib.get::<InitFn>(b"init\0").ok().map(|s| *s),
            lib.get::<ConfigureFn>(b"configure\0").ok().map(|s| *s),
            lib.get::<QueryFn>(b"query\0").ok().map(|s| *s),
            lib.get::<CleanupFn>(b"cleanup\0").ok().map(|s| *s),
        )
    };
    let (Some(init), Some(query)) = (init, query) else {
        if init.is_some() || query.is_some() {
            debug!(
                "{}: exports only one of init/query: not a v1 backend",
                path.display()
            );
        }
        return Ok(None);
    };
    set_registry(framings);
    create(
        &backend_name(path),
        path,
        init,
        configure,
        query,
        cleanup,
        options,
    )
    .map(Some)
}

fn create(
    name: &str,
    path: &Path,
    init: InitFn,
    configure: Option<ConfigureFn>,
    query: QueryFn,
    cleanup: Option<CleanupFn>,
    options: &[BackendOption],
) -> Result<Arc<dyn Backend>, String> {
    // SAFETY: the v1 `init()`, called once, right after loading.
    let version = unsafe { init() };
    if version != WEBSOCKSY_API_VERSION {
        return Err(format!(
            "{}: backend '{name}' is not a websocksy API version 1 backend (init() returned {version})",
            path.display()
        ));
    }
    // From here on, dropping the backend calls its cleanup.
    let backend = V1Backend {
        name: name.to_string(),
        query,
        cleanup,
        lock: Mutex::new(false),
    };
    for opt in options {
        let Some(configure) = configure else {
            return Err(format!(
                "{}: backend '{name}' takes no options (it exports no configure function), got '{}'",
                opt.origin, opt.key
            ));
        };
        let mut key = c_buf(&opt.key);
        let mut value = c_buf(&opt.value);
        let _guard = backend.lock();
        // SAFETY: two writable NUL-terminated strings owned here, valid for
        // the call (the plugin copies what it keeps).
        let r = unsafe { configure(key.as_mut_ptr().cast(), value.as_mut_ptr().cast()) };
        if r != 0 {
            return Err(format!(
                "{}: backend '{name}' rejected option '{}'",
                opt.origin, opt.key
            ));
        }
    }
    info!(
        "loaded websocksy v1 backend '{name}' from {}",
        path.display()
    );
    Ok(Arc::new(backend))
}

impl Drop for V1Backend {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl Backend for V1Backend {
    fn query(&self, request: &Request) -> Decision {
        let mut call = QueryCall::new(request);
        let info = {
            let done = self.lock();
            if *done {
                return Decision::Reject {
                    status: 503,
                    reason: "shutting down".into(),
                };
            }
            call.run(self.query)
        };
        // Copy and free what the plugin allocated before looking at it.
        let answer = Answer::take(&info);
        answer.decide(&self.name, request)
    }

    fn blocking(&self) -> bool {
        true
    }

    fn shutdown(&self) {
        self.cleanup();
    }
}

/// The headers a v1 backend sees (spec 4.2): the ones the original's
/// upgrade parser did not consume, at most [`WS_HEADER_LIMIT`], in order.
/// `Connection` without `upgrade` is kept, lowercased, as the original did.
fn other_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(tag, value)| {
            let is = |n: &str| tag.eq_ignore_ascii_case(n);
            if is("sec-websocket-version")
                || is("sec-websocket-key")
                || is("sec-websocket-protocol")
            {
                return None;
            }
            if is("upgrade") && value.trim().eq_ignore_ascii_case("websocket") {
                return None;
            }
            if is("connection") {
                let lower = value.to_ascii_lowercase();
                return (!lower.contains("upgrade")).then(|| (tag.clone(), lower));
            }
            Some((tag.clone(), value.clone()))
        })
        .take(WS_HEADER_LIMIT)
        .collect()
}

/// Seconds of `CLOCK_MONOTONIC_COARSE`, the original's `last_event` clock.
fn monotonic_seconds() -> libc::time_t {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if r == 0 {
        ts.tv_sec
    } else {
        0
    }
}

/// Everything one `query` call points into, owned for the call.
struct QueryCall {
    endpoint: Vec<u8>,
    key: Vec<u8>,
    protocols: Vec<Vec<u8>>,
    protocol_ptrs: Vec<*mut c_char>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    ws: Box<Websocket>,
}

impl QueryCall {
    fn new(request: &Request) -> QueryCall {
        let key = request
            .headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, v)| v.trim())
            .unwrap_or("");
        let mut call = QueryCall {
            endpoint: c_buf(&request.target),
            key: c_buf(key),
            protocols: request.protocols.iter().map(|p| c_buf(p)).collect(),
            protocol_ptrs: Vec::new(),
            headers: other_headers(&request.headers)
                .iter()
                .map(|(t, v)| (c_buf(t), c_buf(v)))
                .collect(),
            ws: Websocket::zeroed(),
        };
        // The Vec<u8> heap buffers do not move from here on.
        call.protocol_ptrs = call
            .protocols
            .iter_mut()
            .map(|p| p.as_mut_ptr().cast())
            .collect();
        call.protocol_ptrs.push(ptr::null_mut());
        let ws = &mut *call.ws;
        ws.ws_fd = -1;
        ws.peer_fd = -1;
        ws.state = WS_HTTP;
        ws.last_event = monotonic_seconds();
        ws.headers = call.headers.len();
        for (slot, (tag, value)) in ws.header.iter_mut().zip(call.headers.iter_mut()) {
            *slot = WsHttpHeader {
                tag: tag.as_mut_ptr().cast(),
                value: value.as_mut_ptr().cast(),
            };
        }
        ws.request_path = call.endpoint.as_mut_ptr().cast();
        ws.websocket_version = 13;
        ws.socket_key = call.key.as_mut_ptr().cast();
        // Both "Upgrade: websocket" and "Connection: upgrade" were seen.
        ws.want_upgrade = 3;
        ws.protocols = call.protocols.len();
        ws.protocol = call.protocol_ptrs.as_mut_ptr();
        ws.peer.protocol = call.protocols.len();
        call
    }

    /// Call `query` the way the original did: the arguments alias the
    /// struct's own fields.
    fn run(&mut self, query: QueryFn) -> WsPeerInfo {
        let ws: *mut Websocket = &mut *self.ws;
        // SAFETY: every pointer in the struct points into buffers owned by
        // `self`, writable, NUL-terminated, alive until after the call; the
        // argument pointers are the struct's own fields, as in the original.
        unsafe {
            query(
                (*ws).request_path,
                (*ws).protocols,
                (*ws).protocol,
                (*ws).headers,
                ptr::addr_of_mut!((*ws).header).cast(),
                ws,
            )
        }
    }
}

/// A `ws_peer_info`, copied out of the plugin's allocations.
#[derive(Debug, Default)]
struct Answer {
    transport: c_uint,
    host: Option<String>,
    port: Option<String>,
    framing: Option<WsFraming>,
    framing_config: Option<String>,
    protocol: usize,
}

impl Answer {
    /// Copy the strings and `free` them (they were `malloc`ed by the plugin).
    fn take(info: &WsPeerInfo) -> Answer {
        let mut freed: Vec<*mut c_char> = Vec::with_capacity(3);
        let mut take = |p: *mut c_char| -> Option<String> {
            if p.is_null() {
                return None;
            }
            let s = c_name(p);
            // A plugin returning the same buffer twice must not cost a double free.
            if !freed.contains(&p) {
                freed.push(p);
                // SAFETY: the v1 contract: host, port and framing_config are
                // heap allocations from the plugin, owned by the core now.
                unsafe { libc::free(p.cast()) };
            }
            s
        };
        Answer {
            transport: info.transport,
            host: take(info.host),
            port: take(info.port),
            framing: info.framing,
            framing_config: take(info.framing_config),
            protocol: info.protocol,
        }
    }

    fn decide(self, backend: &str, request: &Request) -> Decision {
        let reject = |why: &str| {
            warn!("v1 backend '{backend}': {why}");
            Decision::Reject {
                status: 500,
                reason: format!("Peer connection failed: {why}"),
            }
        };
        let Some(host) = self.host else {
            return Decision::Reject {
                status: 500,
                reason: "Peer connection failed".into(),
            };
        };
        let text = match self.transport {
            PEER_TRANSPORT_DETECT => host,
            PEER_TCP_CLIENT => format!("tcp://{host}"),
            PEER_UDP_CLIENT => format!("udp://{host}"),
            PEER_UNIX_STREAM => format!("unix://{host}"),
            PEER_UNIX_DGRAM => format!("unix-dgram://{host}"),
            PEER_FIFO_TX | PEER_FIFO_RX => {
                return reject("Peer connection mode not yet implemented")
            }
            t => return reject(&format!("unknown peer transport {t}")),
        };
        let address = match PeerAddress::parse(&text, self.port.as_deref()) {
            Ok(a) => a,
            Err(e) => return reject(&format!("invalid peer address: {e}")),
        };
        let (framing_name, framing) = state().framing_for_c(self.framing);
        Decision::Peer(PeerChoice {
            address,
            framing,
            framing_name,
            framing_config: self.framing_config,
            protocol: (self.protocol < request.protocols.len()).then_some(self.protocol),
            headers: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use crate::framing::{drive, Event};
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tests that touch the process-wide registry or the fake backend's
    /// statics run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn v1_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/v1")
    }

    #[test]
    fn layout_matches_the_v1_header() {
        let dir = v1_dir();
        let out = std::env::temp_dir().join(format!("websocksy-v1-layout-{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = std::process::Command::new(cc)
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
            .arg(&dir)
            .arg("-o")
            .arg(&out)
            .arg(dir.join("layout.c"))
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "compiling layout.c failed");
        let printed = std::process::Command::new(&out)
            .output()
            .expect("run layout");
        let _ = std::fs::remove_file(&out);
        let text = String::from_utf8(printed.stdout).unwrap();
        let c: HashMap<&str, usize> = text
            .lines()
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let rust: Vec<(&str, usize)> = vec![
            ("sizeof(ws_http_header)", size_of::<WsHttpHeader>()),
            ("sizeof(ws_peer_info)", size_of::<WsPeerInfo>()),
            ("sizeof(websocket)", size_of::<Websocket>()),
            ("sizeof(ws_operation)", size_of::<c_uint>()),
            ("sizeof(peer_transport)", size_of::<c_uint>()),
            ("sizeof(ws_state)", size_of::<c_uint>()),
            ("ws_http_header.tag", offset_of!(WsHttpHeader, tag)),
            ("ws_http_header.value", offset_of!(WsHttpHeader, value)),
            ("ws_peer_info.transport", offset_of!(WsPeerInfo, transport)),
            ("ws_peer_info.host", offset_of!(WsPeerInfo, host)),
            ("ws_peer_info.port", offset_of!(WsPeerInfo, port)),
            ("ws_peer_info.framing", offset_of!(WsPeerInfo, framing)),
            (
                "ws_peer_info.framing_config",
                offset_of!(WsPeerInfo, framing_config),
            ),
            ("ws_peer_info.protocol", offset_of!(WsPeerInfo, protocol)),
            ("websocket.ws_fd", offset_of!(Websocket, ws_fd)),
            ("websocket.read_buffer", offset_of!(Websocket, read_buffer)),
            (
                "websocket.read_buffer_offset",
                offset_of!(Websocket, read_buffer_offset),
            ),
            ("websocket.state", offset_of!(Websocket, state)),
            ("websocket.last_event", offset_of!(Websocket, last_event)),
            ("websocket.headers", offset_of!(Websocket, headers)),
            ("websocket.header", offset_of!(Websocket, header)),
            (
                "websocket.request_path",
                offset_of!(Websocket, request_path),
            ),
            (
                "websocket.websocket_version",
                offset_of!(Websocket, websocket_version),
            ),
            ("websocket.socket_key", offset_of!(Websocket, socket_key)),
            (
                "websocket.want_upgrade",
                offset_of!(Websocket, want_upgrade),
            ),
            ("websocket.protocols", offset_of!(Websocket, protocols)),
            ("websocket.protocol", offset_of!(Websocket, protocol)),
            ("websocket.peer", offset_of!(Websocket, peer)),
            ("websocket.peer_fd", offset_of!(Websocket, peer_fd)),
            ("websocket.peer_buffer", offset_of!(Websocket, peer_buffer)),
            (
                "websocket.peer_buffer_offset",
                offset_of!(Websocket, peer_buffer_offset),
            ),
            (
                "websocket.peer_framing_data",
                offset_of!(Websocket, peer_framing_data),
            ),
            ("WEBSOCKSY_API_VERSION", WEBSOCKSY_API_VERSION as usize),
            ("ws_frame_discard", WS_FRAME_DISCARD as usize),
            ("ws_http", WS_HTTP as usize),
            ("peer_unix_dgram", PEER_UNIX_DGRAM as usize),
        ];
        for (name, value) in &rust {
            assert_eq!(c.get(name), Some(value), "{name}");
        }
        assert_eq!(
            c.len(),
            rust.len(),
            "layout.c prints facts this test does not check"
        );
    }

    // ------------------------------------------------ a v1 framing in Rust

    static LINE_CLEANUPS: AtomicUsize = AtomicUsize::new(0);

    /// A v1 framing as a C plugin would write it: lines, text unless the
    /// line starts with 'B' (then the preset opcode stays), "ERR" → -1,
    /// "PING" → ping, "BIG" → overrun, "DROP" → discard. Counts lines in a
    /// malloc'd state; the cleanup call frees it and counts.
    unsafe extern "C" fn lines(
        data: *mut u8,
        length: usize,
        last_read: usize,
        opcode: *mut c_uint,
        framing_data: *mut *mut c_void,
        _config: *const c_char,
    ) -> i64 {
        // SAFETY: test plugin; the host keeps the v1 contract.
        unsafe {
            let state = (*framing_data).cast::<usize>();
            if data.is_null() {
                assert!(opcode.is_null() && length == 0 && last_read == 0);
                LINE_CLEANUPS.fetch_add(1, Ordering::SeqCst);
                libc::free(state.cast());
                *framing_data = ptr::null_mut();
                return 0;
            }
            let state = if state.is_null() {
                let s = libc::calloc(1, size_of::<usize>()).cast::<usize>();
                *framing_data = s.cast();
                s
            } else {
                state
            };
            // The terminator the original promised after a read.
            assert_eq!(*data.add(length), 0, "no NUL at data[length]");
            assert_eq!(*opcode, WS_FRAME_BINARY, "opcode not preset to binary");
            let bytes = std::slice::from_raw_parts(data, length);
            let fresh = &bytes[length - last_read..];
            let Some(i) = fresh.iter().position(|b| *b == b'\n') else {
                return 0;
            };
            let n = length - last_read + i + 1;
            *state += 1;
            let line = &bytes[..n - 1];
            // Scribble where the original allowed it.
            *data.add(length) = b'!';
            match line {
                b"ERR" => -1,
                b"PING" => {
                    *opcode = 9;
                    n as i64
                }
                b"BIG" => length as i64 + 1,
                b"DROP" => {
                    *opcode = WS_FRAME_DISCARD;
                    n as i64
                }
                l if l.starts_with(b"B") => n as i64,
                _ => {
                    *opcode = WS_FRAME_TEXT;
                    n as i64
                }
            }
        }
    }

    fn v1_lines() -> V1Framing {
        V1Framing {
            name: "lines".into(),
            func: lines,
        }
    }

    fn msg(op: Opcode, b: &[u8]) -> Event {
        Event::Message(op, b.to_vec())
    }

    #[test]
    fn v1_framing_results_map_to_framed() {
        let f = v1_lines();
        let mut st = f.new_state(None).unwrap();
        let (ev, rest) = drive(st.as_mut(), &[b"one\nBin\ntw", b"o\nDROP\nx"]);
        assert_eq!(
            ev,
            [
                msg(Opcode::Text, b"one\n"),
                // Preset to binary on every call: no sticky text from "one".
                msg(Opcode::Binary, b"Bin\n"),
                msg(Opcode::Text, b"two\n"),
                Event::Discard(b"DROP\n".to_vec()),
            ]
        );
        assert_eq!(rest, b"x");
        for (input, what) in [
            (&b"ERR\n"[..], "returned -1"),
            (b"PING\n", "opcode 9"),
            (b"BIG\n", "Overrun"),
        ] {
            let mut st = f.new_state(None).unwrap();
            let (ev, _) = drive(st.as_mut(), &[input]);
            match ev.as_slice() {
                [Event::Error(e)] => assert!(e.contains(what), "{e}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn v1_cleanup_call_only_with_state() {
        let _g = serial();
        let f = v1_lines();
        let before = LINE_CLEANUPS.load(Ordering::SeqCst);
        // Never called: no state, no cleanup call.
        drop(f.new_state(Some("cfg")).unwrap());
        assert_eq!(LINE_CLEANUPS.load(Ordering::SeqCst), before);
        let mut st = f.new_state(Some("cfg")).unwrap();
        drive(st.as_mut(), &[b"a\n"]);
        drop(st);
        assert_eq!(LINE_CLEANUPS.load(Ordering::SeqCst), before + 1);
        assert!(f.new_state(Some("a\0b")).is_err());
    }

    static CONFIGS: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());

    /// Records the config of every call (`None` for NULL), frames all as binary.
    unsafe extern "C" fn configs(
        _data: *mut u8,
        length: usize,
        _last_read: usize,
        _opcode: *mut c_uint,
        _framing_data: *mut *mut c_void,
        config: *const c_char,
    ) -> i64 {
        CONFIGS.lock().unwrap().push(c_name(config));
        length as i64
    }

    /// The original's plugins dereference `config` unchecked: never NULL.
    #[test]
    fn v1_framings_get_an_empty_config_not_null() {
        let _g = serial();
        CONFIGS.lock().unwrap().clear();
        let f = V1Framing {
            name: "configs".into(),
            func: configs,
        };
        for config in [None, Some(""), Some("endian=big")] {
            let mut st = f.new_state(config).unwrap();
            drive(st.as_mut(), &[b"x"]);
        }
        assert_eq!(
            *CONFIGS.lock().unwrap(),
            [
                Some(String::new()),
                Some(String::new()),
                Some("endian=big".into())
            ]
        );
    }

    static SEEN: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// Frames 3 bytes at a time and records what it was shown.
    unsafe extern "C" fn threes(
        data: *mut u8,
        length: usize,
        _last_read: usize,
        _opcode: *mut c_uint,
        _framing_data: *mut *mut c_void,
        _config: *const c_char,
    ) -> i64 {
        if data.is_null() {
            return 0;
        }
        // SAFETY: test plugin; `length` bytes plus a NUL are readable.
        let bytes = unsafe { std::slice::from_raw_parts(data, length + 1) };
        assert_eq!(bytes[length], 0);
        SEEN.lock().unwrap().push(bytes[..length].to_vec());
        if length >= 3 {
            3
        } else {
            0
        }
    }

    /// The mirror follows a host buffer that keeps its start (like the
    /// core's InBuf), moves (compaction) and is refilled after `finish`.
    #[test]
    fn mirror_tracks_the_host_buffer() {
        let _g = serial();
        SEEN.lock().unwrap().clear();
        let f = V1Framing {
            name: "threes".into(),
            func: threes,
        };
        let mut st = f.new_state(None).unwrap();
        let mut buf = [0u8; 64];
        let (mut start, mut end) = (0, 0);
        let mut shown = Vec::new();
        let mut sent = Vec::new();
        let reads: [&[u8]; 5] = [b"abcde", b"f", b"ghijklm", b"no", b"pqrstuvwxyz"];
        for (i, read) in reads.iter().enumerate() {
            if i == 3 {
                // Compaction: the unframed bytes move to the front.
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            buf[end..end + read.len()].copy_from_slice(read);
            end += read.len();
            let mut fresh = read.len();
            loop {
                let data = &buf[start..end];
                shown.push(data.to_vec());
                match st.frame(data, fresh) {
                    Framed::Message { len, .. } => {
                        sent.extend_from_slice(&data[..len]);
                        start += len;
                        fresh = fresh.min(end - start);
                    }
                    Framed::More => break,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(*SEEN.lock().unwrap(), shown);
        assert_eq!(sent, b"abcdefghijklmnopqrstuvwx");
        // The host drops the rest through finish; new bytes start afresh.
        assert_eq!(st.finish(&buf[start..end]), Some(Opcode::Text));
        buf[..4].copy_from_slice(b"1234");
        SEEN.lock().unwrap().clear();
        assert!(matches!(
            st.frame(&buf[..4], 4),
            Framed::Message { len: 3, .. }
        ));
        assert_eq!(*SEEN.lock().unwrap(), [b"1234".to_vec()]);
    }

    // ------------------------------------------ registry and trampolines

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
        let (name, framing) = super::state().framing_for_c(Some(newline));
        assert_eq!(name, "newline");
        assert!(same_framing(&framing, &registry.get("newline").unwrap()));
        let (name, framing) = super::state().framing_for_c(None);
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
        let (name, framing) = super::state().framing_for_c(Some(AUTO_TRAMPOLINE));
        assert_eq!(name, "auto");
        assert!(same_framing(&framing, builtin_auto()));
    }

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

    // ---------------------------------------------- a v1 backend in Rust

    /// What the fake query returns; set by each test.
    #[derive(Clone, Default)]
    struct Reply {
        transport: c_uint,
        host: Option<&'static str>,
        port: Option<&'static str>,
        framing: Option<WsFraming>,
        config: Option<&'static str>,
        protocol: usize,
        sleep_ms: u64,
    }

    /// What the fake query saw.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        endpoint: String,
        protocols: Vec<String>,
        headers: Vec<(String, String)>,
        state: c_uint,
        version: c_uint,
        key: String,
        aliased: bool,
        ws_fd: c_int,
        ws_headers: usize,
    }

    static REPLY: Mutex<Option<Reply>> = Mutex::new(None);
    static SEEN_QUERY: Mutex<Option<Seen>> = Mutex::new(None);
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);
    static CLEANUPS: AtomicUsize = AtomicUsize::new(0);
    static CONFIGURED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

    fn s(p: *const c_char) -> String {
        c_name(p).unwrap_or_default()
    }

    fn dup(v: Option<&str>) -> *mut c_char {
        v.map_or(ptr::null_mut(), |v| {
            let c = CString::new(v).unwrap();
            // SAFETY: strdup of a valid C string; the host frees it.
            unsafe { libc::strdup(c.as_ptr()) }
        })
    }

    unsafe extern "C" fn fake_init() -> u64 {
        1
    }

    unsafe extern "C" fn fake_init_2() -> u64 {
        2
    }

    unsafe extern "C" fn fake_configure(key: *mut c_char, value: *mut c_char) -> u64 {
        let (k, v) = (s(key), s(value));
        let bad = k == "bad";
        CONFIGURED.lock().unwrap().push((k, v));
        u64::from(bad)
    }

    unsafe extern "C" fn fake_cleanup() {
        CLEANUPS.fetch_add(1, Ordering::SeqCst);
    }

    unsafe extern "C" fn fake_query(
        endpoint: *mut c_char,
        protocols: usize,
        protocol: *mut *mut c_char,
        headers: usize,
        header: *mut WsHttpHeader,
        ws: *mut Websocket,
    ) -> WsPeerInfo {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MAX_RUNNING.fetch_max(now, Ordering::SeqCst);
        let reply = REPLY.lock().unwrap().clone().unwrap_or_default();
        // SAFETY: the host's arguments per the v1 contract.
        let seen = unsafe {
            let ws = &*ws;
            Seen {
                endpoint: s(endpoint),
                protocols: (0..protocols).map(|i| s(*protocol.add(i))).collect(),
                headers: (0..headers)
                    .map(|i| (s((*header.add(i)).tag), s((*header.add(i)).value)))
                    .collect(),
                state: ws.state,
                version: ws.websocket_version,
                key: s(ws.socket_key),
                aliased: ws.request_path == endpoint
                    && ptr::eq(ws.header.as_ptr(), header)
                    && ws.protocol == protocol
                    && (*protocol.add(protocols)).is_null(),
                ws_fd: ws.ws_fd,
                ws_headers: ws.headers,
            }
        };
        // The endpoint is writable (backend_file trims it in place).
        // SAFETY: at least the NUL is there.
        unsafe { *endpoint = 0 };
        *SEEN_QUERY.lock().unwrap() = Some(seen);
        std::thread::sleep(std::time::Duration::from_millis(reply.sleep_ms));
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        WsPeerInfo {
            transport: reply.transport,
            host: dup(reply.host),
            port: dup(reply.port),
            framing: reply.framing,
            framing_config: dup(reply.config),
            protocol: reply.protocol,
        }
    }

    fn opt(k: &str, v: &str) -> BackendOption {
        BackendOption {
            key: k.into(),
            value: v.into(),
            origin: Origin::Argument(format!("-c {k}={v}")),
        }
    }

    fn fake(options: &[BackendOption]) -> Result<Arc<dyn Backend>, String> {
        create(
            "fake",
            Path::new("/p/backend_fake.so"),
            fake_init,
            Some(fake_configure),
            fake_query,
            Some(fake_cleanup),
            options,
        )
    }

    fn request(headers: &[(&str, &str)], protocols: &[&str]) -> Request {
        Request {
            target: "/a/b?x=1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            client: "127.0.0.1:1".parse().unwrap(),
            tls: false,
        }
    }

    fn reply(r: Reply) {
        *REPLY.lock().unwrap() = Some(r);
    }

    #[test]
    fn backend_init_and_configure() {
        let _g = serial();
        assert_eq!(backend_name(Path::new("/x/backend_file.so")), "file");
        let e = create(
            "fake",
            Path::new("/p/backend_fake.so"),
            fake_init_2,
            None,
            fake_query,
            None,
            &[],
        )
        .err()
        .unwrap();
        assert!(e.contains("init() returned 2"), "{e}");
        CONFIGURED.lock().unwrap().clear();
        let cleanups = CLEANUPS.load(Ordering::SeqCst);
        let b = fake(&[opt("a", "1"), opt("b", "two words")]).unwrap();
        assert_eq!(
            *CONFIGURED.lock().unwrap(),
            [("a".into(), "1".into()), ("b".into(), "two words".into())]
        );
        assert!(b.blocking());
        b.shutdown();
        assert_eq!(
            CLEANUPS.load(Ordering::SeqCst),
            cleanups + 1,
            "cleanup at shutdown"
        );
        assert!(matches!(
            b.query(&request(&[], &[])),
            Decision::Reject { status: 503, .. }
        ));
        drop(b);
        assert_eq!(
            CLEANUPS.load(Ordering::SeqCst),
            cleanups + 1,
            "cleanup only once"
        );
        drop(fake(&[]).unwrap());
        assert_eq!(
            CLEANUPS.load(Ordering::SeqCst),
            cleanups + 2,
            "cleanup at drop"
        );
        let e = fake(&[opt("a", "1"), opt("bad", "x")]).err().unwrap();
        assert_eq!(
            e,
            "argument '-c bad=x': backend 'fake' rejected option 'bad'"
        );
        let e = create(
            "fake",
            Path::new("/p/backend_fake.so"),
            fake_init,
            None,
            fake_query,
            None,
            &[opt("k", "v")],
        )
        .err()
        .unwrap();
        assert!(
            e.starts_with("argument '-c k=v': backend 'fake' takes no options"),
            "{e}"
        );
    }

    #[test]
    fn backend_query_sees_the_v1_request() {
        let _g = serial();
        let b = fake(&[]).unwrap();
        let mut headers = vec![
            ("Host", "example"),
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "p1, p2"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Cookie", "a=1; session=s42"),
        ];
        let extra: Vec<String> = (0..10).map(|i| format!("X-{i}")).collect();
        headers.extend(extra.iter().map(|n| (n.as_str(), "v")));
        reply(Reply {
            host: Some("tcp://127.0.0.1:7000"),
            protocol: 1,
            ..Reply::default()
        });
        let d = b.query(&request(&headers, &["p1", "p2"]));
        let seen = SEEN_QUERY.lock().unwrap().take().unwrap();
        assert_eq!(seen.endpoint, "/a/b?x=1");
        assert_eq!(seen.protocols, ["p1", "p2"]);
        let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Host",
                "Sec-WebSocket-Extensions",
                "Cookie",
                "X-0",
                "X-1",
                "X-2",
                "X-3",
                "X-4",
                "X-5",
                "X-6"
            ]
        );
        assert_eq!(seen.headers[2].1, "a=1; session=s42");
        assert_eq!(
            (seen.state, seen.version, seen.ws_fd, seen.ws_headers),
            (WS_HTTP, 13, -1, 10)
        );
        assert_eq!(seen.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(seen.aliased, "arguments must be the struct's own fields");
        match d {
            Decision::Peer(c) => {
                assert_eq!(
                    c.address,
                    PeerAddress::parse("tcp://127.0.0.1:7000", None).unwrap()
                );
                assert_eq!(c.protocol, Some(1));
                assert_eq!(c.framing_name, "auto");
                assert_eq!(c.framing_config, None);
            }
            Decision::Reject { status, reason } => panic!("{status} {reason}"),
        }

        // Connection without "upgrade" is an ordinary header, lowercased;
        // an Upgrade header that is not "websocket" too.
        reply(Reply {
            host: None,
            ..Reply::default()
        });
        let d = b.query(&request(
            &[("Connection", "Keep-Alive"), ("Upgrade", "h2c")],
            &[],
        ));
        let seen = SEEN_QUERY.lock().unwrap().take().unwrap();
        assert_eq!(
            seen.headers,
            [
                ("Connection".into(), "keep-alive".into()),
                ("Upgrade".into(), "h2c".into())
            ]
        );
        assert!(
            matches!(d, Decision::Reject { status: 500, ref reason } if reason == "Peer connection failed")
        );
    }

    fn peer(d: Decision) -> PeerChoice {
        match d {
            Decision::Peer(c) => c,
            Decision::Reject { status, reason } => panic!("{status} {reason}"),
        }
    }

    fn rejected(d: Decision) -> String {
        match d {
            Decision::Peer(c) => panic!("expected a reject, got {}", c.address),
            Decision::Reject { status, reason } => {
                assert_eq!(status, 500);
                reason
            }
        }
    }

    #[test]
    fn backend_answers_become_peers() {
        let _g = serial();
        set_registry(&Registry::with_builtins());
        let b = fake(&[]).unwrap();
        let req = request(&[], &["p1"]);
        let run = |r: Reply| {
            reply(r);
            b.query(&req)
        };
        // Port separately, explicit transports, protocol index out of range.
        let c = peer(run(Reply {
            host: Some("127.0.0.1"),
            port: Some("80"),
            protocol: 1,
            ..Reply::default()
        }));
        assert_eq!(c.address.to_string(), "tcp://127.0.0.1:80");
        assert_eq!(c.protocol, None);
        let c = peer(run(Reply {
            transport: PEER_UDP_CLIENT,
            host: Some("[::1]:53"),
            ..Reply::default()
        }));
        assert_eq!(c.address.to_string(), "udp://[::1]:53");
        let c = peer(run(Reply {
            transport: PEER_UNIX_STREAM,
            host: Some("/tmp/s.sock"),
            ..Reply::default()
        }));
        assert_eq!(c.address.to_string(), "unix:///tmp/s.sock");
        let c = peer(run(Reply {
            host: Some("unix-dgram:///tmp/d"),
            ..Reply::default()
        }));
        assert_eq!(c.address.to_string(), "unix-dgram:///tmp/d");
        assert!(rejected(run(Reply {
            transport: PEER_FIFO_TX,
            host: Some("x"),
            ..Reply::default()
        }))
        .contains("not yet implemented"));
        assert!(rejected(run(Reply {
            transport: 42,
            host: Some("x"),
            ..Reply::default()
        }))
        .contains("transport 42"));
        assert!(rejected(run(Reply {
            host: Some("tcp://h"),
            ..Reply::default()
        }))
        .contains("no port"));

        // Framing: a trampoline maps back to the Rust framing, with its config.
        let newline = core_framing(c"newline".as_ptr().cast_mut());
        let c = peer(run(Reply {
            host: Some("h:1"),
            framing: newline,
            config: Some("lf"),
            ..Reply::default()
        }));
        assert_eq!(
            (c.framing_name.as_str(), c.framing_config.as_deref()),
            ("newline", Some("lf"))
        );
        let mut st = c.framing.new_state(c.framing_config.as_deref()).unwrap();
        let (ev, _) = drive(st.as_mut(), &[b"a\nb"]);
        assert_eq!(ev, [msg(Opcode::Text, b"a\n")]);
        // A plain C function is wrapped.
        let c = peer(run(Reply {
            host: Some("h:1"),
            framing: Some(lines),
            ..Reply::default()
        }));
        let mut st = c.framing.new_state(None).unwrap();
        let (ev, _) = drive(st.as_mut(), &[b"B\n"]);
        assert_eq!(ev, [msg(Opcode::Binary, b"B\n")]);
    }

    #[test]
    fn backend_queries_are_serialized() {
        let _g = serial();
        let b = fake(&[]).unwrap();
        reply(Reply {
            host: Some("h:1"),
            sleep_ms: 50,
            ..Reply::default()
        });
        MAX_RUNNING.store(0, Ordering::SeqCst);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    peer(b.query(&request(&[], &[])));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(MAX_RUNNING.load(Ordering::SeqCst), 1);
    }
}
