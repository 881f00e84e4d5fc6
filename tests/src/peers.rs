//! Peers for the bridge to talk to, each a real socket served by a thread:
//! TCP, UDP, Unix stream and Unix datagram echo servers, and a TCP peer
//! that hands each accepted connection to the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::thread;

use crate::WAIT;

fn echo_stream<S: Read + Write>(mut s: S) {
    let mut buf = [0u8; 65536];
    loop {
        match crate::ws::read_some(&mut s, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// TCP echo server on 127.0.0.1; returns its address.
pub fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp echo");
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || echo_stream(s));
        }
    });
    addr
}

/// TLS echo server on 127.0.0.1 with this certificate chain and key;
/// returns its address. With `client_ca`, it requires a client
/// certificate signed by it. Handshake failures are sent down the
/// returned channel (the reason), so tests can see what the peer saw.
pub fn tls_echo(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> (SocketAddr, Receiver<String>) {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("TLS acceptor");
    b.set_certificate_chain_file(cert)
        .expect("peer certificate");
    b.set_private_key_file(key, SslFiletype::PEM)
        .expect("peer key");
    if let Some(ca) = client_ca {
        b.set_ca_file(ca).expect("peer client CA");
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    let acceptor = b.build();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind tls echo");
    let addr = l.local_addr().unwrap();
    let (tx, rx) = channel();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            thread::spawn(move || match acceptor.accept(s) {
                Ok(s) => echo_stream(s),
                Err(e) => {
                    let _ = tx.send(e.to_string());
                }
            });
        }
    });
    (addr, rx)
}

/// UDP echo server: every datagram goes back to its sender.
pub fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp echo");
    let addr = s.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

/// Unix stream echo server at `dir/name`.
pub fn unix_echo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let l = UnixListener::bind(&path).expect("bind unix echo");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || echo_stream(s));
        }
    });
    path
}

/// Unix datagram echo server at `dir/name`: answers to the sender's address,
/// which only works if the sender bound one.
pub fn unix_dgram_echo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let s = UnixDatagram::bind(&path).expect("bind unix dgram echo");
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if let Some(p) = from.as_pathname() {
                let _ = s.send_to(&buf[..n], p);
            } else {
                #[cfg(target_os = "linux")]
                {
                    use std::os::linux::net::SocketAddrExt;
                    if from.as_abstract_name().is_some() {
                        let _ = s.send_to_addr(&buf[..n], &from);
                        continue;
                    }
                }
                // An unbound sender: nowhere to answer (the original's defect).
            }
        }
    });
    path
}

/// A TCP peer whose connections the test drives itself.
pub struct TcpPeer {
    pub addr: SocketAddr,
    rx: Receiver<TcpStream>,
}

impl TcpPeer {
    pub fn new() -> TcpPeer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp peer");
        let addr = l.local_addr().unwrap();
        let (tx, rx) = channel();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        TcpPeer { addr, rx }
    }

    /// The next connection the bridge made (panics after [`WAIT`]).
    pub fn accept(&self) -> TcpStream {
        let s = self
            .rx
            .recv_timeout(WAIT)
            .expect("bridge did not connect to the peer");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    /// The next connection the bridge made within `wait`, if any.
    pub fn accept_within(&self, wait: std::time::Duration) -> Option<TcpStream> {
        let s = self.rx.recv_timeout(wait).ok()?;
        s.set_read_timeout(Some(WAIT)).unwrap();
        Some(s)
    }

    /// `-c host=tcp://ADDR` style argument.
    pub fn host_arg(&self) -> String {
        format!("host=tcp://{}", self.addr)
    }
}

impl Default for TcpPeer {
    fn default() -> Self {
        Self::new()
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Read exactly `n` bytes (tolerates segmentation).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).expect("read from peer");
    v
}

/// Read until EOF.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read to EOF");
    v
}

/// Make closing `s` abort the connection with a reset (RST) instead of an
/// orderly FIN: `SO_LINGER` on with a zero timeout.
pub fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a correctly sized linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

/// A TCP address on 127.0.0.1 that never answers a new handshake: a
/// listener with backlog 0 whose accept queue is already full, so the
/// kernel drops further SYNs. Keep the value alive while it is used.
pub struct UnansweringPeer {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl UnansweringPeer {
    /// Panics if the accept queue cannot be filled (the check is one
    /// connect that must time out after 100 ms).
    pub fn new() -> UnansweringPeer {
        use std::os::fd::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").expect("bind unanswering peer");
        // SAFETY: listen(2) on a bound socket we own.
        let r = unsafe { libc::listen(l.as_raw_fd(), 0) };
        assert_eq!(r, 0, "listen(fd, 0): {}", std::io::Error::last_os_error());
        let addr = l.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return UnansweringPeer {
                        addr,
                        _listener: l,
                        _queued: queued,
                    };
                }
                Err(e) => panic!("filling the accept queue of {addr}: {e}"),
            }
        }
        panic!("the accept queue of {addr} never filled: connects still complete");
    }
}

