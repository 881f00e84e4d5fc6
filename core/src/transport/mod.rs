//! The sockets a session moves bytes over, whichever end they serve.
//!
//! A [`Stream`] is one socket of any kind the bridge speaks: the accepted
//! WebSocket connection, or a peer. The session above it only reads,
//! writes, writes a list of slices, shuts the write side and registers it
//! (sozu's `SocketHandler` shape); it never asks which kind it has, except
//! whether one read is one datagram. TLS (`tls.rs`, either role) is one
//! variant like the others: its handshake is a state of the stream,
//! driven by the same `read`/`write` calls (and by [`Stream::handshake`]
//! for a peer, which must be up before the 101), and the plaintext it
//! holds in user space is reported by [`Stream::has_buffered_input`], since
//! no readiness event will announce it. Plain sockets keep their direct
//! `writev`; TLS gathers slices into one `SSL_write`. Standard
//! input/output, or a PROXY header, would be one more variant or state.
//!
//! Connecting follows mio's non-blocking procedure: start the connect,
//! register, wait for WRITABLE, then [`Stream::connect_result`] tells
//! whether it worked.

pub mod tcp;
pub mod tls;
pub mod udp;
pub mod unix;

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::{Interest, Registry, Token};

/// A connected (or connecting) socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    Udp(mio::net::UdpSocket),
    UnixDgram(mio::net::UnixDatagram),
    Tls(Box<tls::TlsStream>),
    /// No socket: a client-role WebSocket end between connections
    /// (resolving the server's name, waiting to retry). Reads and writes
    /// would block; there is nothing to register or shut down.
    Unconnected,
}

/// Outcome of starting a connect.
pub enum Started {
    /// Usable now (datagram sockets).
    Connected(Stream),
    /// Wait for WRITABLE, then ask [`Stream::connect_result`].
    InProgress(Stream),
}

/// Retry a call that a signal interrupted.
fn again<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

