//! One event loop: a mio `Poll` over its listeners, its sessions' two
//! sockets each, its waker (worker results, connections and sessions
//! other loops hand it, a raised stop level) and, on the loop that handles
//! them, the signal pipe (SIGINT/SIGTERM: drain and exit; SIGHUP: reload
//! the TLS certificates). Everything here belongs to this loop alone
//! (sessions, timers, the buffer pool); what loops share is in
//! [`Shared`](crate::shared::Shared).
//!
//! Tokens: listener `i` owns `i` (below [`MAX_LISTENERS`]); session `key`
//! owns the pair from `MAX_LISTENERS + 2*key` (WebSocket end, then raw
//! end); fan-out hubs' peers own the range from `hub::FIRST_TOKEN`; the
//! fixed tokens sit at the top of the range. The loop only records
//! readiness; each touched session then does its I/O in `Session::ready`,
//! then each hub with work in `Hubs::run`, then the sessions it woke.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::Local;
use crate::connector::Connector;
use crate::handoff::{self, Arrival, Door, Parts};
use crate::hub::Hubs;
use crate::listener::{Accepted, Listener};
use crate::pool::Pool;
use crate::session::LocalSide;
use crate::session::{Ctx, Session};
use crate::shared::{Shared, DRAIN, EXIT_NOW, RUNNING};
use crate::spin::Spin;
use crate::timers::Timers;
use crate::transport::Ready;
use crate::transport::Stream;
use crate::workers::Inbox;

