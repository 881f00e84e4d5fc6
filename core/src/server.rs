//! The process: bind the listeners, build what the loops share, and run
//! the loops: loop 0 on the calling thread (it handles the signals, the
//! client connections and their local listeners), and with `--threads N`
//! loops 1..N on threads of their own, each with its own poll, sessions,
//! timers and buffers, all from the same `Arc<Shared>`.
//!
//! Connections reach the loops by handoff: loop 0 accepts on every server
//! listener and passes each connection to the loop with the fewest
//! sessions (`handoff.rs`). `SO_REUSEPORT` (a listener per loop, the
//! kernel spreading connections by a hash of their addresses) was measured
//! against it and gave no more upgrades or round trips per second on this
//! 2-CPU machine, while it spreads by hash (a few long connections can
//! all land on one loop), leaves Unix listeners out, and lets any other
//! process of the same user bind the port and take a share of the clients.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use log::{info, warn};
use socket2::{Domain, Socket, Type};

use crate::admission::Admission;
use crate::backend::Backend;
use crate::config::{BindAddr, Local, Settings};
use crate::connector::Connector;
use crate::event_loop::{Loop, MAX_LISTENERS};
use crate::listener::{self, bind_unix, Listener};
use crate::shared::Shared;
use crate::tls_context::{PeerTls, ServerTls};

pub struct Server {
    /// How long standard output (`--from -`) may take at exit.
    drain: std::time::Duration,
    local_addr: SocketAddr,
    main: Loop,
    /// Loops 1..N, started by [`run`](Self::run).
    others: Vec<Loop>,
    connectors: Vec<Arc<Connector>>,
}

/// `--threads`, or one loop per CPU this process may run on.
fn loop_count(settings: &Settings) -> usize {
    // Client connections alone run on one loop: they are few and long.
    if !settings.serve {
        return 1;
    }
    settings.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
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

/// Resolve `host` and listen on the first of its addresses that binds.
fn listen_tcp(host: &str, port: u16) -> Result<std::net::TcpListener, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen address '{host}': {e}"))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match listen_on(*a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(format!("cannot listen on {a}: {e}")),
        }
    }
    // `::` on a host without IPv6 still deserves a listener.
    if host == "::" {
        if let Ok(l) = listen_on((std::net::Ipv4Addr::UNSPECIFIED, port).into()) {
            return Ok(l);
        }
    }
    Err(last.unwrap_or_else(|| "no listen address".into()))
}

fn tcp_listener(l: std::net::TcpListener, tls: bool, proxy_protocol: bool) -> Listener {
    Listener {
        socket: listener::Socket::Tcp(mio::net::TcpListener::from_std(l)),
        tls,
        proxy_protocol,
        connect: None,
        spread: true,
    }
}

/// The local listener of client connection `i`, if its local side is one.
fn connect_listener(i: usize, c: &Connector) -> Result<Option<Listener>, String> {
    let at = &c.settings.at;
    let socket = match &c.settings.from {
        Local::TcpListen { host, port } => {
            let l = listen_tcp(host, *port).map_err(|e| format!("{at}: {e}"))?;
            listener::Socket::Tcp(mio::net::TcpListener::from_std(l))
        }
        Local::UnixListen(path) => {
            let l = bind_unix(path, None).map_err(|e| {
                format!(
                    "{at}: cannot listen on unix-listen://{}: {e}",
                    path.display()
                )
            })?;
            listener::Socket::Unix(l, path.clone())
        }
        Local::UdpListen { host, port } => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("{at}: cannot resolve '{host}': {e}"))?
                .next()
                .ok_or_else(|| format!("{at}: no address for '{host}'"))?;
            let l = listener::bind_udp(addr)
                .map_err(|e| format!("{at}: cannot listen on udp-listen://{addr}: {e}"))?;
            let bound = l.local_addr().map_err(|e| e.to_string())?;
            listener::Socket::Udp(l, bound)
        }
        Local::Peer(_) | Local::Stdio => return Ok(None),
    };
    Ok(Some(Listener {
        socket,
        tls: false,
        proxy_protocol: false,
        connect: Some(i),
        spread: false,
    }))
}

