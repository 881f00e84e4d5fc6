//! The WebSocket end: its stream, role, handshake state, frame reader,
//! input buffer and output queue; reading frames and handing their payload
//! to the raw end; writing what is queued for the WebSocket peer.

use std::io;

use log::debug;
use tungstenite::protocol::frame::coding::{Control, OpCode};

use super::hub_end;
use super::out_queue::OutQueue;
use super::{discard, Ctx, RawState, Session, OUT_HIGH};
use crate::framing::Opcode;
use crate::pool::InBuf;
use crate::transport::{Ready, Stream};
use crate::ws::frame::{self, Control125, Event, FrameReader, Role};
use crate::ws::upgrade_server::{self, Parsed, Upgrade};

/// The largest message a datagram peer gets: one UDP datagram's limit, so
/// the whole message a datagram peer needs stays small.
pub(super) const MAX_DATAGRAM: usize = 65_507;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WsState {
    /// Reading the PROXY header its listener requires (`--proxy-protocol`).
    Proxy,
    /// Reading the upgrade request.
    Http,
    /// Request complete; waiting for the backend and the peer connect.
    Waiting,
    /// Client role: connecting its local peer, resolving the server's
    /// name, connecting, TLS handshake.
    Dialing,
    /// Client role: the upgrade request is sent; reading the answer.
    Upgrading,
    /// Client role: waiting to dial again (`--retry`); no socket.
    Backoff,
    /// Writing an HTTP error response.
    Refusing,
    Open,
    /// Our close frame is queued; waiting for the other side's.
    Closing,
    /// Close handshake done; writing what is left.
    Flushing,
    /// Write side shut; discarding input until EOF so the kernel does not
    /// answer unread data with a reset that could destroy our last bytes.
    Lingering,
    Gone,
}

pub(super) struct WsEnd {
    pub(super) stream: Stream,
    pub(super) rd: Ready,
    pub(super) state: WsState,
    /// The upgrade request as it arrives.
    pub(super) http: Vec<u8>,
    pub(super) upgrade: Option<Box<Upgrade>>,
    /// Frames in, parsed as they arrive; it holds the role, which decides
    /// whether frames in must be masked.
    pub(super) reader: FrameReader,
    /// Bytes read and not yet done with; lent by the pool only while it
    /// holds some. `input.data()[..parsed]` is parsed: dead frame headers,
    /// and the payload in `pend` not yet written to the raw end.
    pub(super) input: Option<InBuf>,
    pub(super) parsed: usize,
    /// Unmasked payload for a stream peer: `raw()[pend.0..pend.1]` of
    /// `input`, gathered into one run so one write sends it all.
    pub(super) pend: (usize, usize),
    /// Bytes to send: HTTP response, then frames.
    pub(super) out: OutQueue,
    /// The latest ping, answered once the queue drains below `OUT_HIGH`.
    pub(super) deferred_pong: Option<Control125>,
}

impl WsEnd {
    /// The end of an accepted connection: the server role reads an upgrade
    /// request first, and expects masked frames.
    pub(super) fn server(stream: Stream, max_message: usize, proxy_protocol: bool) -> WsEnd {
        WsEnd {
            stream,
            rd: Ready::default(),
            state: if proxy_protocol {
                WsState::Proxy
            } else {
                WsState::Http
            },
            http: Vec::new(),
            upgrade: None,
            reader: FrameReader::new(Role::Server, max_message),
            input: None,
            parsed: 0,
            pend: (0, 0),
            out: OutQueue::default(),
            deferred_pong: None,
        }
    }
}

impl WsEnd {
    /// The end of a connection we dial: no socket until the dial, frames
    /// in unmasked, every frame out masked.
    pub(super) fn client(max_message: usize) -> WsEnd {
        let mut out = OutQueue::default();
        out.set_masking();
        WsEnd {
            stream: Stream::Unconnected,
            rd: Ready::default(),
            state: WsState::Dialing,
            http: Vec::new(),
            upgrade: None,
            reader: FrameReader::new(Role::Client, max_message),
            input: None,
            parsed: 0,
            pend: (0, 0),
            out,
            deferred_pong: None,
        }
    }
}

impl Session {
    pub(super) fn client_read(&mut self, cx: &mut Ctx) -> bool {
        match self.ws.state {
            WsState::Proxy => self.read_proxy_header(),
            WsState::Http => self.read_request(cx),
            WsState::Upgrading => self.read_response(cx),
            WsState::Open | WsState::Closing => self.read_frames(cx),
            WsState::Lingering => {
                let (gone, progress) = discard(
                    |b| self.ws.stream.read(b),
                    &mut self.ws.rd,
                    cx.pool.scratch(),
                );
                if gone {
                    self.client_gone();
                }
                progress
            }
            _ => false,
        }
    }

