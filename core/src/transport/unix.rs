//! Unix stream and datagram sockets: connecting without blocking.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram as StdUnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use mio::net::{UnixDatagram, UnixStream};

use super::{Started, Stream};

pub fn connect_stream(path: &Path) -> io::Result<Started> {
    let s = UnixStream::connect(path)?;
    Ok(Started::InProgress(Stream::Unix(s)))
}

pub fn connect_result(s: &mut UnixStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// The original never bound its datagram socket, so the peer had no address
/// to answer to. Bind to a unique abstract name first (no file to clean up).
pub fn connect_datagram(path: &Path) -> io::Result<Started> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "websocksy-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let local = SocketAddr::from_abstract_name(name.as_bytes())?;
    let s = StdUnixDatagram::bind_addr(&local)?;
    s.connect(path)?;
    s.set_nonblocking(true)?;
    Ok(Started::Connected(Stream::UnixDgram(
        UnixDatagram::from_std(s),
    )))
}
