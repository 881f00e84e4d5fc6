//! The client role's way in: the local side is up (an accepted local
//! client, a peer connected like a server-mode peer, the mirror, standard
//! input and output); dial the server (resolve off the loop, connect, TLS
//! for `wss://`), send the upgrade request, check the 101, and from `Open`
//! on run the same pump as the server role, with every frame sent masked.
//!
//! Reconnects (`--retry`): when an attempt fails, or an open connection
//! ends while the local side is still there, the WebSocket end waits in
//! `Backoff` (full jitter under an exponential bound) and dials again; the
//! local side is kept, and what it offers meanwhile is held (stream local
//! sides, up to `--retry-buffer`) and framed once the next connection is
//! open. Frames already queued for the old connection are lost with it
//! (logged with their size); nothing is reordered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::{Chosen, Ctx, RawState, Session, WsState};
use crate::config::Direction;
use crate::connector::Connector;
use crate::peer::mirror::Mirror;
use crate::peer::PeerAddress;
use crate::transport::tls::TlsStream;
use crate::transport::{Ready, Stream};
use crate::workers::{Job, Outcome};
use crate::ws::frame::{FrameReader, Role};
use crate::ws::upgrade_client::{self, Response};

/// How long a connection must last (without a message from the server)
/// before a drop counts as a new failure series rather than one more
/// failed attempt.
const STABLE: Duration = Duration::from_secs(5);

/// The `Content-Length` of a response head, if it has one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

/// What the local side of a client-role session starts as.
pub enum LocalSide {
    /// An accepted local client (`tcp-listen`, `unix-listen`), or the
    /// standard input/output pair: up already.
    Stream(Stream),
    /// A `udp-listen` source: its connected socket, and the datagram that
    /// announced it (read by the listener).
    Datagram(Stream, Vec<u8>),
    /// A peer to connect first (`tcp://`, `tls://`, `udp://`, `unix://`,
    /// `unix-dgram://`, `mirror://`).
    Connect(PeerAddress),
}

/// The client role's state beside the WebSocket end.
pub struct ClientSide {
    pub connector: Arc<Connector>,
    /// This attempt's `Sec-WebSocket-Key`.
    key: String,
    addrs: Vec<SocketAddr>,
    addr_next: usize,
    error: Option<String>,
    /// Failed attempts since the last connection that opened.
    failures: u32,
    retry_at: Option<Instant>,
    /// No more attempts: retries exhausted, not allowed, or shutting down.
    stopped: bool,
    /// The last connection ended with the server's close frame, 1000 or
    /// 1001 (or no code): the process exit status for a single connection.
    pub clean: bool,
    /// Connections opened so far.
    opened: u32,
    /// When the current connection opened, and whether it has lasted
    /// [`STABLE`] or carried a message from the server since.
    opened_at: Instant,
    proven: bool,
    /// How logs name the local side when no address does (`-`, a Unix
    /// listener's path).
    local_label: Option<String>,
}

impl ClientSide {
    pub fn new(connector: Arc<Connector>, local_label: Option<String>) -> ClientSide {
        ClientSide {
            connector,
            key: String::new(),
            addrs: Vec::new(),
            addr_next: 0,
            error: None,
            failures: 0,
            retry_at: None,
            stopped: false,
            clean: false,
            opened: 0,
            opened_at: Instant::now(),
            proven: false,
            local_label,
        }
    }

    fn retries(&self) -> bool {
        self.connector.settings.retry.enabled && !self.stopped
    }

