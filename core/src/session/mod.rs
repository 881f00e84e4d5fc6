//! One bridged connection: a WebSocket end and a raw end, and the pump
//! between them.
//!
//! The life cycle is documented in `SESSION.md` next to this file. Each end
//! has its own state (`ws_end.rs`, `raw_end.rs`); the session is finished
//! when both are gone. How a session gets to `Open` is the role's way in:
//! for the server role, `open.rs` (upgrade request, backend, peer connect,
//! 101); a client role will add its own beside it and share the rest. All
//! I/O happens in [`Session::ready`], which the event loop calls after
//! recording readiness; an operation is attempted only while its
//! readiness bit is set, and a bit is cleared by WouldBlock (edge
//! triggered, sozu's rule).
//!
//! Backpressure: the WebSocket end is read only while its buffer has room
//! beyond the payload the raw end has not taken; the raw end is read only
//! while less than [`OUT_HIGH`] bytes wait for the WebSocket end. A slow
//! side therefore pauses the fast one; nothing is dropped and memory per
//! connection stays bounded by a read buffer per direction.

mod dial;
mod hub_end;
mod open;
mod out_queue;
mod raw_end;
mod ws_end;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::{Registry, Token};
use tungstenite::protocol::frame::coding::{Control, OpCode};

use crate::peer::PeerAddress;
use crate::pool::Pool;
use crate::shared::{Limits, Shared};
use crate::transport::{Ready, Stream};
use crate::workers::Inbox;

use dial::ClientSide;
pub use dial::LocalSide;
use raw_end::{RawEnd, RawState};
use ws_end::{WsEnd, WsState};

/// Stop reading the raw end while this much waits for the WebSocket end.
pub const OUT_HIGH: usize = 64 * 1024;
/// Work done per `ready` call before yielding to other sessions: rounds,
/// and bytes moved (both directions), so one bulk transfer cannot hold the
/// loop while other connections wait.
const MAX_ITERATIONS: usize = 32;
const TURN_BYTES: usize = 512 * 1024;
/// How long a closing side may take to finish its handshake or drain.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a client that hung up behind a slow peer is kept while the
/// peer still takes its bytes (the close deadline moves on with progress).
const HANG_UP_DRAIN: Duration = Duration::from_secs(60);

/// Session tokens start here; the event loop's listeners own those below.
pub const FIRST_TOKEN: usize = 64;

/// What a session needs from its loop and from the process while it runs.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub shared: &'a Shared,
    /// Where worker results for this loop come back.
    pub inbox: &'a Inbox,
    /// The time the loop woke up: one clock read per turn, not per call.
    pub now: Instant,
    pub pool: &'a mut Pool,
    /// The loop's fan-out hubs, for sessions whose raw end is a member.
    pub hubs: &'a mut crate::hub::Hubs,
    /// This loop's number and how many loops there are (`--threads`):
    /// a hub lives on one loop, and its members move there.
    pub loop_id: usize,
    pub loops: usize,
}

pub struct Session {
    pub id: u64,
    key: usize,
    /// The client: the socket's peer at first, then what a PROXY header
    /// and a trusted proxy's headers say (`open.rs`). Logs, the per-address
    /// cap, the backend and a PROXY header to the peer all use this one.
    client_addr: SocketAddr,
    /// Where the client connected to: our socket's address, or the
    /// destination a PROXY header gave. `None` for a Unix-socket listener.
    local_addr: Option<SocketAddr>,
    /// This connection must start with a PROXY header (its listener's setting).
    proxy_protocol: bool,
    /// `client_addr` came from a PROXY header.
    proxied: bool,
    /// The address counted by the per-address cap, released at `close`.
    ip_slot: Option<IpAddr>,
    /// The user HTTP Basic authentication accepted.
    user: Option<String>,
    /// A bcrypt check runs on the worker pool for this user (`None`
    /// inside: an unknown user, refused whatever the result).
    verifying: Option<Option<String>>,
    /// Tells the verifier threads this session no longer wants its check.
    verify_cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ws: WsEnd,
    raw: RawEnd,
    choice: Option<Box<Chosen>>,
    /// The client role (`dial.rs`): the connection it dials and its
    /// retries. `None` for the server role.
    client: Option<Box<ClientSide>>,

