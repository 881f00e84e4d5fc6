//! Helpers shared by the client-mode tests (`connect*.rs`): a raw
//! WebSocket *server* written byte by byte (for what no well-behaved server
//! does: pinging on demand, never answering a ping, sending data after the
//! client's close), the plugin directory for the `json` framing, and the
//! kernel's view of a TCP connection's queues (`/proc/net/tcp`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use websocksy_tests::{binary, certs, temp_dir, ws, Bridge, WAIT};

/// A path as the command line wants it.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A directory holding (a symlink to) the `json` framing plugin just built.
pub fn plugin_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = binary().parent().expect("target dir").to_path_buf();
        let dir = temp_dir("connect-plugins");
        let lib = "libframing_json.so";
        let src = target.join(lib);
        assert!(src.is_file(), "{} was not built", src.display());
        std::os::unix::fs::symlink(&src, dir.join(lib)).expect("symlink plugin");
        dir.display().to_string()
    })
}

/// A listener for a raw WebSocket server; each accepted connection is
/// handed to the test (after [`WAIT`] without one, the test fails).
pub struct RawServer {
    pub addr: SocketAddr,
    rx: Receiver<TcpStream>,
}

impl RawServer {
    pub fn new() -> RawServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind raw server");
        let addr = l.local_addr().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        RawServer { addr, rx }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The next connection, upgraded: the request read and a valid 101
    /// written. Returns the stream and the request head.
    pub fn accept(&self) -> (TcpStream, String) {
        self.accept_with(None)
    }

    /// The next connection with its request read and nothing answered.
    pub fn accept_raw(&self) -> TcpStream {
        let mut s = self
            .rx
            .recv_timeout(WAIT)
            .expect("websocksy connect did not dial the raw server");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(ws::read_some(&mut s, &mut b).expect("read the request"), 1);
            head.push(b[0]);
        }
        s
    }

    /// [`RawServer::accept`], the 101 naming this subprotocol.
    pub fn accept_with(&self, protocol: Option<&str>) -> (TcpStream, String) {
        self.accept_within(WAIT, protocol)
    }

    /// [`RawServer::accept_with`], failing after `wait` without a connection.
    pub fn accept_within(&self, wait: Duration, protocol: Option<&str>) -> (TcpStream, String) {
        let mut s = self
            .rx
            .recv_timeout(wait)
            .expect("websocksy connect did not dial the raw server");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        let head = answer_upgrade(&mut s, protocol);
        (s, head)
    }
}

/// Read an upgrade request head from `s` and answer 101 (with this
/// subprotocol if given). Returns the request head.
pub fn answer_upgrade<S: Read + Write>(s: &mut S, protocol: Option<&str>) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = ws::read_some(s, &mut b).expect("read the upgrade request");
        assert_eq!(n, 1, "EOF inside the request: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).expect("ASCII request");
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .expect("Sec-WebSocket-Key in the request");
    let accept = base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    r.push_str("\r\n");
    s.write_all(r.as_bytes()).expect("write 101");
    head
}

/// An unmasked server frame.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    ws::frame_with(true, 0, opcode, false, payload)
}

/// A server close frame.
pub fn server_close(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    server_frame(8, &p)
}

/// A frame from the client, unmasked; panics if it was not masked (a
/// client must mask every frame, RFC 6455 5.3).
pub fn read_client_frame<S: Read + ?Sized>(s: &mut S) -> io::Result<ws::Frame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    assert_ne!(h[1] & 0x80, 0, "client frames must be masked: {h:?}");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    s.read_exact(&mut key)?;
    let mut payload = vec![0u8; usize::try_from(len).expect("frame fits in memory")];
    s.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    Ok(ws::Frame {
        fin: h[0] & 0x80 != 0,
        opcode: h[0] & 0x0f,
        payload,
    })
}

/// The first frame from the client that is not a ping or pong.
pub fn read_client_data<S: Read + ?Sized>(s: &mut S) -> ws::Frame {
    loop {
        let f = read_client_frame(s).expect("a frame from websocksy connect");
        if f.opcode != 9 && f.opcode != 10 {
            return f;
        }
    }
}

/// The kernel's queues of the TCP connection from `local` to `remote`
/// (both on 127.0.0.1), from `/proc/net/tcp`: (bytes not yet acknowledged
/// or sent, bytes received but not read). `None` if there is no such
/// connection.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let hex = |a: SocketAddr| {
        let SocketAddr::V4(v4) = a else {
            panic!("IPv4 only: {a}")
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        )
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[1] != l || f[2] != r {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// The TCP ports process `pid` listens on (its sockets in LISTEN state,
/// IPv4 and IPv6), from `/proc/PID/fd` and `/proc/net/tcp{,6}`.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read fd dir") {
        let Ok(e) = e else { continue };
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().to_string();
            if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.push(i.to_string());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(t) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in t.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; field 9 is the inode.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap_or("0");
                ports.push(u16::from_str_radix(port, 16).unwrap_or(0));
            }
        }
    }
    ports.sort_unstable();
    ports
}

/// A self-signed certificate for `localhost`/127.0.0.1 (no CA knows it),
/// made once per test process: (certificate, key).
pub fn self_signed() -> &'static (std::path::PathBuf, std::path::PathBuf) {
    static CERT: OnceLock<(std::path::PathBuf, std::path::PathBuf)> = OnceLock::new();
    CERT.get_or_init(|| {
        // certs::shared() first: the openssl command is known to work then.
        let _ = certs::shared();
        let dir = temp_dir("self-signed");
        let out = std::process::Command::new("openssl")
            .current_dir(&dir)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "self.key",
                "-out",
                "self.pem",
                "-days",
                "30",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ])
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl req -x509 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir.join("self.pem"), dir.join("self.key"))
    })
}

/// After the process exited: wait until its whole log is read (the
/// reader thread may still be behind), so counts and searches see it all.
pub fn settle(b: &Bridge) {
    // No line holds this: the wait ends at the end of the log.
    let _ = b.wait_log_for("\u{0}never logged", WAIT);
}

/// Lines of `text` (each with its `\n`), for comparing streams.
pub fn lines(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag} line {i:03}\n")).collect()
}

/// A line as the script's `data=` shows it: a compact JSON string.
pub fn json_text(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '\n' => o.push_str("\\n"),
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A short, fixed wait for something that must *not* happen (a message
/// that must not arrive): never used to wait for readiness.
pub const ABSENCE: Duration = Duration::from_millis(300);
