//! The raw end: the peer's socket (or the mirror), its framing function
//! and input buffer; writing client payload to the peer, and reading the
//! peer's bytes and framing them into messages for the WebSocket end.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, warn};
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::out_queue::{write_parts, Part, MAX_PARTS};
use super::{discard, Ctx, Session, WsState, CLOSE_TIMEOUT, HANG_UP_DRAIN, OUT_HIGH};
use crate::framing::{Framed, FramingState};
use crate::peer::mirror::Mirror;
use crate::pool::{InBuf, CHUNK};
use crate::transport::{Ready, Stream};
use crate::ws::frame;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawState {
    #[default]
    None,
    Querying,
    Resolving,
    Connecting,
    Open,
    /// No more input will come from the WebSocket end: write what is
    /// queued, then shut down the write side.
    Draining,
    /// Write side shut; discarding input until EOF.
    Lingering,
    Gone,
}

#[derive(Default)]
pub(super) struct RawEnd {
    pub(super) stream: Option<Stream>,
    pub(super) rd: Ready,
    pub(super) state: RawState,
    /// The mirror peer, in place of a stream.
    pub(super) mirror: Option<Mirror>,
    /// A fan-out hub's membership, in place of a stream (`hub_end.rs`).
    pub(super) hub: Option<Box<super::hub_end::HubMember>>,
    /// The peer sent EOF.
    pub(super) eof: bool,
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) addr_next: usize,
    pub(super) connect_error: Option<io::Error>,
    pub(super) framing: Option<Box<dyn FramingState>>,
    /// Peer bytes not yet framed.
    pub(super) input: Option<InBuf>,
    /// How many of the trailing unframed bytes arrived since framing last said "more".
    pub(super) fresh: usize,
    /// A whole message for a datagram peer.
    pub(super) msg: Vec<u8>,
    /// `msg` is complete and waits to be sent as one datagram.
    pub(super) msg_done: bool,
    /// Bytes the peer gets before any client byte: a PROXY header.
    pub(super) preface: Vec<u8>,
    /// Client role, `udp-listen`: datagrams the listener received for this
    /// source before its connection was open, sent as messages once it is.
    pub(super) early: std::collections::VecDeque<Vec<u8>>,
    pub(super) early_bytes: usize,
}

impl Session {
    pub(super) fn peer_write(&mut self, cx: &mut Ctx) -> bool {
        if self.in_hub() {
            return self.hub_write(cx);
        }
        match self.raw.state {
            RawState::Connecting => self.check_connect(cx),
            RawState::Open | RawState::Draining => {
                let before = (self.peer_queued(), self.peer_pending());
                // `peer_pending`, not the byte count: an empty datagram waits too.
                if before.1 && self.raw.rd.w() {
                    self.flush_peer(cx);
                }
                let progress = (self.peer_queued(), self.peer_pending()) != before;
                if self.raw.state == RawState::Draining && !self.peer_pending() {
                    if let Some(p) = self.raw.stream.as_mut() {
                        p.shutdown_write();
                    }
                    if self.raw.eof || self.raw.stream.as_ref().is_none_or(Stream::is_datagram) {
                        self.drop_peer(cx);
                        self.raw.state = RawState::Gone;
                    } else {
                        self.raw.state = RawState::Lingering;
                        self.begin_close(cx.now);
                    }
                    return true;
                }
                progress
            }
            _ => false,
        }
    }

