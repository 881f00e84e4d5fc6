//! Run framings and backends in unit tests, without a host.
//!
//! ```
//! use websocksy_plugin::testing::{Harness, Message};
//! use websocksy_plugin::{Frame, Framing, Opcode};
//!
//! struct Pairs;
//! impl Framing for Pairs {
//!     type State = ();
//!     const NAME: &'static str = "pairs";
//!     fn new_state(&self, _: Option<&str>) -> Result<(), String> { Ok(()) }
//!     fn frame(&self, _: &mut (), data: &[u8], _: usize) -> Frame {
//!         if data.len() >= 2 { Frame::binary(2) } else { Frame::More }
//!     }
//! }
//!
//! let mut h = Harness::new(&Pairs, None).unwrap();
//! assert_eq!(h.feed(b"abc").unwrap(), [Message::binary(b"ab")]);
//! assert_eq!(h.feed(b"d").unwrap(), [Message::binary(b"cd")]);
//! ```

use crate::abi::{self, wsy_answer, wsy_host_api, wsy_status, wsy_str};
use crate::request::{Answer, Request};
use crate::{Backend, Frame, Framing, Opcode};

/// A message a [`Harness`] saw the framing send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// As the host would send it: text that is not UTF-8 becomes binary.
    pub opcode: Opcode,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Message {
    /// The message the host sends for a framing's decision: text that is
    /// not UTF-8 goes as binary.
    fn sent(opcode: Opcode, data: Vec<u8>) -> Message {
        let opcode = match opcode {
            Opcode::Text => Opcode::detect(&data),
            Opcode::Binary => Opcode::Binary,
        };
        Message { opcode, data }
    }

    /// A text message of these bytes.
    pub fn text(data: impl AsRef<[u8]>) -> Message {
        Message {
            opcode: Opcode::Text,
            data: data.as_ref().to_vec(),
        }
    }

    /// A binary message of these bytes.
    pub fn binary(data: impl AsRef<[u8]>) -> Message {
        Message {
            opcode: Opcode::Binary,
            data: data.as_ref().to_vec(),
        }
    }
}

/// Drives one connection's worth of a framing the way the host does: keeps
/// the unframed bytes, computes `last_read`, calls `frame` again after every
/// message while bytes remain, checks the framing's answers, and calls
/// `finish` at the end. To test library-level options, call
/// [`Framing::configure`] on the framing before making a harness, as the
/// host does before the first connection.
pub struct Harness<'f, F: Framing> {
    framing: &'f F,
    state: F::State,
    buf: Vec<u8>,
    since_more: usize,
    discarded: Vec<Vec<u8>>,
}

impl<'f, F: Framing> Harness<'f, F> {
    /// `state_new` with this config.
    pub fn new(framing: &'f F, config: Option<&str>) -> Result<Self, String> {
        Ok(Harness {
            framing,
            state: framing.new_state(config)?,
            buf: Vec::new(),
            since_more: 0,
            discarded: Vec::new(),
        })
    }

    /// One read from the peer: returns the messages framed from it (in
    /// order), or the error that would close the connection with 1011.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Message>, String> {
        self.buf.extend_from_slice(bytes);
        self.since_more += bytes.len();
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            let last_read = self.since_more.min(self.buf.len());
            let (len, opcode) = match self.framing.frame(&mut self.state, &self.buf, last_read) {
                Frame::More | Frame::Message { len: 0, .. } | Frame::Discard(0) => {
                    self.since_more = 0;
                    break;
                }
                Frame::Message { len, opcode } => (len, Some(opcode)),
                Frame::Discard(len) => (len, None),
                Frame::Error(e) => return Err(e),
            };
            if len > self.buf.len() {
                return Err(format!("framed {len} bytes of {}", self.buf.len()));
            }
            let data: Vec<u8> = self.buf.drain(..len).collect();
            match opcode {
                Some(opcode) => out.push(Message::sent(opcode, data)),
                None => self.discarded.push(data),
            }
        }
        Ok(out)
    }

    /// The bytes not framed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Every discarded chunk so far, in order.
    pub fn discarded(&self) -> &[Vec<u8>] {
        &self.discarded
    }

    /// The peer closed: what `finish` sends of the leftover bytes (`None`:
    /// nothing left, or dropped).
    pub fn finish(mut self) -> Option<Message> {
        if self.buf.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.buf);
        let opcode = self.framing.finish(&mut self.state, &data)?;
        Some(Message::sent(opcode, data))
    }
}