    /// Full jitter (uniform below the bound), the bound growing from
    /// `--retry-interval` by `--retry-growth` per failure up to
    /// `--retry-max-interval`.
    fn backoff(&self) -> Duration {
        let r = &self.connector.settings.retry;
        let exp = i32::try_from(self.failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let bound = (r.interval.as_secs_f64() * r.growth.powi(exp))
            .min(r.max_interval.as_secs_f64())
            .max(0.0);
        let mut b = [0u8; 4];
        let unit = match openssl::rand::rand_bytes(&mut b) {
            Ok(()) => f64::from(u32::from_ne_bytes(b)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        Duration::from_secs_f64(bound * unit)
    }
}

impl Session {
    /// Start the local side, then (once it is up) dial.
    pub fn begin(&mut self, local: LocalSide, cx: &mut Ctx) {
        let Some(c) = self.client.as_ref() else {
            return;
        };
        let connector = Arc::clone(&c.connector);
        let s = &connector.settings;
        match connector.framing.new_state(s.framing_config.as_deref()) {
            Ok(f) => self.raw.framing = Some(f),
            Err(e) => return self.give_up(&format!("framing '{}': {e}", s.framing), cx),
        }
        match local {
            LocalSide::Stream(stream) | LocalSide::Datagram(stream, _)
                if matches!(stream, Stream::Unconnected) =>
            {
                self.give_up("no local socket", cx)
            }
            LocalSide::Stream(mut stream) => {
                if let Err(e) = stream.register(cx.registry, self.raw_token()) {
                    return self.give_up(&format!("cannot register the local side: {e}"), cx);
                }
                self.raw.stream = Some(stream);
                self.raw.state = RawState::Open;
                self.dial(cx);
            }
            LocalSide::Datagram(mut stream, first) => {
                if let Err(e) = stream.register(cx.registry, self.raw_token()) {
                    return self.give_up(&format!("cannot register the local side: {e}"), cx);
                }
                if !self.local_read_only() {
                    self.raw.early_bytes = first.len();
                    self.raw.early.push_back(first);
                }
                self.raw.stream = Some(stream);
                self.raw.state = RawState::Open;
                self.dial(cx);
            }
            LocalSide::Connect(PeerAddress::Mirror) => {
                self.raw.mirror = Some(Mirror::default());
                self.raw.state = RawState::Open;
                self.dial(cx);
            }
            LocalSide::Connect(address) => {
                self.choice = Some(Box::new(Chosen {
                    address,
                    protocol: None,
                    headers: Vec::new(),
                    preface: Vec::new(),
                    hub: false,
                }));
                self.deadline = cx.now + connector.limits.connect_timeout;
                self.ws.state = WsState::Dialing;
                self.connect_peer(cx);
            }
        }
    }

    /// One attempt: resolve the server's name (on the worker pool) or
    /// take its literal address, then connect.
    pub(super) fn dial(&mut self, cx: &mut Ctx) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        self.ws.state = WsState::Dialing;
        self.deadline = cx.now + c.connector.limits.connect_timeout;
        c.retry_at = None;
        c.error = None;
        c.addr_next = 0;
        let addr = &c.connector.settings.url.addr;
        match addr.literal() {
            Some(a) => {
                c.addrs = vec![a];
                self.dial_next(cx);
            }
            None => {
                let job = Job::Resolve {
                    host: addr.host.clone(),
                    port: addr.port,
                };
                cx.shared.workers.submit(cx.inbox, self.key, self.id, job);
            }
        }
    }

    /// The resolver answered for the server's name.
    pub(super) fn on_dial_outcome(&mut self, outcome: Outcome, cx: &mut Ctx) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        match outcome {
            Outcome::Resolved(Ok(addrs)) if !addrs.is_empty() => {
                c.addrs = addrs;
                c.addr_next = 0;
                self.dial_next(cx);
            }
            Outcome::Resolved(r) => {
                let why = match r {
                    Ok(_) => "no addresses".to_string(),
                    Err(e) => e.to_string(),
                };
                let host = c.connector.settings.url.addr.host.clone();
                self.dial_failed(&format!("cannot resolve {host}: {why}"), true, cx);
            }
            _ => {}
        }
    }

    /// Connect to the next resolved address of the server.
    fn dial_next(&mut self, cx: &mut Ctx) {
        loop {
            let Some(c) = self.client.as_mut() else {
                return;
            };
            let Some(&addr) = c.addrs.get(c.addr_next) else {
                let why = c.error.take().unwrap_or_else(|| "no address".into());
                return self.dial_failed(&format!("cannot connect: {why}"), true, cx);
            };
            c.addr_next += 1;
            let connector = Arc::clone(&c.connector);
            let started = mio::net::TcpStream::connect(addr).and_then(|sock| {
                let mut stream = match &connector.tls {
                    // SNI and the name checked: `--sni`, else the URL's host.
                    Some(tls) => {
                        let host = &connector.settings.url.addr.host;
                        Stream::Tls(Box::new(TlsStream::new(tls.ssl(host)?, sock)?))
                    }
                    None => Stream::Tcp(sock),
                };
                stream.register(cx.registry, Session::ws_token(self.key))?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    debug!("conn {} dialling {addr}", self.id);
                    self.ws.stream = stream;
                    self.ws.rd = Ready::default();
                    return;
                }
                Err(e) => {
                    if let Some(c) = self.client.as_mut() {
                        c.error = Some(format!("{addr}: {e}"));
                    }
                }
            }
        }
    }

    /// `Dialing` with the socket writable (or, under TLS, either way):
    /// the TCP connect, then the TLS handshake, then the request.
    pub(super) fn check_dial(&mut self, cx: &mut Ctx) -> bool {
        if matches!(self.ws.stream, Stream::Unconnected) || !(self.ws.rd.w() || self.ws.rd.r()) {
            return false;
        }
        let up = self.ws.stream.connect_result().and_then(|up| {
            if up {
                self.ws.stream.handshake()
            } else {
                Ok(false)
            }
        });
        match up {
            Ok(true) => {
                self.send_request(cx);
                true
            }
            Ok(false) => {
                self.ws.rd.clear_w();
                if self.ws.stream.is_tls() {
                    self.ws.rd.clear_r();
                }
                false
            }
            Err(e) => {
                let at = self
                    .client
                    .as_ref()
                    .and_then(|c| c.addrs.get(c.addr_next.wrapping_sub(1)))
                    .map_or_else(String::new, |a| format!("{a}: "));
                self.drop_ws_stream(cx);
                if let Some(c) = self.client.as_mut() {
                    c.error = Some(format!("{at}{e}"));
                }
                self.dial_next(cx);
                true
            }
        }
    }

    fn send_request(&mut self, cx: &mut Ctx) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        c.key = match upgrade_client::new_key() {
            Ok(k) => k,
            Err(e) => return self.dial_failed(&e, true, cx),
        };
        let mut head = Vec::with_capacity(256);
        c.connector.request.write(&c.key, &mut head);
        self.ws.out.push_copy(&head, cx.pool);
        self.ws.http.clear();
        self.ws.state = WsState::Upgrading;
    }

