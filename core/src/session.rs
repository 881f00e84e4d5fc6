//! One bridged connection: a WebSocket client and its peer.
//!
//! The life cycle is documented in `SESSION.md` next to this file. In short,
//! each side has its own state; the session is finished when both sides are
//! gone. All I/O happens in [`Session::ready`], which the event loop calls
//! after recording readiness; an operation is attempted only while its
//! readiness bit is set, and a bit is cleared only by WouldBlock (edge
//! triggered, sozu's rule).
//!
//! Backpressure: the client is read only while nothing waits to be written
//! to the peer; the peer is read only while less than [`OUT_HIGH`] bytes wait
//! for the client. A slow side therefore pauses the fast one; nothing is
//! dropped and memory per connection stays bounded.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Registry, Token};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::backend::{Backend, Decision, PeerChoice, Request};
use crate::framing::{Framed, FramingState, Opcode};
use crate::handshake::{self, Parsed, Upgrade};
use crate::peer::{self, PeerAddress, PeerSock, Started};
use crate::pool::{InBuf, Pool};
use crate::workers::{Job, Outcome, Workers};
use crate::ws::frame::{self, encode, Event, FrameReader, Head, Role};

/// Stop reading the peer while this much waits for the client.
pub const OUT_HIGH: usize = 64 * 1024;
/// Work done per `ready` call before yielding to other sessions: rounds,
/// and bytes moved (both directions), so one bulk transfer cannot hold the
/// loop while other connections wait.
const MAX_ITERATIONS: usize = 32;
const TURN_BYTES: usize = 512 * 1024;
/// How long a closing side may take to finish its handshake or drain.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Readiness bits recorded from events, cleared by WouldBlock.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ready(u8);

impl Ready {
    const R: u8 = 1;
    const W: u8 = 2;
    /// The other side will send nothing more (FIN): sticky, kept even
    /// while backpressure stops reads, so a stalled session still learns it.
    const HUP: u8 = 4;
    /// The socket failed (RST): sticky like `HUP`.
    const ERR: u8 = 8;

    pub fn from_event(ev: &mio::event::Event) -> Ready {
        let mut r = 0;
        // Errors and hang-ups are reported by the next read or write, so
        // they make that operation happen; they are also kept apart, for
        // when backpressure means no read or write is coming.
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            r |= Self::R;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            r |= Self::W;
        }
        if ev.is_read_closed() {
            r |= Self::HUP;
        }
        if ev.is_error() {
            r |= Self::ERR;
        }
        Ready(r)
    }
    fn hup(self) -> bool {
        self.0 & Self::HUP != 0
    }
    fn err(self) -> bool {
        self.0 & Self::ERR != 0
    }
    fn r(self) -> bool {
        self.0 & Self::R != 0
    }
    fn w(self) -> bool {
        self.0 & Self::W != 0
    }
    fn clear_r(&mut self) {
        self.0 &= !Self::R;
    }
    fn clear_w(&mut self) {
        self.0 &= !Self::W;
    }
    fn insert(&mut self, o: Ready) {
        self.0 |= o.0;
    }
}

/// Loop-wide settings and shared buffers, lent to a session while it runs.
pub struct Env {
    pub backend: std::sync::Arc<dyn Backend>,
    pub ping: Option<Duration>,
    pub pong_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_message_size: usize,
    pub now: Instant,
    pub pool: Pool,
}

/// What a session needs from the loop while it runs.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub workers: &'a Workers,
    pub env: &'a mut Env,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Reading the upgrade request.
    Http,
    /// Request complete; waiting for the backend and the peer connect.
    Waiting,
    /// Writing an HTTP error response.
    Refusing,
    Open,
    /// Our close frame is queued; waiting for the client's.
    Closing,
    /// Close handshake done; writing what is left.
    Flushing,
    /// Write side shut; discarding input until EOF so the kernel does not
    /// answer unread data with a reset that could destroy our last bytes.
    Lingering,
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    None,
    Querying,
    Resolving,
    Connecting,
    Open,
    /// No more input will come from the client: write what is queued, then
    /// shut down the write side.
    Draining,
    /// Write side shut; discarding input until EOF.
    Lingering,
    Gone,
}

pub struct Session {
    pub id: u64,
    key: usize,
    client: TcpStream,
    client_addr: SocketAddr,
    crd: Ready,
    prd: Ready,
    cstate: ClientState,
    pstate: PeerState,
    peer: Option<PeerSock>,
    mirror: bool,
    peer_eof: bool,

    http: Vec<u8>,
    upgrade: Option<Box<Upgrade>>,
    choice: Option<Box<Chosen>>,
    addrs: Vec<SocketAddr>,
    addr_next: usize,
    connect_error: Option<io::Error>,

    /// Frames from the client, parsed as they arrive.
    reader: FrameReader,
    /// Client bytes read and not yet done with; lent by the pool only
    /// while it holds some. `win.data()[..parsed]` is parsed: dead frame
    /// headers, and the payload in `pend` not yet written to the peer.
    win: Option<InBuf>,
    parsed: usize,
    /// Unmasked client payload for a stream peer: `raw()[pend.0..pend.1]`
    /// of `win`, gathered into one run so one write sends it all.
    pend: (usize, usize),
    /// A whole message, for peers that need one: a datagram, or the mirror.
    msg: Vec<u8>,
    /// `msg` is complete and waits to be sent as one datagram.
    msg_done: bool,
    framing: Option<Box<dyn FramingState>>,
    /// Bytes for the client: HTTP response, then frames.
    out: Vec<u8>,
    out_pos: usize,
    /// Peer bytes not yet framed.
    from_peer: Option<InBuf>,
    /// How many of the trailing unframed bytes arrived since framing last said "more".
    fresh: usize,

