//! The raw end as a member of a fan-out hub (`crate::hub`): instead of a
//! stream, the raw end holds a [`HubMember`], the way it holds a `Mirror`
//! for `mirror://`. The rest of the session is unchanged; these are the
//! raw end's steps for a member:
//!
//! - joining ([`Session::hub_join`], from the backend's decision): the
//!   first member dials the peer with the usual connect code and hands the
//!   stream to the hub once it is up ([`Session::hub_adopt`]); the others
//!   wait in `Waiting` and get their 101 (or the first member's refusal)
//!   when the hub opens;
//! - "writing the peer" ([`Session::hub_write`]): a client message is
//!   gathered whole in `raw.msg` (as for a datagram peer) and handed to
//!   the hub; while the hub's queue is full it stays there and the client
//!   is not read;
//! - "reading the peer" ([`Session::hub_read`]): frames the hub offered
//!   ([`Session::hub_offer`]) wait in the member's queue and move to the
//!   output queue while less than `OUT_HIGH` waits there; the hub's end,
//!   or this member's overflow, closes the WebSocket end;
//! - leaving ([`Session::hub_leave`]), once, when the session closes.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use bytes::Bytes;
use log::info;

use super::raw_end::RawEnd;
use super::{Ctx, RawState, Session, WsState, OUT_HIGH};
use crate::hub::{HubOptions, Joined, State, PER_MESSAGE};
use crate::peer::PeerAddress;
use crate::pool::Pool;
use crate::transport::Ready;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Connects the peer for the hub (the session's own connect states),
    /// then hands it over.
    Connector,
    /// Waits in `Waiting` for the connector.
    Waiting,
    Member,
}

pub(super) struct HubMember {
    /// The hub's key in the loop's `Hubs`.
    pub(super) hub: usize,
    pub(super) role: Role,
    /// One message is one datagram: client messages are bounded by one.
    pub(super) datagram: bool,
    /// Whole frames offered by the hub that wait for room in the output
    /// queue, oldest first; shared slices, the same for every member.
    queue: VecDeque<Bytes>,
    /// Their bytes, plus `PER_MESSAGE` each.
    queued: usize,
    /// Over `hub-queue` with the `close` policy: closed with 1008 on the
    /// next run.
    over: bool,
    /// The `hub-queue` it went over.
    limit: usize,
    /// Messages lost to `hub-overflow = drop-oldest`.
    dropped: u64,
    /// How much may wait in the output queue, where frames are never
    /// dropped; set from `hub-queue` with each offer.
    low: usize,
}

/// What [`gather`] made of a piece of a client message.
pub(super) enum Gathered {
    Part,
    Whole,
    TooBig,
}

/// Gather a piece of a client message in `raw.msg`: the hub takes whole
/// messages only, so two clients' messages never interleave on a stream.
pub(super) fn gather(
    raw: &mut RawEnd,
    piece: &[u8],
    last: bool,
    max: usize,
    pool: &mut Pool,
) -> Gathered {
    if raw.msg.len() + piece.len() > max {
        raw.msg.clear();
        return Gathered::TooBig;
    }
    if raw.msg.capacity() == 0 && !(last && piece.is_empty()) {
        raw.msg = pool.take_out();
    }
    raw.msg.extend_from_slice(piece);
    if last {
        raw.msg_done = true;
        Gathered::Whole
    } else {
        Gathered::Part
    }
}

impl Session {
    /// The raw end is a hub's (the connector's, only once it handed the
    /// peer over).
    pub(super) fn in_hub(&self) -> bool {
        self.raw
            .hub
            .as_ref()
            .is_some_and(|m| m.role != Role::Connector)
    }

    /// The backend asked for a hub: join the one of this peer address.
    /// True when that is all for now (waiting, open, refused); false when
    /// this session is the first member and connects the peer itself.
    pub(super) fn hub_join(
        &mut self,
        address: &PeerAddress,
        proxy_protocol: bool,
        options: HubOptions,
        cx: &mut Ctx,
    ) -> bool {
        // The mirror has no peer to share: each client keeps its own.
        if *address == PeerAddress::Mirror {
            return false;
        }
        if proxy_protocol {
            let why = "proxy-protocol cannot be used with a hub (one peer connection serves many clients)";
            self.refuse(502, why, cx);
            return true;
        }
        let label = address.to_string();
        let home = crate::handoff::hub_home(&label, cx.loops);
        if home != cx.loop_id {
            // Every member of a hub must be on the loop of its peer
            // connection; the event loop sees this and hands us over.
            self.moving = Some(Box::new(Moving {
                to: home,
                address: address.clone(),
                options,
            }));
            return true;
        }
        let (hk, joined) = cx.hubs.join(&label, self.key, self.id, options);
        let role = match joined {
            Joined::Connect => Role::Connector,
            Joined::Wait => Role::Waiting,
            Joined::Open => Role::Member,
        };
        self.raw.hub = Some(Box::new(HubMember {
            hub: hk,
            role,
            datagram: matches!(address, PeerAddress::Udp(_) | PeerAddress::UnixDgram(_)),
            queue: VecDeque::new(),
            queued: 0,
            over: false,
            limit: 0,
            dropped: 0,
            low: OUT_HIGH,
        }));
        if let Some(c) = self.choice.as_mut() {
            c.hub = true;
        }
        if role == Role::Connector {
            return false;
        }
        // The hub frames for everyone.
        self.raw.framing = None;
        if role == Role::Member {
            self.raw.state = RawState::Open;
            self.open_ws(cx);
        } else {
            self.raw.state = RawState::Connecting;
        }
        true
    }

