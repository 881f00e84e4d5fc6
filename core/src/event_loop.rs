//! The event loop: one mio `Poll` for the listener, every session's two
//! sockets, the worker pool's waker and the signal pipe.
//!
//! Tokens: session `key` owns `2*key` (client) and `2*key+1` (peer); the
//! fixed tokens sit at the top of the range. The loop only records
//! readiness; each touched session then does its I/O in `Session::ready`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::backend::Backend;
use crate::config::Settings;
use crate::pool::Pool;
use crate::session::{Ctx, Env, Session};
use crate::timers::Timers;
use crate::transport::{Ready, Stream};
use crate::workers::Workers;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const WORKERS: usize = 4;
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    sessions: Slab<Session>,
    timers: Timers,
    workers: Workers,
    signals: Signals,
    env: Env,
    max_connections: usize,
    next_id: u64,
    pending: Vec<usize>,
    accept_ready: bool,
    accept_paused_until: Option<Instant>,
    drain: Duration,
    drain_deadline: Option<Instant>,
    busy_poll: Duration,
}

/// Bind `addr` the way the original did: address reuse, and dual-stack on `::`.
fn listen_on(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The most descriptors this process may have, raised to the hard limit.
fn descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!("cannot read or raise the descriptor limit: {e}");
            1024
        }
    }
}

impl Server {
    pub fn bind(settings: &Settings, backend: Arc<dyn Backend>) -> Result<Server, String> {
        let addrs: Vec<SocketAddr> = (settings.listen.as_str(), settings.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve listen address '{}': {e}", settings.listen))?
            .collect();
        let mut last = None;
        let mut bound = None;
        for a in &addrs {
            match listen_on(*a) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last = Some(format!("cannot listen on {a}: {e}")),
            }
        }
        // `::` on a host without IPv6 still deserves a listener.
        if bound.is_none() && settings.listen == "::" {
            bound = listen_on((std::net::Ipv4Addr::UNSPECIFIED, settings.port).into()).ok();
        }
        let std_listener =
            bound.ok_or_else(|| last.unwrap_or_else(|| "no listen address".into()))?;
        let local_addr = std_listener.local_addr().map_err(|e| e.to_string())?;
        let mut listener = TcpListener::from_std(std_listener);

        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?);
        let workers =
            Workers::new(WORKERS, waker).map_err(|e| format!("cannot start workers: {e}"))?;
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("cannot catch signals: {e}"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| e.to_string())?;

