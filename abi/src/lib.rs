//! `#[repr(C)]` mirror of `include/websocksy.h`, the plugin ABI (2.2).
//!
//! The header is the source of truth; this crate only restates it for Rust.
//! The host (`websocksy`) and the plugin SDK (`websocksy-plugin`) both use
//! it. `tests/header.rs` in this crate compiles a C program against the
//! header and checks that every size, offset and constant agrees.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

pub const WSY_ABI_MAJOR: u16 = 2;
pub const WSY_ABI_MINOR: u16 = 2;
/// The entry symbol, NUL-terminated for dlsym.
pub const WSY_ENTRY_SYMBOL: &[u8] = b"websocksy_plugin_v2\0";

pub type wsy_status = i32;
pub const WSY_OK: wsy_status = 0;
pub const WSY_ERROR: wsy_status = -1;
pub const WSY_EINVAL: wsy_status = -2;
pub const WSY_EUNKNOWN_KEY: wsy_status = -3;
pub const WSY_EVERSION: wsy_status = -4;
pub const WSY_EEXIST: wsy_status = -5;
pub const WSY_ESTATE: wsy_status = -6;

pub type wsy_opcode = u32;
pub const WSY_OPCODE_TEXT: wsy_opcode = 1;
pub const WSY_OPCODE_BINARY: wsy_opcode = 2;
pub const WSY_OPCODE_DISCARD: wsy_opcode = 11;

pub const WSY_BACKEND_NONBLOCKING: u32 = 0x1;

pub const WSY_LOG_ERROR: u32 = 1;
pub const WSY_LOG_WARN: u32 = 2;
pub const WSY_LOG_INFO: u32 = 3;
pub const WSY_LOG_DEBUG: u32 = 4;
pub const WSY_LOG_TRACE: u32 = 5;

/// `WSY_HAS_FIELD`: a struct whose `size` says `size` holds all of the field
/// at `offset` of `len` bytes (a field it covers only in part is absent).
pub const fn has_field(size: u32, offset: usize, len: usize) -> bool {
    // Widened, so no `offset + len` near usize::MAX can wrap into "present".
    size as u128 >= offset as u128 + len as u128
}

/// A borrowed view: not NUL-terminated, valid during the call. `ptr` NULL = absent.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wsy_str {
    pub ptr: *const c_char,
    pub len: usize,
}

impl wsy_str {
    pub const NONE: wsy_str = wsy_str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// A view of `s` (valid as long as `s` is).
    #[allow(clippy::should_implement_trait)] // infallible and borrowing, unlike FromStr
    pub fn from_str(s: &str) -> wsy_str {
        wsy_str {
            ptr: s.as_ptr().cast(),
            len: s.len(),
        }
    }

    pub fn from_opt(s: Option<&str>) -> wsy_str {
        s.map_or(Self::NONE, Self::from_str)
    }

    /// The bytes viewed, `None` when absent.
    ///
    /// # Safety
    /// `ptr` must be NULL or valid for reads of `len` bytes for `'a`.
    pub unsafe fn as_bytes<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            None
        } else if self.len == 0 {
            Some(&[])
        } else {
            // SAFETY: the caller guarantees ptr/len describe readable memory for 'a.
            Some(unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) })
        }
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wsy_header {
    pub name: wsy_str,
    pub value: wsy_str,
}

/// Opaque host objects; only pointers to them cross the boundary.
#[repr(C)]
pub struct wsy_plugin {
    _private: [u8; 0],
}
#[repr(C)]
pub struct wsy_answer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct wsy_error {
    _private: [u8; 0],
}