    /// Write what waits for the peer: the gathered payload run, or one datagram.
    pub(super) fn flush_peer(&mut self, cx: &mut Ctx) {
        let Some(peer) = self.raw.stream.as_mut() else {
            self.discard_peer_queue();
            return;
        };
        // Before any client byte. A `tls://` peer's header went out in
        // clear in `check_connect`, before the handshake, and is empty here.
        while !self.raw.preface.is_empty() {
            match peer.write(&self.raw.preface) {
                Ok(0) => return self.peer_failed(io::ErrorKind::WriteZero.into(), cx),
                Ok(n) => {
                    self.raw.preface.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.raw.rd.clear_w();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.peer_failed(e, cx),
            }
        }
        if self.ws.pend.0 < self.ws.pend.1 {
            let Some(buf) = self.ws.input.as_ref() else {
                self.ws.pend = (0, 0);
                return;
            };
            while self.ws.pend.0 < self.ws.pend.1 {
                match peer.write(&buf.raw()[self.ws.pend.0..self.ws.pend.1]) {
                    Ok(0) => return self.peer_failed(io::ErrorKind::WriteZero.into(), cx),
                    Ok(n) => {
                        self.ws.pend.0 += n;
                        // A client that hung up behind a slow peer: its deadline
                        // is for a peer that takes nothing, not for a slow one,
                        // within a bound, so a trickle cannot hold it forever.
                        if let (Some(_), Some(h)) = (self.close_deadline, self.hung_up) {
                            self.close_deadline =
                                Some((cx.now + CLOSE_TIMEOUT).min(h + HANG_UP_DRAIN));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.raw.rd.clear_w();
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.peer_failed(e, cx),
                }
            }
            self.release_parsed();
        }
        while self.raw.msg_done {
            let Some(peer) = self.raw.stream.as_mut() else {
                return;
            };
            match peer.write(&self.raw.msg) {
                Ok(_) => {
                    self.raw.msg_done = false;
                    cx.pool.give_out(std::mem::take(&mut self.raw.msg));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.raw.rd.clear_w();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    self.raw.msg_done = false;
                    self.raw.msg.clear();
                    return self.fail(1009, "message too large for one datagram", cx);
                }
                Err(e) => return self.peer_failed(e, cx),
            }
        }
    }

    pub(super) fn peer_read(&mut self, cx: &mut Ctx) -> bool {
        if self.in_hub() {
            return self.hub_read(cx);
        }
        match self.raw.state {
            RawState::Open if self.ws.state == WsState::Open && !self.raw.eof => {
                if self.raw.rd.err() && self.pending_out() >= OUT_HIGH {
                    // Reset while the client is slow: no read is coming to say so.
                    self.peer_failed(io::ErrorKind::ConnectionReset.into(), cx);
                    return true;
                }
                if self.local_read_only() {
                    return self.discard_local(cx);
                }
                self.read_peer_data(cx)
            }
            // Disconnected: a read-only local side is still watched for
            // its end; another is held (`--retry`) or left in the kernel.
            RawState::Open if !self.raw.eof && self.local_read_only() => self.discard_local(cx),
            RawState::Open if !self.raw.eof => match self.holds_local() {
                Some(cap) => self.hold_local(cap, cx),
                None => false,
            },
            RawState::Lingering => {
                let Some(p) = self.raw.stream.as_mut() else {
                    return false;
                };
                let (gone, progress) = discard(|b| p.read(b), &mut self.raw.rd, cx.pool.scratch());
                if gone {
                    self.drop_peer(cx);
                    self.raw.state = RawState::Gone;
                }
                progress
            }
            _ => false,
        }
    }

    pub(super) fn read_peer_data(&mut self, cx: &mut Ctx) -> bool {
        let mut progress = false;
        let mut budget = 16;
        while self.raw.rd.r() && self.pending_out() < OUT_HIGH && self.ws.state == WsState::Open {
            if budget == 0 || self.turn == 0 {
                self.more = true;
                break;
            }
            budget -= 1;
            let Some(peer) = self.raw.stream.as_mut() else {
                break;
            };
            let datagram = peer.is_datagram();
            if datagram && self.raw.input.as_ref().is_some_and(|b| b.room() < CHUNK) {
                // A datagram longer than the room left would be cut short
                // without a word: read each one into a whole buffer.
                if let Some(old) = self.raw.input.replace(cx.pool.take_in()) {
                    cx.pool.give_in(old);
                }
            }
            let buf = self.raw.input.get_or_insert_with(|| cx.pool.take_in());
            if buf.is_full() && !buf.make_room(cx.shared.limits.max_message_size) {
                self.stop_retrying();
                self.fail(1009, "peer message exceeds the maximum message size", cx);
                return true;
            }
            let asked = buf.spare().len();
            match peer.read(buf.spare()) {
                Ok(0) if !datagram => {
                    progress = true;
                    self.peer_eof(cx);
                    break;
                }
                Ok(0) => {
                    // An empty datagram is an empty message.
                    progress = true;
                    self.ws.out.encode(OpCode::Data(Data::Binary), &[], cx.pool);
                }
                Ok(n) => {
                    progress = true;
                    peer.note_read(&mut self.raw.rd, n, asked);
                    buf.filled(n);
                    self.turn = self.turn.saturating_sub(n);
                    self.raw.fresh += n;
                    self.last_activity = cx.now;
                    if datagram {
                        self.frame_datagram(cx);
                    } else {
                        self.frame_peer_data(cx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.raw.rd.clear_r(),
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

    /// `--read-only` client connections: the local side's input is read
    /// and dropped, so its end is still seen.
    fn discard_local(&mut self, cx: &mut Ctx) -> bool {
        let Some(p) = self.raw.stream.as_mut() else {
            return false;
        };
        if p.is_datagram() {
            // Datagrams have no end; an empty one is a message like any.
            let mut progress = false;
            while self.raw.rd.r() {
                match p.read(cx.pool.scratch()) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.raw.rd.clear_r(),
                    Err(e) => {
                        self.peer_failed(e, cx);
                        return true;
                    }
                }
            }
            return progress;
        }
        let (gone, progress) = discard(|b| p.read(b), &mut self.raw.rd, cx.pool.scratch());
        if gone {
            self.peer_eof(cx);
        }
        progress
    }

    /// No connection yet (client role with `--retry`): hold what the
    /// local side offers, up to `cap` bytes, to send once one opens (a
    /// stream's bytes in the input buffer, framed then; datagrams whole,
    /// in order); beyond that the local side is not read (backpressure;
    /// for datagrams, the kernel's queue and then its drops).
    fn hold_local(&mut self, cap: usize, cx: &mut Ctx) -> bool {
        let mut progress = false;
        while self.raw.rd.r() {
            let Some(peer) = self.raw.stream.as_mut() else {
                break;
            };
            let datagram = peer.is_datagram();
            let got = if datagram {
                if self.raw.early_bytes >= cap {
                    break;
                }
                peer.read(cx.pool.scratch())
            } else {
                let buf = self.raw.input.get_or_insert_with(|| cx.pool.take_in());
                if buf.is_full() && (buf.raw().len() >= cap || !buf.make_room(cap)) {
                    break;
                }
                peer.read(buf.spare())
            };
            match got {
                Ok(0) if !datagram => {
                    self.raw.eof = true;
                    self.raw.rd.clear_r();
                    progress = true;
                }
                Ok(n) => {
                    if datagram {
                        self.raw.early_bytes += n;
                        self.raw.early.push_back(cx.pool.scratch()[..n].to_vec());
                    } else if let Some(buf) = self.raw.input.as_mut() {
                        buf.filled(n);
                    }
                    self.last_activity = cx.now;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.raw.rd.clear_r(),
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
    pub(super) fn frame_peer_data(&mut self, cx: &mut Ctx) {
        loop {
            let (Some(buf), Some(framing)) = (self.raw.input.as_mut(), self.raw.framing.as_mut())
            else {
                return;
            };
            let mut parts = [Part::EMPTY; MAX_PARTS];
            let mut n = 0;
            let mut failure = None;
            while !buf.is_empty() && n < MAX_PARTS {
                let data = buf.data();
                let fresh = self.raw.fresh.min(data.len());
                match framing.frame(data, fresh) {
                    Framed::More => {
                        self.raw.fresh = 0;
                        break;
                    }
                    Framed::Message { len, opcode } if len > 0 && len <= data.len() => {
                        parts[n] = Part::new(opcode, buf.offset(), len, self.ws.out.next_mask());
                        n += 1;
                        self.bytes_out += len as u64;
                        buf.consume(len);
                        self.raw.fresh = fresh.min(buf.data().len());
                    }
                    Framed::Discard(len) if len > 0 && len <= data.len() => {
                        buf.consume(len);
                        self.raw.fresh = fresh.min(buf.data().len());
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
            if n > 0 && self.send_parts(&parts[..n], cx).is_err() {
                return self.client_failed(cx);
            }
            if let Some(e) = failure {
                warn!("conn {} {e}", self.id);
                // The same bytes would fail the next connection too.
                self.stop_retrying();
                return self.fail(1011, &e, cx);
            }
            if !more {
                return;
            }
        }
    }

    /// One datagram is one message: boundaries are the peer's, so the
    /// framing function only chooses the opcode (or drops the datagram).
    pub(super) fn frame_datagram(&mut self, cx: &mut Ctx) {
        let (Some(buf), Some(framing)) = (self.raw.input.as_mut(), self.raw.framing.as_mut())
        else {
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
                self.stop_retrying();
                return self.fail(1011, &e, cx);
            }
            // The framing wanted to cut elsewhere: the datagram still goes whole.
            _ => framing.finish(data),
        };
        let mask = self.ws.out.next_mask();
        let part = opcode.map(|op| Part::new(op, buf.offset(), n, mask));
        buf.consume(n);
        self.raw.fresh = 0;
        if let Some(part) = part {
            self.bytes_out += n as u64;
            if self.send_parts(&[part], cx).is_err() {
                self.client_failed(cx);
            }
        }
    }

    /// Frame what the framing function never finished, so an orderly close loses nothing.
    pub(super) fn flush_unframed(&mut self, cx: &mut Ctx) {
        let (Some(buf), Some(framing)) = (self.raw.input.as_mut(), self.raw.framing.as_mut())
        else {
            return;
        };
        let data = buf.data();
        if !data.is_empty() {
            if let Some(op) = framing.finish(data) {
                self.ws.out.encode(frame::data_opcode(op), data, cx.pool);
                self.bytes_out += data.len() as u64;
            }
            let n = data.len();
            buf.consume(n);
        }
        self.release_in(cx);
    }

    /// Frames whose payload sits in the raw input buffer, to the WebSocket end.
    fn send_parts(&mut self, parts: &[Part], cx: &mut Ctx) -> io::Result<()> {
        let Some(buf) = self.raw.input.as_mut() else {
            return Ok(());
        };
        for p in parts {
            p.mask_payload(buf.raw_mut());
        }
        let mut writable = self.ws.rd.w();
        let r = write_parts(
            &mut self.ws.stream,
            &mut writable,
            &mut self.ws.out,
            buf,
            parts,
            cx.pool,
        );
        if !writable {
            self.ws.rd.clear_w();
        }
        r
    }

    /// Give the input buffer back when empty, and trade one grown for a
    /// large message for a pooled one once what it holds fits there, so a
    /// connection keeps no large buffer whatever it carried.
    pub(super) fn release_in(&mut self, cx: &mut Ctx) {
        let Some(b) = self.raw.input.as_ref() else {
            return;
        };
        if b.is_empty() {
            if let Some(b) = self.raw.input.take() {
                cx.pool.give_in(b);
            }
        } else if b.raw().len() > CHUNK && b.data().len() <= CHUNK / 2 {
            let mut small = cx.pool.take_in();
            let n = b.data().len();
            small.spare()[..n].copy_from_slice(b.data());
            small.filled(n);
            self.raw.input = Some(small);
        }
    }

    pub(super) fn peer_eof(&mut self, cx: &mut Ctx) {
        self.raw.eof = true;
        self.raw.rd.clear_r();
        if self.ws.state == WsState::Open {
            self.flush_unframed(cx);
            let why = if self.client.is_some() {
                "local side closed"
            } else {
                "peer closed the connection"
            };
            self.fail(1000, why, cx);
        }
    }

    pub(super) fn peer_failed(&mut self, e: io::Error, cx: &mut Ctx) {
        debug!("conn {} peer failed: {e}", self.id);
        self.discard_peer_queue();
        self.drop_peer(cx);
        self.raw.state = RawState::Gone;
        if self.ws.state == WsState::Open {
            self.fail(1014, &format!("peer connection failed: {e}"), cx);
        }
    }

    pub(super) fn discard_peer_queue(&mut self) {
        self.raw.preface = Vec::new();
        self.ws.pend = (0, 0);
        self.raw.msg.clear();
        self.raw.msg_done = false;
        if let Some(b) = self.ws.input.as_mut() {
            b.consume(self.ws.parsed);
        }
        self.ws.parsed = 0;
    }

    pub(super) fn stop_peer_writes(&mut self, now: Instant) {
        // Bounds the WebSocket end's close too: when it passes, a kept
        // local side moves on to the next connection (`on_timeout`).
        self.begin_close(now);
        if self.keeps_local() {
            // A client-role session reconnects; its local side stays open.
            return;
        }
        match self.raw.state {
            RawState::Open => self.raw.state = RawState::Draining,
            RawState::Querying | RawState::Resolving | RawState::Connecting | RawState::None => {
                self.raw.state = RawState::Gone
            }
            _ => {}
        }
    }

    pub(super) fn drop_peer(&mut self, cx: &mut Ctx) {
        if let Some(mut p) = self.raw.stream.take() {
            p.deregister(cx.registry);
        }
    }
}