/// What a backend answered, as [`TestRequest::query`] recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The last [`Answer::peer`].
    pub peer: Option<String>,
    /// The last [`Answer::framing`]: name and config.
    pub framing: Option<(String, Option<String>)>,
    /// The last [`Answer::protocol`].
    pub protocol: Option<usize>,
    /// Every [`Answer::header`].
    pub headers: Vec<(String, String)>,
    /// The last [`Answer::hub`].
    pub hub: bool,
    /// The last [`Answer::reject`]: status and reason.
    pub reject: Option<(u16, String)>,
}

/// The framing names the test host knows (as a host without other plugins
/// would, plus the plugins of this repository).
pub const KNOWN_FRAMINGS: &[&str] = &[
    "auto",
    "binary",
    "separator",
    "newline",
    "fixedlength",
    "dynamic32",
    "lengthprefix",
    "json",
];

struct AnswerSink {
    rec: Recorded,
    protocol_count: usize,
    framings: Vec<String>,
}

/// A request to run a backend's query on, built in Rust.
#[derive(Debug, Clone)]
pub struct TestRequest {
    target: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    client_address: String,
    tls: bool,
    user: Option<String>,
    tls_client: Option<(String, Vec<String>)>,
    host_minor: u16,
    framings: Vec<String>,
}

