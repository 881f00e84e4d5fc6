//! Safe views of the upgrade request and of the answer under construction.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{offset_of, size_of};

use crate::abi::{self, wsy_answer, wsy_header, wsy_host_api, wsy_request, wsy_status, wsy_str};

/// The upgrade request a backend decides on. Everything borrows the host's
/// memory and is valid during the query only (copy what you keep).
///
/// The host only passes UTF-8 (it refuses requests whose headers are not);
/// should a view still not be UTF-8 it reads as empty, and such a header is
/// skipped.
///
/// Fields added after ABI 2.0 ([`user`](Self::user),
/// [`tls_subject`](Self::tls_subject), [`tls_sans`](Self::tls_sans)) read as
/// absent when the host is older than the minor that added them.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    // Not a reference: an older host's struct is smaller than this crate's
    // `wsy_request`, and a `&wsy_request` must cover all of it. Fields are
    // read one at a time, later ones only once `size` says they exist.
    raw: *const wsy_request,
    _host: PhantomData<&'a wsy_request>,
}

/// One request header, the name as the client spelled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name, as sent.
    pub name: &'a str,
    /// The value.
    pub value: &'a str,
}

impl<'a> Request<'a> {
    /// # Safety
    ///
    /// `raw` must be non-NULL and valid for reads of its `size` bytes for
    /// `'a`; `size` must be at least [`wsy_request::SIZE_2_0`]; every view
    /// in those bytes (strings, the arrays and the strings they hold) must
    /// be NULL or valid for reads for `'a`.
    pub(crate) unsafe fn from_raw(raw: *const wsy_request) -> Request<'a> {
        Request {
            raw,
            _host: PhantomData,
        }
    }

    /// The 2.0 fields, which every 2.x host passes.
    fn v20(&self) -> Fields20 {
        // SAFETY: `from_raw`'s contract: `raw` is readable for `size` bytes,
        // at least the 2.0 struct, and each place below lies inside it; no
        // reference to the whole (maybe larger than the host's) struct is
        // made.
        unsafe {
            Fields20 {
                target: (*self.raw).target,
                path: (*self.raw).path,
                query: (*self.raw).query,
                headers: (*self.raw).headers,
                header_count: (*self.raw).header_count,
                protocols: (*self.raw).protocols,
                protocol_count: (*self.raw).protocol_count,
                client_address: (*self.raw).client_address,
                tls: (*self.raw).tls,
            }
        }
    }

    /// The size of the host's struct.
    fn size(&self) -> u32 {
        // SAFETY: `size` is the first field of every version (`from_raw`).
        unsafe { (*self.raw).size }
    }

    /// `WSY_HAS_FIELD`: the host's struct holds the field at `offset` of
    /// `len` bytes.
    fn has(&self, offset: usize, len: usize) -> bool {
        abi::has_field(self.size(), offset, len)
    }

    fn view(s: wsy_str) -> Option<&'a str> {
        // SAFETY: `from_raw`'s contract: every view in the request is NULL or
        // valid for reads during 'a.
        let bytes = unsafe { s.as_bytes() }?;
        std::str::from_utf8(bytes).ok()
    }

    fn header_slice(&self) -> &'a [wsy_header] {
        let f = self.v20();
        // SAFETY: `from_raw`'s contract: `headers` points at `header_count`
        // initialised headers valid during 'a, or is NULL.
        unsafe { slice(f.headers, f.header_count) }
    }

    fn protocol_slice(&self) -> &'a [wsy_str] {
        let f = self.v20();
        // SAFETY: as for `header_slice`, for `protocols`/`protocol_count`.
        unsafe { slice(f.protocols, f.protocol_count) }
    }

    /// The request target as sent: path and query, not percent-decoded.
    pub fn target(&self) -> &'a str {
        Self::view(self.v20().target).unwrap_or("")
    }

    /// The target before `?`.
    pub fn path(&self) -> &'a str {
        Self::view(self.v20().path).unwrap_or("")
    }

    /// The target after `?`; `None` when there is no `?`.
    pub fn query(&self) -> Option<&'a str> {
        Self::view(self.v20().query)
    }

    /// Every header in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        self.header_slice().iter().filter_map(|h| {
            Some(Header {
                name: Self::view(h.name)?,
                value: Self::view(h.value)?,
            })
        })
    }

    /// The value of the first header called `name`, compared ASCII
    /// case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every cookie `(name, value)` from every `Cookie` header, in order;
    /// pairs are split on `;` with or without a following space, names and
    /// values trimmed of spaces and tabs, pairs without `=` skipped.
    pub fn cookies(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.headers()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((
                    name.trim_matches([' ', '\t']),
                    value.trim_matches([' ', '\t']),
                ))
            })
    }

    /// The value of the first cookie called `name` (case-sensitive), as the
    /// host's `request_cookie` defines it.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.cookies().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The offered subprotocols: split on `,`, trimmed, duplicates dropped,
    /// in the order offered. Positions are the indexes [`Answer::protocol`]
    /// takes.
    pub fn protocols(&self) -> Protocols<'a> {
        Protocols {
            inner: self.protocol_slice().iter(),
        }
    }

    /// The client's address, `ip:port` (IPv6 as `[ip]:port`).
    pub fn client_address(&self) -> &'a str {
        Self::view(self.v20().client_address).unwrap_or("")
    }

    /// True when the client came over TLS (`wss://`).
    pub fn tls(&self) -> bool {
        self.v20().tls != 0
    }

    /// The user HTTP Basic authentication accepted; `None` when the request
    /// was not authenticated, or the host is older than ABI 2.1.
    pub fn user(&self) -> Option<&'a str> {
        if !self.has(offset_of!(wsy_request, user), size_of::<wsy_str>()) {
            return None;
        }
        // SAFETY: `size` covers the field, and `from_raw`'s contract makes
        // the host's struct readable for `size` bytes.
        Self::view(unsafe { (*self.raw).user })
    }

    /// The subject of the verified TLS client certificate, one line in
    /// RFC 2253 order (`CN=alice,O=Example`); `None` when the client
    /// presented none, or the host is older than ABI 2.1. A certificate
    /// with an empty subject gives `Some("")`.
    pub fn tls_subject(&self) -> Option<&'a str> {
        if !self.has(offset_of!(wsy_request, tls_subject), size_of::<wsy_str>()) {
            return None;
        }
        // SAFETY: as in `user`.
        Self::view(unsafe { (*self.raw).tls_subject })
    }

    /// That certificate's subject alternative names, in its order:
    /// `DNS:name`, `IP:address`, `email:address`, `URI:uri`. Empty without a
    /// certificate, or on a host older than ABI 2.1. A name that is not
    /// UTF-8 is skipped.
    pub fn tls_sans(&self) -> impl Iterator<Item = &'a str> + 'a {
        // The count comes after the pointer: its presence covers both.
        let sans: &'a [wsy_str] =
            if self.has(offset_of!(wsy_request, tls_san_count), size_of::<usize>()) {
                // SAFETY: as in `user` for the two fields; then `from_raw`'s
                // contract: the array holds `tls_san_count` views valid for 'a,
                // or is NULL.
                unsafe { slice((*self.raw).tls_sans, (*self.raw).tls_san_count) }
            } else {
                &[]
            };
        sans.iter().filter_map(|s| Self::view(*s))
    }
}

