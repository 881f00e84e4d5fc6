//! Fan-out hubs: one peer connection shared by every client a backend
//! routes to the same peer address with `hub` on (issue 8).
//!
//! A hub lives in its event loop beside the sessions. It owns the peer's
//! stream (registered under its own token, [`FIRST_TOKEN`] up), the
//! framing state and input buffer, and the list of member sessions; each
//! member's raw end holds a membership instead of a stream
//! (`session/hub_end.rs`), the way the mirror's holds a `Mirror`. So there
//! is still one session state machine: only what its raw end is changes.
//!
//! - Peer to clients: each message the framing cuts is encoded once into a
//!   reference-counted frame ([`Bytes`]) and offered to every member, which
//!   queues the same slice, never a copy. A member's queue is bounded by
//!   `hub-queue`: over it the member is closed with 1008, or loses its
//!   oldest whole messages (`hub-overflow = drop-oldest`). The hub never
//!   stops reading for a slow member; its own buffers are the input buffer
//!   (one message at most) and the client messages below.
//! - Clients to peer: a member hands over whole messages only (gathered
//!   like a datagram peer's), so two clients' messages never interleave on
//!   a stream peer. While [`PEER_HIGH`] bytes wait for the peer, a member's
//!   next message is refused and the member stops reading its client; the
//!   hub wakes it when the queue drains.
//! - Life: the first member dials the peer with the session's own connect
//!   code (resolve, addresses in turn, TLS, the connect deadline) and hands
//!   the stream over once it is up; members arriving meanwhile wait and
//!   are answered 101, or the same refusal, with it. The peer's EOF or
//!   failure closes every member (1000, 1014). When the last member
//!   leaves, the peer is closed after `hub-linger`; a client arriving in
//!   between finds the hub still open.
//!
//! The loop runs a hub after the sessions of its turn (their messages are
//! then written with one writev) and then the sessions the hub woke.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use log::{debug, info, warn};
use mio::{Registry, Token};
use slab::Slab;

use crate::framing::{Framed, FramingState, Opcode};
use crate::pool::{InBuf, Pool};
use crate::session::Session;
use crate::transport::{Ready, Stream};
use crate::ws::frame::Head;

/// Hub tokens start here: far above any session's (two per connection
/// from `session::FIRST_TOKEN`) and below the loop's fixed tokens.
pub const FIRST_TOKEN: usize = 1 << (usize::BITS - 2);
const LAST_TOKEN: usize = usize::MAX - 64;
/// Client messages waiting for the peer: beyond this, a member's next
/// message waits in its session (and its client is not read).
pub const PEER_HIGH: usize = 64 * 1024;
/// Charged to a member's queue for each message besides its bytes: the
/// slot and slice it takes, so a flood of tiny messages is bounded too.
pub const PER_MESSAGE: usize = 64;
/// Peer reads per run before the other hubs and sessions get a turn.
const READS_PER_RUN: usize = 16;
/// How long a hub with no members left may take to write what they sent.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Slices written to the peer with one writev at most.
const MAX_IOV: usize = 64;

/// How a hub treats its members: the `defaultpeer` options `hub-queue`,
/// `hub-overflow` and `hub-linger` (a plugin's answer gets the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubOptions {
    /// Bytes that may wait for one member before the overflow policy applies.
    pub queue: usize,
    /// Over `queue`, drop the member's oldest whole messages instead of
    /// closing it with 1008.
    pub drop_oldest: bool,
    /// How long the peer connection outlives its last member.
    pub linger: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            queue: 1 << 20,
            drop_oldest: false,
            linger: Duration::ZERO,
        }
    }
}

/// Where a hub is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its first member is connecting the peer.
    Connecting,
    Open,
    /// The connect failed: waiting members get the same answer.
    Refused,
    /// The peer ended or failed: members are closed with its code.
    Ended,
    /// No member is left and the linger is over: what they sent is
    /// written, then the peer is closed.
    Closing,
}

