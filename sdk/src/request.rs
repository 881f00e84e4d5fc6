//! Safe views of the upgrade request and of the answer under construction.

use std::fmt;
use std::marker::PhantomData;

use crate::abi::{self, wsy_answer, wsy_header, wsy_host_api, wsy_request, wsy_status, wsy_str};

/// The upgrade request a backend decides on. Everything borrows the host's
/// memory and is valid during the query only (copy what you keep).
///
/// The host only passes UTF-8 (it refuses requests whose headers are not);
/// should a view still not be UTF-8 it reads as empty, and such a header is
/// skipped.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    raw: &'a wsy_request,
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
    /// Every view in `raw` (strings, the header and protocol arrays and the
    /// strings they hold) must be NULL or valid for reads for `'a`, and
    /// `raw.size` must cover the whole ABI 2.0 struct.
    pub(crate) unsafe fn from_raw(raw: &'a wsy_request) -> Request<'a> {
        Request { raw }
    }

    fn view(s: wsy_str) -> Option<&'a str> {
        // SAFETY: `from_raw`'s contract: every view in the request is NULL or
        // valid for reads during 'a.
        let bytes = unsafe { s.as_bytes() }?;
        std::str::from_utf8(bytes).ok()
    }

    fn header_slice(&self) -> &'a [wsy_header] {
        if self.raw.headers.is_null() || self.raw.header_count == 0 {
            return &[];
        }
        // SAFETY: `from_raw`'s contract: `headers` points at `header_count`
        // initialised headers valid during 'a (checked non-NULL above).
        unsafe { std::slice::from_raw_parts(self.raw.headers, self.raw.header_count) }
    }

    fn protocol_slice(&self) -> &'a [wsy_str] {
        if self.raw.protocols.is_null() || self.raw.protocol_count == 0 {
            return &[];
        }
        // SAFETY: as for `header_slice`, for `protocols`/`protocol_count`.
        unsafe { std::slice::from_raw_parts(self.raw.protocols, self.raw.protocol_count) }
    }

    /// The request target as sent: path and query, not percent-decoded.
    pub fn target(&self) -> &'a str {
        Self::view(self.raw.target).unwrap_or("")
    }

    /// The target before `?`.
    pub fn path(&self) -> &'a str {
        Self::view(self.raw.path).unwrap_or("")
    }

    /// The target after `?`; `None` when there is no `?`.
    pub fn query(&self) -> Option<&'a str> {
        Self::view(self.raw.query)
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
        Self::view(self.raw.client_address).unwrap_or("")
    }

    /// True when the client came over TLS (`wss://`).
    pub fn tls(&self) -> bool {
        self.raw.tls != 0
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("target", &self.target())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("protocols", &self.protocols().collect::<Vec<_>>())
            .field("client_address", &self.client_address())
            .field("tls", &self.tls())
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

    /// Refuse the upgrade with this HTTP status (400-599) and a one-line
    /// reason, sent as the body.
    pub fn reject(&mut self, status_code: u16, reason: &str) -> Result<(), HostError> {
        let f = self.api.answer_reject.ok_or(HostError(abi::WSY_ERROR))?;
        // SAFETY: as in `peer`.
        status(unsafe { f(self.raw, status_code, wsy_str::from_str(reason)) })
    }
}