    accepted: Instant,
    /// Handshake or connect deadline.
    deadline: Instant,
    /// Set when either side starts closing: the whole close must end by then.
    close_deadline: Option<Instant>,
    /// When the client hung up while the peer stalled.
    hung_up: Option<Instant>,
    last_rx: Instant,
    last_activity: Instant,
    ping_sent: Option<Instant>,
    pub armed: Option<Instant>,
    pub more: bool,
    /// Bytes this turn may still move.
    turn: usize,

    bytes_in: u64,
    bytes_out: u64,
    close_code: Option<u16>,
    close_reason: String,
    opened: bool,
    /// The backend chose a hub that another loop owns: the event loop
    /// hands this session over (`hub_end.rs`).
    moving: Option<Box<hub_end::Moving>>,
}

/// What the backend chose, kept until the peer is connected.
struct Chosen {
    address: PeerAddress,
    protocol: Option<String>,
    headers: Vec<(String, String)>,
    /// The encoded PROXY header, kept whole: each connect attempt starts
    /// its own `raw.preface` from it, since a failed attempt may have sent
    /// or dropped part of the last one.
    preface: Vec<u8>,
    /// The raw end is a member of this address's hub (`hub_end.rs`).
    hub: bool,
}

impl Session {
    /// A session for an accepted WebSocket connection (the server role).
    pub fn new(
        id: u64,
        key: usize,
        stream: Stream,
        client_addr: SocketAddr,
        proxy_protocol: bool,
        limits: &Limits,
        now: Instant,
    ) -> Session {
        Session {
            id,
            key,
            client_addr,
            local_addr: stream.local_addr(),
            proxy_protocol,
            proxied: false,
            ip_slot: None,
            user: None,
            verifying: None,
            verify_cancel: None,
            ws: WsEnd::server(stream, limits.max_message_size, proxy_protocol),
            raw: RawEnd::default(),
            choice: None,
            client: None,
            accepted: now,
            deadline: now + limits.handshake_timeout,
            close_deadline: None,
            hung_up: None,
            last_rx: now,
            last_activity: now,
            ping_sent: None,
            armed: None,
            more: false,
            turn: TURN_BYTES,
            bytes_in: 0,
            bytes_out: 0,
            close_code: None,
            close_reason: String::new(),
            opened: false,
            moving: None,
        }
    }

    /// A session of a client connection (the client role): `local_addr`
    /// names its local client where there is one (`tcp-listen`). Call
    /// [`begin`](Self::begin) once it has its key in the loop.
    pub fn client(
        id: u64,
        key: usize,
        connector: std::sync::Arc<crate::connector::Connector>,
        client_addr: SocketAddr,
        label: Option<String>,
        now: Instant,
    ) -> Session {
        let mut s = Session::new(
            id,
            key,
            Stream::Unconnected,
            client_addr,
            false,
            &connector.limits,
            now,
        );
        s.ws = WsEnd::client(connector.limits.max_message_size);
        s.deadline = now + connector.limits.connect_timeout;
        s.client = Some(Box::new(ClientSide::new(connector, label)));
        s
    }

    /// The limits this session runs under: its client connection's, or
    /// the server's.
    pub(super) fn limits<'a>(&'a self, shared: &'a Shared) -> &'a Limits {
        match &self.client {
            Some(c) => &c.connector.limits,
            None => &shared.limits,
        }
    }

    /// Session `key` owns two tokens from [`FIRST_TOKEN`]: `2*key` for
    /// the WebSocket end and `2*key+1` for the raw end.
    pub fn ws_token(key: usize) -> Token {
        Token(FIRST_TOKEN + key * 2)
    }
    pub(super) fn raw_token(&self) -> Token {
        Token(FIRST_TOKEN + self.key * 2 + 1)
    }
    /// Which session and which end a token at or above [`FIRST_TOKEN`]
    /// belongs to (true: the WebSocket end).
    pub fn token_owner(t: Token) -> (usize, bool) {
        let t = t.0.saturating_sub(FIRST_TOKEN);
        (t / 2, t & 1 == 0)
    }