/// What [`Hubs::join`] made of a new member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The first member: it connects the peer, then hands it over
    /// ([`Hubs::adopt`], or [`Hubs::refused`]).
    Connect,
    /// The peer is being connected: wait until the hub is `Open`.
    Wait,
    Open,
}

struct Hub {
    /// The peer address, as logged and as the index key.
    peer: String,
    options: HubOptions,
    state: State,
    /// The member that connects the peer, while `Connecting`.
    connector: (usize, u64),
    stream: Option<Stream>,
    rd: Ready,
    datagram: bool,
    framing: Option<Box<dyn FramingState>>,
    /// Peer bytes not yet framed; lent by the pool while it holds some.
    input: Option<InBuf>,
    /// How many of the trailing unframed bytes arrived since framing last said "more".
    fresh: usize,
    /// Member sessions (key, id): the id tells a reused slot apart.
    members: Vec<(usize, u64)>,
    /// Whole client messages for the peer, oldest first; `head` bytes of
    /// the front are written, `out_len` are not.
    out: VecDeque<Vec<u8>>,
    head: usize,
    out_len: usize,
    /// Members whose message waits for room in `out`.
    blocked: Vec<usize>,
    /// Set when the last member left: the peer closes then.
    linger_until: Option<Instant>,
    close_by: Option<Instant>,
    /// The code and reason members are closed (or refused) with.
    end: Option<(u16, String)>,
    messages: u64,
    to_peer: u64,
}

impl Hub {
    fn new(peer: String, options: HubOptions, connector: (usize, u64)) -> Hub {
        Hub {
            peer,
            options,
            state: State::Connecting,
            connector,
            stream: None,
            rd: Ready::default(),
            datagram: false,
            framing: None,
            input: None,
            fresh: 0,
            members: vec![connector],
            out: VecDeque::new(),
            head: 0,
            out_len: 0,
            blocked: Vec::new(),
            linger_until: None,
            close_by: None,
            end: None,
            messages: 0,
            to_peer: 0,
        }
    }