thread_local! {
    static LOOP_ID: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The loop running on this thread, for log lines.
pub fn current_loop() -> Option<usize> {
    LOOP_ID.with(|l| l.get())
}

/// Listeners own the tokens below this; sessions' start here.
pub const MAX_LISTENERS: usize = crate::session::FIRST_TOKEN;
pub const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

pub struct Loop {
    /// This loop's number (0 handles signals and client connections).
    id: usize,
    /// Every loop's door, this one's at `id`.
    doors: Arc<Vec<Door>>,
    /// What other loops handed to this one.
    arrivals: std::sync::mpsc::Receiver<Arrival>,
    /// Where the last connection handed off went (ties go round).
    last_door: usize,
    /// The shutdown level this loop has acted on.
    stop_seen: u8,
    shared: Arc<Shared>,
    poll: Poll,
    /// Emptied when shutting down.
    listeners: Vec<Listener>,
    /// Which listeners may have clients waiting (edge-triggered).
    accept_ready: Vec<bool>,
    sessions: Slab<Session>,
    /// Peers shared by many sessions (`hub = on`).
    hubs: Hubs,
    timers: Timers,
    inbox: Inbox,
    /// Only the loop that handles SIGINT/SIGTERM has them.
    signals: Option<Signals>,
    pool: Pool,
    now: Instant,
    pending: Vec<usize>,
    accept_paused_until: Option<Instant>,
    drain_deadline: Option<Instant>,
    /// Client connections (`websocksy connect`, `[connect]`); listeners
    /// with `connect: Some(i)` make sessions of `connectors[i]`.
    connectors: Vec<Arc<Connector>>,
    /// Sessions of client connections whose local side is one peer: the
    /// process exits when they are done and nothing listens.
    singles: Vec<usize>,
    /// A single client connection ended badly: exit status 1.
    failed: bool,
    /// `udp-listen` sources and their sessions.
    udp_sources: HashMap<SocketAddr, usize>,
}

/// Build a session context from a loop's disjoint parts.
macro_rules! ctx {
    ($l:expr) => {
        Ctx {
            registry: $l.poll.registry(),
            shared: &$l.shared,
            inbox: &$l.inbox,
            now: $l.now,
            pool: &mut $l.pool,
            hubs: &mut $l.hubs,
            loop_id: $l.id,
            loops: $l.doors.len(),
        }
    };
}

impl Loop {
    /// Loop `id` of `doors.len()`, serving `listeners`; `signals` makes
    /// it the one that handles SIGINT/SIGTERM and SIGHUP.
    pub fn new(
        id: usize,
        parts: Parts,
        doors: Arc<Vec<Door>>,
        shared: Arc<Shared>,
        mut listeners: Vec<Listener>,
        connectors: Vec<Arc<Connector>>,
        signals: bool,
    ) -> Result<Loop, String> {
        let Parts {
            poll,
            waker,
            arrivals,
        } = parts;
        if listeners.len() > MAX_LISTENERS {
            return Err(format!("at most {MAX_LISTENERS} listeners"));
        }
        for (i, l) in listeners.iter_mut().enumerate() {
            l.register(poll.registry(), Token(i))
                .map_err(|e| e.to_string())?;
        }
        let signals = if signals {
            let mut s = Signals::new([SIGINT, SIGTERM, SIGHUP])
                .map_err(|e| format!("cannot catch signals: {e}"))?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)
                .map_err(|e| e.to_string())?;
            Some(s)
        } else {
            None
        };
        Ok(Loop {
            id,
            doors,
            arrivals,
            last_door: id,
            stop_seen: RUNNING,
            shared,
            poll,
            accept_ready: vec![true; listeners.len()],
            listeners,
            sessions: Slab::new(),
            hubs: Hubs::default(),
            timers: Timers::default(),
            inbox: Inbox::new(waker),
            signals,
            pool: Pool::default(),
            now: Instant::now(),
            pending: Vec::new(),
            accept_paused_until: None,
            drain_deadline: None,
            connectors,
            singles: Vec::new(),
            failed: false,
            udp_sources: HashMap::new(),
        })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    /// Tell every loop to close everything and return.
    pub fn stop_all(&self) {
        self.shared.raise_stop(EXIT_NOW);
        for d in self.doors.iter() {
            d.wake();
        }
    }

    /// Start the client connections whose local side is one peer (or
    /// standard input and output): one session each, now.
    fn start_singles(&mut self) -> Result<(), String> {
        for c in self.connectors.clone() {
            let local = match &c.settings.from {
                Local::Peer(p) => LocalSide::Connect(p.clone()),
                Local::Stdio => {
                    let s = c.stdio().map_err(|e| {
                        format!("{}: standard input and output: {e}", c.settings.at)
                    })?;
                    LocalSide::Stream(Stream::Unix(s))
                }
                _ => continue,
            };
            if !self.shared.admit() {
                return Err("--max-connections is too low for the client connections".into());
            }
            let label = match &c.settings.from {
                Local::Stdio => Some("-".to_string()),
                Local::Peer(p) => Some(p.to_string()),
                _ => None,
            };
            let key = self.start_client(c, crate::listener::UNIX_CLIENT, label, local);
            self.singles.push(key);
        }
        Ok(())
    }

    /// A client-role session for `connector`, started with `local`.
    fn start_client(
        &mut self,
        connector: Arc<Connector>,
        from: SocketAddr,
        label: Option<String>,
        local: LocalSide,
    ) -> usize {
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let id = self.shared.next_id();
        let s = Session::client(id, key, connector, from, label, self.now);
        entry.insert(s);
        debug!("conn {id} client connection from {from}");
        if let Some(s) = self.sessions.get_mut(key) {
            let mut cx = ctx!(self);
            s.begin(local, &mut cx);
        }
        self.pending.push(key);
        key
    }

    /// Datagrams on a `udp-listen` socket: a new source gets its own
    /// connected socket and a session; a datagram from a source whose
    /// socket exists already raced its creation and joins its session.
    fn receive_udp(&mut self, i: usize) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let (crate::listener::Socket::Udp(_, local), Some(ci)) = (&l.socket, l.connect) else {
            return;
        };
        let local = *local;
        let Some(connector) = self.connectors.get(ci).cloned() else {
            return;
        };
        let mut buf = vec![0u8; 65_536];
        // Datagrams a new source's socket caught for others (see
        // `udp_for_source`), dispatched like the listener's own.
        let mut strays: std::collections::VecDeque<(SocketAddr, Vec<u8>)> = Default::default();
        loop {
            let Some(crate::listener::Socket::Udp(sock, _)) =
                self.listeners.get(i).map(|l| &l.socket)
            else {
                return;
            };
            let got = match strays.pop_front() {
                Some((from, d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    Ok((n, from))
                }
                None => sock.recv_from(&mut buf),
            };
            let (n, source) = match got {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready[i] = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("udp-listen {local}: {e}");
                    continue;
                }
            };
            if let Some(&key) = self.udp_sources.get(&source) {
                if let Some(s) = self.sessions.get_mut(key) {
                    let mut cx = ctx!(self);
                    s.late_datagram(&buf[..n], &mut cx);
                    self.pending.push(key);
                    continue;
                }
            }
            if !self.shared.admit() {
                warn!("udp-listen {local}: connection cap reached, datagram from {source} dropped");
                continue;
            }
            match crate::listener::udp_for_source(local, source) {
                Ok((stream, caught)) => {
                    let key = self.start_client(
                        Arc::clone(&connector),
                        source,
                        None,
                        LocalSide::Datagram(stream, buf[..n].to_vec()),
                    );
                    self.udp_sources.insert(source, key);
                    strays.extend(caught);
                }
                Err(e) => {
                    self.release_slot();
                    warn!("udp-listen {local}: no socket for {source}: {e}; datagram dropped");
                }
            }
        }
    }

    /// Run until SIGINT/SIGTERM and the drain that follows, or, with no
    /// listener, until the client connections are done. `Ok(false)`: a
    /// single client connection failed.
    pub fn run(&mut self) -> Result<bool, String> {
        LOOP_ID.with(|l| l.set(Some(self.id)));
        // A loop that fails takes the process down, as the one loop did:
        // half a server, with its share of the slots and its connections
        // gone and the others still handing it work, would be worse. The
        // error reaches standard error from main, the panic from its hook.
        let mut panicked = false;
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve())) {
            Ok(Ok(ok)) => Ok(ok),
            Ok(Err(e)) => {
                self.close_all();
                self.stop_all();
                Err(e)
            }
            Err(_) => {
                // Its sessions, hubs and pool may be half-updated: the
                // sessions are dropped (sockets closed), not closed one
                // by one, and so is what waits at the door.
                panicked = true;
                self.stop_all();
                for _ in self.sessions.drain() {
                    self.shared.release();
                }
                Err("event loop panicked".into())
            }
        };
        // From now on a handoff to this loop comes back to its sender;
        // what came before is closed here, its slot released.
        if let Some(d) = self.doors.get(self.id) {
            d.close();
            d.set_done();
        }
        while let Ok(a) = self.arrivals.try_recv() {
            if let (Arrival::Session(mut s), false) = (a, panicked) {
                let mut cx = ctx!(self);
                s.close(&mut cx);
            }
            self.shared.release();
        }
        if self.id != 0 {
            if let Some(d) = self.doors.first() {
                d.wake();
            }
        }
        r
    }

    /// Loop 0 handles the signals: it stays until every other loop is
    /// done, so that a second signal still finds someone to act on it.
    fn others_done(&self) -> bool {
        self.id != 0
            || self
                .doors
                .iter()
                .enumerate()
                .all(|(i, d)| i == 0 || d.is_done())
    }

    fn serve(&mut self) -> Result<bool, String> {
        self.start_singles()?;
        let mut events = Events::with_capacity(1024);
        let mut touched: Vec<usize> = Vec::new();
        let mut spin = Spin::new(self.shared.busy_poll);
        loop {
            let now = Instant::now();
            let can_accept = self.accept_paused_until.is_none()
                && self.accept_ready.iter().any(|r| *r)
                && !self.shared.at_capacity();
            let hubs = self.hubs.busy();
            let timeout = if !self.pending.is_empty() || hubs || can_accept || spin.spinning(now) {
                Some(Duration::ZERO)
            } else {
                [
                    self.timers.next(),
                    self.hubs.next_deadline(),
                    self.accept_paused_until,
                    self.drain_deadline,
                ]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            self.now = Instant::now();
            spin.after_wait(
                now,
                self.now,
                timeout != Some(Duration::ZERO),
                !events.is_empty(),
            );
            touched.clear();
            touched.append(&mut self.pending);
            let mut wake = false;
            let mut signal = false;
            for ev in events.iter() {
                match ev.token() {
                    Token(i) if i < MAX_LISTENERS => {
                        if let Some(r) = self.accept_ready.get_mut(i) {
                            *r = true;
                        }
                    }
                    WAKER => wake = true,
                    SIGNALS => signal = true,
                    t if Hubs::owner(t).is_some() => {
                        if let Some(hk) = Hubs::owner(t) {
                            self.hubs.event(hk, Ready::from_event(ev));
                        }
                    }
                    Token(t) => {
                        let (key, ws) = Session::token_owner(Token(t));
                        // Events for a slot freed earlier are stale: ignore them.
                        if let Some(s) = self.sessions.get_mut(key) {
                            if ws {
                                s.ws_event(Ready::from_event(ev));
                            } else {
                                s.raw_event(Ready::from_event(ev));
                            }
                            touched.push(key);
                        }
                    }
                }
            }
            if signal {
                self.on_signal();
            }
            if (signal || wake) && self.apply_stop(&mut touched) {
                return Ok(!self.failed);
            }
            if wake {
                self.take_arrivals(&mut touched);
                while let Some(done) = self.inbox.try_recv() {
                    if let Some(s) = self.sessions.get_mut(done.key).filter(|s| s.id == done.id) {
                        let mut cx = ctx!(self);
                        s.on_outcome(done.outcome, &mut cx);
                        touched.push(done.key);
                    }
                }
            }
            while let Some((key, id)) = self.timers.pop_due(self.now) {
                if let Some(s) = self.sessions.get_mut(key).filter(|s| s.id == id) {
                    if s.armed.is_some_and(|a| a <= self.now) {
                        s.armed = None;
                    }
                    let mut cx = ctx!(self);
                    s.on_timeout(&mut cx);
                    touched.push(key);
                }
            }
            if self.accept_paused_until.is_some_and(|t| t <= self.now) {
                self.accept_paused_until = None;
                self.accept_ready.fill(true);
            }
            if self.accept_paused_until.is_none() {
                for i in 0..self.listeners.len() {
                    if self.accept_ready[i] {
                        if matches!(self.listeners[i].socket, crate::listener::Socket::Udp(..)) {
                            self.receive_udp(i);
                        } else {
                            self.accept(i);
                        }
                    }
                }
            }
            touched.sort_unstable();
            touched.dedup();
            for &key in &touched {
                self.run_session(key);
            }
            self.run_hubs();
            if let Some(deadline) = self.drain_deadline {
                if self.sessions.is_empty() && self.others_done() {
                    info!("all connections closed, exiting");
                    return Ok(!self.failed);
                }
                if self.now >= deadline {
                    if !self.sessions.is_empty() {
                        info!(
                            "drain time over, {} connections dropped",
                            self.sessions.len()
                        );
                        self.close_all();
                    }
                    return Ok(!self.failed);
                }
            }
            // Loops other than 0 serve what loop 0 hands them until the
            // process stops, listeners or not.
            if self.id == 0
                && self.drain_deadline.is_none()
                && self.listeners.is_empty()
                && self.sessions.is_empty()
                && self.pending.is_empty()
            {
                // Client connections only, all done.
                return Ok(!self.failed);
            }
            if self.doors.len() > 1 {
                self.store_load();
            }
        }
    }

    /// This loop's session count, for the acceptor's choice.
    fn store_load(&self) {
        if let Some(d) = self.doors.get(self.id) {
            d.set_load(self.sessions.len());
        }
    }

    /// Connections and sessions other loops handed to this one.
    fn take_arrivals(&mut self, touched: &mut Vec<usize>) {
        while let Ok(a) = self.arrivals.try_recv() {
            match a {
                Arrival::Conn {
                    stream,
                    addr,
                    proxy_protocol,
                    listener,
                } => {
                    if let Some(d) = self.doors.get(self.id) {
                        d.arrived();
                    }
                    let key = self.start_server(stream, addr, proxy_protocol, &listener);
                    if let Some(key) = key.filter(|_| self.drain_deadline.is_some()) {
                        // Accepted before the signal: answered like the
                        // handshakes in progress here (503).
                        if let Some(s) = self.sessions.get_mut(key) {
                            let mut cx = ctx!(self);
                            s.shutdown(&mut cx);
                        }
                        touched.push(key);
                    }
                }
                Arrival::Session(mut s) => {
                    let entry = self.sessions.vacant_entry();
                    let key = entry.key();
                    let mut cx = ctx!(self);
                    if let Err(e) = s.arrive(key, &mut cx) {
                        warn!("conn {} cannot move to loop {}: {e}", s.id, self.id);
                        s.close(&mut cx);
                        self.release_slot();
                        continue;
                    }
                    debug!("conn {} moved to loop {} (its hub's)", s.id, self.id);
                    if self.drain_deadline.is_some() {
                        s.shutdown(&mut cx);
                    }
                    entry.insert(*s);
                    touched.push(key);
                }
            }
        }
    }

    /// A server-role session for an accepted connection.
    fn start_server(
        &mut self,
        stream: Stream,
        addr: SocketAddr,
        proxy_protocol: bool,
        on: &str,
    ) -> Option<usize> {
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let id = self.shared.next_id();
        let mut s = Session::new(
            id,
            key,
            stream,
            addr,
            proxy_protocol,
            &self.shared.limits,
            self.now,
        );
        if let Err(e) = s.register(self.poll.registry()) {
            warn!("cannot register connection from {addr}: {e}");
            self.release_slot();
            return None;
        }
        let d = s.next_deadline(&self.shared);
        if let Some(d) = d {
            s.armed = Some(d);
            self.timers.arm(d, key, id);
        }
        entry.insert(s);
        debug!("conn {id} accepted from {addr} on {on}");
        Some(key)
    }

    /// A connection's slot is free again. The first slot of a full
    /// process wakes the accepting loop (0), whose backlog waits for it.
    fn release_slot(&self) {
        if self.shared.release() && self.id != 0 {
            if let Some(d) = self.doors.first() {
                d.wake();
            }
        }
    }

    /// Hand session `key` to loop `to`, which owns its hub.
    fn move_session(&mut self, key: usize, to: usize) {
        if !self.sessions.contains(key) {
            return;
        }
        let mut s = self.sessions.remove(key);
        s.leave_loop(self.poll.registry());
        let Some(door) = self.doors.get(to) else {
            return self.keep_moved(s);
        };
        if let Err(Arrival::Session(s)) = door.send(Arrival::Session(Box::new(s))) {
            self.keep_moved(*s);
        }
    }

    /// The hub's loop is gone (the process is stopping): the session
    /// stays here and gets the drain's answer.
    fn keep_moved(&mut self, mut s: Session) {
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let mut cx = ctx!(self);
        if let Err(e) = s.stay(key, &mut cx) {
            warn!("conn {} cannot stay on loop {}: {e}", s.id, self.id);
            s.close(&mut cx);
            self.release_slot();
            return;
        }
        entry.insert(s);
        self.pending.push(key);
    }

    fn run_session(&mut self, key: usize) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let mut cx = ctx!(self);
        if !s.ready(&mut cx) {
            s.close(&mut cx);
            if let Some(i) = self.singles.iter().position(|&k| k == key) {
                self.singles.swap_remove(i);
                self.failed |= !s.succeeded();
            }
            if self.udp_sources.get(&s.client_addr()) == Some(&key) {
                self.udp_sources.remove(&s.client_addr());
            }
            self.sessions.remove(key);
            self.release_slot();
            // A slot is free again: take what waits in the backlog (next turn,
            // so this batch never sees the slot reused).
            self.accept_ready.fill(true);
            return;
        }
        if let Some(to) = s.moving_to() {
            if self.shared.stop_level() == RUNNING {
                return self.move_session(key, to);
            }
            // Stopping: the hub's loop may be gone already; answer here
            // as the drain answers every handshake.
            s.stay_for_shutdown(&mut cx);
            self.pending.push(key);
            return;
        }
        if s.more {
            self.pending.push(key);
        }
        if !self.udp_sources.is_empty()
            && s.local_gone()
            && self.udp_sources.get(&s.client_addr()) == Some(&key)
        {
            self.udp_sources.remove(&s.client_addr());
        }
        if let Some(d) = s.next_deadline(&self.shared) {
            if s.armed.is_none_or(|a| d < a) {
                self.timers.arm(d, key, s.id);
                s.armed = Some(d);
            }
        }
    }

    /// Hubs run after the sessions that fed them (their messages then go
    /// to the peer in one writev), then the sessions they woke (frames to
    /// write, a hub that opened or ended, room for a message); a few
    /// rounds, the rest next turn.
    fn run_hubs(&mut self) {
        for _ in 0..4 {
            self.hubs.run(
                &mut self.sessions,
                self.poll.registry(),
                &mut self.pool,
                self.shared.limits.max_message_size,
                self.now,
            );
            let woken = self.hubs.take_wake();
            if woken.is_empty() {
                self.hubs.woken(woken);
                return;
            }
            for &key in &woken {
                self.run_session(key);
            }
            self.hubs.woken(woken);
        }
    }

    fn accept(&mut self, i: usize) {
        let Some(listener) = self.listeners.get(i) else {
            return;
        };
        let connect = listener.connect;
        let name = listener.to_string();
        let proxy_protocol = listener.proxy_protocol;
        let spread = listener.spread;
        loop {
            if !self.shared.admit() {
                // Leave the rest in the kernel backlog until a slot frees up.
                return;
            }
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            let accepted = listener.accept(&self.shared);
            if !matches!(accepted, Ok(Accepted::Conn(..))) {
                self.release_slot();
            }
            match accepted {
                Ok(Accepted::Conn(stream, addr)) if connect.is_some() => {
                    let Some(c) = connect.and_then(|c| self.connectors.get(c)).cloned() else {
                        self.release_slot();
                        continue;
                    };
                    let label = match &stream {
                        Stream::Unix(_) => Some(name.clone()),
                        _ => None,
                    };
                    self.start_client(c, addr, label, LocalSide::Stream(stream));
                }
                Ok(Accepted::Conn(stream, addr)) if spread && self.doors.len() > 1 => {
                    let to = handoff::least_loaded(&self.doors, self.last_door);
                    self.last_door = to;
                    // Counted now, not at the end of the turn: a burst
                    // accepted in one turn spreads.
                    if to == self.id {
                        self.start_server(stream, addr, proxy_protocol, &name);
                        self.store_load();
                        continue;
                    }
                    let a = Arrival::Conn {
                        stream,
                        addr,
                        proxy_protocol,
                        listener: name.clone(),
                    };
                    self.doors[to].add_load();
                    if let Err(Arrival::Conn { stream, .. }) = self.doors[to].send(a) {
                        self.doors[to].arrived();
                        self.start_server(stream, addr, proxy_protocol, &name);
                    }
                }
                Ok(Accepted::Conn(stream, addr)) => {
                    self.start_server(stream, addr, proxy_protocol, &name);
                }
                Ok(Accepted::Skip(why)) => warn!("connection dropped: {why}"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready[i] = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE)
                            | Some(libc::ENFILE)
                            | Some(libc::ENOBUFS)
                            | Some(libc::ENOMEM)
                    ) =>
                {
                    warn!("accept: {e}; pausing accepts for 100 ms");
                    self.accept_paused_until = Some(self.now + Duration::from_millis(100));
                    return;
                }
                // ECONNABORTED and friends concern one client only.
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    /// SIGINT/SIGTERM raise the process's stop level for every loop
    /// (this one acts on it in [`apply_stop`]); SIGHUP reloads.
    fn on_signal(&mut self) {
        let mut got = false;
        let mut reload = false;
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        for sig in signals.pending() {
            debug!("signal {sig}");
            if sig == SIGHUP {
                reload = true;
            } else {
                got = true;
            }
        }
        if reload {
            self.reload_tls();
        }
        if !got {
            return;
        }
        let level = if self.shared.stop_level() == RUNNING {
            DRAIN
        } else {
            EXIT_NOW
        };
        self.shared.raise_stop(level);
        for (i, d) in self.doors.iter().enumerate() {
            if i != self.id {
                d.wake();
            }
        }
    }

    /// Act on the process's stop level if it rose: the first signal stops
    /// the accepts and drains, the second closes everything. True when
    /// this loop should return now.
    fn apply_stop(&mut self, touched: &mut Vec<usize>) -> bool {
        let level = self.shared.stop_level();
        if level <= self.stop_seen {
            return false;
        }
        let draining = self.stop_seen == DRAIN;
        self.stop_seen = level;
        if level >= EXIT_NOW {
            if draining {
                info!("second signal, exiting now");
            }
            self.close_all();
            return true;
        }
        info!("shutting down: closing {} connections", self.sessions.len());
        for mut l in self.listeners.drain(..) {
            l.deregister(self.poll.registry());
        }
        self.accept_ready.clear();
        self.drain_deadline = Some(self.now + self.shared.drain);
        let mut cx = ctx!(self);
        for (key, s) in self.sessions.iter_mut() {
            s.shutdown(&mut cx);
            touched.push(key);
        }
        false
    }

    /// SIGHUP: new handshakes get the files as they are now; open
    /// connections keep their context. Reading the files blocks this loop
    /// briefly (a few local files), like reading them at start-up.
    fn reload_tls(&self) {
        let Some(tls) = self.shared.tls.as_ref() else {
            info!("SIGHUP: no TLS listener, nothing to reload");
            return;
        };
        match tls.reload() {
            Ok(()) => info!("TLS certificates reloaded"),
            Err(e) => warn!("TLS reload failed, keeping the old certificate: {e}"),
        }
    }

    fn close_all(&mut self) {
        let mut cx = ctx!(self);
        // Every loop is stopping: no backlog to wake for the slots.
        for (_, s) in self.sessions.iter_mut() {
            s.close(&mut cx);
            self.shared.release();
        }
        self.sessions.clear();
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if !self.sessions.is_empty() {
            error!("{} connections still open at exit", self.sessions.len());
        }
    }
}