    /// The raw end is done: for a `udp-listen` source, its socket is
    /// closed and the listener takes what the source sends next.
    pub fn local_gone(&self) -> bool {
        self.raw.state == RawState::Gone
    }

    /// The client's address (the local client's, for the client role).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        self.ws.stream.register(registry, Self::ws_token(self.key))
    }

    pub fn ws_event(&mut self, r: Ready) {
        self.ws.rd.insert(self.ws.stream.widen(r));
    }
    pub fn raw_event(&mut self, r: Ready) {
        let r = match &self.raw.stream {
            Some(s) => s.widen(r),
            None => r,
        };
        self.raw.rd.insert(r);
    }

    pub fn finished(&self) -> bool {
        self.ws.state == WsState::Gone && matches!(self.raw.state, RawState::None | RawState::Gone)
    }

    pub(super) fn peer_label(&self) -> String {
        if let Some(c) = &self.client {
            return c.connector.label.clone();
        }
        match &self.choice {
            Some(c) if c.hub => format!("hub {}", c.address),
            Some(c) => c.address.to_string(),
            None => "-".into(),
        }
    }

    /// Do all the work readiness allows. Returns false when the session is finished.
    pub fn ready(&mut self, cx: &mut Ctx) -> bool {
        self.more = false;
        self.turn = TURN_BYTES;
        for _ in 0..MAX_ITERATIONS {
            let mut progress = false;
            progress |= self.client_read(cx);
            progress |= self.peer_write(cx);
            progress |= self.peer_read(cx);
            // Before our close frame can leave: a source that sees it and
            // sends again must reach the listener, not the old socket.
            progress |= self.release_datagram_local(cx);
            progress |= self.client_write(cx);
            progress |= self.advance(cx);
            if self.finished() {
                return false;
            }
            if !progress {
                return true;
            }
        }
        // Still busy: let other sessions run, come back without waiting for an event.
        self.more = true;
        true
    }

    /// Client role, a `udp-listen` source: once our close is queued and
    /// no other connection follows, let go of the datagram socket, so what
    /// the source sends next reaches the listener and a new connection
    /// (the server's last frames, if any, have no datagram to go to).
    fn release_datagram_local(&mut self, cx: &mut Ctx) -> bool {
        if self.client.is_some()
            && self.ws.state == WsState::Closing
            && self.raw.state == RawState::Open
            && self.raw.stream.as_ref().is_some_and(Stream::is_datagram)
            && !self.peer_pending()
            && !self.keeps_local()
        {
            self.drop_peer(cx);
            self.raw.state = RawState::Gone;
            return true;
        }
        false
    }

    pub(super) fn advance(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        if self.client.is_some() {
            if self.ws.state == WsState::Gone && self.keeps_local() {
                // The connection ended under a local side that stays.
                self.reconnect(cx);
                return true;
            }
            if matches!(
                self.ws.state,
                WsState::Dialing | WsState::Upgrading | WsState::Backoff
            ) && self.raw.state != RawState::Open
                && self.choice_connected()
            {
                self.give_up("the local side closed", cx);
                return true;
            }
            progress |= self.release_datagram_local(cx);
            if self.raw.eof
                && self.ws.state == WsState::Backoff
                && self
                    .raw
                    .input
                    .as_ref()
                    .is_none_or(crate::pool::InBuf::is_empty)
            {
                self.give_up("the local side closed while disconnected", cx);
                return true;
            }
        }
        if matches!(self.ws.state, WsState::Refusing | WsState::Flushing) && self.pending_out() == 0
        {
            // Server closes first (RFC 6455 7.1.1), then waits for the client's FIN.
            self.ws.stream.shutdown_write();
            self.ws.state = WsState::Lingering;
            self.begin_close(cx.now);
            progress = true;
        }
        if self.ws.state == WsState::Gone && self.raw.mirror.is_some() && !self.keeps_local() {
            self.raw.state = RawState::Gone;
        }
        if !matches!(
            self.ws.state,
            WsState::Open
                | WsState::Closing
                | WsState::Dialing
                | WsState::Upgrading
                | WsState::Backoff
        ) && self.raw.state == RawState::Open
            && !self.keeps_local()
        {
            self.raw.state = RawState::Draining;
            progress = true;
        }
        progress
    }

    pub(super) fn begin_close(&mut self, now: Instant) {
        self.close_deadline.get_or_insert(now + CLOSE_TIMEOUT);
    }

    /// Handle whatever deadline has passed.
    pub fn on_timeout(&mut self, cx: &mut Ctx) {
        let now = cx.now;
        if self.close_deadline.is_some_and(|d| now >= d) && self.keeps_local() {
            // The old connection did not close in time; the local side stays.
            debug!("conn {} close timed out", self.id);
            self.close_deadline = None;
            self.client_gone();
            return;
        }
        if self.close_deadline.is_some_and(|d| now >= d) {
            // A close handshake or drain that did not finish in time.
            debug!("conn {} close timed out", self.id);
            self.client_gone();
            self.discard_peer_queue();
            self.drop_peer(cx);
            self.raw.state = RawState::Gone;
            return;
        }
        match self.ws.state {
            WsState::Dialing | WsState::Upgrading if now >= self.deadline => {
                if matches!(self.raw.state, RawState::Resolving | RawState::Connecting) {
                    let label = self.local_label();
                    self.give_up(&format!("cannot connect to {label}: timed out"), cx);
                } else if self.ws.state == WsState::Upgrading {
                    self.upgrade_timed_out(cx);
                } else {
                    self.dial_failed("timed out", true, cx);
                }
            }
            WsState::Dialing | WsState::Upgrading | WsState::Backoff
                if self.client.is_some() && self.idle_passed(now) =>
            {
                // A local side that sends nothing while the server cannot
                // be reached (a udp-listen source that went away).
                self.give_up("idle timeout while disconnected", cx);
            }
            WsState::Backoff if self.retry_due(now) => self.dial(cx),
            WsState::Proxy if now >= self.deadline => {
                info!(
                    "conn {} {} closed: no PROXY header in time",
                    self.id, self.client_addr
                );
                self.client_gone();
            }
            WsState::Http if now >= self.deadline && self.ws.stream.handshaking() => {
                // No TLS to say 408 with.
                self.tls_failed("timed out", false);
                self.client_gone();
            }
            WsState::Http if now >= self.deadline => {
                self.refuse(408, "request not received in time", cx);
            }
            WsState::Waiting if now >= self.deadline => {
                let label = self.peer_label();
                let what = if self.verifying.is_some() {
                    "authentication"
                } else if self.raw.state == RawState::Querying {
                    "backend query"
                } else {
                    "peer connect"
                };
                self.refuse(502, &format!("{what} for {label} timed out"), cx);
            }
            WsState::Open => {
                let limits = self.limits(cx.shared);
                let (ping, pong_timeout, idle) =
                    (limits.ping, limits.pong_timeout, limits.idle_timeout);
                match (self.ping_sent, ping) {
                    (Some(sent), _) if now >= sent + pong_timeout => {
                        self.fail(1001, "keep-alive timeout", cx);
                        // The client is not answering; do not wait long for its close.
                        self.close_deadline = Some(now + Duration::from_secs(1));
                        return;
                    }
                    (None, Some(p)) if now >= self.last_rx + p => {
                        self.ws
                            .out
                            .encode(OpCode::Control(Control::Ping), b"", cx.pool);
                        self.ping_sent = Some(now);
                    }
                    _ => {}
                }
                if idle.is_some_and(|idle| now >= self.last_activity + idle) {
                    // Nothing to reconnect for.
                    self.stop_retrying();
                    self.fail(1001, "idle timeout", cx);
                }
            }
            _ => {}
        }
    }

    /// The earliest instant [`on_timeout`](Self::on_timeout) has work.
    pub fn next_deadline(&self, shared: &Shared) -> Option<Instant> {
        if self.finished() {
            return None;
        }
        let limits = self.limits(shared);
        let min = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let phase = match self.ws.state {
            WsState::Proxy
            | WsState::Http
            | WsState::Waiting
            | WsState::Dialing
            | WsState::Upgrading => Some(self.deadline),
            WsState::Backoff => min(
                self.retry_at(),
                limits.idle_timeout.map(|i| self.last_activity + i),
            ),
            WsState::Open => {
                let ping = match (self.ping_sent, limits.ping) {
                    (Some(sent), _) => Some(sent + limits.pong_timeout),
                    (None, Some(p)) => Some(self.last_rx + p),
                    (None, None) => None,
                };
                min(ping, limits.idle_timeout.map(|i| self.last_activity + i))
            }
            _ => None,
        };
        min(phase, self.close_deadline)
    }

    /// SIGINT/SIGTERM: answer what is pending, close what is open with 1001.
    pub fn shutdown(&mut self, cx: &mut Ctx) {
        if self.client.is_some() {
            self.stop_dialling(cx);
        }
        match self.ws.state {
            WsState::Proxy => self.client_gone(),
            WsState::Http if self.ws.stream.handshaking() => self.client_gone(),
            WsState::Http | WsState::Waiting => self.refuse(503, "server shutting down", cx),
            WsState::Open => {
                self.flush_unframed(cx);
                let why = if self.client.is_some() {
                    "shutting down"
                } else {
                    "server shutting down"
                };
                self.fail(1001, why, cx);
            }
            _ => {}
        }
        self.begin_close(cx.now);
    }

    /// The client connection's idle timeout has passed.
    fn idle_passed(&self, now: Instant) -> bool {
        self.client.as_ref().is_some_and(|c| {
            c.connector
                .limits
                .idle_timeout
                .is_some_and(|i| now >= self.last_activity + i)
        })
    }

    /// The local peer of a client-role session is connected (or there is
    /// none to connect): only then does its end mean the session's end.
    fn choice_connected(&self) -> bool {
        !matches!(
            self.raw.state,
            RawState::None | RawState::Querying | RawState::Resolving | RawState::Connecting
        )
    }

    /// Release the sockets and log the outcome.
    pub fn close(&mut self, cx: &mut Ctx) {
        self.hub_leave(cx);
        // Taken, so the slot is released exactly once whatever calls this.
        if let (Some(ip), Some(p)) = (self.ip_slot.take(), &cx.shared.admission.per_ip) {
            p.release(ip);
        }
        // A password check still queued for this session is skipped.
        if let Some(c) = self.verify_cancel.take() {
            c.store(true, std::sync::atomic::Ordering::Release);
        }
        self.drop_peer(cx);
        self.ws.stream.deregister(cx.registry);
        for b in [self.raw.input.take(), self.ws.input.take()]
            .into_iter()
            .flatten()
        {
            cx.pool.give_in(b);
        }
        cx.pool.give_out(std::mem::take(&mut self.raw.msg));
        self.ws.out.clear(cx.pool);
        if self.client.is_some() && !self.opened {
            info!(
                "conn {} {} -> {} closed: no connection was opened",
                self.id,
                self.local_label(),
                self.peer_label()
            );
        } else if self.opened || self.client.is_some() {
            info!(
                "conn {} {} -> {} closed: {}, {:.1}s",
                self.id,
                self.local_label(),
                self.peer_label(),
                self.close_summary(),
                self.accepted.elapsed().as_secs_f64()
            );
        } else {
            debug!(
                "conn {} {} closed before upgrade",
                self.id, self.client_addr
            );
        }
    }
}

impl Session {
    /// `code C[ reason], N bytes in, M bytes out`: how a connection ended,
    /// for its log line.
    pub(super) fn close_summary(&self) -> String {
        let code = self
            .close_code
            .map_or("none".to_string(), |c| c.to_string());
        let sep = if self.close_reason.is_empty() {
            ""
        } else {
            " "
        };
        format!(
            "code {code}{sep}{}, {} bytes in, {} bytes out",
            self.close_reason, self.bytes_in, self.bytes_out
        )
    }
}

/// Read and drop until WouldBlock (a lingering close); returns
/// (EOF or error, progress). Only stream sockets linger.
pub(super) fn discard(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    rd: &mut Ready,
    scratch: &mut [u8],
) -> (bool, bool) {
    let mut progress = false;
    while rd.r() {
        match read(scratch) {
            Ok(0) => return (true, true),
            Ok(_) => progress = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => rd.clear_r(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (true, true),
        }
    }
    (false, progress)
}

#[cfg(test)]
mod tests;