    /// Write what members sent, oldest first, one writev (or one datagram)
    /// at a time.
    fn write(&mut self, pool: &mut Pool) -> io::Result<()> {
        while !self.out.is_empty() && self.rd.w() {
            let Some(peer) = self.stream.as_mut() else {
                return Ok(());
            };
            if self.datagram {
                let Some(front) = self.out.front() else {
                    break;
                };
                match peer.write(front) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.rd.clear_w();
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                        warn!(
                            "hub {}: a client message is too large for one datagram, dropped",
                            self.peer
                        );
                    }
                    Err(e) => return Err(e),
                }
                if let Some(m) = self.out.pop_front() {
                    self.out_len -= m.len();
                    pool.give_out(m);
                }
                continue;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for (i, m) in self.out.iter().take(MAX_IOV).enumerate() {
                iov[k] = IoSlice::new(if i == 0 { &m[self.head..] } else { m });
                k += 1;
            }
            match peer.write_vectored(&iov[..k]) {
                Ok(0) if self.out_len > 0 => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    self.out_len -= n;
                    // Whole messages written go back to the pool.
                    while let Some(front) = self.out.front() {
                        let left = front.len() - self.head;
                        if n < left {
                            self.head += n;
                            break;
                        }
                        n -= left;
                        self.head = 0;
                        if let Some(m) = self.out.pop_front() {
                            pool.give_out(m);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.rd.clear_w(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read the peer and offer every message to every member. `Some`: the
    /// hub ends with this code and reason. `more`: stopped by the budget.
    fn read(
        &mut self,
        sessions: &mut Slab<Session>,
        pool: &mut Pool,
        max_message: usize,
        now: Instant,
        more: &mut bool,
    ) -> (bool, Option<(u16, String)>) {
        let mut delivered = false;
        let mut reads = READS_PER_RUN;
        while self.rd.r() {
            if reads == 0 {
                *more = true;
                break;
            }
            reads -= 1;
            let Some(peer) = self.stream.as_mut() else {
                break;
            };
            let buf = self.input.get_or_insert_with(|| pool.take_in());
            if buf.is_full() && !buf.make_room(max_message) {
                let why = "peer message exceeds the maximum message size";
                return (delivered, Some((1009, why.into())));
            }
            match peer.read(buf.spare()) {
                Ok(0) if !self.datagram => {
                    // What the framing never finished still goes out.
                    let (Some(buf), Some(framing)) = (self.input.as_mut(), self.framing.as_mut())
                    else {
                        return (delivered, Some((1000, "peer closed the connection".into())));
                    };
                    let data = buf.data();
                    if !data.is_empty() {
                        if let Some(op) = framing.finish(data) {
                            self.messages += 1;
                            offer(&self.members, sessions, &self.options, op, data, now);
                            delivered = true;
                        }
                    }
                    let n = data.len();
                    buf.consume(n);
                    return (delivered, Some((1000, "peer closed the connection".into())));
                }
                Ok(0) => {
                    // An empty datagram is an empty message.
                    self.messages += 1;
                    let members = &self.members;
                    offer(members, sessions, &self.options, Opcode::Binary, &[], now);
                    delivered = true;
                }
                Ok(n) => {
                    buf.filled(n);
                    self.fresh += n;
                    let cut = if self.datagram {
                        self.cut_datagram(sessions, now)
                    } else {
                        self.cut_stream(sessions, now)
                    };
                    match cut {
                        Ok(d) => delivered |= d,
                        Err(e) => {
                            warn!("hub {} {e}", self.peer);
                            return (delivered, Some((1011, e)));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.rd.clear_r(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return (
                        delivered,
                        Some((1014, format!("peer connection failed: {e}"))),
                    );
                }
            }
        }
        (delivered, None)
    }

    /// Run the framing function over the unframed bytes; each message is
    /// offered to the members.
    fn cut_stream(&mut self, sessions: &mut Slab<Session>, now: Instant) -> Result<bool, String> {
        let (Some(buf), Some(framing)) = (self.input.as_mut(), self.framing.as_mut()) else {
            return Ok(false);
        };
        let mut delivered = false;
        while !buf.is_empty() {
            let data = buf.data();
            let fresh = self.fresh.min(data.len());
            match framing.frame(data, fresh) {
                Framed::More => {
                    self.fresh = 0;
                    break;
                }
                Framed::Message { len, opcode } if len > 0 && len <= data.len() => {
                    self.messages += 1;
                    offer(
                        &self.members,
                        sessions,
                        &self.options,
                        opcode,
                        &data[..len],
                        now,
                    );
                    delivered = true;
                    buf.consume(len);
                    self.fresh = fresh.min(buf.data().len());
                }
                Framed::Discard(len) if len > 0 && len <= data.len() => {
                    buf.consume(len);
                    self.fresh = fresh.min(buf.data().len());
                }
                Framed::Error(e) => return Err(format!("framing failed: {e}")),
                other => {
                    return Err(format!(
                        "framing returned {other:?} for {} buffered bytes",
                        data.len()
                    ))
                }
            }
        }
        Ok(delivered)
    }

    /// One datagram is one message: the framing only chooses the opcode
    /// (or drops it).
    fn cut_datagram(&mut self, sessions: &mut Slab<Session>, now: Instant) -> Result<bool, String> {
        let (Some(buf), Some(framing)) = (self.input.as_mut(), self.framing.as_mut()) else {
            return Ok(false);
        };
        let data = buf.data();
        let n = data.len();
        let opcode = match framing.frame(data, n) {
            Framed::Message { len, opcode } if len == n => Some(opcode),
            Framed::Discard(len) if len == n => None,
            Framed::Error(e) => return Err(format!("framing failed: {e}")),
            _ => framing.finish(data),
        };
        if let Some(op) = opcode {
            self.messages += 1;
            offer(&self.members, sessions, &self.options, op, data, now);
        }
        buf.consume(n);
        self.fresh = 0;
        Ok(opcode.is_some())
    }

    /// Give the input buffer back once empty: a quiet hub owns none.
    fn release_in(&mut self, pool: &mut Pool) {
        if self.input.as_ref().is_some_and(InBuf::is_empty) {
            if let Some(b) = self.input.take() {
                pool.give_in(b);
            }
        }
    }

    /// Let go of the peer: its socket, buffers and queued messages.
    fn drop_peer(&mut self, registry: &Registry, pool: &mut Pool) {
        if let Some(mut s) = self.stream.take() {
            s.deregister(registry);
        }
        if let Some(b) = self.input.take() {
            pool.give_in(b);
        }
        for m in self.out.drain(..) {
            pool.give_out(m);
        }
        self.head = 0;
        self.out_len = 0;
        self.blocked.clear();
    }
}

/// Encode one message once and offer the frame to every member.
fn offer(
    members: &[(usize, u64)],
    sessions: &mut Slab<Session>,
    options: &HubOptions,
    op: Opcode,
    payload: &[u8],
    now: Instant,
) {
    if members.is_empty() {
        // Lingering: the message is cut (so the next one starts right) and dropped.
        return;
    }
    // Each frame its own exact allocation, shared by every member: a
    // member that stalls holding one frame keeps that frame alive, never a
    // buffer grown for a larger message or shared with later ones, so what
    // a member holds stays within what `hub-queue` counts for it.
    let head = Head::data(op, payload.len());
    let mut frame = BytesMut::with_capacity(head.as_slice().len() + payload.len());
    frame.extend_from_slice(head.as_slice());
    frame.extend_from_slice(payload);
    let frame: Bytes = frame.freeze();
    for &(key, id) in members {
        if let Some(s) = sessions.get_mut(key).filter(|s| s.id == id) {
            s.hub_offer(&frame, payload.len(), options, now);
        }
    }
}

/// The hubs of one event loop.
#[derive(Default)]
pub struct Hubs {
    slab: Slab<Hub>,
    /// Hubs new members may join, by peer address.
    by_peer: HashMap<String, usize>,
    /// Sessions to run: the hub offered them frames, opened, ended, or
    /// has room for their message again.
    wake: Vec<usize>,
    /// Hubs with work to do.
    dirty: Vec<usize>,
    /// The buffers `run` works from, kept so a run allocates nothing.
    spare: Vec<usize>,
}

impl Hubs {
    pub fn token(hk: usize) -> Token {
        Token(FIRST_TOKEN + hk)
    }

    /// The hub a token belongs to, if it is a hub's.
    pub fn owner(t: Token) -> Option<usize> {
        (FIRST_TOKEN..LAST_TOKEN)
            .contains(&t.0)
            .then(|| t.0 - FIRST_TOKEN)
    }

    /// Readiness of a hub's peer.
    pub fn event(&mut self, hk: usize, r: Ready) {
        if let Some(h) = self.slab.get_mut(hk) {
            let r = match &h.stream {
                Some(s) => s.widen(r),
                None => r,
            };
            h.rd.insert(r);
            self.dirty.push(hk);
        }
    }

    /// A session routed to `peer` with hub on: it joins the open hub of
    /// that address, or waits for the one connecting, or starts one.
    pub fn join(
        &mut self,
        peer: &str,
        key: usize,
        id: u64,
        options: HubOptions,
    ) -> (usize, Joined) {
        if let Some(&hk) = self.by_peer.get(peer) {
            if let Some(h) = self.slab.get_mut(hk) {
                h.members.push((key, id));
                h.linger_until = None;
                let joined = if h.state == State::Open {
                    Joined::Open
                } else {
                    Joined::Wait
                };
                debug!("hub {peer}: {} members", h.members.len());
                return (hk, joined);
            }
        }
        let hk = self
            .slab
            .insert(Hub::new(peer.to_string(), options, (key, id)));
        self.by_peer.insert(peer.to_string(), hk);
        (hk, Joined::Connect)
    }

    /// The connecting member's peer is up: the hub takes it over.
    pub fn adopt(
        &mut self,
        hk: usize,
        mut stream: Stream,
        framing: Option<Box<dyn FramingState>>,
        registry: &Registry,
    ) -> io::Result<()> {
        let Some(h) = self.slab.get_mut(hk) else {
            return Err(io::Error::other("the hub is gone"));
        };
        stream.register(registry, Self::token(hk))?;
        h.rd = Ready::default();
        // Records that came with the end of a TLS handshake raise no event.
        if stream.has_buffered_input() {
            h.rd.insert(Ready::readable());
        }
        h.datagram = stream.is_datagram();
        h.stream = Some(stream);
        h.framing = framing;
        h.state = State::Open;
        let n = h.members.len();
        let s = if n == 1 { "" } else { "s" };
        info!("hub {} open: peer connected for {n} client{s}", h.peer);
        self.wake.extend(h.members.iter().map(|m| m.0));
        self.dirty.push(hk);
        Ok(())
    }

    /// The connecting member was refused (its peer connect failed, timed
    /// out, or the server shuts down): so are the members waiting.
    pub fn refused(&mut self, hk: usize, status: u16, reason: &str) {
        let Some(h) = self.slab.get_mut(hk) else {
            return;
        };
        if h.state != State::Connecting {
            return;
        }
        h.state = State::Refused;
        h.end = Some((status, reason.to_string()));
        self.wake.extend(h.members.iter().map(|m| m.0));
        self.unindex(hk);
        self.dirty.push(hk);
    }

    pub fn state(&self, hk: usize) -> Option<State> {
        self.slab.get(hk).map(|h| h.state)
    }

    /// The code (or HTTP status) and reason a refused or ended hub gives
    /// its members.
    pub fn end_reason(&self, hk: usize) -> (u16, String) {
        match self.slab.get(hk).and_then(|h| h.end.clone()) {
            Some(e) => e,
            None => (1014, "hub gone".into()),
        }
    }

    /// A whole client message for the peer, written after the sessions of
    /// this turn. `Err` gives it back while the peer's queue is full: the
    /// member keeps it (and stops reading its client) until woken.
    pub fn send(
        &mut self,
        hk: usize,
        key: usize,
        msg: Vec<u8>,
        pool: &mut Pool,
    ) -> Result<(), Vec<u8>> {
        let Some(h) = self.slab.get_mut(hk).filter(|h| h.state == State::Open) else {
            // The peer is gone; the member is closed with the hub's end.
            pool.give_out(msg);
            return Ok(());
        };
        if h.out_len >= PEER_HIGH {
            if !h.blocked.contains(&key) {
                h.blocked.push(key);
            }
            return Err(msg);
        }
        if msg.is_empty() && !h.datagram {
            // Nothing to say to a stream.
            pool.give_out(msg);
            return Ok(());
        }
        h.out_len += msg.len();
        h.to_peer += msg.len() as u64;
        h.out.push_back(msg);
        self.dirty.push(hk);
        Ok(())
    }

    /// A member session is closing.
    pub fn leave(&mut self, hk: usize, key: usize, id: u64, now: Instant) {
        let Some(h) = self.slab.get_mut(hk) else {
            return;
        };
        if let Some(i) = h.members.iter().position(|m| *m == (key, id)) {
            h.members.swap_remove(i);
        }
        h.blocked.retain(|k| *k != key);
        let abandoned = h.state == State::Connecting && h.connector == (key, id);
        if abandoned {
            // Not through `refused`: a connector is refused before it closes.
            h.state = State::Refused;
            h.end = Some((502, format!("peer connect for {} abandoned", h.peer)));
            self.wake.extend(h.members.iter().map(|m| m.0));
        }
        if h.members.is_empty() {
            if h.state == State::Open {
                debug!(
                    "hub {}: last client left, closing in {:?}",
                    h.peer, h.options.linger
                );
                h.linger_until = Some(now + h.options.linger);
            }
            self.dirty.push(hk);
        }
        if abandoned {
            self.unindex(hk);
        }
    }

    /// Work waits without an event (a run cut short, sessions to wake).
    pub fn busy(&self) -> bool {
        !self.dirty.is_empty() || !self.wake.is_empty()
    }

    /// The earliest linger or close deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slab
            .iter()
            .filter_map(|(_, h)| match (h.linger_until, h.close_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
            .min()
    }

    /// Take the sessions to wake; give the vector back with
    /// [`Hubs::woken`] so no run allocates.
    pub fn take_wake(&mut self) -> Vec<usize> {
        let mut w = std::mem::take(&mut self.wake);
        w.sort_unstable();
        w.dedup();
        w
    }

    /// The vector [`Hubs::take_wake`] returned, emptied.
    pub fn woken(&mut self, mut w: Vec<usize>) {
        w.clear();
        if self.wake.is_empty() {
            self.wake = w;
        }
    }

    /// Run the hubs with work: write what members sent, read the peer and
    /// offer its messages, end, linger and close.
    pub fn run(
        &mut self,
        sessions: &mut Slab<Session>,
        registry: &Registry,
        pool: &mut Pool,
        max_message: usize,
        now: Instant,
    ) {
        if self.next_deadline().is_some_and(|d| d <= now) {
            for (hk, h) in self.slab.iter() {
                if h.linger_until.is_some_and(|d| d <= now) || h.close_by.is_some_and(|d| d <= now)
                {
                    self.dirty.push(hk);
                }
            }
        }
        let mut dirty = std::mem::replace(&mut self.dirty, std::mem::take(&mut self.spare));
        dirty.sort_unstable();
        dirty.dedup();
        for &hk in &dirty {
            self.run_one(hk, sessions, registry, pool, max_message, now);
        }
        dirty.clear();
        self.spare = dirty;
    }

    fn run_one(
        &mut self,
        hk: usize,
        sessions: &mut Slab<Session>,
        registry: &Registry,
        pool: &mut Pool,
        max_message: usize,
        now: Instant,
    ) {
        let Some(h) = self.slab.get_mut(hk) else {
            return;
        };
        if h.state == State::Open
            && h.members.is_empty()
            && h.linger_until.is_some_and(|d| d <= now)
        {
            h.state = State::Closing;
            h.linger_until = None;
            h.close_by = Some(now + CLOSE_TIMEOUT);
            self.unindex(hk);
        }
        let Some(h) = self.slab.get_mut(hk) else {
            return;
        };
        let mut end = None;
        match h.state {
            State::Open => {
                if let Err(e) = h.write(pool) {
                    end = Some((1014, format!("peer connection failed: {e}")));
                }
                if end.is_none() {
                    let mut more = false;
                    let (delivered, e) = h.read(sessions, pool, max_message, now, &mut more);
                    end = e;
                    h.release_in(pool);
                    if delivered {
                        self.wake.extend(h.members.iter().map(|m| m.0));
                    }
                    if more {
                        self.dirty.push(hk);
                    }
                }
                if h.out_len < PEER_HIGH && !h.blocked.is_empty() {
                    self.wake.append(&mut h.blocked);
                }
            }
            State::Closing => {
                let failed = h.write(pool).is_err();
                if failed || h.out.is_empty() || h.close_by.is_some_and(|d| d <= now) {
                    if let Some(s) = h.stream.as_mut() {
                        s.shutdown_write();
                    }
                    self.remove(hk, "no clients left", registry, pool);
                }
                return;
            }
            State::Connecting | State::Refused | State::Ended => {}
        }
        if let Some((code, reason)) = end {
            if code == 1000 {
                // The peer only stopped talking: what members sent before
                // still goes, as far as it takes it now, then its EOF.
                if let Some(h) = self.slab.get_mut(hk) {
                    let _ = h.write(pool);
                    if let Some(s) = h.stream.as_mut() {
                        s.shutdown_write();
                    }
                }
            }
            self.end(hk, code, reason, registry, pool);
        }
        if let Some(h) = self.slab.get(hk) {
            if matches!(h.state, State::Refused | State::Ended) && h.members.is_empty() {
                let why = h.end.as_ref().map_or(String::new(), |e| e.1.clone());
                self.remove(hk, &why, registry, pool);
            }
        }
    }

    /// The peer ended or failed: every member is closed with `code`.
    fn end(&mut self, hk: usize, code: u16, reason: String, registry: &Registry, pool: &mut Pool) {
        let Some(h) = self.slab.get_mut(hk) else {
            return;
        };
        debug!("hub {}: {reason}", h.peer);
        h.state = State::Ended;
        h.end = Some((code, reason));
        h.drop_peer(registry, pool);
        self.wake.extend(h.members.iter().map(|m| m.0));
        self.unindex(hk);
    }

    fn unindex(&mut self, hk: usize) {
        if let Some(h) = self.slab.get(hk) {
            if self.by_peer.get(&h.peer) == Some(&hk) {
                self.by_peer.remove(&h.peer);
            }
        }
    }

    fn remove(&mut self, hk: usize, why: &str, registry: &Registry, pool: &mut Pool) {
        self.unindex(hk);
        if let Some(mut h) = self.slab.try_remove(hk) {
            h.drop_peer(registry, pool);
            if h.state != State::Refused {
                info!(
                    "hub {} closed: {why}; {} messages to clients, {} bytes to the peer",
                    h.peer, h.messages, h.to_peer
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_do_not_meet_sessions_or_the_fixed_ones() {
        assert_eq!(Hubs::owner(Hubs::token(0)), Some(0));
        assert_eq!(Hubs::owner(Hubs::token(7)), Some(7));
        assert_eq!(
            Hubs::owner(Token(crate::session::FIRST_TOKEN + 2 * 1_000_000)),
            None
        );
        assert_eq!(Hubs::owner(Token(usize::MAX - 2)), None);
        assert_eq!(Hubs::owner(Token(3)), None);
    }

    #[test]
    fn members_join_one_hub_per_peer_and_the_last_one_out_starts_the_linger() {
        let mut hubs = Hubs::default();
        let opts = HubOptions {
            linger: Duration::from_secs(3),
            ..HubOptions::default()
        };
        let (a, j) = hubs.join("tcp://127.0.0.1:1", 0, 10, opts);
        assert_eq!(j, Joined::Connect);
        let (b, j) = hubs.join("tcp://127.0.0.1:1", 1, 11, opts);
        assert_eq!((b, j), (a, Joined::Wait));
        let (c, j) = hubs.join("tcp://127.0.0.1:2", 2, 12, opts);
        assert_ne!(c, a);
        assert_eq!(j, Joined::Connect);
        hubs.refused(c, 502, "cannot connect");
        assert_eq!(hubs.state(c), Some(State::Refused));
        assert_eq!(hubs.end_reason(c), (502, "cannot connect".to_string()));
        // Refused hubs take no one new.
        let (d, j) = hubs.join("tcp://127.0.0.1:2", 3, 13, opts);
        assert_ne!(d, c);
        assert_eq!(j, Joined::Connect);
        let now = Instant::now();
        hubs.slab[a].state = State::Open;
        hubs.leave(a, 0, 10, now);
        assert_eq!(hubs.slab[a].linger_until, None);
        hubs.leave(a, 1, 11, now);
        assert_eq!(
            hubs.slab[a].linger_until,
            Some(now + Duration::from_secs(3))
        );
        assert_eq!(hubs.next_deadline(), Some(now + Duration::from_secs(3)));
        // A client within the linger finds it open.
        let (e, j) = hubs.join("tcp://127.0.0.1:1", 4, 14, opts);
        assert_eq!((e, j), (a, Joined::Open));
        assert_eq!(hubs.slab[a].linger_until, None);
    }

    #[test]
    fn a_full_peer_queue_refuses_the_next_message_and_remembers_who_waits() {
        let mut hubs = Hubs::default();
        let mut pool = Pool::default();
        let (hk, _) = hubs.join("tcp://127.0.0.1:1", 0, 10, HubOptions::default());
        hubs.slab[hk].state = State::Open;
        assert!(hubs.send(hk, 0, vec![1; PEER_HIGH], &mut pool).is_ok());
        let back = hubs.send(hk, 0, vec![2; 10], &mut pool);
        assert_eq!(back, Err(vec![2; 10]));
        assert_eq!(hubs.slab[hk].blocked, [0]);
        assert_eq!(hubs.slab[hk].out_len, PEER_HIGH);
    }
}