        let limit = descriptor_limit();
        let max_connections = settings.max_connections.unwrap_or_else(|| {
            usize::try_from(limit.saturating_sub(64) / 2)
                .unwrap_or(usize::MAX)
                .max(1)
        });
        let env = Env {
            backend,
            ping: settings.ping,
            pong_timeout: settings.pong_timeout,
            idle_timeout: settings.idle_timeout,
            handshake_timeout: settings.handshake_timeout,
            connect_timeout: settings.connect_timeout,
            max_message_size: settings.max_message_size,
            now: Instant::now(),
            pool: Pool::default(),
        };
        info!("listening on {local_addr} (max {max_connections} connections)");
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            sessions: Slab::new(),
            timers: Timers::default(),
            workers,
            signals,
            env,
            max_connections,
            next_id: 1,
            pending: Vec::new(),
            accept_ready: true,
            accept_paused_until: None,
            drain: settings.drain_timeout,
            drain_deadline: None,
            busy_poll: settings.busy_poll,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
            let can_accept = self.accept_ready
                && self.listener.is_some()
                && self.sessions.len() < self.max_connections;
            let timeout = if !self.pending.is_empty() || can_accept || now < spin_until {
                Some(Duration::ZERO)
            } else {
                [
                    self.timers.next(),
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
            self.env.now = Instant::now();
            if !events.is_empty() && !self.busy_poll.is_zero() {
                spin_until = self.env.now + self.busy_poll;
            }
            touched.clear();
            touched.append(&mut self.pending);
            let mut wake = false;
            let mut signal = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_ready = true,
                    WAKER => wake = true,
                    SIGNALS => signal = true,
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
                while let Some(done) = self.workers.try_recv() {
                    if let Some(s) = self.sessions.get_mut(done.key).filter(|s| s.id == done.id) {
                        let mut cx = Ctx {
                            registry: self.poll.registry(),
                            workers: &self.workers,
                            env: &mut self.env,
                        };
                        s.on_outcome(done.outcome, &mut cx);
                        touched.push(done.key);
                    }
                }
            }
            while let Some((key, id)) = self.timers.pop_due(self.env.now) {
                if let Some(s) = self.sessions.get_mut(key).filter(|s| s.id == id) {
                    if s.armed.is_some_and(|a| a <= self.env.now) {
                        s.armed = None;
                    }
                    let mut cx = Ctx {
                        registry: self.poll.registry(),
                        workers: &self.workers,
                        env: &mut self.env,
                    };
                    s.on_timeout(&mut cx);
                    touched.push(key);
                }
            }
            if self.accept_paused_until.is_some_and(|t| t <= self.env.now) {
                self.accept_paused_until = None;
                self.accept_ready = true;
            }
            if self.accept_ready {
                self.accept();
            }
            touched.sort_unstable();
            touched.dedup();
            for &key in &touched {
                self.run_session(key);
            }
            if let Some(deadline) = self.drain_deadline {
                if self.sessions.is_empty() {
                    info!("all connections closed, exiting");
                    return Ok(());
                }
                if self.env.now >= deadline {
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
        let mut cx = Ctx {
            registry: self.poll.registry(),
            workers: &self.workers,
            env: &mut self.env,
        };
        if !s.ready(&mut cx) {
            s.close(&mut cx);
            self.sessions.remove(key);
            // A slot is free again: take what waits in the backlog (next turn,
            // so this batch never sees the slot reused).
            if self.listener.is_some() {
                self.accept_ready = true;
            }
            return;
        }
        if s.more {
            self.pending.push(key);
        }
        if let Some(d) = s.next_deadline(&self.env) {
            if s.armed.is_none_or(|a| d < a) {
                self.timers.arm(d, key, s.id);
                s.armed = Some(d);
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            self.accept_ready = false;
            return;
        };
        loop {
            if self.sessions.len() >= self.max_connections {
                // Leave the rest in the kernel backlog until a slot frees up.
                return;
            }
            match listener.accept() {
                Ok((stream, addr)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!("TCP_NODELAY on {addr}: {e}");
                    }
                    let entry = self.sessions.vacant_entry();
                    let key = entry.key();
                    let id = self.next_id;
                    self.next_id += 1;
                    let mut s = Session::new(id, key, Stream::Tcp(stream), addr, &self.env);
                    if let Err(e) = s.register(self.poll.registry()) {
                        warn!("cannot register connection from {addr}: {e}");
                        continue;
                    }
                    let d = s.next_deadline(&self.env);
                    if let Some(d) = d {
                        s.armed = Some(d);
                        self.timers.arm(d, key, id);
                    }
                    entry.insert(s);
                    debug!("conn {id} accepted from {addr}");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
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
                    self.accept_paused_until = Some(self.env.now + Duration::from_millis(100));
                    self.accept_ready = false;
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
        for sig in self.signals.pending() {
            debug!("signal {sig}");
            got = true;
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
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.drain_deadline = Some(self.env.now + self.drain);
        let mut cx = Ctx {
            registry: self.poll.registry(),
            workers: &self.workers,
            env: &mut self.env,
        };
        for (key, s) in self.sessions.iter_mut() {
            s.shutdown(&mut cx);
            touched.push(key);
        }
        false
    }

    fn close_all(&mut self) {
        let mut cx = Ctx {
            registry: self.poll.registry(),
            workers: &self.workers,
            env: &mut self.env,
        };
        for (_, s) in self.sessions.iter_mut() {
            s.close(&mut cx);
        }
        self.sessions.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.sessions.is_empty() {
            error!("{} connections still open at exit", self.sessions.len());
        }
    }
}