impl Server {
    /// Bind every listener: the `-l`/`-p` one (unless `--bind` replaces
    /// it), then each `--bind` in order. Each is logged on its own line,
    /// `listening on SCHEME://ADDR`; the `-l`/`-p` one keeps its older
    /// line, `listening on ADDR (max N connections)`.
    pub fn bind(
        settings: &Settings,
        backend: Arc<dyn Backend>,
        admission: Admission,
        tls: Option<ServerTls>,
        peer_tls: PeerTls,
        connectors: Vec<Arc<Connector>>,
    ) -> Result<Server, String> {
        let loops = loop_count(settings);
        let mut listeners = Vec::new();
        let mut local_addr = None;
        if settings.serve && (settings.binds.is_empty() || settings.listen_given) {
            let l = listen_tcp(&settings.listen, settings.port)?;
            local_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
            // With a certificate, the -l/-p listener speaks wss://.
            listeners.push(tcp_listener(l, tls.is_some(), settings.proxy_protocol));
        }
        let binds: &[_] = if settings.serve { &settings.binds } else { &[] };
        for b in binds {
            let spec = &b.value;
            let l = match &spec.addr {
                BindAddr::Tcp { host, port } => {
                    let l = listen_tcp(host, *port).map_err(|e| format!("{}: {e}", b.at))?;
                    tcp_listener(l, spec.tls, spec.proxy_protocol)
                }
                BindAddr::Unix(path) => {
                    let l = bind_unix(path, spec.mode).map_err(|e| {
                        format!("{}: cannot listen on unix:{}: {e}", b.at, path.display())
                    })?;
                    Listener {
                        socket: listener::Socket::Unix(l, path.clone()),
                        tls: false,
                        proxy_protocol: spec.proxy_protocol,
                        connect: None,
                        spread: true,
                    }
                }
            };
            listeners.push(l);
        }
        let served = listeners.len();
        for (i, c) in connectors.iter().enumerate() {
            if let Some(l) = connect_listener(i, c)? {
                listeners.push(l);
            }
        }
        if listeners.len() > MAX_LISTENERS {
            return Err(format!("at most {MAX_LISTENERS} listeners"));
        }

        // Two descriptors per connection, and some to spare.
        let limit = descriptor_limit();
        let max_connections = settings.max_connections.unwrap_or_else(|| {
            usize::try_from(limit.saturating_sub(64) / 2)
                .unwrap_or(usize::MAX)
                .max(1)
        });
        let mut shared = Shared::new(settings, backend, max_connections)?;
        shared.set_admission(admission)?;
        shared.tls = tls;
        shared.peer_tls = Some(peer_tls);
        let labels: Vec<String> = listeners
            .iter()
            .map(|l| match l.connect.and_then(|i| connectors.get(i)) {
                Some(c) => format!("{l} for {}", c.label),
                None => l.to_string(),
            })
            .collect();
        let shared = Arc::new(shared);
        let mut doors = Vec::with_capacity(loops);
        let mut parts = Vec::with_capacity(loops);
        for _ in 0..loops {
            let (d, p) = crate::handoff::Door::open(crate::event_loop::WAKER)
                .map_err(|e| format!("cannot create poll: {e}"))?;
            doors.push(d);
            parts.push(p);
        }
        let doors = Arc::new(doors);
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or("no event loop")?;
        let main = Loop::new(
            0,
            first,
            Arc::clone(&doors),
            Arc::clone(&shared),
            listeners,
            connectors.clone(),
            true,
        )?;
        let mut others = Vec::new();
        for (k, p) in parts.enumerate() {
            others.push(Loop::new(
                k + 1,
                p,
                Arc::clone(&doors),
                Arc::clone(&shared),
                Vec::new(),
                Vec::new(),
                false,
            )?);
        }
        match local_addr {
            Some(a) => info!("listening on {a} (max {max_connections} connections)"),
            None if served > 0 => info!("accepting at most {max_connections} connections"),
            None => {}
        }
        for (i, label) in labels.iter().enumerate() {
            if i > 0 || local_addr.is_none() {
                info!("listening on {label}");
            }
        }
        Ok(Server {
            drain: settings.drain_timeout,
            local_addr: local_addr.unwrap_or(crate::listener::UNIX_CLIENT),
            main,
            others,
            connectors,
        })
    }

    /// The `-l`/`-p` listener's address (0.0.0.0:0 when `--bind` replaced it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Run until SIGINT/SIGTERM and the drain that follows, or, with no
    /// listener at all, until the client connections are done. `Ok(false)`:
    /// a single client connection ended badly (exit status 1).
    pub fn run(&mut self) -> Result<bool, String> {
        let mut threads = Vec::new();
        let mut r = Ok(true);
        for mut l in self.others.drain(..) {
            let name = format!("loop {}", l.id());
            match std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || l.run())
            {
                Ok(t) => threads.push((name, t)),
                Err(e) => {
                    // The loops already started would serve on without
                    // the acceptor: stop them.
                    self.main.stop_all();
                    r = Err(format!("cannot start {name}: {e}"));
                    break;
                }
            }
        }
        // A loop that fails stops every loop itself.
        if r.is_ok() {
            r = self.main.run();
        }
        // The process is done when every loop is: each drains on its own.
        for (name, t) in threads {
            match t.join() {
                Ok(Ok(_)) => {}
                // Each is logged: only the first reaches the exit message.
                Ok(Err(e)) => {
                    log::error!("{name}: {e}");
                    r = r.and(Err(format!("{name}: {e}")));
                }
                Err(_) => {
                    log::error!("{name} panicked");
                    r = r.and(Err(format!("{name} panicked")));
                }
            }
        }
        // Standard output gets all the server sent before the process exits.
        for c in &self.connectors {
            c.finish(self.drain);
        }
        r
    }
}