/// Copies of the 2.0 fields (all `Copy`): read once per accessor.
struct Fields20 {
    target: wsy_str,
    path: wsy_str,
    query: wsy_str,
    headers: *const wsy_header,
    header_count: usize,
    protocols: *const wsy_str,
    protocol_count: usize,
    client_address: wsy_str,
    tls: u32,
}

/// The host's array, empty when NULL.
///
/// # Safety
/// `ptr` NULL, or valid for reads of `len` initialised `T`s for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller's contract; non-NULL checked above.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("target", &self.target())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("protocols", &self.protocols().collect::<Vec<_>>())
            .field("client_address", &self.client_address())
            .field("tls", &self.tls())
            .field("user", &self.user())
            .field("tls_subject", &self.tls_subject())
            .field("tls_sans", &self.tls_sans().collect::<Vec<_>>())
            .finish()
    }
}

/// Iterator over the offered subprotocols (see [`Request::protocols`]).
#[derive(Clone)]
pub struct Protocols<'a> {
    inner: std::slice::Iter<'a, wsy_str>,
}

impl<'a> Iterator for Protocols<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        // A view that is not UTF-8 reads as "" so positions stay indexes.
        self.inner.next().map(|s| Request::view(*s).unwrap_or(""))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Protocols<'_> {}

