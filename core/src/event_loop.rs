//! One event loop: a mio `Poll` over its listeners, its sessions' two
//! sockets each, its waker (worker results) and, on the loop that handles
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
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::hub::Hubs;
use crate::listener::{Accepted, Listener};
use crate::pool::Pool;
use crate::session::{Ctx, Session};
use crate::shared::Shared;
use crate::timers::Timers;
use crate::transport::Ready;
use crate::workers::Inbox;

/// Listeners own the tokens below this; sessions' start here.
pub const MAX_LISTENERS: usize = crate::session::FIRST_TOKEN;
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

pub struct Loop {
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
        }
    };
}

impl Loop {
    /// A loop serving `listeners`; `signals` makes it the one that handles
    /// SIGINT/SIGTERM and SIGHUP.
    pub fn new(
        shared: Arc<Shared>,
        mut listeners: Vec<Listener>,
        signals: bool,
    ) -> Result<Loop, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        if listeners.len() > MAX_LISTENERS {
            return Err(format!("at most {MAX_LISTENERS} listeners"));
        }
        for (i, l) in listeners.iter_mut().enumerate() {
            l.register(poll.registry(), Token(i))
                .map_err(|e| e.to_string())?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?);
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
        })
    }

    /// Run until SIGINT/SIGTERM and the drain that follows.
    pub fn run(&mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        let mut touched: Vec<usize> = Vec::new();
        // With --busy-poll, the loop spins this long after the last event
        // instead of sleeping: a wake-up from epoll costs more than the
        // round trip itself on loopback.
        let mut spin_until = Instant::now();
        loop {
            let now = Instant::now();
            let can_accept = self.accept_paused_until.is_none()
                && self.accept_ready.iter().any(|r| *r)
                && !self.shared.at_capacity();
            let hubs = self.hubs.busy();
            let timeout = if !self.pending.is_empty() || hubs || can_accept || now < spin_until {
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
            if !events.is_empty() && !self.shared.busy_poll.is_zero() {
                spin_until = self.now + self.shared.busy_poll;
            }
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
            if signal && self.on_signal(&mut touched) {
                return Ok(());
            }
            if wake {
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
                        self.accept(i);
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
                if self.sessions.is_empty() {
                    info!("all connections closed, exiting");
                    return Ok(());
                }
                if self.now >= deadline {
                    info!(
                        "drain time over, {} connections dropped",
                        self.sessions.len()
                    );
                    self.close_all();
                    return Ok(());
                }
            }
        }
    }

    fn run_session(&mut self, key: usize) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let mut cx = ctx!(self);
        if !s.ready(&mut cx) {
            s.close(&mut cx);
            self.sessions.remove(key);
            self.shared.release();
            // A slot is free again: take what waits in the backlog (next turn,
            // so this batch never sees the slot reused).
            self.accept_ready.fill(true);
            return;
        }
        if s.more {
            self.pending.push(key);
        }
        if let Some(d) = s.next_deadline(&self.shared.limits) {
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
        loop {
            if !self.shared.admit() {
                // Leave the rest in the kernel backlog until a slot frees up.
                return;
            }
            let accepted = listener.accept(&self.shared);
            if !matches!(accepted, Ok(Accepted::Conn(..))) {
                self.shared.release();
            }
            match accepted {
                Ok(Accepted::Conn(stream, addr)) => {
                    let entry = self.sessions.vacant_entry();
                    let key = entry.key();
                    let id = self.shared.next_id();
                    let mut s = Session::new(
                        id,
                        key,
                        stream,
                        addr,
                        listener.proxy_protocol,
                        &self.shared,
                        self.now,
                    );
                    if let Err(e) = s.register(self.poll.registry()) {
                        warn!("cannot register connection from {addr}: {e}");
                        self.shared.release();
                        continue;
                    }
                    let d = s.next_deadline(&self.shared.limits);
                    if let Some(d) = d {
                        s.armed = Some(d);
                        self.timers.arm(d, key, id);
                    }
                    entry.insert(s);
                    debug!("conn {id} accepted from {addr} on {listener}");
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

    /// Returns true when the process should exit now.
    fn on_signal(&mut self, touched: &mut Vec<usize>) -> bool {
        let mut got = false;
        let mut reload = false;
        let Some(signals) = self.signals.as_mut() else {
            return false;
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
            return false;
        }
        if self.drain_deadline.is_some() {
            info!("second signal, exiting now");
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
