//! A v1 backend library as a [`Backend`]: `init`, `configure`, `query` and
//! `cleanup` found by name, the request shown as the original's `websocket`
//! struct, and the `ws_peer_info` answer copied out of the plugin's
//! allocations and freed.

use std::ffi::{c_char, c_uint};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use log::{debug, info, warn};

use super::abi::*;
use super::c_name;
use super::exports::{set_registry, state};
use crate::backend::{Backend, Decision, PeerChoice, Request};
use crate::config::BackendOption;
use crate::framing::Registry;
use crate::peer::PeerAddress;

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
        let (address, proxy_protocol) =
            match PeerAddress::parse_with_options(&text, self.port.as_deref()) {
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
            proxy_protocol,
            hub: false,
            hub_options: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests;