    /// The loop this session must move to for its hub, if any.
    pub fn moving_to(&self) -> Option<usize> {
        self.moving.as_ref().map(|m| m.to)
    }

    /// The process is stopping before the move: stay on this loop and
    /// answer as the drain does (a 503 to the handshake).
    pub fn stay_for_shutdown(&mut self, cx: &mut Ctx) {
        self.moving = None;
        self.shutdown(cx);
    }

    /// The hub's loop stopped before the session reached it: back on
    /// this loop as session `key`, answered as the drain does.
    pub fn stay(&mut self, key: usize, cx: &mut Ctx) -> io::Result<()> {
        self.key = key;
        self.register(cx.registry)?;
        self.stay_for_shutdown(cx);
        Ok(())
    }

    /// Leave this loop: no socket of ours stays registered with it (the
    /// raw end has none yet: the hub's peer is connected by its home loop).
    pub fn leave_loop(&mut self, registry: &mio::Registry) {
        self.ws.stream.deregister(registry);
        self.armed = None;
    }

    /// Arrived on the hub's loop as session `key`: register there and
    /// join the hub as if the backend had answered here.
    pub fn arrive(&mut self, key: usize, cx: &mut Ctx) -> io::Result<()> {
        self.key = key;
        self.register(cx.registry)?;
        if let Some(m) = self.moving.take() {
            if !self.hub_join(&m.address, false, m.options, cx) {
                self.connect_peer(cx);
            }
        }
        Ok(())
    }

    /// The connector's peer is up: the hub takes the stream and the
    /// framing state, and this session opens like the others.
    pub(super) fn hub_adopt(&mut self, cx: &mut Ctx) {
        if self.raw.hub.is_none() {
            return;
        }
        let Some(mut stream) = self.raw.stream.take() else {
            return;
        };
        stream.deregister(cx.registry);
        let framing = self.raw.framing.take();
        let Some(m) = self.raw.hub.as_mut() else {
            return;
        };
        match cx.hubs.adopt(m.hub, stream, framing, cx.registry) {
            Ok(()) => {
                m.role = Role::Member;
                self.raw.state = RawState::Open;
                self.raw.rd = Ready::default();
                self.open_ws(cx);
            }
            Err(e) => {
                let why = format!("cannot hand the peer to its hub: {e}");
                self.refuse(502, &why, cx);
            }
        }
    }

    /// A refusal of the connector is the answer of everyone waiting for
    /// the same hub.
    pub(super) fn hub_refused(&mut self, status: u16, reason: &str, cx: &mut Ctx) {
        if let Some(m) = self.raw.hub.as_mut().filter(|m| m.role == Role::Connector) {
            m.role = Role::Member;
            cx.hubs.refused(m.hub, status, reason);
        }
    }

    /// The raw end's write step for a member: open when the hub does, and
    /// hand over a gathered message; a draining end is done once nothing
    /// waits.
    pub(super) fn hub_write(&mut self, cx: &mut Ctx) -> bool {
        let Some(m) = self.raw.hub.as_mut() else {
            return false;
        };
        let hk = m.hub;
        match self.raw.state {
            RawState::Connecting if m.role == Role::Waiting => match cx.hubs.state(hk) {
                Some(State::Connecting) => false,
                Some(State::Open) => {
                    m.role = Role::Member;
                    self.raw.state = RawState::Open;
                    self.open_ws(cx);
                    true
                }
                _ => {
                    m.role = Role::Member;
                    let (status, why) = cx.hubs.end_reason(hk);
                    // Ended before this one opened: a peer that left is a bad gateway.
                    let status = if status < 400 { 502 } else { status };
                    self.refuse(status, &why, cx);
                    true
                }
            },
            RawState::Open | RawState::Draining => {
                let mut progress = false;
                if self.raw.msg_done {
                    let msg = std::mem::take(&mut self.raw.msg);
                    match cx.hubs.send(hk, self.key, msg, cx.pool) {
                        Ok(()) => {
                            self.raw.msg_done = false;
                            progress = true;
                        }
                        // The hub wakes this session when there is room.
                        Err(msg) => self.raw.msg = msg,
                    }
                }
                if self.raw.state == RawState::Draining && !self.raw.msg_done {
                    self.raw.state = RawState::Gone;
                    progress = true;
                }
                progress
            }
            _ => false,
        }
    }