pub type wsy_state_new_fn = unsafe extern "C" fn(
    userdata: *mut c_void,
    config: wsy_str,
    state: *mut *mut c_void,
    error: *mut wsy_error,
) -> wsy_status;
pub type wsy_state_free_fn = unsafe extern "C" fn(userdata: *mut c_void, state: *mut c_void);
pub type wsy_frame_fn = unsafe extern "C" fn(
    userdata: *mut c_void,
    state: *mut c_void,
    data: *const u8,
    length: usize,
    last_read: usize,
    opcode: *mut wsy_opcode,
) -> i64;
pub type wsy_finish_fn = unsafe extern "C" fn(
    userdata: *mut c_void,
    state: *mut c_void,
    data: *const u8,
    length: usize,
    opcode: *mut wsy_opcode,
) -> wsy_status;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wsy_framing {
    pub size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub name: *const c_char,
    pub userdata: *mut c_void,
    pub state_new: Option<wsy_state_new_fn>,
    pub state_free: Option<wsy_state_free_fn>,
    pub frame: Option<wsy_frame_fn>,
    pub finish: Option<wsy_finish_fn>,
    /// Library-level options (`[framing:NAME]`, `--framing-option`). Appended
    /// before 2.0 shipped: only present when `size` covers it.
    pub configure: Option<wsy_configure_fn>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wsy_request {
    pub size: u32,
    pub target: wsy_str,
    pub path: wsy_str,
    pub query: wsy_str,
    pub headers: *const wsy_header,
    pub header_count: usize,
    pub protocols: *const wsy_str,
    pub protocol_count: usize,
    pub client_address: wsy_str,
    pub tls: u32,
    /// Always 0: fills the LP64 tail padding (see the header).
    pub reserved: u32,
    // ---- 2.1: present only when `size` covers them (`has_field`).
    /// The HTTP Basic user; NULL: not authenticated.
    pub user: wsy_str,
    /// The verified TLS client certificate's subject; NULL: no certificate.
    pub tls_subject: wsy_str,
    /// Its subject alternative names; NULL and 0 when none.
    pub tls_sans: *const wsy_str,
    pub tls_san_count: usize,
}

impl wsy_request {
    /// `sizeof(wsy_request)` in ABI 2.0: the smallest request a 2.x host
    /// passes, and what a 2.0 host passes.
    pub const SIZE_2_0: usize = std::mem::offset_of!(wsy_request, user);
    /// `sizeof(wsy_request)` in ABI 2.1.
    pub const SIZE_2_1: usize = std::mem::size_of::<wsy_request>();
}

/// A `wsy_request` viewing a request's strings, with the header and
/// protocol arrays it points into: the one way a `wsy_request` is built,
/// by the host for a backend's query and by the SDK's test harness for a
/// backend under test, so both show a backend the same thing (`path` and
/// `query` split at the first `?`, NULL arrays when there is nothing in
/// them).
///
/// The views stay valid when the value moves (they point into `'a` and
/// into heap buffers owned here), but [`RequestView::raw`]'s address does
/// not: box the value if that address must stay put.
pub struct RequestView<'a> {
    raw: wsy_request,
    _headers: Vec<wsy_header>,
    _protocols: Vec<wsy_str>,
    _client_address: String,
    _tls_sans: Vec<wsy_str>,
    _borrowed: std::marker::PhantomData<&'a str>,
}

/// NULL for an empty array, as the header promises ("NULL and 0").
fn array_ptr<T>(v: &[T]) -> *const T {
    if v.is_empty() {
        std::ptr::null()
    } else {
        v.as_ptr()
    }
}