    pub(super) fn read_request(&mut self, cx: &mut Ctx) -> bool {
        if !self.ws.rd.r() {
            return false;
        }
        let mut chunk = [0u8; 2048];
        loop {
            match self.ws.stream.read(&mut chunk) {
                Ok(0) => {
                    // Closed before asking for anything: nobody to answer.
                    self.client_gone();
                    return true;
                }
                Ok(n) => {
                    self.ws.http.extend_from_slice(&chunk[..n]);
                    match upgrade_server::parse(&self.ws.http) {
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
                    self.ws.rd.clear_r();
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.ws.stream.handshaking() {
                        self.tls_failed(&e.to_string(), e.kind() == io::ErrorKind::UnexpectedEof);
                    }
                    self.client_gone();
                    return true;
                }
            }
        }
    }

    /// Read client frames and pass their payload on: to a stream peer as
    /// it arrives, gathered into one write per pass; to a datagram peer or
    /// the mirror as whole messages. Reading stops only when the buffer is
    /// full of payload the peer has not taken, so a connection holds one
    /// read buffer whatever the size of its messages, and a close frame or
    /// a hang-up behind a stalled peer is still seen while there is room.
    pub(super) fn read_frames(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        let mut reads = 64;
        // Stopped by backpressure, not by the turn's budget or WouldBlock.
        let mut stalled = false;
        loop {
            if !matches!(self.ws.state, WsState::Open | WsState::Closing) {
                break;
            }
            // A datagram waits for the peer, or echoes wait for the client.
            // (Other peers' output never stops the upload: a client that
            // writes before it reads would deadlock against a peer that
            // writes while it reads. Pongs are bounded on their own.)
            if self.raw.msg_done || (self.raw.mirror.is_some() && self.pending_out() >= OUT_HIGH) {
                stalled = true;
                break;
            }
            if self.turn == 0 {
                self.more = true;
                break;
            }
            let step = match self.ws.input.as_mut() {
                Some(b) => self.ws.reader.next(&mut b.data_mut()[self.ws.parsed..]),
                None => Ok(None),
            };
            match step {
                Err(f) => {
                    self.fail_client(f.code, f.reason, cx);
                    return true;
                }
                Ok(Some((used, ev))) => {
                    let at = self.ws.parsed;
                    self.ws.parsed += used;
                    progress = true;
                    self.last_rx = cx.now;
                    self.ping_sent = None;
                    self.on_frame_event(ev, at, cx);
                }
                Ok(None) => {
                    // All that was read is parsed: one write for what it held.
                    if self.ws.pend.0 < self.ws.pend.1 {
                        if self.raw.rd.w() {
                            let before = self.peer_queued();
                            self.flush_peer(cx);
                            progress |= self.peer_queued() != before;
                        }
                    } else {
                        self.release_parsed();
                    }
                    if !self.ws.rd.r() {
                        break;
                    }
                    if reads == 0 {
                        self.more = true;
                        break;
                    }
                    reads -= 1;
                    let buf = self.ws.input.get_or_insert_with(|| cx.pool.take_in());
                    if self.ws.parsed == 0 {
                        buf.compact();
                    }
                    if buf.spare().is_empty() {
                        // Full of payload the peer has not taken: wait for it.
                        stalled = true;
                        break;
                    }
                    let asked = buf.spare().len();
                    match self.ws.stream.read(buf.spare()) {
                        Ok(0) => {
                            self.client_hung_up(cx);
                            return true;
                        }
                        Ok(n) => {
                            self.ws.stream.note_read(&mut self.ws.rd, n, asked);
                            buf.filled(n);
                            self.turn = self.turn.saturating_sub(n);
                            progress = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.ws.rd.clear_r();
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
        if stalled && matches!(self.ws.state, WsState::Open | WsState::Closing) {
            if self.ws.rd.err() {
                // Reset while its data waited for the peer: no read will say so.
                self.client_hung_up(cx);
                return true;
            }
            if self.ws.rd.hup() && self.ws.rd.r() && self.close_deadline.is_none() {
                // The client sent all it will, but the peer does not take it:
                // what is accepted may still be written until the close deadline.
                debug!("conn {} client hung up while the peer stalls", self.id);
                self.begin_close(cx.now);
                self.hung_up = Some(cx.now);
            }
        }
        self.release_win(cx);
        progress
    }

    pub(super) fn on_frame_event(&mut self, ev: Event, at: usize, cx: &mut Ctx) {
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
                if self.ws.state == WsState::Open {
                    if self.pending_out() >= OUT_HIGH {
                        // The client is not reading: answer only the latest
                        // ping once it does (RFC 6455 5.5.3), so pings cannot
                        // grow the queue.
                        self.ws.deferred_pong = Some(p);
                    } else {
                        self.ws
                            .out
                            .encode(OpCode::Control(Control::Pong), p.as_slice(), cx.pool);
                    }
                }
            }
            Event::Close(code, reason) => {
                self.server_closed(code);
                if self.close_code.is_none() {
                    self.close_code = Some(code.unwrap_or(1005));
                    self.close_reason = String::from_utf8_lossy(reason.as_slice()).into_owned();
                }
                if self.ws.state == WsState::Open {
                    // Echo the client's close (RFC 6455 5.5.1); ours, if we
                    // sent one first, already went out.
                    let mut payload = [0u8; 125];
                    let mut n = 0;
                    if let Some(c) = code {
                        payload[..2].copy_from_slice(&c.to_be_bytes());
                        let r = reason.as_slice();
                        payload[2..2 + r.len()].copy_from_slice(r);
                        n = 2 + r.len();
                    }
                    self.ws
                        .out
                        .encode(OpCode::Control(Control::Close), &payload[..n], cx.pool);
                }
                self.ws.state = WsState::Flushing;
                self.stop_peer_writes(cx.now);
            }
        }
    }

    /// A piece of a client message, at `start` of the unconsumed input.
    pub(super) fn on_payload(
        &mut self,
        opcode: Opcode,
        start: usize,
        len: usize,
        last: bool,
        cx: &mut Ctx,
    ) {
        self.last_activity = cx.now;
        if self.client.is_some() {
            self.connection_proven();
        }
        if self.drops_ws_payload(cx) {
            return;
        }
        let Some(buf) = self.ws.input.as_mut() else {
            return;
        };
        let at = buf.offset() + start;
        if let Some(mirror) = self.raw.mirror.as_mut() {
            if self.ws.state == WsState::Open {
                if let Some(msg) = mirror.take(&buf.raw()[at..at + len], last, cx.pool) {
                    self.ws.out.encode(frame::data_opcode(opcode), msg, cx.pool);
                    self.bytes_in += msg.len() as u64;
                    self.bytes_out += msg.len() as u64;
                    mirror.sent(cx.pool);
                }
            }
            return;
        }
        if self.raw.state != RawState::Open {
            debug!(
                "conn {} peer gone, {len} bytes from the client dropped",
                self.id
            );
            return;
        }
        self.bytes_in += len as u64;
        if let Some(m) = self.raw.hub.as_ref() {
            // A hub takes whole messages (`hub_end.rs`); none on a read-only listener.
            if cx.shared.limits.read_only {
                return;
            }
            let max = if m.datagram {
                MAX_DATAGRAM
            } else {
                cx.shared.limits.max_message_size
            };
            match hub_end::gather(&mut self.raw, &buf.raw()[at..at + len], last, max, cx.pool) {
                hub_end::Gathered::Part => {}
                hub_end::Gathered::Whole => {
                    self.hub_write(cx);
                }
                hub_end::Gathered::TooBig => {
                    self.fail_client(1009, "message too large for the hub's peer", cx)
                }
            }
            return;
        }
        if self.raw.stream.as_ref().is_some_and(Stream::is_datagram) {
            // One message, one datagram: kept whole until its last piece,
            // and refused as soon as it cannot fit one.
            if self.raw.msg.len() + len > MAX_DATAGRAM {
                self.raw.msg.clear();
                self.fail_client(1009, "message too large for one datagram", cx);
                return;
            }
            if self.raw.msg.capacity() == 0 {
                self.raw.msg = cx.pool.take_out();
            }
            self.raw.msg.extend_from_slice(&buf.raw()[at..at + len]);
            if last {
                self.raw.msg_done = true;
                self.flush_peer(cx);
            }
            return;
        }
        if len == 0 {
            return;
        }
        // Stream peers: payload needs no boundaries, so pieces are joined
        // in place over the headers between them, for one write.
        if self.ws.pend.0 == self.ws.pend.1 {
            self.ws.pend = (at, at + len);
        } else {
            if self.ws.pend.1 != at {
                buf.raw_mut().copy_within(at..at + len, self.ws.pend.1);
            }
            self.ws.pend.1 += len;
        }
    }

    /// A TLS client that never finished its handshake: one line, at
    /// info unless it just left (port scanners, health checks).
    pub(super) fn tls_failed(&self, why: &str, left: bool) {
        if left {
            debug!(
                "conn {} {} TLS handshake failed: {why}",
                self.id, self.client_addr
            );
        } else {
            log::info!(
                "conn {} {} TLS handshake failed: {why}",
                self.id,
                self.client_addr
            );
        }
    }

    /// The client's socket ended (EOF or error) without a close handshake.
    pub(super) fn client_hung_up(&mut self, cx: &mut Ctx) {
        self.close_code.get_or_insert(1006);
        self.client_gone();
        self.stop_peer_writes(cx.now);
    }

    /// Parsed input with no payload left to write is done with.
    pub(super) fn release_parsed(&mut self) {
        if self.ws.pend.0 == self.ws.pend.1 {
            self.ws.pend = (0, 0);
            if let Some(b) = self.ws.input.as_mut() {
                b.consume(self.ws.parsed);
            }
            self.ws.parsed = 0;
        }
    }

    /// Give the input buffer back while it holds nothing: idle connections own none.
    pub(super) fn release_win(&mut self, cx: &mut Ctx) {
        if self.ws.parsed == 0 && self.ws.input.as_ref().is_some_and(InBuf::is_empty) {
            if let Some(b) = self.ws.input.take() {
                cx.pool.give_in(b);
            }
        }
    }

    /// Bytes queued for the peer.
    pub(super) fn peer_queued(&self) -> usize {
        let dgram = if self.raw.msg_done {
            self.raw.msg.len()
        } else {
            0
        };
        self.ws.pend.1 - self.ws.pend.0 + dgram + self.raw.preface.len()
    }

    /// Anything queued for the peer (an empty datagram counts).
    pub(super) fn peer_pending(&self) -> bool {
        self.ws.pend.0 < self.ws.pend.1 || self.raw.msg_done || !self.raw.preface.is_empty()
    }

    pub(super) fn pending_out(&self) -> usize {
        self.ws.out.len()
    }

    pub(super) fn client_write(&mut self, cx: &mut Ctx) -> bool {
        if self.ws.state == WsState::Dialing {
            return self.check_dial(cx);
        }
        if self.ws.out.is_empty() || !self.ws.rd.w() {
            return false;
        }
        let mut writable = true;
        let r = self
            .ws
            .out
            .write_to(&mut self.ws.stream, &mut writable, cx.pool);
        if !writable {
            self.ws.rd.clear_w();
        }
        match r {
            Ok(n) => {
                if self.pending_out() < OUT_HIGH && self.ws.state == WsState::Open {
                    if let Some(p) = self.ws.deferred_pong.take() {
                        self.ws
                            .out
                            .encode(OpCode::Control(Control::Pong), p.as_slice(), cx.pool);
                    }
                }
                n > 0
            }
            Err(_) => {
                self.client_failed(cx);
                true
            }
        }
    }

    /// Nothing more can be said to the client: let it see EOF now, even if
    /// the peer side still drains.
    pub(super) fn client_gone(&mut self) {
        if self.ws.state != WsState::Gone {
            self.ws.stream.shutdown_both();
            self.ws.state = WsState::Gone;
        }
    }

    pub(super) fn client_failed(&mut self, cx: &mut Ctx) {
        self.close_code.get_or_insert(1006);
        self.client_gone();
        self.ws.out.clear(cx.pool);
        self.stop_peer_writes(cx.now);
    }

    /// Close the WebSocket with `code`; the peer gets everything already
    /// accepted, then EOF.
    pub(super) fn fail(&mut self, code: u16, reason: &str, cx: &mut Ctx) {
        if self.ws.state == WsState::Open {
            debug!("conn {} closing with {code}: {reason}", self.id);
            let (payload, len) = frame::close_payload(code, reason);
            self.ws
                .out
                .encode(OpCode::Control(Control::Close), &payload[..len], cx.pool);
            self.close_code = Some(code);
            self.close_reason = reason.to_string();
            self.ws.state = WsState::Closing;
        }
        self.begin_close(cx.now);
        // Until the client's close arrives it may still send data, already
        // on the wire when our close left; the peer must get it.
        if self.ws.state != WsState::Closing {
            self.stop_peer_writes(cx.now);
        }
    }

    /// The client broke the protocol: its stream cannot be parsed any
    /// further (tungstenite would return the same error forever), so send
    /// the close frame and stop reading frames (RFC 6455 7.1.7).
    pub(super) fn fail_client(&mut self, code: u16, reason: &str, cx: &mut Ctx) {
        let was_open = self.ws.state == WsState::Open;
        self.fail(code, reason, cx);
        if was_open || self.ws.state == WsState::Closing {
            if !was_open {
                // Already closing: the error ends the wait for the client's close.
                self.close_code.get_or_insert(code);
            }
            self.ws.state = WsState::Flushing;
        }
    }
}
