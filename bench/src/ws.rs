//! The client side: tungstenite does the opening handshake, then frames are
//! written and read by hand so the client costs as little CPU as possible
//! (the bridge and the client share the machine's cores) and one connection
//! can be split into a writer and a reader thread.
//!
//! * Frames written are binary, FIN, masked with a fixed key. A message
//!   sent repeatedly is masked once ([`masked_frame`]) and the same bytes
//!   are written each time: the bridge still unmasks every byte.
//! * Frames read (the server's, unmasked) are parsed in a large buffer and
//!   their payload is handed out in place, never copied.
//!
//! The server side (the WebSocket peers of the client-mode benchmarks,
//! `wsbench ws-serve`) uses the same reader with [`FrameReader::server`]
//! set: client frames must be masked and are unmasked in place; server
//! frames ([`push_server_frame`]) are unmasked. [`accept`] answers the
//! opening handshake (tungstenite's server side: the request checked, the
//! 101 with `Sec-WebSocket-Accept`).
//!
//! `wss://` ([`connect_stream`]) gives an OpenSSL stream instead of a
//! `TcpStream`. The scenarios that take one are generic over [`Conn`] and
//! are called with the concrete type, so the plain path compiles to the
//! same code as before TLS existed: no enum or trait object per read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use openssl::ssl::{ErrorCode, SslConnector, SslMethod, SslStream, SslVerifyMode};

/// Fixed masking key (RFC 6455 wants an unpredictable one; the bridge
/// cannot tell, and its unmasking work is the same).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `ws://host:port/path` or `wss://...`: the address to connect to, and
/// whether it is TLS.
pub fn url_addr(url: &str) -> io::Result<(String, bool)> {
    let (rest, tls) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a ws:// or wss:// URL: {url}"),
            ))
        }
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    Ok((host_port.to_string(), tls))
}

/// A stream whose next bytes can be looked at without taking them: the
/// socket itself (`MSG_PEEK`), or OpenSSL's decrypted bytes (`SSL_peek`).
trait Peek: Read + Write {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Peek for &TcpStream {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, buf)
    }
}

impl Peek for SslStream<TcpStream> {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.ssl_peek(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => Ok(0),
            Err(e) => Err(e
                .into_io_error()
                .unwrap_or_else(|e| io::Error::other(e.to_string()))),
        }
    }
}

/// During the handshake, reads never go past the end of the HTTP response
/// head (found by peeking), so no frame byte that follows the 101 can be
/// left in tungstenite's buffer when the stream is taken back (over TLS it
/// stays in OpenSSL's buffer for the frame reader).
struct HeadOnly<'a, S: Peek> {
    s: &'a mut S,
    /// The last 3 bytes handed out, to find a `\r\n\r\n` split across reads.
    tail: [u8; 3],
    done: bool,
}

impl<'a, S: Peek> HeadOnly<'a, S> {
    fn new(s: &'a mut S) -> Self {
        HeadOnly {
            s,
            tail: [0; 3],
            done: false,
        }
    }
}

impl<S: Peek> Read for HeadOnly<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.s.peek(buf)?;
        if n == 0 {
            return Ok(0);
        }
        let mut joined = Vec::with_capacity(3 + n);
        joined.extend_from_slice(&self.tail);
        joined.extend_from_slice(&buf[..n]);
        let take = match joined.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => {
                self.done = true;
                p + 4 - 3
            }
            None => n,
        };
        let got = self.s.read(&mut buf[..take])?;
        for &b in &buf[..got] {
            self.tail = [self.tail[1], self.tail[2], b];
        }
        Ok(got)
    }
}

impl<S: Peek> Write for HeadOnly<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

/// How a `wss://` client sets up TLS.
#[derive(Default, Clone)]
pub struct TlsOptions {
    /// Verify the bridge's certificate against this PEM file (name
    /// `localhost`); without it nothing is verified.
    pub ca: Option<String>,
    /// TLS 1.3 cipher suites (OpenSSL's colon-separated list), e.g.
    /// `TLS_AES_128_GCM_SHA256`; OpenSSL's default order without it.
    pub ciphersuites: Option<String>,
}

/// A connected client after the handshake: plain TCP or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(SslStream<TcpStream>),
}

/// What the scenarios that also run over `wss://` need of a stream.
pub trait Conn: Read + Write {
    /// Stops sending: TLS close_notify if any, then a TCP half-close.
    fn finish(&mut self);
}

impl Conn for TcpStream {
    fn finish(&mut self) {
        let _ = TcpStream::shutdown(self, Shutdown::Write);
    }
}

impl Conn for SslStream<TcpStream> {
    fn finish(&mut self) {
        let _ = self.shutdown();
        let _ = self.get_ref().shutdown(Shutdown::Write);
    }
}