impl TestRequest {
    /// `GET target` from 127.0.0.1:40000, no headers, no protocols.
    pub fn new(target: &str) -> TestRequest {
        TestRequest {
            target: target.to_owned(),
            headers: Vec::new(),
            protocols: Vec::new(),
            client_address: "127.0.0.1:40000".to_owned(),
            tls: false,
            user: None,
            tls_client: None,
            host_minor: abi::WSY_ABI_MINOR,
            framings: KNOWN_FRAMINGS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> TestRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Offer a subprotocol (give them already split and deduplicated).
    pub fn protocol(mut self, protocol: &str) -> TestRequest {
        self.protocols.push(protocol.to_owned());
        self
    }

    /// Set the client address.
    pub fn client_address(mut self, address: &str) -> TestRequest {
        self.client_address = address.to_owned();
        self
    }

    /// Mark the request as TLS.
    pub fn tls(mut self, tls: bool) -> TestRequest {
        self.tls = tls;
        self
    }

    /// The user HTTP Basic authentication accepted ([`Request::user`]).
    pub fn user(mut self, user: &str) -> TestRequest {
        self.user = Some(user.to_owned());
        self
    }

    /// The verified TLS client certificate: its subject
    /// ([`Request::tls_subject`]) and subject alternative names
    /// ([`Request::tls_sans`], e.g. `"DNS:a.example"`). Does not set
    /// [`tls`](Self::tls).
    pub fn tls_client(mut self, subject: &str, sans: &[&str]) -> TestRequest {
        let sans = sans.iter().map(|s| s.to_string()).collect();
        self.tls_client = Some((subject.to_owned(), sans));
        self
    }

    /// Run as on a host of ABI 2.`minor`: the request's `size` and the host
    /// table's are that minor's, so fields added later read as absent (even
    /// when set here, which shows whether the backend relies on them), and
    /// functions added later ([`Answer::hub`], 2.2) fail with
    /// `WSY_EVERSION`. Default: this crate's ABI minor.
    pub fn host_abi_minor(mut self, minor: u16) -> TestRequest {
        self.host_minor = minor;
        self
    }

    /// Also accept this framing name in [`Answer::framing`].
    pub fn known_framing(mut self, name: &str) -> TestRequest {
        self.framings.push(name.to_owned());
        self
    }

    /// Run `f` on this request's [`Request`] view.
    pub fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        // The same view the host builds for a query.
        let mut view = abi::RequestView::new(
            &self.target,
            self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            self.protocols.iter().map(String::as_str),
            self.client_address.clone(),
            self.tls,
        )
        .with_user(self.user.as_deref());
        if let Some((subject, sans)) = &self.tls_client {
            view = view.with_tls_client(subject, sans.iter().map(String::as_str));
        }
        if self.host_minor == 0 {
            view = view.with_size(abi::wsy_request::SIZE_2_0);
        }
        // SAFETY: every view in the request points into `self` or `view`,
        // both alive and unchanged until this function returns; the struct
        // is whole (its `size` may say less, never more), and at least 2.0.
        let request = unsafe { Request::from_raw(view.raw()) };
        f(&request)
    }

    /// Run `backend.query` on this request; returns its result and what it
    /// answered. The test host checks arguments as the real one does:
    /// statuses 400-599, protocol indexes in range, known framing names,
    /// peers with a known scheme.
    pub fn query<B: Backend>(&self, backend: &B) -> (Result<(), String>, Recorded) {
        let mut sink = AnswerSink {
            rec: Recorded::default(),
            protocol_count: self.protocols.len(),
            framings: self.framings.clone(),
        };
        let result = self.with(|request| {
            // SAFETY: the handle is `sink`, alive and not otherwise borrowed
            // during the query, and TEST_API's functions take exactly that.
            let mut answer = unsafe {
                Answer::from_raw(
                    (&mut sink as *mut AnswerSink).cast::<wsy_answer>(),
                    if self.host_minor < 2 {
                        &TEST_API_2_1
                    } else {
                        &TEST_API
                    },
                )
            };
            backend.query(request, &mut answer)
        });
        (result, sink.rec)
    }
}

/// # Safety
/// `answer` must be the `AnswerSink` handle `TestRequest::query` made.
unsafe fn sink<'a>(answer: *mut wsy_answer) -> &'a mut AnswerSink {
    // SAFETY: the caller's contract.
    unsafe { &mut *answer.cast::<AnswerSink>() }
}

/// # Safety
/// `s` must be NULL or valid for reads during the call.
unsafe fn owned(s: wsy_str) -> Option<String> {
    // SAFETY: the caller's contract.
    let b = unsafe { s.as_bytes() }?;
    String::from_utf8(b.to_vec()).ok()
}

unsafe extern "C" fn t_peer(answer: *mut wsy_answer, peer: wsy_str) -> wsy_status {
    // SAFETY: called through TEST_API from an Answer over an AnswerSink,
    // with a view valid during the call.
    let (sink, peer) = unsafe { (sink(answer), owned(peer)) };
    let Some(peer) = peer else {
        return abi::WSY_EINVAL;
    };
    let known = ["tcp://", "udp://", "unix://", "unix-dgram://", "mirror://"];
    if !known.iter().any(|k| peer.starts_with(k)) {
        return abi::WSY_EINVAL;
    }
    sink.rec.peer = Some(peer);
    abi::WSY_OK
}

unsafe extern "C" fn t_framing(
    answer: *mut wsy_answer,
    name: wsy_str,
    config: wsy_str,
) -> wsy_status {
    // SAFETY: as in t_peer.
    let (sink, name, config) = unsafe { (sink(answer), owned(name), owned(config)) };
    let Some(name) = name else {
        return abi::WSY_EINVAL;
    };
    if !sink.framings.contains(&name) {
        return abi::WSY_EINVAL;
    }
    sink.rec.framing = Some((name, config));
    abi::WSY_OK
}

unsafe extern "C" fn t_protocol(answer: *mut wsy_answer, index: usize) -> wsy_status {
    // SAFETY: as in t_peer.
    let sink = unsafe { sink(answer) };
    if index >= sink.protocol_count {
        return abi::WSY_EINVAL;
    }
    sink.rec.protocol = Some(index);
    abi::WSY_OK
}

unsafe extern "C" fn t_header(
    answer: *mut wsy_answer,
    name: wsy_str,
    value: wsy_str,
) -> wsy_status {
    // SAFETY: as in t_peer.
    let (sink, name, value) = unsafe { (sink(answer), owned(name), owned(value)) };
    let (Some(name), Some(value)) = (name, value) else {
        return abi::WSY_EINVAL;
    };
    sink.rec.headers.push((name, value));
    abi::WSY_OK
}

unsafe extern "C" fn t_hub(answer: *mut wsy_answer, on: u32) -> wsy_status {
    // SAFETY: as in t_peer.
    let sink = unsafe { sink(answer) };
    if on > 1 {
        return abi::WSY_EINVAL;
    }
    sink.rec.hub = on == 1;
    abi::WSY_OK
}

unsafe extern "C" fn t_reject(answer: *mut wsy_answer, status: u16, reason: wsy_str) -> wsy_status {
    // SAFETY: as in t_peer.
    let (sink, reason) = unsafe { (sink(answer), owned(reason)) };
    if !(400..=599).contains(&status) {
        return abi::WSY_EINVAL;
    }
    sink.rec.reject = Some((status, reason.unwrap_or_default()));
    abi::WSY_OK
}

static TEST_API: wsy_host_api = wsy_host_api {
    size: std::mem::size_of::<wsy_host_api>() as u32,
    abi_major: abi::WSY_ABI_MAJOR,
    abi_minor: abi::WSY_ABI_MINOR,
    log: None,
    register_backend: None,
    register_framing: None,
    error_set: None,
    answer_peer: Some(t_peer),
    answer_framing: Some(t_framing),
    answer_protocol: Some(t_protocol),
    answer_header: Some(t_header),
    answer_reject: Some(t_reject),
    request_header: None,
    request_cookie: None,
    answer_hub: Some(t_hub),
};

/// [`TEST_API`] as a host older than 2.2 shows it: its `size` ends before
/// `answer_hub`.
static TEST_API_2_1: wsy_host_api = wsy_host_api {
    size: wsy_host_api::SIZE_2_0 as u32,
    abi_minor: 1,
    ..TEST_API
};
