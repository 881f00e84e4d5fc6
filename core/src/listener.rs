//! The sockets clients arrive on: TCP (plain or TLS) and Unix stream
//! sockets, each with what its connections need to know (TLS, PROXY
//! header), and accepting from them into a [`Stream`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::{Interest, Registry, Token};
use openssl::ssl::Ssl;

use crate::shared::Shared;
use crate::transport::tls::TlsStream;
use crate::transport::Stream;

pub enum Socket {
    Tcp(mio::net::TcpListener),
    /// The path is removed when the listener goes.
    Unix(mio::net::UnixListener, PathBuf),
    /// A client connection's `udp-listen`: each new source address gets
    /// a socket of its own, bound to the same address and connected to
    /// the source, which the kernel then prefers for that source's
    /// datagrams (so the session's local side is an ordinary connected
    /// datagram socket).
    Udp(mio::net::UdpSocket, SocketAddr),
}

pub struct Listener {
    pub socket: Socket,
    /// Connections start with a TLS handshake.
    pub tls: bool,
    /// Connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// A client connection's local listener (`tcp-listen`, `unix-listen`,
    /// `udp-listen`): the index of its connector in the loop. `None`: a
    /// WebSocket server listener.
    pub connect: Option<usize>,
    /// Accepted connections go to the loop with the fewest sessions
    /// (`--threads`); `false` for client connections' local listeners,
    /// whose sessions stay on loop 0.
    pub spread: bool,
}

/// The address a Unix socket client is given: it has no IP address (a
/// PROXY header, when the listener expects one, tells the real one).
pub const UNIX_CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.socket {
            Socket::Tcp(l) => {
                let scheme = match (self.connect, self.tls) {
                    (Some(_), _) => "tcp-listen",
                    (None, true) => "wss",
                    (None, false) => "ws",
                };
                match l.local_addr() {
                    Ok(a) => write!(f, "{scheme}://{a}"),
                    Err(_) => write!(f, "{scheme}://?"),
                }
            }
            Socket::Unix(_, p) if self.connect.is_some() => {
                write!(f, "unix-listen://{}", p.display())
            }
            Socket::Unix(_, p) => write!(f, "unix:{}", p.display()),
            Socket::Udp(_, a) => write!(f, "udp-listen://{a}"),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Socket::Unix(_, p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bind a Unix stream socket at `path`: a socket file left by an earlier
/// run is removed first (anything else there is an error), and `mode`
/// sets its permission bits. Without `mode` the file has what the umask
/// leaves of 0777 (the kernel's default for a socket file), as before.
pub fn bind_unix(path: &Path, mode: Option<u32>) -> io::Result<mio::net::UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
    }
    let Some(m) = mode else {
        return mio::net::UnixListener::bind(path);
    };
    // Between `bind` and `set_permissions` anyone the umask lets in could
    // connect before the mode shuts them out: the file is created owner-only
    // and only then opened up (or down) to `mode`.
    let l = bind_owner_only(path)?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(l)
}

/// `bind` of a socket file of mode 0600 whatever the umask. Linux gives
/// the file the socket inode's mode less the umask (`unix_bind`), so the
/// mode is set on the socket before `bind`: no process-wide umask change,
/// which other threads (a plugin's) creating files meanwhile would inherit.
fn bind_owner_only(path: &Path) -> io::Result<mio::net::UnixListener> {
    use std::os::fd::AsRawFd;
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    // SAFETY: fchmod on a descriptor this function owns; no memory is
    // passed, and failure is reported through errno.
    if unsafe { libc::fchmod(socket.as_raw_fd(), 0o600) } != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::UnixListener::from_std(socket.into()))
}

/// A UDP socket for `udp-listen` at `addr`: address and port reuse, so
/// the per-source sockets [`udp_for_source`] makes can share the address.
pub fn bind_udp(addr: SocketAddr) -> io::Result<mio::net::UdpSocket> {
    let s = reusable_udp(addr)?;
    route_unconnected_to_first(&s)?;
    Ok(mio::net::UdpSocket::from_std(s.into()))
}