    accepted: Instant,
    /// Handshake or connect deadline.
    deadline: Instant,
    /// Set when either side starts closing: the whole close must end by then.
    close_deadline: Option<Instant>,
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
}

/// What the backend chose, kept until the peer is connected.
struct Chosen {
    address: PeerAddress,
    protocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl Session {
    pub fn new(
        id: u64,
        key: usize,
        client: TcpStream,
        client_addr: SocketAddr,
        env: &Env,
    ) -> Session {
        let now = env.now;
        Session {
            id,
            key,
            client,
            client_addr,
            crd: Ready::default(),
            prd: Ready::default(),
            cstate: ClientState::Http,
            pstate: PeerState::None,
            peer: None,
            mirror: false,
            peer_eof: false,
            http: Vec::new(),
            upgrade: None,
            choice: None,
            addrs: Vec::new(),
            addr_next: 0,
            connect_error: None,
            reader: FrameReader::new(Role::Server, env.max_message_size),
            win: None,
            parsed: 0,
            pend: (0, 0),
            msg: Vec::new(),
            msg_done: false,
            framing: None,
            out: Vec::new(),
            out_pos: 0,
            from_peer: None,
            fresh: 0,
            accepted: now,
            deadline: now + env.handshake_timeout,
            close_deadline: None,
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
        }
    }

    pub fn client_token(key: usize) -> Token {
        Token(key * 2)
    }
    fn peer_token(&self) -> Token {
        Token(self.key * 2 + 1)
    }

    pub fn client_mut(&mut self) -> &mut TcpStream {
        &mut self.client
    }

    pub fn client_event(&mut self, r: Ready) {
        self.crd.insert(r);
    }
    pub fn peer_event(&mut self, r: Ready) {
        self.prd.insert(r);
    }

    pub fn finished(&self) -> bool {
        self.cstate == ClientState::Gone && matches!(self.pstate, PeerState::None | PeerState::Gone)
    }

    fn peer_label(&self) -> String {
        match &self.choice {
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

    // ---------------------------------------------------------------- client

    fn client_read(&mut self, cx: &mut Ctx) -> bool {
        match self.cstate {
            ClientState::Http => self.read_request(cx),
            ClientState::Open | ClientState::Closing => self.read_frames(cx),
            ClientState::Lingering => {
                let (gone, progress) = discard(
                    |b| self.client.read(b),
                    &mut self.crd,
                    cx.env.pool.scratch(),
                );
                if gone {
                    self.client_gone();
                }
                progress
            }
            _ => false,
        }
    }

    fn read_request(&mut self, cx: &mut Ctx) -> bool {
        if !self.crd.r() {
            return false;
        }
        let mut chunk = [0u8; 2048];
        loop {
            match self.client.read(&mut chunk) {
                Ok(0) => {
                    // Closed before asking for anything: nobody to answer.
                    self.client_gone();
                    return true;
                }
                Ok(n) => {
                    self.http.extend_from_slice(&chunk[..n]);
                    match handshake::parse(&self.http) {
                        Parsed::Incomplete => continue,
                        Parsed::Refused(r) => {
                            let headers = r.headers.clone();
                            self.refuse_with(r.status, &r.reason, &headers, cx);
                            return true;
                        }
                        Parsed::Upgrade(u) => {
                            self.on_request(u, cx);
                            return true;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.crd.clear_r();
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.client_gone();
                    return true;
                }
            }
        }
    }

    fn on_request(&mut self, u: Upgrade, cx: &mut Ctx) {
        self.cstate = ClientState::Waiting;
        self.deadline = cx.env.now + cx.env.connect_timeout;
        let request = Request {
            target: u.target.clone(),
            headers: u.headers.clone(),
            protocols: u.protocols.clone(),
            client: self.client_addr,
            tls: false,
        };
        self.upgrade = Some(Box::new(u));
        let backend = cx.env.backend.clone();
        if backend.blocking() {
            self.pstate = PeerState::Querying;
            cx.workers.submit(
                self.key,
                self.id,
                Job::Query {
                    backend,
                    request: Box::new(request),
                },
            );
        } else {
            let decision = backend.query(&request);
            self.on_decision(decision, cx);
        }
    }

    /// A worker finished a job for this session.
    pub fn on_outcome(&mut self, outcome: Outcome, cx: &mut Ctx) {
        match (outcome, self.pstate) {
            (Outcome::Queried(d), PeerState::Querying) => self.on_decision(d, cx),
            (Outcome::Resolved(Ok(addrs)), PeerState::Resolving) if !addrs.is_empty() => {
                self.addrs = addrs;
                self.addr_next = 0;
                self.connect_next(cx);
            }
            (Outcome::Resolved(r), PeerState::Resolving) => {
                let why = match r {
                    Ok(_) => "no addresses".to_string(),
                    Err(e) => e.to_string(),
                };
                let label = self.peer_label();
                self.refuse(502, &format!("cannot resolve peer {label}: {why}"), cx);
            }
            // The session moved on (timed out, shut down): nothing to do.
            _ => {}
        }
    }

    fn on_decision(&mut self, d: Decision, cx: &mut Ctx) {
        let choice: PeerChoice = match d {
            Decision::Reject { status, reason } => return self.refuse(status, &reason, cx),
            Decision::Peer(c) => c,
        };
        match choice.framing.new_state(choice.framing_config.as_deref()) {
            Ok(f) => self.framing = Some(f),
            Err(e) => {
                return self.refuse(
                    500,
                    &format!("framing '{}' rejected its config: {e}", choice.framing_name),
                    cx,
                )
            }
        }
        let protocol = match (choice.protocol, &self.upgrade) {
            (Some(i), Some(u)) => u.protocols.get(i).cloned(),
            _ => None,
        };
        self.choice = Some(Box::new(Chosen {
            address: choice.address.clone(),
            protocol,
            headers: choice.headers,
        }));
        match &choice.address {
            PeerAddress::Mirror => {
                self.mirror = true;
                self.pstate = PeerState::Open;
                self.open_ws(cx);
            }
            PeerAddress::Tcp(hp) | PeerAddress::Udp(hp) => match hp.literal() {
                Some(a) => {
                    self.addrs = vec![a];
                    self.connect_next(cx);
                }
                None => {
                    // getaddrinfo blocks: never on the loop thread.
                    self.pstate = PeerState::Resolving;
                    cx.workers.submit(
                        self.key,
                        self.id,
                        Job::Resolve {
                            host: hp.host.clone(),
                            port: hp.port,
                        },
                    );
                }
            },
            PeerAddress::Unix(_) | PeerAddress::UnixDgram(_) => {
                self.addrs.clear();
                self.connect_next(cx);
            }
        }
    }

    /// Try the next resolved address (or the Unix path).
    fn connect_next(&mut self, cx: &mut Ctx) {
        let Some(address) = self.choice.as_ref().map(|c| c.address.clone()) else {
            return;
        };
        loop {
            let target = match address {
                PeerAddress::Unix(_) | PeerAddress::UnixDgram(_) if self.addr_next == 0 => None,
                PeerAddress::Tcp(_) | PeerAddress::Udp(_) if self.addr_next < self.addrs.len() => {
                    Some(self.addrs[self.addr_next])
                }
                _ => {
                    let why = self
                        .connect_error
                        .take()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "no address".into());
                    return self.refuse(
                        502,
                        &format!("cannot connect to peer {address}: {why}"),
                        cx,
                    );
                }
            };
            self.addr_next += 1;
            let started = peer::start(&address, target).and_then(|s| {
                let (mut sock, done) = match s {
                    Started::Connected(s) => (s, true),
                    Started::InProgress(s) => (s, false),
                };
                sock.register(cx.registry, self.peer_token())?;
                Ok((sock, done))
            });
            match started {
                Ok((sock, done)) => {
                    self.peer = Some(sock);
                    self.prd = Ready::default();
                    if done {
                        self.peer_connected(cx);
                    } else {
                        self.pstate = PeerState::Connecting;
                    }
                    return;
                }
                Err(e) => self.connect_error = Some(e),
            }
        }
    }

    fn check_connect(&mut self, cx: &mut Ctx) -> bool {
        if !self.prd.w() {
            return false;
        }
        let Some(sock) = self.peer.as_mut() else {
            return false;
        };
        match sock.connect_result() {
            Ok(true) => {
                self.peer_connected(cx);
                true
            }
            Ok(false) => {
                self.prd.clear_w();
                false
            }
            Err(e) => {
                self.drop_peer(cx);
                self.connect_error = Some(e);
                self.connect_next(cx);
                true
            }
        }
    }

    fn peer_connected(&mut self, cx: &mut Ctx) {
        self.pstate = PeerState::Open;
        self.open_ws(cx);
    }

    /// Send the 101 and start speaking WebSocket.
    fn open_ws(&mut self, cx: &mut Ctx) {
        let Some(u) = self.upgrade.take() else { return };
        let (protocol, headers) = match &self.choice {
            Some(c) => (c.protocol.as_deref(), c.headers.as_slice()),
            None => (None, &[][..]),
        };
        handshake::switching_protocols(&u.accept, protocol, headers, &mut self.out);
        // Frames pipelined behind the request are already here: hand them
        // over and look at them now, no new event will announce them.
        let rest = self.http.get(u.head_len..).unwrap_or(&[]);
        if !rest.is_empty() {
            let mut b = cx.env.pool.take_in();
            let n = rest.len().min(b.spare().len());
            b.spare()[..n].copy_from_slice(&rest[..n]);
            b.filled(n);
            self.win = Some(b);
        }
        self.http = Vec::new();
        self.crd.insert(Ready(Ready::R));
        self.cstate = ClientState::Open;
        self.last_rx = cx.env.now;
        self.last_activity = cx.env.now;
        self.opened = true;
        info!(
            "conn {} {} -> {} open{}",
            self.id,
            self.client_addr,
            self.peer_label(),
            match protocol {
                Some(p) => format!(" (protocol {p})"),
                None => String::new(),
            }
        );
    }

    /// Read client frames and pass their payload on: to a stream peer as
    /// it arrives, gathered into one write per pass; to a datagram peer or
    /// the mirror as whole messages. Reading stops only when the buffer is
    /// full of payload the peer has not taken, so a connection holds one
    /// read buffer whatever the size of its messages, and a close frame or
    /// a hang-up behind a stalled peer is still seen while there is room.
    fn read_frames(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        let mut reads = 64;
        loop {
            if !matches!(self.cstate, ClientState::Open | ClientState::Closing) {
                break;
            }
            // A datagram waits for the peer, or echoes wait for the client.
            if self.msg_done || (self.mirror && self.pending_out() >= OUT_HIGH) {
                break;
            }
            if self.turn == 0 {
                self.more = true;
                break;
            }
            let step = match self.win.as_mut() {
                Some(b) => self.reader.next(&mut b.data_mut()[self.parsed..]),
                None => Ok(None),
            };
            match step {
                Err(f) => {
                    self.fail_client(f.code, f.reason, cx);
                    return true;
                }
                Ok(Some((used, ev))) => {
                    let at = self.parsed;
                    self.parsed += used;
                    progress = true;
                    self.last_rx = cx.env.now;
                    self.ping_sent = None;
                    self.on_frame_event(ev, at, cx);
                }
                Ok(None) => {
                    // All that was read is parsed: one write for what it held.
                    if self.pend.0 < self.pend.1 {
                        if self.prd.w() {
                            let before = self.peer_queued();
                            self.flush_peer(cx);
                            progress |= self.peer_queued() != before;
                        }
                    } else {
                        self.release_parsed();
                    }
                    if !self.crd.r() {
                        break;
                    }
                    if reads == 0 {
                        self.more = true;
                        break;
                    }
                    reads -= 1;
                    let buf = self.win.get_or_insert_with(|| cx.env.pool.take_in());
                    if self.parsed == 0 {
                        buf.compact();
                    }
                    if buf.spare().is_empty() {
                        // Full of payload the peer has not taken: wait for it.
                        break;
                    }
                    match read_some(&mut self.client, buf.spare()) {
                        Ok(0) => {
                            self.client_hung_up(cx);
                            return true;
                        }
                        Ok(n) => {
                            buf.filled(n);
                            self.turn = self.turn.saturating_sub(n);
                            progress = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.crd.clear_r();
                            break;
                        }
                        Err(_) => {
                            self.client_hung_up(cx);
                            return true;
                        }
                    }
                }
            }
        }
        if matches!(self.cstate, ClientState::Open | ClientState::Closing) {
            if self.crd.err() {
                // Reset while its data waited for the peer: no read will say so.
                self.client_hung_up(cx);
                return true;
            }
            if self.crd.hup() && self.crd.r() && self.close_deadline.is_none() {
                // The client sent all it will, but the peer does not take it:
                // what is accepted may still be written until the close deadline.
                debug!("conn {} client hung up while the peer stalls", self.id);
                self.begin_close(cx.env.now);
            }
        }
        self.release_win(cx);
        progress
    }

    fn on_frame_event(&mut self, ev: Event, at: usize, cx: &mut Ctx) {
        match ev {
            Event::Nothing | Event::Pong => {}
            Event::Data {
                opcode,
                start,
                len,
                last,
                ..
            } => self.on_payload(opcode, at + start, len, last, cx),
            Event::Ping(p) => {
                // After our close frame only the client's close may follow.
                if self.cstate == ClientState::Open {
                    self.ensure_out(cx);
                    encode(&mut self.out, OpCode::Control(Control::Pong), p.as_slice());
                }
            }
            Event::Close(code, reason) => {
                if self.close_code.is_none() {
                    self.close_code = Some(code.unwrap_or(1005));
                    self.close_reason = String::from_utf8_lossy(reason.as_slice()).into_owned();
                }
                if self.cstate == ClientState::Open {
                    // Echo the client's close (RFC 6455 5.5.1); ours, if we
                    // sent one first, already went out.
                    self.ensure_out(cx);
                    let mut payload = [0u8; 125];
                    let mut n = 0;
                    if let Some(c) = code {
                        payload[..2].copy_from_slice(&c.to_be_bytes());
                        let r = reason.as_slice();
                        payload[2..2 + r.len()].copy_from_slice(r);
                        n = 2 + r.len();
                    }
                    encode(
                        &mut self.out,
                        OpCode::Control(Control::Close),
                        &payload[..n],
                    );
                }
                self.cstate = ClientState::Flushing;
                self.stop_peer_writes(cx.env.now);
            }
        }
    }

    /// A piece of a client message, at `start` of the unconsumed input.
    fn on_payload(&mut self, opcode: Opcode, start: usize, len: usize, last: bool, cx: &mut Ctx) {
        self.last_activity = cx.env.now;
        let Some(buf) = self.win.as_mut() else { return };
        let at = buf.offset() + start;
        if self.mirror {
            if self.cstate == ClientState::Open {
                if self.msg.capacity() == 0 {
                    self.msg = cx.env.pool.take_out();
                }
                self.msg.extend_from_slice(&buf.raw()[at..at + len]);
                if last {
                    self.ensure_out(cx);
                    encode(&mut self.out, frame::data_opcode(opcode), &self.msg);
                    let n = self.msg.len() as u64;
                    self.bytes_in += n;
                    self.bytes_out += n;
                    cx.env.pool.give_out(std::mem::take(&mut self.msg));
                }
            }
            return;
        }
        if self.pstate != PeerState::Open {
            debug!(
                "conn {} peer gone, {len} bytes from the client dropped",
                self.id
            );
            return;
        }
        self.bytes_in += len as u64;
        if self.peer.as_ref().is_some_and(PeerSock::is_datagram) {
            // One message, one datagram: kept whole until its last piece.
            if self.msg.capacity() == 0 {
                self.msg = cx.env.pool.take_out();
            }
            self.msg.extend_from_slice(&buf.raw()[at..at + len]);
            if last {
                self.msg_done = true;
                self.flush_peer(cx);
            }
            return;
        }
        if len == 0 {
            return;
        }
        // Stream peers: payload needs no boundaries, so pieces are joined
        // in place over the headers between them, for one write.
        if self.pend.0 == self.pend.1 {
            self.pend = (at, at + len);
        } else {
            if self.pend.1 != at {
                buf.raw_mut().copy_within(at..at + len, self.pend.1);
            }
            self.pend.1 += len;
        }
    }

    /// The client's socket ended (EOF or error) without a close handshake.
    fn client_hung_up(&mut self, cx: &mut Ctx) {
        self.close_code.get_or_insert(1006);
        self.client_gone();
        self.stop_peer_writes(cx.env.now);
    }

    /// Parsed input with no payload left to write is done with.
    fn release_parsed(&mut self) {
        if self.pend.0 == self.pend.1 {
            self.pend = (0, 0);
            if let Some(b) = self.win.as_mut() {
                b.consume(self.parsed);
            }
            self.parsed = 0;
        }
    }

    /// Give the input buffer back while it holds nothing: idle connections own none.
    fn release_win(&mut self, cx: &mut Ctx) {
        if self.parsed == 0 && self.win.as_ref().is_some_and(InBuf::is_empty) {
            if let Some(b) = self.win.take() {
                cx.env.pool.give_in(b);
            }
        }
    }

    /// Bytes queued for the peer.
    fn peer_queued(&self) -> usize {
        let dgram = if self.msg_done { self.msg.len() } else { 0 };
        self.pend.1 - self.pend.0 + dgram
    }

    /// Anything queued for the peer (an empty datagram counts).
    fn peer_pending(&self) -> bool {
        self.pend.0 < self.pend.1 || self.msg_done
    }

    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn ensure_out(&mut self, cx: &mut Ctx) {
        if self.out.capacity() == 0 {
            self.out = cx.env.pool.take_out();
        }
    }

    fn client_write(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        while self.out_pos < self.out.len() && self.crd.w() {
            match self.client.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.client_failed(cx.env.now);
                    return true;
                }
                Ok(n) => {
                    self.out_pos += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.crd.clear_w(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.client_failed(cx.env.now);
                    return true;
                }
            }
        }
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out_pos = 0;
            self.out.clear();
            // Give the buffer back: idle connections hold none.
            cx.env.pool.give_out(std::mem::take(&mut self.out));
        }
        progress
    }

    /// Nothing more can be said to the client: let it see EOF now, even if
    /// the peer side still drains.
    fn client_gone(&mut self) {
        if self.cstate != ClientState::Gone {
            let _ = self.client.shutdown(std::net::Shutdown::Both);
            self.cstate = ClientState::Gone;
        }
    }

    fn client_failed(&mut self, now: Instant) {
        self.close_code.get_or_insert(1006);
        self.client_gone();
        self.out.clear();
        self.out_pos = 0;
        self.stop_peer_writes(now);
    }

    /// Close the WebSocket with `code`; the peer gets everything already
    /// accepted, then EOF.
    fn fail(&mut self, code: u16, reason: &str, cx: &mut Ctx) {
        if self.cstate == ClientState::Open {
            debug!("conn {} closing with {code}: {reason}", self.id);
            let (payload, len) = frame::close_payload(code, reason);
            self.ensure_out(cx);
            encode(
                &mut self.out,
                OpCode::Control(Control::Close),
                &payload[..len],
            );
            self.close_code = Some(code);
            self.close_reason = reason.to_string();
            self.cstate = ClientState::Closing;
        }
        self.begin_close(cx.env.now);
        // Until the client's close arrives it may still send data, already
        // on the wire when our close left; the peer must get it.
        if self.cstate != ClientState::Closing {
            self.stop_peer_writes(cx.env.now);
        }
    }

    /// The client broke the protocol: its stream cannot be parsed any
    /// further (tungstenite would return the same error forever), so send
    /// the close frame and stop reading frames (RFC 6455 7.1.7).
    fn fail_client(&mut self, code: u16, reason: &str, cx: &mut Ctx) {
        let was_open = self.cstate == ClientState::Open;
        self.fail(code, reason, cx);
        if was_open || self.cstate == ClientState::Closing {
            if !was_open {
                // Already closing: the error ends the wait for the client's close.
                self.close_code.get_or_insert(code);
            }
            self.cstate = ClientState::Flushing;
        }
    }

    fn refuse(&mut self, status: u16, reason: &str, cx: &mut Ctx) {
        self.refuse_with(status, reason, &[], cx)
    }

    fn refuse_with(&mut self, status: u16, reason: &str, headers: &[(&str, &str)], cx: &mut Ctx) {
        info!(
            "conn {} {} -> {} refused: {status} {reason}",
            self.id,
            self.client_addr,
            self.peer_label()
        );
        self.drop_peer(cx);
        self.pstate = PeerState::Gone;
        self.out.clear();
        self.out_pos = 0;
        handshake::error_response(status, reason, headers, &mut self.out);
        self.http = Vec::new();
        self.cstate = ClientState::Refusing;
        self.begin_close(cx.env.now);
        self.close_code = Some(status);
    }

    // ------------------------------------------------------------------ peer

    fn peer_write(&mut self, cx: &mut Ctx) -> bool {
        match self.pstate {
            PeerState::Connecting => self.check_connect(cx),
            PeerState::Open | PeerState::Draining => {
                let before = self.peer_queued();
                if before > 0 && self.prd.w() {
                    self.flush_peer(cx);
                }
                let progress = self.peer_queued() != before;
                if self.pstate == PeerState::Draining && !self.peer_pending() {
                    if let Some(p) = self.peer.as_ref() {
                        p.shutdown_write();
                    }
                    if self.peer_eof || self.peer.as_ref().is_none_or(PeerSock::is_datagram) {
                        self.drop_peer(cx);
                        self.pstate = PeerState::Gone;
                    } else {
                        self.pstate = PeerState::Lingering;
                        self.begin_close(cx.env.now);
                    }
                    return true;
                }
                progress
            }
            _ => false,
        }
    }

    /// Write what waits for the peer: the gathered payload run, or one datagram.
    fn flush_peer(&mut self, cx: &mut Ctx) {
        let Some(peer) = self.peer.as_mut() else {
            self.discard_peer_queue();
            return;
        };
        if self.pend.0 < self.pend.1 {
            let Some(buf) = self.win.as_ref() else {
                self.pend = (0, 0);
                return;
            };
            while self.pend.0 < self.pend.1 {
                match peer.write(&buf.raw()[self.pend.0..self.pend.1]) {
                    Ok(0) => return self.peer_failed(io::ErrorKind::WriteZero.into(), cx),
                    Ok(n) => self.pend.0 += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.prd.clear_w();
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.peer_failed(e, cx),
                }
            }
            self.release_parsed();
        }
        while self.msg_done {
            let Some(peer) = self.peer.as_mut() else {
                return;
            };
            match peer.write(&self.msg) {
                Ok(_) => {
                    self.msg_done = false;
                    cx.env.pool.give_out(std::mem::take(&mut self.msg));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.prd.clear_w();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    self.msg_done = false;
                    self.msg.clear();
                    return self.fail(1009, "message too large for one datagram", cx);
                }
                Err(e) => return self.peer_failed(e, cx),
            }
        }
    }

    fn peer_read(&mut self, cx: &mut Ctx) -> bool {
        match self.pstate {
            PeerState::Open if self.cstate == ClientState::Open && !self.peer_eof => {
                self.read_peer_data(cx)
            }
            PeerState::Lingering => {
                let Some(p) = self.peer.as_mut() else {
                    return false;
                };
                let (gone, progress) = discard(|b| p.read(b), &mut self.prd, cx.env.pool.scratch());
                if gone {
                    self.drop_peer(cx);
                    self.pstate = PeerState::Gone;
                }
                progress
            }
            _ => false,
        }
    }

    fn read_peer_data(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        let mut budget = 16;
        while self.prd.r() && self.pending_out() < OUT_HIGH && self.cstate == ClientState::Open {
            if budget == 0 || self.turn == 0 {
                self.more = true;
                break;
            }
            budget -= 1;
            let Some(peer) = self.peer.as_mut() else {
                break;
            };
            let buf = self.from_peer.get_or_insert_with(|| cx.env.pool.take_in());
            if buf.is_full() && !buf.make_room(cx.env.max_message_size) {
                self.fail(1009, "peer message exceeds the maximum message size", cx);
                return true;
            }
            let datagram = peer.is_datagram();
            match peer.read(buf.spare()) {
                Ok(0) if !datagram => {
                    progress = true;
                    self.peer_eof(cx);
                    break;
                }
                Ok(0) => {
                    // An empty datagram is an empty message.
                    progress = true;
                    self.ensure_out(cx);
                    encode(&mut self.out, OpCode::Data(Data::Binary), &[]);
                }
                Ok(n) => {
                    progress = true;
                    buf.filled(n);
                    self.turn = self.turn.saturating_sub(n);
                    self.fresh += n;
                    self.last_activity = cx.env.now;
                    if datagram {
                        self.frame_datagram(cx);
                    } else {
                        self.frame_peer_data(cx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.prd.clear_r(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.peer_failed(e, cx);
                    return true;
                }
            }
        }
        self.release_in(cx);
        progress
    }

    /// Run the framing function over the unframed bytes; frames leave
    /// through [`write_parts`] at most [`MAX_PARTS`] at a time.
    fn frame_peer_data(&mut self, cx: &mut Ctx) {
        loop {
            let (Some(buf), Some(framing)) = (self.from_peer.as_mut(), self.framing.as_mut())
            else {
                return;
            };
            let mut parts = [Part::EMPTY; MAX_PARTS];
            let mut n = 0;
            let mut failure = None;
            while !buf.is_empty() && n < MAX_PARTS {
                let data = buf.data();
                let fresh = self.fresh.min(data.len());
                match framing.frame(data, fresh) {
                    Framed::More => {
                        self.fresh = 0;
                        break;
                    }
                    Framed::Message { len, opcode } if len > 0 && len <= data.len() => {
                        parts[n] = Part::new(opcode, buf.offset(), len);
                        n += 1;
                        self.bytes_out += len as u64;
                        buf.consume(len);
                        self.fresh = fresh.min(buf.data().len());
                    }
                    Framed::Discard(len) if len > 0 && len <= data.len() => {
                        buf.consume(len);
                        self.fresh = fresh.min(buf.data().len());
                    }
                    Framed::Error(e) => {
                        failure = Some(format!("framing failed: {e}"));
                        break;
                    }
                    other => {
                        failure = Some(format!(
                            "framing returned {other:?} for {} buffered bytes",
                            data.len()
                        ));
                        break;
                    }
                }
            }
            let more = n == MAX_PARTS && !buf.is_empty();
            if n > 0 {
                let queued = self.out_pos < self.out.len();
                if write_parts(
                    &mut self.client,
                    &mut self.crd,
                    queued,
                    buf.raw(),
                    &parts[..n],
                    &mut self.out,
                    &mut cx.env.pool,
                )
                .is_err()
                {
                    return self.client_failed(cx.env.now);
                }
            }
            if let Some(e) = failure {
                warn!("conn {} {e}", self.id);
                return self.fail(1011, &e, cx);
            }
            if !more {
                return;
            }
        }
    }

    /// One datagram is one message: boundaries are the peer's, so the
    /// framing function only chooses the opcode (or drops the datagram).
    fn frame_datagram(&mut self, cx: &mut Ctx) {
        let (Some(buf), Some(framing)) = (self.from_peer.as_mut(), self.framing.as_mut()) else {
            return;
        };
        let data = buf.data();
        let n = data.len();
        let opcode = match framing.frame(data, n) {
            Framed::Message { len, opcode } if len == n => Some(opcode),
            Framed::Discard(len) if len == n => None,
            Framed::Error(e) => {
                let e = format!("framing failed: {e}");
                warn!("conn {} {e}", self.id);
                return self.fail(1011, &e, cx);
            }
            // The framing wanted to cut elsewhere: the datagram still goes whole.
            _ => framing.finish(data),
        };
        if let Some(op) = opcode {
            self.bytes_out += n as u64;
            let part = [Part::new(op, buf.offset(), n)];
            let queued = self.out_pos < self.out.len();
            if write_parts(
                &mut self.client,
                &mut self.crd,
                queued,
                buf.raw(),
                &part,
                &mut self.out,
                &mut cx.env.pool,
            )
            .is_err()
            {
                return self.client_failed(cx.env.now);
            }
        }
        if let Some(buf) = self.from_peer.as_mut() {
            buf.consume(n);
        }
        self.fresh = 0;
    }

    /// Frame what the framing function never finished, so an orderly close loses nothing.
    fn flush_unframed(&mut self, cx: &mut Ctx) {
        let (Some(buf), Some(framing)) = (self.from_peer.as_mut(), self.framing.as_mut()) else {
            return;
        };
        let data = buf.data();
        if !data.is_empty() {
            if let Some(op) = framing.finish(data) {
                if self.out.capacity() == 0 {
                    self.out = cx.env.pool.take_out();
                }
                encode(&mut self.out, frame::data_opcode(op), data);
                self.bytes_out += data.len() as u64;
            }
            let n = data.len();
            buf.consume(n);
        }
        self.release_in(cx);
    }

    fn release_in(&mut self, cx: &mut Ctx) {
        if self.from_peer.as_ref().is_some_and(InBuf::is_empty) {
            if let Some(b) = self.from_peer.take() {
                cx.env.pool.give_in(b);
            }
        }
    }

    fn peer_eof(&mut self, cx: &mut Ctx) {
        self.peer_eof = true;
        self.prd.clear_r();
        if self.cstate == ClientState::Open {
            self.flush_unframed(cx);
            self.fail(1000, "peer closed the connection", cx);
        }
    }

    fn peer_failed(&mut self, e: io::Error, cx: &mut Ctx) {
        debug!("conn {} peer failed: {e}", self.id);
        self.discard_peer_queue();
        self.drop_peer(cx);
        self.pstate = PeerState::Gone;
        if self.cstate == ClientState::Open {
            self.fail(1014, &format!("peer connection failed: {e}"), cx);
        }
    }

    fn begin_close(&mut self, now: Instant) {
        self.close_deadline.get_or_insert(now + CLOSE_TIMEOUT);
    }

    fn discard_peer_queue(&mut self) {
        self.pend = (0, 0);
        self.msg.clear();
        self.msg_done = false;
        if let Some(b) = self.win.as_mut() {
            b.consume(self.parsed);
        }
        self.parsed = 0;
    }

    fn stop_peer_writes(&mut self, now: Instant) {
        self.begin_close(now);
        match self.pstate {
            PeerState::Open => self.pstate = PeerState::Draining,
            PeerState::Querying
            | PeerState::Resolving
            | PeerState::Connecting
            | PeerState::None => self.pstate = PeerState::Gone,
            _ => {}
        }
    }

    fn drop_peer(&mut self, cx: &mut Ctx) {
        if let Some(mut p) = self.peer.take() {
            p.deregister(cx.registry);
        }
    }

    // ----------------------------------------------------------- transitions

    fn advance(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        if matches!(self.cstate, ClientState::Refusing | ClientState::Flushing)
            && self.pending_out() == 0
        {
            // Server closes first (RFC 6455 7.1.1), then waits for the client's FIN.
            let _ = self.client.shutdown(std::net::Shutdown::Write);
            self.cstate = ClientState::Lingering;
            self.begin_close(cx.env.now);
            progress = true;
        }
        if self.cstate == ClientState::Gone && self.mirror {
            self.pstate = PeerState::Gone;
        }
        if !matches!(self.cstate, ClientState::Open | ClientState::Closing)
            && self.pstate == PeerState::Open
        {
            self.pstate = PeerState::Draining;
            progress = true;
        }
        progress
    }

    /// Handle whatever deadline has passed.
    pub fn on_timeout(&mut self, cx: &mut Ctx) {
        let now = cx.env.now;
        if self.close_deadline.is_some_and(|d| now >= d) {
            // A close handshake or drain that did not finish in time.
            debug!("conn {} close timed out", self.id);
            self.client_gone();
            self.discard_peer_queue();
            self.drop_peer(cx);
            self.pstate = PeerState::Gone;
            return;
        }
        match self.cstate {
            ClientState::Http if now >= self.deadline => {
                self.refuse(408, "request not received in time", cx);
            }
            ClientState::Waiting if now >= self.deadline => {
                let label = self.peer_label();
                let what = if self.pstate == PeerState::Querying {
                    "backend query"
                } else {
                    "peer connect"
                };
                self.refuse(502, &format!("{what} for {label} timed out"), cx);
            }
            ClientState::Open => {
                match (self.ping_sent, cx.env.ping) {
                    (Some(sent), _) if now >= sent + cx.env.pong_timeout => {
                        self.fail(1001, "keep-alive timeout", cx);
                        // The client is not answering; do not wait long for its close.
                        self.close_deadline = Some(now + Duration::from_secs(1));
                        return;
                    }
                    (None, Some(p)) if now >= self.last_rx + p => {
                        self.ensure_out(cx);
                        encode(&mut self.out, OpCode::Control(Control::Ping), b"");
                        self.ping_sent = Some(now);
                    }
                    _ => {}
                }
                if cx
                    .env
                    .idle_timeout
                    .is_some_and(|idle| now >= self.last_activity + idle)
                {
                    self.fail(1001, "idle timeout", cx);
                }
            }
            _ => {}
        }
    }

    /// The earliest instant [`on_timeout`](Self::on_timeout) has work.
    pub fn next_deadline(&self, env: &Env) -> Option<Instant> {
        if self.finished() {
            return None;
        }
        let min = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let phase = match self.cstate {
            ClientState::Http | ClientState::Waiting => Some(self.deadline),
            ClientState::Open => {
                let ping = match (self.ping_sent, env.ping) {
                    (Some(sent), _) => Some(sent + env.pong_timeout),
                    (None, Some(p)) => Some(self.last_rx + p),
                    (None, None) => None,
                };
                min(ping, env.idle_timeout.map(|i| self.last_activity + i))
            }
            _ => None,
        };
        min(phase, self.close_deadline)
    }

    /// SIGINT/SIGTERM: answer what is pending, close what is open with 1001.
    pub fn shutdown(&mut self, cx: &mut Ctx) {
        match self.cstate {
            ClientState::Http | ClientState::Waiting => {
                self.refuse(503, "server shutting down", cx)
            }
            ClientState::Open => {
                self.flush_unframed(cx);
                self.fail(1001, "server shutting down", cx);
            }
            _ => {}
        }
        self.begin_close(cx.env.now);
    }

    /// Release the sockets and log the outcome.
    pub fn close(&mut self, cx: &mut Ctx) {
        self.drop_peer(cx);
        let _ = cx.registry.deregister(&mut self.client);
        for b in [self.from_peer.take(), self.win.take()]
            .into_iter()
            .flatten()
        {
            cx.env.pool.give_in(b);
        }
        cx.env.pool.give_out(std::mem::take(&mut self.msg));
        cx.env.pool.give_out(std::mem::take(&mut self.out));
        if self.opened {
            let code = self
                .close_code
                .map_or("none".to_string(), |c| c.to_string());
            info!(
                "conn {} {} -> {} closed: code {code}{}{}, {} bytes in, {} bytes out, {:.1}s",
                self.id,
                self.client_addr,
                self.peer_label(),
                if self.close_reason.is_empty() {
                    ""
                } else {
                    " "
                },
                self.close_reason,
                self.bytes_in,
                self.bytes_out,
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

/// Frames sent with one writev at most.
const MAX_PARTS: usize = 16;

/// One outbound frame: its header, and where its payload sits in the peer buffer.
#[derive(Clone, Copy)]
struct Part {
    head: Head,
    start: usize,
    len: usize,
}

impl Part {
    const EMPTY: Part = Part {
        head: Head::EMPTY,
        start: 0,
        len: 0,
    };

    fn new(op: Opcode, start: usize, len: usize) -> Part {
        Part {
            head: Head::data(op, len),
            start,
            len,
        }
    }
}

/// Send frames whose payloads sit in `raw`: with one writev straight from
/// there when the client is writable and nothing is `queued` before them;
/// whatever is not written goes to the end of `out`, keeping the order.
/// Err: the client is gone.
fn write_parts(
    sock: &mut TcpStream,
    rd: &mut Ready,
    queued: bool,
    raw: &[u8],
    parts: &[Part],
    out: &mut Vec<u8>,
    pool: &mut Pool,
) -> io::Result<()> {
    let mut iov = [io::IoSlice::new(&[]); 2 * MAX_PARTS];
    let mut k = 0;
    for p in parts {
        iov[k] = io::IoSlice::new(p.head.as_slice());
        iov[k + 1] = io::IoSlice::new(&raw[p.start..p.start + p.len]);
        k += 2;
    }
    let mut written = 0;
    while rd.w() && !queued {
        match sock.write_vectored(&iov[..k]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written = n;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => rd.clear_w(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut skip = written;
    for slice in &iov[..k] {
        if skip >= slice.len() {
            skip -= slice.len();
            continue;
        }
        if out.capacity() == 0 {
            *out = pool.take_out();
        }
        out.extend_from_slice(&slice[skip..]);
        skip = 0;
    }
    Ok(())
}

/// Read and drop until WouldBlock (a lingering close); returns
/// (EOF or error, progress). Only stream sockets linger.
fn discard(
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

/// One read, retried when a signal interrupts it.
fn read_some(sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match sock.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
