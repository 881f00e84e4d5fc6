//! The v1 ABI: the original `websocksy.h`'s types, constants and function
//! types, restated in Rust. `layout_matches_the_v1_header` compiles a C
//! program against the test copy of the header and compares every size,
//! offset and constant.

use std::ffi::{c_char, c_int, c_uint, c_void};

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
    pub(super) fn zeroed() -> Box<Websocket> {
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

pub(super) type InitFn = unsafe extern "C" fn() -> u64;
pub(super) type ConfigureFn = unsafe extern "C" fn(key: *mut c_char, value: *mut c_char) -> u64;
pub(super) type QueryFn = unsafe extern "C" fn(
    endpoint: *mut c_char,
    protocols: usize,
    protocol: *mut *mut c_char,
    headers: usize,
    header: *mut WsHttpHeader,
    ws: *mut Websocket,
) -> WsPeerInfo;
pub(super) type CleanupFn = unsafe extern "C" fn();

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};
    use std::path::Path;

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
}