    /// The raw end's read step for a member: frames move from its queue to
    /// the output queue; the hub's end or an overflow closes the client.
    pub(super) fn hub_read(&mut self, cx: &mut Ctx) -> bool {
        if self.ws.state != WsState::Open {
            return false;
        }
        let Some(m) = self.raw.hub.as_mut() else {
            return false;
        };
        if m.over {
            m.over = false;
            let limit = m.limit;
            info!(
                "conn {} {} -> {}: more than {limit} bytes wait for this client (hub-queue), closing with 1008",
                self.id,
                self.client_addr,
                self.peer_label(),
            );
            self.fail(1008, "too slow: hub queue full", cx);
            return true;
        }
        if cx.hubs.state(m.hub) != Some(State::Open) {
            // Everything the peer said goes out before the close.
            while let Some(f) = m.queue.pop_front() {
                self.ws.out.push(f);
            }
            m.queued = 0;
            let (code, why) = cx.hubs.end_reason(m.hub);
            self.fail(code, &why, cx);
            return true;
        }
        let mut moved = false;
        while self.ws.out.len() < m.low {
            let Some(f) = m.queue.pop_front() else {
                break;
            };
            m.queued -= f.len() + PER_MESSAGE;
            self.ws.out.push(f);
            moved = true;
        }
        if m.queue.is_empty() && m.queue.capacity() > 64 {
            m.queue = VecDeque::new();
        }
        moved
    }

    /// A frame from the hub (the same slice for every member). Queued
    /// within `hub-queue`; over it, this member is closed with 1008 or
    /// loses its oldest whole messages. A member with nothing queued takes
    /// any one message, so one larger than the queue still passes.
    pub(crate) fn hub_offer(
        &mut self,
        frame: &Bytes,
        payload: usize,
        options: &HubOptions,
        now: Instant,
    ) {
        if self.ws.state != WsState::Open {
            return;
        }
        let Some(m) = self
            .raw
            .hub
            .as_mut()
            .filter(|m| m.role == Role::Member && !m.over)
        else {
            return;
        };
        let cost = frame.len() + PER_MESSAGE;
        let mut pending = self.ws.out.len() + m.queued;
        if pending > 0 && pending + cost > options.queue {
            if !options.drop_oldest {
                m.over = true;
                m.limit = options.queue;
                m.queue.clear();
                m.queued = 0;
                return;
            }
            if m.dropped == 0 {
                let peer = self.choice.as_ref().map(|c| &c.address);
                info!(
                    "conn {} {} -> hub {}: hub queue full, dropping the oldest messages",
                    self.id,
                    self.client_addr,
                    peer.map_or(String::new(), ToString::to_string)
                );
            }
            while pending + cost > options.queue {
                let Some(f) = m.queue.pop_front() else {
                    break;
                };
                m.queued -= f.len() + PER_MESSAGE;
                pending -= f.len() + PER_MESSAGE;
                m.dropped += 1;
            }
            if pending > 0 && pending + cost > options.queue {
                // What is left is in the output queue, maybe half written:
                // the new message goes instead.
                m.dropped += 1;
                return;
            }
        }
        self.bytes_out += payload as u64;
        self.last_activity = now;
        // Only a little goes to the output queue ahead of time (a quarter
        // of `hub-queue`, at most `OUT_HIGH`): frames there are never
        // dropped, so the rest waits in the member's own queue, where
        // `drop-oldest` can still drop the oldest.
        m.low = OUT_HIGH.min(options.queue / 4).max(1);
        if m.queue.is_empty() && self.ws.out.len() < m.low {
            self.ws.out.push(frame.clone());
        } else {
            m.queue.push_back(frame.clone());
            m.queued += cost;
        }
    }

    /// The session closes: leave its hub, exactly once.
    pub(super) fn hub_leave(&mut self, cx: &mut Ctx) {
        let Some(m) = self.raw.hub.take() else {
            return;
        };
        if m.dropped > 0 {
            info!(
                "conn {} {} -> {}: {} hub messages dropped (its queue was full)",
                self.id,
                self.client_addr,
                self.peer_label(),
                m.dropped
            );
        }
        cx.hubs.leave(m.hub, self.key, self.id, cx.now);
    }
}

/// A session on its way to the loop that owns its hub.
pub(super) struct Moving {
    to: usize,
    address: PeerAddress,
    options: HubOptions,
}