/// A host function refused a call; the [`wsy_status`] it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub wsy_status);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.0 {
            abi::WSY_ERROR => "failed",
            abi::WSY_EINVAL => "invalid argument",
            abi::WSY_EUNKNOWN_KEY => "unknown key",
            abi::WSY_EVERSION => "unsupported ABI version",
            abi::WSY_EEXIST => "already registered",
            abi::WSY_ESTATE => "not allowed now",
            _ => "unknown status",
        };
        write!(f, "host refused the call: {what} ({})", self.0)
    }
}

impl std::error::Error for HostError {}

impl From<HostError> for String {
    fn from(e: HostError) -> String {
        e.to_string()
    }
}

fn status(s: wsy_status) -> Result<(), HostError> {
    if s == abi::WSY_OK {
        Ok(())
    } else {
        Err(HostError(s))
    }
}

/// A backend's answer under construction; valid during one query. Each
/// method calls the host at once and returns what it said.
pub struct Answer<'a> {
    raw: *mut wsy_answer,
    api: &'a wsy_host_api,
    _borrow: PhantomData<&'a mut wsy_answer>,
}

impl<'a> Answer<'a> {
    /// # Safety
    ///
    /// `raw` must be the answer handle of the query running now (or one the
    /// functions of `api` accept), valid during 'a.
    pub(crate) unsafe fn from_raw(raw: *mut wsy_answer, api: &'a wsy_host_api) -> Answer<'a> {
        Answer {
            raw,
            api,
            _borrow: PhantomData,
        }
    }

    /// Connect the client to this peer: `tcp://host:port`, `udp://host:port`,
    /// `unix:///path`, `unix-dgram:///path` or `mirror://`; IPv6 literals in
    /// brackets. `Err` (`WSY_EINVAL`) if the host cannot parse it.
    pub fn peer(&mut self, peer: &str) -> Result<(), HostError> {
        let f = self.api.answer_peer.ok_or(HostError(abi::WSY_ERROR))?;
        // SAFETY: `raw` is this query's answer (from_raw's contract); the view
        // borrows `peer`, which outlives the call (the host copies it).
        status(unsafe { f(self.raw, wsy_str::from_str(peer)) })
    }

    /// Use this framing (by name) with this config (`None`: no config) for
    /// the peer's stream. Default: `auto`. `Err` (`WSY_EINVAL`) for a name
    /// the host does not know.
    pub fn framing(&mut self, name: &str, config: Option<&str>) -> Result<(), HostError> {
        let f = self.api.answer_framing.ok_or(HostError(abi::WSY_ERROR))?;
        // SAFETY: as in `peer`; both views outlive the call.
        status(unsafe { f(self.raw, wsy_str::from_str(name), wsy_str::from_opt(config)) })
    }

    /// Accept the offered subprotocol at this index of
    /// [`Request::protocols`] (the client's spelling is echoed). Default:
    /// none.
    pub fn protocol(&mut self, index: usize) -> Result<(), HostError> {
        let f = self.api.answer_protocol.ok_or(HostError(abi::WSY_ERROR))?;
        // SAFETY: as in `peer`.
        status(unsafe { f(self.raw, index) })
    }

    /// Add a header to the `101 Switching Protocols` response.
    pub fn header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        let f = self.api.answer_header.ok_or(HostError(abi::WSY_ERROR))?;
        // SAFETY: as in `peer`; both views outlive the call.
        status(unsafe { f(self.raw, wsy_str::from_str(name), wsy_str::from_str(value)) })
    }

    /// Make this client a member of the peer's fan-out hub (`true`) or give
    /// it a connection of its own (`false`, the default): every client
    /// answered with the same peer and a hub shares one connection to it,
    /// each message the peer sends goes to all of them, and a client too
    /// slow to keep up is closed (1008) instead of slowing the others.
    /// `Err` (`WSY_EVERSION`) on a host older than ABI 2.2, which cannot.
    pub fn hub(&mut self, on: bool) -> Result<(), HostError> {
        let f = self.api.answer_hub().ok_or(HostError(abi::WSY_EVERSION))?;
        // SAFETY: as in `peer`.
        status(unsafe { f(self.raw, u32::from(on)) })
    }

    /// Refuse the upgrade with this HTTP status (400-599) and a one-line
    /// reason, sent as the body.
    pub fn reject(&mut self, status_code: u16, reason: &str) -> Result<(), HostError> {
        let f = self.api.answer_reject.ok_or(HostError(abi::WSY_ERROR))?;
        // SAFETY: as in `peer`.
        status(unsafe { f(self.raw, status_code, wsy_str::from_str(reason)) })
    }
}