fn tcp_connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let sa = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot resolve {addr}"),
        )
    })?;
    let s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Connects to a `ws://` or `wss://` URL and performs the TLS and
/// WebSocket handshakes; the stream is positioned at the first frame.
pub fn connect_stream(url: &str, timeout: Duration, tls: &TlsOptions) -> io::Result<Stream> {
    let (addr, is_tls) = url_addr(url)?;
    if !is_tls {
        return connect(url, timeout).map(Stream::Plain);
    }
    let s = tcp_connect(&addr, timeout)?;
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(io::Error::other)?;
    match &tls.ca {
        Some(ca) => b.set_ca_file(ca).map_err(io::Error::other)?,
        None => b.set_verify(SslVerifyMode::NONE),
    }
    if let Some(cs) = &tls.ciphersuites {
        b.set_ciphersuites(cs).map_err(io::Error::other)?;
    }
    let connector = b.build();
    let mut ssl = connector
        .connect("localhost", s)
        .map_err(|e| io::Error::other(format!("TLS handshake with {addr} failed: {e}")))?;
    upgrade(url, HeadOnly::new(&mut ssl))?;
    Ok(Stream::Tls(ssl))
}

/// ` tls=VERSION cipher=NAME` for an output line.
pub fn tls_info(s: &SslStream<TcpStream>) -> String {
    let ssl = s.ssl();
    format!(
        " tls={} cipher={}",
        ssl.version_str(),
        ssl.current_cipher().map_or("?", |c| c.name())
    )
}

/// Connects to a `ws://` URL, performs the WebSocket handshake, and returns
/// the socket positioned at the first frame, with TCP_NODELAY set.
pub fn connect(url: &str, timeout: Duration) -> io::Result<TcpStream> {
    let (addr, tls) = url_addr(url)?;
    if tls {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "wss:// is measured by latency, source and upload only",
        ));
    }
    let s = tcp_connect(&addr, timeout)?;
    upgrade(url, HeadOnly::new(&mut &s))?;
    Ok(s)
}

/// The client's opening handshake over `stream`.
fn upgrade<S: Read + Write>(url: &str, stream: S) -> io::Result<()> {
    match tungstenite::client::client(url, stream) {
        Ok((ws, resp)) => {
            if resp.status().as_u16() != 101 {
                return Err(io::Error::other(format!(
                    "handshake answered {}",
                    resp.status()
                )));
            }
            drop(ws);
        }
        Err(e) => {
            return Err(io::Error::other(format!(
                "handshake with {url} failed: {e}"
            )))
        }
    }
    Ok(())
}

/// The server's opening handshake on an accepted socket: reads the
/// client's upgrade request (never past its end, so the first frame stays
/// in the socket), checks it and answers 101 with the accept key.
pub fn accept(s: &TcpStream) -> io::Result<()> {
    let mut r = s;
    match tungstenite::accept(HeadOnly::new(&mut r)) {
        Ok(ws) => {
            drop(ws);
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("server handshake failed: {e}"))),
    }
}

/// Appends one server frame (unmasked; `fin` as given) to `out`.
pub fn push_server_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8]) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// XORs `buf` with `key`, `buf[0]` being byte `offset` of the payload.
pub fn unmask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let o = (offset & 3) as usize;
    let k = [key[o], key[(o + 1) & 3], key[(o + 2) & 3], key[(o + 3) & 3]];
    let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ k8;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// Appends one client frame (FIN, `opcode`, masked with [`MASK`]) to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= MASK[i & 3];
    }
}

/// One binary frame carrying `payload`, ready to be written as is.
pub fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 14);
    push_frame(&mut v, OP_BINARY, payload);
    v
}

/// A recognisable payload of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 13) as u8).collect()
}

/// Sends a close frame, then shuts the socket down; errors are ignored.
pub fn close(s: &TcpStream) {
    let mut v = Vec::new();
    push_frame(&mut v, OP_CLOSE, &1000u16.to_be_bytes());
    let _ = (&*s).write_all(&v);
    let _ = s.shutdown(Shutdown::Write);
}

/// [`close`] for any [`Conn`].
pub fn close_conn<S: Conn>(s: &mut S) {
    let mut v = Vec::new();
    push_frame(&mut v, OP_CLOSE, &1000u16.to_be_bytes());
    let _ = s.write_all(&v);
    s.finish();
}

/// Parses server frames out of a large buffer (or, with
/// [`FrameReader::server`], a client's masked frames).
pub struct FrameReader<S = TcpStream> {
    s: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Answer pings in [`FrameReader::read_bytes`]. Off when another
    /// thread writes on the same socket (a pong could land mid-frame).
    pub answer_pings: bool,
    /// The server's side of the connection: every frame read must be
    /// masked (RFC 6455 5.1) and is unmasked in place before the sink sees
    /// it; pongs are sent unmasked. Off (the client's side): frames read
    /// must be unmasked.
    pub server: bool,
}