    /// `Upgrading`: read the server's answer until its head is complete
    /// (and, for a refusal, the first line of its body).
    pub(super) fn read_response(&mut self, cx: &mut Ctx) -> bool {
        if !self.ws.rd.r() {
            return false;
        }
        let mut chunk = [0u8; 2048];
        loop {
            let eof = match self.ws.stream.read(&mut chunk) {
                Ok(0) => true,
                Ok(n) => {
                    self.ws.http.extend_from_slice(&chunk[..n]);
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.ws.rd.clear_r();
                    return false;
                }
                Err(e) => {
                    self.dial_failed(&format!("reading the answer: {e}"), true, cx);
                    return true;
                }
            };
            if self.answer_complete(eof, cx) {
                return true;
            }
        }
    }

    /// Act on the answer read so far, if it is complete: a 101 opens the
    /// connection; a refusal is reported once the first line of its body
    /// is in (or its `Content-Length` says there is none, or the server
    /// closed, or `timed_out`), since a server may write the body apart
    /// from the head.
    fn answer_complete(&mut self, eof: bool, cx: &mut Ctx) -> bool {
        let Some(c) = self.client.as_ref() else {
            return true;
        };
        let offered = &c.connector.settings.protocols;
        match upgrade_client::parse_response(&self.ws.http, &c.key, offered) {
            Response::Incomplete if eof => {
                self.dial_failed(
                    "the server closed the connection before answering",
                    true,
                    cx,
                );
            }
            Response::Incomplete => return false,
            Response::Upgraded { head_len, protocol } => {
                self.client_open(head_len, protocol, cx);
            }
            Response::Status {
                status,
                reason,
                head_len,
            } => {
                let (head, body) = self.ws.http.split_at(head_len.min(self.ws.http.len()));
                let first = String::from_utf8_lossy(body)
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(|l| l.chars().take(200).collect::<String>());
                let length = content_length(head);
                let whole_line = body.contains(&b'\n') && first.is_some();
                let done = eof
                    || whole_line
                    || length.is_some_and(|n| body.len() >= n)
                    || body.len() >= 2048;
                if !done {
                    return false;
                }
                let first = first.map(|l| format!(": {l}")).unwrap_or_default();
                let auth = matches!(status, 401 | 403);
                let retry = !auth || c.connector.settings.retry.on_auth_failure;
                self.dial_failed(
                    &format!("server answered {status} {reason}{first}"),
                    retry,
                    cx,
                );
            }
            Response::Invalid(why) => {
                self.dial_failed(&format!("bad upgrade answer: {why}"), true, cx);
            }
        }
        true
    }

