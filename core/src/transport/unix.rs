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

/// `recv(MSG_PEEK)`: std's `UnixStream::peek` is not stable yet.
pub fn peek(s: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`, which
    // we borrow mutably for the call; the descriptor is `s`'s, open while
    // `s` is borrowed.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn peek_leaves_the_bytes_in_place() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut a = UnixStream::from_std(a);
        let mut b = UnixStream::from_std(b);
        b.write_all(b"PROXY x").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(peek(&a, &mut buf).unwrap(), 7);
        assert_eq!(&buf[..7], b"PROXY x");
        let mut got = [0u8; 16];
        assert_eq!(a.read(&mut got).unwrap(), 7);
        assert_eq!(&got[..7], b"PROXY x");
        assert_eq!(
            peek(&a, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
