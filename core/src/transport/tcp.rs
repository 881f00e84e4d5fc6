//! TCP sockets: a non-blocking connect and its check.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::{Started, Stream};

pub fn connect(addr: SocketAddr) -> io::Result<Started> {
    // mio's connect is non-blocking: EINPROGRESS is reported as success.
    let s = TcpStream::connect(addr)?;
    Ok(Started::InProgress(Stream::Tcp(s)))
}

/// mio's six-step check: a pending error means failure; `peer_addr`
/// failing with NotConnected means the handshake is still running.
pub fn connect_result(s: &mut TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => {
            // Each frame is written with one syscall; Nagle would hold small
            // replies back behind the delayed ACK.
            s.set_nodelay(true)?;
            Ok(true)
        }
        Err(e)
            if e.kind() == io::ErrorKind::NotConnected
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
