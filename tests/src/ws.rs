//! A raw WebSocket client, byte by byte, so tests can send what a library
//! would refuse to (bad frames, odd segmentation) and see exactly what the
//! bridge answers. Reads tolerate any TCP segmentation. The same client
//! runs over TLS: [`tls_connect`] gives an `SslStream` the functions here
//! take like a `TcpStream`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode};

/// A WebSocket client's connection over TLS.
pub type TlsStream = SslStream<TcpStream>;

/// How a test client sets up TLS.
#[derive(Default, Clone, Copy)]
pub struct TlsClient<'a> {
    /// The CA to verify the bridge with; `None` verifies nothing.
    pub ca: Option<&'a Path>,
    /// A client certificate and its key.
    pub cert: Option<(&'a Path, &'a Path)>,
    /// The name to ask for (SNI) and check; default `localhost`.
    pub name: Option<&'a str>,
}

/// Connect to `addr` and finish a TLS handshake (blocking, with
/// [`crate::WAIT`] as read timeout). `Err` carries OpenSSL's reason.
pub fn tls_connect(addr: SocketAddr, c: TlsClient) -> Result<TlsStream, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    match c.ca {
        Some(ca) => b.set_ca_file(ca).map_err(|e| e.to_string())?,
        None => b.set_verify(SslVerifyMode::NONE),
    }
    if let Some((cert, key)) = c.cert {
        b.set_certificate_chain_file(cert)
            .map_err(|e| e.to_string())?;
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| e.to_string())?;
    }
    b.set_alpn_protos(b"\x08http/1.1")
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(crate::WAIT))
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let cfg = b.build().configure().map_err(|e| e.to_string())?;
    cfg.connect(c.name.unwrap_or("localhost"), tcp)
        .map_err(|e| e.to_string())
    // TLS 1.3 clients finish before the server has checked their
    // certificate: a refusal shows on the first read after this.
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid upgrade request for `path` with extra header lines (each without CRLF).
pub fn request(path: &str, extra: &[&str]) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// An HTTP response head.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One `read`, retried when a signal interrupts it. A socket with a read
/// timeout is never restarted by the kernel (signal(7)), so any signal the
/// test process handles would otherwise look like an error, an EOF or a
/// close to the helpers below.
pub fn read_some<S: Read + ?Sized>(s: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Read one response head byte by byte (so no frame bytes are swallowed).
pub fn read_response<S: Read + ?Sized>(s: &mut S) -> io::Result<Response> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if read_some(s, &mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF after {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        head,
        headers,
    })
}

/// Upgrade `s` with a valid request; panics unless the answer is 101.
pub fn upgrade<S: Read + Write + ?Sized>(s: &mut S, path: &str, extra: &[&str]) -> Response {
    s.write_all(request(path, extra).as_bytes())
        .expect("send request");
    let r = read_response(s).expect("read 101");
    assert_eq!(r.status, 101, "expected 101, got {}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    r
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, 0, opcode, true, payload)
}

/// Any client frame: `rsv` is the three RSV bits (0-7).
pub fn frame_with(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let m = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        f.push(m | len as u8);
    } else if len < 65536 {
        f.push(m | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

pub fn text(s: &str) -> Vec<u8> {
    frame(true, 1, s.as_bytes())
}
pub fn binary(b: &[u8]) -> Vec<u8> {
    frame(true, 2, b)
}
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    frame(true, 8, &p)
}

/// A server frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// For close frames: the status code, if any.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Read one frame; checks it is unmasked (server frames must be).
pub fn read_frame<S: Read + ?Sized>(s: &mut S) -> io::Result<Frame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
    assert_eq!(h[0] & 0x70, 0, "server frames must not set RSV bits");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u16::from_be_bytes(b) as u64
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => n as u64,
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    Ok(Frame {
        fin: h[0] & 0x80 != 0,
        opcode: h[0] & 0x0f,
        payload,
    })
}

/// Read frames until a close frame; returns (data frames before it, the close frame).
pub fn read_until_close<S: Read + ?Sized>(s: &mut S) -> io::Result<(Vec<Frame>, Frame)> {
    let mut v = Vec::new();
    loop {
        let f = read_frame(s)?;
        if f.opcode == 8 {
            return Ok((v, f));
        }
        if f.opcode != 9 && f.opcode != 10 {
            v.push(f);
        }
    }
}

/// True once the other side has closed: EOF or reset, no more bytes.
pub fn at_eof<S: Read + ?Sized>(s: &mut S) -> bool {
    let mut b = [0u8; 1];
    matches!(read_some(s, &mut b), Ok(0) | Err(_))
}

/// Read the body of a response: exactly `Content-Length` bytes (panics
/// if the header is missing or not a number).
pub fn read_body<S: Read + ?Sized>(s: &mut S, r: &Response) -> io::Result<Vec<u8>> {
    let len: usize = r
        .header("Content-Length")
        .unwrap_or_else(|| panic!("no Content-Length in {:?}", r.head))
        .parse()
        .unwrap_or_else(|e| panic!("bad Content-Length in {:?}: {e}", r.head));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// True if the other side closes (EOF or reset) within `wait` and sends
/// no byte before that. Restores the read timeout afterwards.
pub fn closes_within(s: &mut TcpStream, wait: std::time::Duration) -> bool {
    let old = s.read_timeout().ok().flatten();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let r = match read_some(s, &mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    };
    let _ = s.set_read_timeout(old);
    r
}

/// Write `bytes` one byte per `write` call (the caller sets TCP_NODELAY so
/// each is its own segment).
pub fn write_bytewise(s: &mut TcpStream, bytes: &[u8]) {
    for b in bytes {
        s.write_all(std::slice::from_ref(b))
            .expect("write one byte");
    }
}

/// A masked client frame whose masking key is all zeros (RFC 6455 allows
/// any key): the payload goes out unchanged, so bulk tests spend no time
/// masking and can reuse one frame for many sends.
pub fn frame_zero_key(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame_with(true, 0, opcode, false, &[]);
    f.truncate(1);
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

/// Read one frame if one starts within `wait`: `Ok(None)` when nothing
/// arrived in time. Only the first byte is waited for with `wait` (by
/// peeking, so a timeout never loses part of a frame); the rest of the
/// frame gets [`crate::WAIT`]. The read timeout is left at `WAIT`.
pub fn read_frame_within(
    s: &mut TcpStream,
    wait: std::time::Duration,
) -> io::Result<Option<Frame>> {
    s.set_read_timeout(Some(wait.max(std::time::Duration::from_millis(1))))?;
    let r = s.peek(&mut [0u8; 1]);
    s.set_read_timeout(Some(crate::WAIT))?;
    match r {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => read_frame(s).map(Some),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