impl Stream {
    /// One read is one message on these.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Stream::Udp(_) | Stream::UnixDgram(_))
    }

    /// Input held in user space that the socket's readiness does not show.
    /// Plain sockets hold none; TLS holds decrypted records.
    pub fn has_buffered_input(&self) -> bool {
        match self {
            Stream::Tls(t) => t.has_buffered_input(),
            _ => false,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// A TLS stream whose handshake has not finished.
    pub fn handshaking(&self) -> bool {
        matches!(self, Stream::Tls(t) if !t.established())
    }

    /// Drive a preamble (the TLS handshake) without moving data:
    /// `Ok(true)` when the stream is ready for it.
    pub fn handshake(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tls(t) => t.handshake(),
            _ => Ok(true),
        }
    }

    /// The events to act on: a TLS read may need the socket writable
    /// (a handshake or key update flight) and a write may need it
    /// readable, so on TLS either event retries both.
    pub fn widen(&self, r: Ready) -> Ready {
        match self {
            Stream::Tls(_) if r.r() || r.w() => {
                let mut r = r;
                r.insert(Ready(Ready::R | Ready::W));
                r
            }
            _ => r,
        }
    }

    /// Look at what waits to be read without taking it (a PROXY header
    /// must be read without a byte of what follows, which may belong to a
    /// TLS handshake). Stream sockets only.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        again(|| match self {
            Stream::Tcp(s) => s.peek(buf),
            Stream::Unix(s) => unix::peek(s, buf),
            // The socket under TLS: a PROXY header precedes the handshake.
            Stream::Tls(t) => t.socket().peek(buf),
            Stream::Udp(_) | Stream::UnixDgram(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no peek on a datagram socket",
            )),
            Stream::Unconnected => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    /// Read in clear, past any TLS: a PROXY header that precedes the
    /// handshake. Plain streams read as usual.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tls(t) => again(|| t.read_raw(buf)),
            _ => self.read(buf),
        }
    }

    /// Write in clear, past any TLS (a PROXY header to a `tls://` peer).
    pub fn write_raw(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tls(t) => again(|| t.write_raw(buf)),
            _ => self.write(buf),
        }
    }

    /// Our end's address, for TCP.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Tls(t) => t.socket().local_addr().ok(),
            _ => None,
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => registry.register(s, token, both),
            Stream::Unix(s) => registry.register(s, token, both),
            Stream::Udp(s) => registry.register(s, token, both),
            Stream::UnixDgram(s) => registry.register(s, token, both),
            Stream::Tls(t) => registry.register(t.socket_mut(), token, both),
            Stream::Unconnected => Ok(()),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        // The socket is dropped right after; a failure here changes nothing.
        let _ = match self {
            Stream::Tcp(s) => registry.deregister(s),
            Stream::Unix(s) => registry.deregister(s),
            Stream::Udp(s) => registry.deregister(s),
            Stream::UnixDgram(s) => registry.deregister(s),
            Stream::Tls(t) => registry.deregister(t.socket_mut()),
            Stream::Unconnected => Ok(()),
        };
    }

    /// After a WRITABLE event on a connecting socket: `Ok(true)` connected,
    /// `Ok(false)` still in progress, `Err` failed.
    pub fn connect_result(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tcp(s) => tcp::connect_result(s),
            Stream::Unix(s) => unix::connect_result(s),
            Stream::Tls(t) => tcp::connect_result(t.socket_mut()),
            Stream::Udp(_) | Stream::UnixDgram(_) => Ok(true),
            Stream::Unconnected => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// A stream read, or one datagram; never `Interrupted`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        again(|| match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Udp(s) => s.recv(buf),
            Stream::UnixDgram(s) => s.recv(buf),
            Stream::Tls(t) => t.read(buf),
            Stream::Unconnected => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    /// After a read that gave `n` bytes of the `asked` offered: a plain
    /// stream socket that gave fewer is drained, so its read bit is
    /// cleared without a second read that could only say WouldBlock
    /// (mio is edge-triggered: bytes or a FIN arriving later raise a new
    /// event). Not TLS, which may hold plaintext or want another record,
    /// nor datagrams, where a short read is just a short datagram; and not
    /// once the other side hung up, since the EOF still has to be read.
    pub fn note_read(&self, rd: &mut Ready, n: usize, asked: usize) {
        if n < asked && !rd.hup() && matches!(self, Stream::Tcp(_) | Stream::Unix(_)) {
            rd.clear_r();
        }
    }

    /// A stream write (may be partial), or one whole datagram; never `Interrupted`.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        again(|| match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Udp(s) => s.send(buf),
            Stream::UnixDgram(s) => s.send(buf),
            Stream::Tls(t) => t.write(buf),
            Stream::Unconnected => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    /// Several slices with one call (`writev`) on stream sockets; a
    /// datagram socket sends only the first non-empty one (one message).
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        again(|| match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(t) => t.write_vectored(bufs),
            Stream::Udp(_) | Stream::UnixDgram(_) => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                self.write(first)
            }
            Stream::Unconnected => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    /// Send FIN after the data already written (TLS: close_notify
    /// first); a no-op for datagrams.
    pub fn shutdown_write(&mut self) {
        // ENOTCONN here means the other side is already gone, which the next read reports.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tls(t) => {
                t.shutdown_write();
                Ok(())
            }
            Stream::Udp(_) | Stream::UnixDgram(_) | Stream::Unconnected => Ok(()),
        };
    }

    /// Stop both directions at once: the other side sees EOF now, even
    /// while this process still holds the descriptor.
    pub fn shutdown_both(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(t) => {
                t.shutdown_both();
                Ok(())
            }
            Stream::Udp(_) | Stream::UnixDgram(_) | Stream::Unconnected => Ok(()),
        };
    }
}

/// Readiness bits recorded from events, cleared by WouldBlock (sozu's
/// rule: edge-triggered events are remembered in user space).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ready(u8);

impl Ready {
    const R: u8 = 1;
    const W: u8 = 2;
    /// The other side will send nothing more (FIN): sticky, kept even
    /// while backpressure stops reads, so a stalled session still learns it.
    const HUP: u8 = 4;
    /// The socket failed (RST): sticky like `HUP`.
    const ERR: u8 = 8;

    pub fn from_event(ev: &mio::event::Event) -> Ready {
        let mut r = 0;
        // Errors and hang-ups are reported by the next read or write, so
        // they make that operation happen; they are also kept apart, for
        // when backpressure means no read or write is coming.
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            r |= Self::R;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            r |= Self::W;
        }
        if ev.is_read_closed() {
            r |= Self::HUP;
        }
        if ev.is_error() {
            r |= Self::ERR;
        }
        Ready(r)
    }
    /// Data held in user space: as if the socket had said "readable".
    pub fn readable() -> Ready {
        Ready(Self::R)
    }
    pub fn r(self) -> bool {
        self.0 & Self::R != 0
    }
    pub fn w(self) -> bool {
        self.0 & Self::W != 0
    }
    pub fn hup(self) -> bool {
        self.0 & Self::HUP != 0
    }
    pub fn err(self) -> bool {
        self.0 & Self::ERR != 0
    }
    pub fn clear_r(&mut self) {
        self.0 &= !Self::R;
    }
    pub fn clear_w(&mut self) {
        self.0 &= !Self::W;
    }
    pub fn insert(&mut self, o: Ready) {
        self.0 |= o.0;
    }
}
