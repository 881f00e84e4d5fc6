//! The process: bind the listener, build what the loops share, and run
//! the loops. Today that is one loop on the calling thread; `--threads`
//! (one loop per core, each with its own `SO_REUSEPORT` listener) will
//! create the others here, each from the same `Arc<Shared>`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use log::{info, warn};
use socket2::{Domain, Socket, Type};

use crate::admission::Admission;
use crate::backend::Backend;
use crate::config::Settings;
use crate::event_loop::Loop;
use crate::shared::Shared;

pub struct Server {
    local_addr: SocketAddr,
    main: Loop,
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
    pub fn bind(
        settings: &Settings,
        backend: Arc<dyn Backend>,
        admission: Admission,
    ) -> Result<Server, String> {
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
        let listener = bound.ok_or_else(|| last.unwrap_or_else(|| "no listen address".into()))?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;

        // Two descriptors per connection, and some to spare.
        let limit = descriptor_limit();
        let max_connections = settings.max_connections.unwrap_or_else(|| {
            usize::try_from(limit.saturating_sub(64) / 2)
                .unwrap_or(usize::MAX)
                .max(1)
        });
        let mut shared = Shared::new(settings, backend, max_connections)?;
        shared.admission = admission;
        let shared = Arc::new(shared);
        let main = Loop::new(shared, mio::net::TcpListener::from_std(listener), true)?;
        info!("listening on {local_addr} (max {max_connections} connections)");
        Ok(Server { local_addr, main })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Run until SIGINT/SIGTERM and the drain that follows.
    pub fn run(&mut self) -> Result<(), String> {
        self.main.run()
    }
}