/// The listener is the first socket of its address's reuse-port group
/// (index 0). A one-instruction classic BPF program that always answers 0
/// makes the kernel give it every datagram no connected socket matches,
/// instead of spreading new sources over the group by hash: a source's
/// socket, between its `bind` and its `connect`, then never catches
/// another source's datagrams, nor its own ahead of those still queued at
/// the listener (connected sockets are matched before the group's program
/// runs, so their sources are unaffected).
fn route_unconnected_to_first(s: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // BPF_RET | BPF_K with k = 0: "return index 0".
    let program = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: setsockopt reads `fprog` and the one instruction it points
    // to, both alive for the whole call, and copies them into the kernel;
    // the descriptor is owned by `s`. Failure is reported through errno.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast::<libc::c_void>(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn reusable_udp(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// A datagram and who sent it.
pub type Datagram = (SocketAddr, Vec<u8>);

/// The socket of one `udp-listen` source: bound where the listener is and
/// connected to `source`, so the kernel delivers that source's datagrams
/// to it and replies leave from the listener's address. Between its
/// `bind` and its `connect` it is an unconnected member of the address's
/// reuse-port group; the group's program sends every unmatched datagram to
/// the listener (`route_unconnected_to_first`), so it should catch none,
/// but should the program be missing anything it queued then is drained
/// and returned with its senders, for the caller to hand on.
pub fn udp_for_source(
    local: SocketAddr,
    source: SocketAddr,
) -> io::Result<(Stream, Vec<Datagram>)> {
    let s = reusable_udp(local)?;
    s.connect(&source.into())?;
    let s: std::net::UdpSocket = s.into();
    let mut strays = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => strays.push((from, buf[..n].to_vec())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Ok((Stream::Udp(mio::net::UdpSocket::from_std(s)), strays))
}

/// What [`Listener::accept`] got.
pub enum Accepted {
    Conn(Stream, SocketAddr),
    /// A client came and went, or its TLS state could not be made: nothing
    /// to do for it, but keep accepting.
    Skip(String),
}

impl Listener {
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match &mut self.socket {
            Socket::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Socket::Unix(l, _) => registry.register(l, token, Interest::READABLE),
            Socket::Udp(l, _) => registry.register(l, token, Interest::READABLE),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = match &mut self.socket {
            Socket::Tcp(l) => registry.deregister(l),
            Socket::Unix(l, _) => registry.deregister(l),
            Socket::Udp(l, _) => registry.deregister(l),
        };
    }

    /// One connection; `Err` as from accept(2) (WouldBlock when none waits).
    pub fn accept(&self, shared: &Shared) -> io::Result<Accepted> {
        match &self.socket {
            Socket::Udp(..) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "datagrams are received, not accepted",
            )),
            Socket::Unix(l, _) => {
                let (s, _) = l.accept()?;
                Ok(Accepted::Conn(Stream::Unix(s), UNIX_CLIENT))
            }
            Socket::Tcp(l) => {
                let (s, addr) = l.accept()?;
                if let Err(e) = s.set_nodelay(true) {
                    log::debug!("TCP_NODELAY on {addr}: {e}");
                }
                if !self.tls {
                    return Ok(Accepted::Conn(Stream::Tcp(s), addr));
                }
                let Some(tls) = shared.tls.as_ref() else {
                    return Ok(Accepted::Skip(format!("{addr}: no TLS context")));
                };
                // The context current now: a reload later leaves this one alone.
                let ssl = Ssl::new(&tls.context()).map(|mut ssl| {
                    ssl.set_accept_state();
                    ssl
                });
                match ssl
                    .map_err(io::Error::other)
                    .and_then(|ssl| TlsStream::new(ssl, s))
                {
                    Ok(t) => Ok(Accepted::Conn(Stream::Tls(Box::new(t)), addr)),
                    Err(e) => Ok(Accepted::Skip(format!("{addr}: cannot start TLS: {e}"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_unix_socket_given_a_mode_is_never_more_open_than_the_owner() {
        let dir = std::env::temp_dir().join(format!("websocksy-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        // The moment between bind and chmod, caught by binding alone.
        let l = bind_owner_only(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        drop(l);
        let _l = bind_unix(&path, Some(0o660)).unwrap();
        assert_eq!(mode_of(&path), 0o660);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