/// What [`FrameReader::next`] found.
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub len: u64,
    /// The payload of control frames (data payloads go to the sink).
    pub control: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame (1005 if it has none).
    pub fn close_code(&self) -> u16 {
        match self.control.as_slice() {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 1005,
        }
    }
}

impl<S: Read + Write> FrameReader<S> {
    pub fn new(s: S, cap: usize) -> FrameReader<S> {
        FrameReader {
            s,
            buf: vec![0; cap.max(256)],
            start: 0,
            end: 0,
            answer_pings: true,
            server: false,
        }
    }

    /// The stream, to write on (the round-trip scenarios have one stream
    /// for both directions).
    pub fn stream(&mut self) -> &mut S {
        &mut self.s
    }

    pub fn into_inner(self) -> S {
        self.s
    }

    /// Makes at least `need` (≤ 14) bytes available at `start`.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        while self.end - self.start < need {
            if self.start > 0 && self.buf.len() - self.start < 64 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.s.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "bridge closed the connection",
                ));
            }
            self.end += n;
        }
        Ok(())
    }

    /// Reads one frame, close frames included; a data frame's payload goes
    /// to `sink` in place (unmasked), in one or more pieces. Partial reads
    /// anywhere in a frame are fine: the header is gathered first, the
    /// payload handed out as it arrives.
    pub fn next_frame(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<Frame> {
        self.fill(2)?;
        let b0 = self.buf[self.start];
        let b1 = self.buf[self.start + 1];
        let masked = b1 & 0x80 != 0;
        if masked != self.server {
            return Err(io::Error::other(if self.server {
                "client sent an unmasked frame"
            } else {
                "server sent a masked frame"
            }));
        }
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let hlen = 2 + ext + if masked { 4 } else { 0 };
        self.fill(hlen)?;
        let h = &self.buf[self.start..self.start + hlen];
        let len = match ext {
            2 => u16::from_be_bytes([h[2], h[3]]) as u64,
            8 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            _ => (b1 & 0x7f) as u64,
        };
        let key = if masked {
            [h[hlen - 4], h[hlen - 3], h[hlen - 2], h[hlen - 1]]
        } else {
            [0; 4]
        };
        self.start += hlen;
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let is_control = opcode >= 0x8;
        if is_control && (len > 125 || !fin) {
            return Err(io::Error::other(format!(
                "bad control frame: opcode {opcode}, {len} bytes, fin {fin}"
            )));
        }
        let mut control = Vec::new();
        let mut left = len;
        let mut off = 0u64;
        while left > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                let n = self.s.read(&mut self.buf)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "bridge closed mid-frame",
                    ));
                }
                self.end = n;
            }
            let take = ((self.end - self.start) as u64).min(left) as usize;
            let piece = &mut self.buf[self.start..self.start + take];
            if masked {
                unmask(piece, key, off);
            }
            if is_control {
                control.extend_from_slice(piece);
            } else {
                sink(piece);
            }
            self.start += take;
            left -= take as u64;
            off += take as u64;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Frame {
            fin,
            opcode,
            len,
            control,
        })
    }

    /// [`FrameReader::next_frame`], with a close frame returned as an error.
    pub fn next(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<Frame> {
        let f = self.next_frame(sink)?;
        if f.opcode == OP_CLOSE {
            let reason = String::from_utf8_lossy(f.control.get(2..).unwrap_or(&[])).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("bridge sent close {} {reason}", f.close_code()),
            ));
        }
        Ok(f)
    }

    /// A control frame from this side: masked from a client, not from a
    /// server.
    pub fn control_frame(&self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(payload.len() + 14);
        if self.server {
            push_server_frame(&mut v, true, opcode, payload);
        } else {
            push_frame(&mut v, opcode, payload);
        }
        v
    }

    /// Reads frames until at least `want` payload bytes have arrived (they
    /// may come in any number of frames), answering pings with pongs if
    /// [`FrameReader::answer_pings`]. Returns (data frames, payload bytes).
    pub fn read_bytes(&mut self, want: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<(u64, u64)> {
        let mut got = 0u64;
        let mut frames = 0u64;
        while got < want {
            let f = self.next(&mut |p| sink(p))?;
            match f.opcode {
                OP_BINARY | OP_TEXT | OP_CONT => {
                    got += f.len;
                    frames += 1;
                }
                OP_PING if self.answer_pings => {
                    let pong = self.control_frame(OP_PONG, &f.control);
                    self.s.write_all(&pong)?;
                }
                _ => {}
            }
        }
        Ok((frames, got))
    }
}
