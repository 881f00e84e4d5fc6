//! UDP sockets: connected, so one message is one datagram each way.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;

use super::{Started, Stream};

pub fn connect(addr: SocketAddr) -> io::Result<Started> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(local)?;
    // connect() on UDP only sets the default destination and filters
    // replies to it; an unreachable port shows up later as ECONNREFUSED.
    s.connect(addr)?;
    Ok(Started::Connected(Stream::Udp(s)))
}
