//! The sockets a session bridges to, and how they are connected without
//! blocking the event loop.
//!
//! Connecting follows mio's non-blocking procedure: start the connect,
//! register, wait for WRITABLE, then [`PeerSock::connect_result`] tells
//! whether it worked. Datagram peers are connected sockets, so one WebSocket
//! message is one datagram each way.

mod address;
pub mod mirror;
mod tcp;
mod udp;
mod unix;

pub use address::{HostPort, PeerAddress};

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::{Interest, Registry, Token};

/// A connected (or connecting) peer socket.
#[derive(Debug)]
pub enum PeerSock {
    Tcp(mio::net::TcpStream),
    Udp(mio::net::UdpSocket),
    Unix(mio::net::UnixStream),
    UnixDgram(mio::net::UnixDatagram),
}

/// Outcome of starting a connect.
pub enum Started {
    /// Usable now (datagram sockets, most Unix connects).
    Connected(PeerSock),
    /// Wait for WRITABLE, then ask [`PeerSock::connect_result`].
    InProgress(PeerSock),
}

/// Start connecting to `addr`. `resolved` is the socket address for TCP and
/// UDP peers (already looked up off the loop); ignored for the others.
pub fn start(addr: &PeerAddress, resolved: Option<SocketAddr>) -> io::Result<Started> {
    let need = || io::Error::new(io::ErrorKind::InvalidInput, "no resolved address");
    match addr {
        PeerAddress::Tcp(_) => tcp::connect(resolved.ok_or_else(need)?),
        PeerAddress::Udp(_) => udp::connect(resolved.ok_or_else(need)?),
        PeerAddress::Unix(path) => unix::connect_stream(path),
        PeerAddress::UnixDgram(path) => unix::connect_datagram(path),
        PeerAddress::Mirror => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "mirror has no socket",
        )),
    }
}

impl PeerSock {
    /// One message is one datagram on these.
    pub fn is_datagram(&self) -> bool {
        matches!(self, PeerSock::Udp(_) | PeerSock::UnixDgram(_))
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            PeerSock::Tcp(s) => registry.register(s, token, both),
            PeerSock::Udp(s) => registry.register(s, token, both),
            PeerSock::Unix(s) => registry.register(s, token, both),
            PeerSock::UnixDgram(s) => registry.register(s, token, both),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        // The socket is dropped right after; a failure here changes nothing.
        let _ = match self {
            PeerSock::Tcp(s) => registry.deregister(s),
            PeerSock::Udp(s) => registry.deregister(s),
            PeerSock::Unix(s) => registry.deregister(s),
            PeerSock::UnixDgram(s) => registry.deregister(s),
        };
    }

    /// After a WRITABLE event on a connecting socket: `Ok(true)` connected,
    /// `Ok(false)` still in progress, `Err` failed.
    pub fn connect_result(&mut self) -> io::Result<bool> {
        match self {
            PeerSock::Tcp(s) => tcp::connect_result(s),
            PeerSock::Unix(s) => unix::connect_result(s),
            PeerSock::Udp(_) | PeerSock::UnixDgram(_) => Ok(true),
        }
    }

    /// A stream read, or one datagram.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PeerSock::Tcp(s) => s.read(buf),
            PeerSock::Udp(s) => s.recv(buf),
            PeerSock::Unix(s) => s.read(buf),
            PeerSock::UnixDgram(s) => s.recv(buf),
        }
    }

    /// A stream write (may be partial), or one whole datagram.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PeerSock::Tcp(s) => s.write(buf),
            PeerSock::Udp(s) => s.send(buf),
            PeerSock::Unix(s) => s.write(buf),
            PeerSock::UnixDgram(s) => s.send(buf),
        }
    }

    /// Send FIN after the data already written; a no-op for datagrams.
    pub fn shutdown_write(&self) {
        // ENOTCONN here means the peer is already gone, which the next read reports.
        let _ = match self {
            PeerSock::Tcp(s) => s.shutdown(Shutdown::Write),
            PeerSock::Unix(s) => s.shutdown(Shutdown::Write),
            PeerSock::Udp(_) | PeerSock::UnixDgram(_) => Ok(()),
        };
    }
}