impl Default for UnansweringPeer {
    fn default() -> Self {
        Self::new()
    }
}

/// Echo everything on an accepted peer connection, on a thread, until EOF.
pub fn echo_on(s: TcpStream) -> thread::JoinHandle<()> {
    thread::spawn(move || echo_stream(s))
}

/// What a [`ProxyPeer`] read before the data: the PROXY header, as `ppp`
/// parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySeen {
    /// 1 or 2.
    pub version: u8,
    /// The client the header speaks for; `None` for v1 `UNKNOWN` and v2 `LOCAL`.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// The header's bytes.
    pub header: Vec<u8>,
}

/// A TCP peer that requires a PROXY header first: each connection's
/// header is parsed with `ppp` (an implementation independent of the
/// bridge's use of it: only the parser is shared) and reported; the bytes
/// after it are echoed. A connection without a valid header is reported
/// as `Err` with what arrived.
pub struct ProxyPeer {
    pub addr: SocketAddr,
    rx: Receiver<Result<ProxySeen, Vec<u8>>>,
}

impl ProxyPeer {
    pub fn new() -> ProxyPeer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy peer");
        let addr = l.local_addr().unwrap();
        let (tx, rx) = channel();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_read_timeout(Some(WAIT));
                let tx = tx.clone();
                thread::spawn(move || serve_proxied(s, tx));
            }
        });
        ProxyPeer { addr, rx }
    }

    /// The same on a Unix stream socket at `dir/name`; `addr` is unused.
    pub fn unix(dir: &Path, name: &str) -> (ProxyPeer, PathBuf) {
        let path = dir.join(name);
        let l = UnixListener::bind(&path).expect("bind unix proxy peer");
        let (tx, rx) = channel();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = s.set_read_timeout(Some(WAIT));
                let tx = tx.clone();
                thread::spawn(move || serve_proxied(s, tx));
            }
        });
        let addr = "0.0.0.0:0".parse().expect("placeholder address");
        (ProxyPeer { addr, rx }, path)
    }

    /// The header of the next connection (panics after [`WAIT`]).
    pub fn seen(&self) -> Result<ProxySeen, Vec<u8>> {
        self.rx
            .recv_timeout(WAIT)
            .expect("bridge did not connect to the PROXY peer")
    }
}

impl Default for ProxyPeer {
    fn default() -> Self {
        Self::new()
    }
}

/// Parse a PROXY header (v1 or v2) at the start of `got` with `ppp`:
/// `None` while it is incomplete, `Err` when it is not a valid header.
pub fn parse_proxy(got: &[u8]) -> Option<Result<ProxySeen, ()>> {
    use ppp::{v1, v2, HeaderResult, PartialResult};
    let header = HeaderResult::parse(got);
    if header.is_incomplete() {
        return None;
    }
    Some(match header {
        HeaderResult::V1(Ok(h)) => {
            let (source, destination) = match h.addresses {
                v1::Addresses::Tcp4(a) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                v1::Addresses::Tcp6(a) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                v1::Addresses::Unknown => (None, None),
            };
            Ok(ProxySeen {
                version: 1,
                source,
                destination,
                header: h.header.as_bytes().to_vec(),
            })
        }
        HeaderResult::V2(Ok(h)) => {
            let (source, destination) = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                _ => (None, None),
            };
            Ok(ProxySeen {
                version: 2,
                source,
                destination,
                header: h.as_bytes().to_vec(),
            })
        }
        _ => Err(()),
    })
}

fn serve_proxied<S: Read + Write>(
    mut s: S,
    tx: std::sync::mpsc::Sender<Result<ProxySeen, Vec<u8>>>,
) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let (seen, len) = loop {
        if let Some(seen) = parse_proxy(&got) {
            let seen = seen.map_err(|()| got.clone());
            let len = seen.as_ref().map_or(0, |h| h.header.len());
            break (seen, len);
        }
        match crate::ws::read_some(&mut s, &mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Err(got));
                return;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let ok = seen.is_ok();
    let _ = tx.send(seen);
    if !ok {
        return;
    }
    if s.write_all(&got[len..]).is_err() {
        return;
    }
    echo_stream(s);
}