impl<'a> RequestView<'a> {
    pub fn new(
        target: &'a str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        protocols: impl IntoIterator<Item = &'a str>,
        client_address: String,
        tls: bool,
    ) -> RequestView<'a> {
        let headers: Vec<wsy_header> = headers
            .into_iter()
            .map(|(name, value)| wsy_header {
                name: wsy_str::from_str(name),
                value: wsy_str::from_str(value),
            })
            .collect();
        let protocols: Vec<wsy_str> = protocols.into_iter().map(wsy_str::from_str).collect();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let raw = wsy_request {
            size: std::mem::size_of::<wsy_request>() as u32,
            target: wsy_str::from_str(target),
            path: wsy_str::from_str(path),
            query: wsy_str::from_opt(query),
            headers: array_ptr(&headers),
            header_count: headers.len(),
            protocols: array_ptr(&protocols),
            protocol_count: protocols.len(),
            // The String's heap buffer does not move when the String does.
            client_address: wsy_str::from_str(&client_address),
            tls: u32::from(tls),
            reserved: 0,
            user: wsy_str::NONE,
            tls_subject: wsy_str::NONE,
            tls_sans: std::ptr::null(),
            tls_san_count: 0,
        };
        RequestView {
            raw,
            _headers: headers,
            _protocols: protocols,
            _client_address: client_address,
            _tls_sans: Vec::new(),
            _borrowed: std::marker::PhantomData,
        }
    }

    /// The user HTTP Basic authentication accepted (`None`: not
    /// authenticated).
    pub fn with_user(mut self, user: Option<&'a str>) -> RequestView<'a> {
        self.raw.user = wsy_str::from_opt(user);
        self
    }

    /// The verified TLS client certificate: its subject and its subject
    /// alternative names.
    pub fn with_tls_client(
        mut self,
        subject: &'a str,
        sans: impl IntoIterator<Item = &'a str>,
    ) -> RequestView<'a> {
        // The only allocation: one view per name, once per connection.
        self._tls_sans = sans.into_iter().map(wsy_str::from_str).collect();
        self.raw.tls_subject = wsy_str::from_str(subject);
        self.raw.tls_sans = array_ptr(&self._tls_sans);
        self.raw.tls_san_count = self._tls_sans.len();
        self
    }

    /// Declare a smaller `size`, as an older host would pass (for
    /// example [`wsy_request::SIZE_2_0`]), to test that a plugin checks
    /// `size` before reading a later field. The later fields stay filled
    /// in memory, so a plugin that does not check reads them and shows it.
    /// Clamped to the whole struct.
    pub fn with_size(mut self, size: usize) -> RequestView<'a> {
        self.raw.size = size.min(std::mem::size_of::<wsy_request>()) as u32;
        self
    }

    /// The request; every view in it is valid while `self` lives.
    pub fn raw(&self) -> &wsy_request {
        &self.raw
    }
}

pub type wsy_configure_fn = unsafe extern "C" fn(
    userdata: *mut c_void,
    key: wsy_str,
    value: wsy_str,
    error: *mut wsy_error,
) -> wsy_status;
pub type wsy_start_fn =
    unsafe extern "C" fn(userdata: *mut c_void, error: *mut wsy_error) -> wsy_status;
