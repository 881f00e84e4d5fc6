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

use crate::transport::{tcp, udp, unix, Started};

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