    /// `Upgrading` past its deadline: a refusal whose body is still on
    /// its way is reported with what came; anything else timed out.
    pub(super) fn upgrade_timed_out(&mut self, cx: &mut Ctx) {
        let refused = self.client.as_ref().is_some_and(|c| {
            matches!(
                upgrade_client::parse_response(
                    &self.ws.http,
                    &c.key,
                    &c.connector.settings.protocols
                ),
                Response::Status { .. }
            )
        });
        if refused {
            self.answer_complete(true, cx);
        } else {
            self.dial_failed("timed out", true, cx);
        }
    }

    /// The 101 checked out: the connection is open.
    fn client_open(&mut self, head_len: usize, protocol: Option<String>, cx: &mut Ctx) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        // Failures are forgiven only once this connection proves itself
        // (`connection_proven`): a server that accepts and drops at once
        // still exhausts `--retry-max`, and its backoff still grows.
        c.opened_at = cx.now;
        c.proven = false;
        c.opened += 1;
        c.clean = false;
        let connector = Arc::clone(&c.connector);
        let s = &connector.settings;
        // Frames that came with the 101 follow what an earlier connection
        // left for the local side.
        let rest = self.ws.http.get(head_len..).unwrap_or(&[]);
        if !rest.is_empty() {
            let b = self.ws.input.get_or_insert_with(|| cx.pool.take_in());
            let before = b.offset();
            // Moving the data to the front may free less than came (the
            // payload owed fills the buffer): then grow it too, or the
            // rest of this read, bytes of frames, would be lost.
            while b.room() < rest.len() && b.make_room(usize::MAX) {}
            // `pend` holds raw offsets of payload still owed to the local
            // side: a compaction moved it down (growing keeps offsets).
            let shift = before - b.offset();
            if self.ws.pend.0 < self.ws.pend.1 {
                self.ws.pend.0 -= shift;
                self.ws.pend.1 -= shift;
            }
            let n = rest.len().min(b.spare().len());
            b.spare()[..n].copy_from_slice(&rest[..n]);
            b.filled(n);
        }
        self.ws.http = Vec::new();
        self.ws.reader = FrameReader::new(Role::Client, connector.limits.max_message_size);
        if self.ws.stream.has_buffered_input() {
            self.ws.rd.insert(Ready::readable());
        }
        self.ws.state = WsState::Open;
        self.last_rx = cx.now;
        self.last_activity = cx.now;
        self.ping_sent = None;
        self.close_deadline = None;
        self.hung_up = None;
        self.close_code = None;
        self.close_reason.clear();
        self.opened = true;
        info!(
            "conn {} {} -> {} open{}",
            self.id,
            self.local_label(),
            connector.label,
            match &protocol {
                Some(p) => format!(" (protocol {p})"),
                None => String::new(),
            }
        );
        if let Some(m) = &s.open_message {
            let op = if m.binary { Data::Binary } else { Data::Text };
            self.ws.out.encode(OpCode::Data(op), &m.bytes, cx.pool);
        }
        // Datagrams the listener took for this source before it was open.
        while let Some(d) = self.raw.early.pop_front() {
            self.send_datagram(&d, cx);
        }
        self.raw.early_bytes = 0;
        // What the local side offered while there was no connection.
        if self.raw.input.as_ref().is_some_and(|b| !b.is_empty()) {
            if self.raw.stream.as_ref().is_some_and(Stream::is_datagram) {
                self.frame_datagram(cx);
            } else {
                self.raw.fresh = self.raw.input.as_ref().map_or(0, |b| b.data().len());
                self.frame_peer_data(cx);
            }
            self.release_in(cx);
        }
        if self.raw.eof {
            // The local side ended while we were away.
            self.flush_unframed(cx);
            self.fail(1000, "local side closed", cx);
        }
    }

    /// This attempt failed: retry after a backoff while allowed, else stop.
    pub(super) fn dial_failed(&mut self, why: &str, retryable: bool, cx: &mut Ctx) {
        self.drop_ws_stream(cx);
        let lost = self.ws.out.len();
        self.ws.out.clear(cx.pool);
        self.ws.http = Vec::new();
        let alive = self.local_alive();
        let local = self.local_label();
        let Some(c) = self.client.as_mut() else {
            return;
        };
        c.failures += 1;
        let r = &c.connector.settings.retry;
        let attempts_left = r.max == 0 || c.failures <= r.max;
        if !(retryable && c.retries() && attempts_left && alive) {
            let why = if c.retries() && !attempts_left {
                format!("{why}; giving up after {} retries", r.max)
            } else {
                why.to_string()
            };
            return self.give_up(&why, cx);
        }
        let wait = c.backoff();
        c.retry_at = Some(cx.now + wait);
        let of = if r.max == 0 {
            String::new()
        } else {
            format!(" of {}", r.max)
        };
        info!(
            "conn {} {local} -> {}: {why}; retry {}{of} in {:.3}s",
            self.id,
            c.connector.label,
            c.failures,
            wait.as_secs_f64()
        );
        if lost > 0 {
            warn!(
                "conn {} {lost} bytes queued for the server were lost with the connection",
                self.id
            );
        }
        self.ws.state = WsState::Backoff;
    }

    /// An open connection ended while the local side is still there:
    /// reconnect the same way as after a failed attempt.
    pub(super) fn reconnect(&mut self, cx: &mut Ctx) {
        info!(
            "conn {} {} -> {} connection ended: {} so far",
            self.id,
            self.local_label(),
            self.peer_label(),
            self.close_summary()
        );
        // The reader's state and unparsed bytes belong to the dead
        // connection; payload already parsed still goes to the local side.
        if let Some(b) = self.ws.input.as_mut() {
            b.truncate(self.ws.parsed);
        }
        if !self.raw.msg_done {
            self.raw.msg.clear();
        }
        // Half an echo belongs to the old connection.
        if let Some(m) = self.raw.mirror.as_mut() {
            m.sent(cx.pool);
        }
        if let Some(c) = self.client.as_mut() {
            if c.proven || cx.now >= c.opened_at + STABLE {
                c.failures = 0;
            }
        }
        self.ws.deferred_pong = None;
        self.close_deadline = None;
        self.hung_up = None;
        self.dial_failed("connection lost", true, cx);
    }

    /// `Backoff` is over: dial again.
    pub(super) fn retry_due(&self, now: Instant) -> bool {
        self.ws.state == WsState::Backoff
            && self
                .client
                .as_ref()
                .and_then(|c| c.retry_at)
                .is_some_and(|t| now >= t)
    }

    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.client.as_ref().and_then(|c| c.retry_at)
    }

    /// No (more) connections for this session: the local side gets EOF
    /// after what it is owed, and the session ends.
    pub(super) fn give_up(&mut self, why: &str, cx: &mut Ctx) {
        let label = self
            .client
            .as_ref()
            .map_or_else(String::new, |c| c.connector.label.clone());
        warn!("conn {} {} -> {label}: {why}", self.id, self.local_label());
        // What the local side offered while disconnected goes nowhere now.
        let held = self.raw.input.as_ref().map_or(0, |b| b.data().len()) + self.raw.early_bytes;
        if held > 0 && self.ws.state != WsState::Open {
            warn!(
                "conn {} {held} bytes from the local side were never sent",
                self.id
            );
        }
        if let Some(c) = self.client.as_mut() {
            c.stopped = true;
            c.clean = false;
        }
        self.drop_ws_stream(cx);
        self.ws.out.clear(cx.pool);
        self.ws.state = WsState::Gone;
        self.stop_peer_writes(cx.now);
        if self.raw.mirror.is_some() {
            self.raw.state = RawState::Gone;
        }
    }

    fn drop_ws_stream(&mut self, cx: &mut Ctx) {
        let mut old = std::mem::replace(&mut self.ws.stream, Stream::Unconnected);
        old.deregister(cx.registry);
        self.ws.rd = Ready::default();
    }

    /// The local side can still take part in a new connection.
    fn local_alive(&self) -> bool {
        self.raw.state == RawState::Open
    }

    /// A client-role session keeps its local side across connections:
    /// reconnects are on, not stopped, and the local side has not ended.
    pub(super) fn keeps_local(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.retries()) && self.local_alive() && !self.raw.eof
    }

    /// A data message from the server: this connection works, so earlier
    /// failures are forgiven.
    pub(super) fn connection_proven(&mut self) {
        if let Some(c) = self.client.as_mut() {
            if !c.proven {
                c.proven = true;
                c.failures = 0;
            }
        }
    }

    /// No more reconnects: what ended this connection would end the next
    /// one too (the local side's data cannot be framed, an idle timeout).
    pub(super) fn stop_retrying(&mut self) {
        if let Some(c) = self.client.as_mut() {
            c.stopped = true;
        }
    }

    /// The server's close frame arrived (a clean end when 1000, 1001 or no code).
    pub(super) fn server_closed(&mut self, code: Option<u16>) {
        if let Some(c) = self.client.as_mut() {
            c.clean = matches!(code, None | Some(1000) | Some(1001));
        }
    }

    /// SIGINT/SIGTERM for a client-role session: no more attempts.
    pub(super) fn stop_dialling(&mut self, cx: &mut Ctx) {
        if let Some(c) = self.client.as_mut() {
            c.stopped = true;
        }
        if matches!(
            self.ws.state,
            WsState::Dialing | WsState::Upgrading | WsState::Backoff
        ) {
            self.give_up("shutting down", cx);
            // Asked to stop: not a failure of the connection.
            if let Some(c) = self.client.as_mut() {
                c.clean = true;
            }
        }
    }

    /// What the server sends is dropped (`--write-only`; the server role's
    /// `--read-only` drops what clients send the same way).
    pub(super) fn drops_ws_payload(&self, cx: &Ctx) -> bool {
        match &self.client {
            Some(c) => c.connector.settings.direction == Direction::WriteOnly,
            None => cx.shared.limits.read_only,
        }
    }

    /// The local side is read and dropped (`--read-only`).
    pub(super) fn local_read_only(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.connector.settings.direction == Direction::ReadOnly)
    }

    /// Local data is held while there is no connection (stream local
    /// sides with `--retry`), up to `--retry-buffer`.
    pub(super) fn holds_local(&self) -> Option<usize> {
        let c = self.client.as_ref()?;
        let waiting = matches!(
            self.ws.state,
            WsState::Dialing | WsState::Upgrading | WsState::Backoff
        );
        (waiting && c.retries() && self.raw.state == RawState::Open)
            .then_some(c.connector.settings.retry.buffer)
    }

    /// The local end as logs name it.
    pub(super) fn local_label(&self) -> String {
        match (self.client.as_deref(), &self.choice) {
            (
                Some(ClientSide {
                    local_label: Some(l),
                    ..
                }),
                _,
            ) => l.clone(),
            (Some(_), Some(c)) => c.address.to_string(),
            _ => self.client_addr.to_string(),
        }
    }

    /// The exit status this session asks for: a single client connection
    /// ends the process with it.
    pub fn succeeded(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.clean)
    }

    /// A datagram from this session's `udp-listen` source that reached
    /// the listener's socket before the source's own socket existed.
    pub fn late_datagram(&mut self, data: &[u8], cx: &mut Ctx) {
        let cap = self
            .client
            .as_ref()
            .map_or(0, |c| c.connector.settings.retry.buffer);
        if self.local_read_only() {
            debug!("conn {} datagram dropped (--read-only)", self.id);
        } else if self.ws.state == WsState::Open {
            self.send_datagram(data, cx);
        } else if self.raw.early_bytes + data.len() <= cap.max(65_536) {
            // Held like the first one, within the retry buffer's bound.
            self.raw.early_bytes += data.len();
            self.raw.early.push_back(data.to_vec());
        } else {
            info!(
                "conn {} {}: {} bytes of datagrams wait for the connection already; one more dropped",
                self.id, self.client_addr, self.raw.early_bytes
            );
        }
    }

    /// One datagram the local side sent, as one message, by the same
    /// rules as those read from its socket (`frame_datagram`).
    fn send_datagram(&mut self, d: &[u8], cx: &mut Ctx) {
        let saved = self.raw.input.take();
        let mut b = cx.pool.take_in();
        let n = d.len().min(b.spare().len());
        b.spare()[..n].copy_from_slice(&d[..n]);
        b.filled(n);
        self.raw.input = Some(b);
        self.frame_datagram(cx);
        self.release_in(cx);
        if let Some(b) = self.raw.input.take() {
            cx.pool.give_in(b);
        }
        self.raw.input = saved;
    }

    pub fn is_client(&self) -> bool {
        self.client.is_some()
    }

    /// `--from -`: wait for standard output to have everything.
    pub fn connector(&self) -> Option<&Arc<Connector>> {
        self.client.as_ref().map(|c| &c.connector)
    }
}

#[cfg(test)]
mod tests {
    use super::content_length;

    #[test]
    fn content_length_is_read_from_the_head_whatever_its_case() {
        let head = b"HTTP/1.1 403 Forbidden\r\ncontent-LENGTH:  23 \r\nX: y\r\n\r\n";
        assert_eq!(content_length(head), Some(23));
        assert_eq!(content_length(b"HTTP/1.1 401 No\r\n\r\n"), None);
        assert_eq!(
            content_length(b"HTTP/1.1 401 No\r\nContent-Length: x\r\n\r\n"),
            None
        );
    }
}
