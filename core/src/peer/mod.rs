//! The peers a session bridges to: where they are ([`PeerAddress`]), how
//! each kind is connected without blocking the event loop ([`start`]), and
//! the one peer without a socket ([`mirror`]).
//!
//! Datagram peers are connected sockets, so one WebSocket message is one
//! datagram each way.

mod address;
pub mod mirror;

pub use address::{HostPort, PeerAddress};

use std::io;
use std::net::SocketAddr;

use crate::tls_context::PeerTls;
use crate::transport::tls::TlsStream;
use crate::transport::{tcp, udp, unix, Started, Stream};

/// Start connecting to `addr`. `resolved` is the socket address for TCP,
/// TLS and UDP peers (already looked up off the loop); ignored for the
/// others. A TLS peer's stream is TLS from the start: its handshake runs
/// once the TCP connect is done ([`Stream::handshake`]).
pub fn start(
    addr: &PeerAddress,
    resolved: Option<SocketAddr>,
    tls: Option<&PeerTls>,
) -> io::Result<Started> {
    let need = || io::Error::new(io::ErrorKind::InvalidInput, "no resolved address");
    match addr {
        PeerAddress::Tcp(_) => tcp::connect(resolved.ok_or_else(need)?),
        PeerAddress::Tls(hp) => {
            let ssl = tls
                .ok_or_else(|| io::Error::other("no TLS context for peers"))?
                .ssl(&hp.host)?;
            let socket = mio::net::TcpStream::connect(resolved.ok_or_else(need)?)?;
            let t = TlsStream::new(ssl, socket)?;
            Ok(Started::InProgress(Stream::Tls(Box::new(t))))
        }
        PeerAddress::Udp(_) => udp::connect(resolved.ok_or_else(need)?),
        PeerAddress::Unix(path) => unix::connect_stream(path),
        PeerAddress::UnixDgram(path) => unix::connect_datagram(path),
        PeerAddress::Mirror => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "mirror has no socket",
        )),
    }
}