pub type wsy_query_fn = unsafe extern "C" fn(
    userdata: *mut c_void,
    request: *const wsy_request,
    answer: *mut wsy_answer,
) -> wsy_status;
pub type wsy_cleanup_fn = unsafe extern "C" fn(userdata: *mut c_void);

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wsy_backend {
    pub size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub name: *const c_char,
    pub userdata: *mut c_void,
    pub flags: u32,
    pub configure: Option<wsy_configure_fn>,
    pub start: Option<wsy_start_fn>,
    pub query: Option<wsy_query_fn>,
    pub cleanup: Option<wsy_cleanup_fn>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wsy_host_api {
    pub size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub log: Option<unsafe extern "C" fn(plugin: *const wsy_plugin, level: u32, message: wsy_str)>,
    pub register_backend: Option<
        unsafe extern "C" fn(plugin: *mut wsy_plugin, backend: *const wsy_backend) -> wsy_status,
    >,
    pub register_framing: Option<
        unsafe extern "C" fn(plugin: *mut wsy_plugin, framing: *const wsy_framing) -> wsy_status,
    >,
    pub error_set: Option<unsafe extern "C" fn(error: *mut wsy_error, message: wsy_str)>,
    pub answer_peer:
        Option<unsafe extern "C" fn(answer: *mut wsy_answer, peer: wsy_str) -> wsy_status>,
    pub answer_framing: Option<
        unsafe extern "C" fn(answer: *mut wsy_answer, name: wsy_str, config: wsy_str) -> wsy_status,
    >,
    pub answer_protocol:
        Option<unsafe extern "C" fn(answer: *mut wsy_answer, index: usize) -> wsy_status>,
    pub answer_header: Option<
        unsafe extern "C" fn(answer: *mut wsy_answer, name: wsy_str, value: wsy_str) -> wsy_status,
    >,
    pub answer_reject: Option<
        unsafe extern "C" fn(answer: *mut wsy_answer, status: u16, reason: wsy_str) -> wsy_status,
    >,
    pub request_header: Option<
        unsafe extern "C" fn(
            request: *const wsy_request,
            name: wsy_str,
            value: *mut wsy_str,
        ) -> wsy_status,
    >,
    pub request_cookie: Option<
        unsafe extern "C" fn(
            request: *const wsy_request,
            name: wsy_str,
            value: *mut wsy_str,
        ) -> wsy_status,
    >,
    // ---- 2.2: present only when `size` covers it (`has_field`).
    /// Make this answer a member of the peer's fan-out hub (`on` = 1).
    pub answer_hub: Option<unsafe extern "C" fn(answer: *mut wsy_answer, on: u32) -> wsy_status>,
}

impl wsy_host_api {
    /// `sizeof(wsy_host_api)` in ABI 2.0: it ends with `request_cookie`.
    /// Every 2.x host's table is at least this long, and a 2.1 host's is
    /// this long too (2.1 appended to `wsy_request` only).
    pub const SIZE_2_0: usize =
        std::mem::offset_of!(wsy_host_api, request_cookie) + std::mem::size_of::<*const ()>();
    /// `sizeof(wsy_host_api)` in ABI 2.2: it ends with `answer_hub`.
    pub const SIZE_2_2: usize = std::mem::size_of::<wsy_host_api>();

    /// `answer_hub`, if the table (of `size` bytes as its host says)
    /// has it.
    pub fn answer_hub(
        &self,
    ) -> Option<unsafe extern "C" fn(answer: *mut wsy_answer, on: u32) -> wsy_status> {
        let at = std::mem::offset_of!(wsy_host_api, answer_hub);
        let len =
            std::mem::size_of::<Option<unsafe extern "C" fn(*mut wsy_answer, u32) -> wsy_status>>();
        if has_field(self.size, at, len) {
            self.answer_hub
        } else {
            None
        }
    }
}

pub type wsy_entry_fn = unsafe extern "C" fn(
    plugin: *mut wsy_plugin,
    host: *const wsy_host_api,
    error: *mut wsy_error,
) -> wsy_status;

// The ABI on the platforms built here (LP64): checked against the C
// compiler's view by tests/header.rs.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<wsy_str>() == 16);
    assert!(std::mem::size_of::<wsy_header>() == 32);
    assert!(std::mem::size_of::<wsy_framing>() == 64);
    // The first 2.0 framings were built without `configure`.
    assert!(std::mem::offset_of!(wsy_framing, configure) == 56);
    assert!(wsy_request::SIZE_2_0 == 112);
    // 2.1 appended two views, a pointer and a count after `reserved`:
    // 8-aligned at 112, so no padding before, between or after them.
    assert!(std::mem::size_of::<wsy_request>() == 160);
    assert!(std::mem::size_of::<wsy_backend>() == 64);
    assert!(wsy_host_api::SIZE_2_0 == 96);
    // 2.2 appended one function pointer, 8-aligned at the 2.0 sizeof.
    assert!(std::mem::offset_of!(wsy_host_api, answer_hub) == 96);
    assert!(std::mem::size_of::<wsy_host_api>() == 104);
};
