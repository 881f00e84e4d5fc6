//! The WebSocket servers a bridge in client mode (`websocksy connect`,
//! `websocat tcp-l:... ws://...`) connects to: an echo, a sink and a
//! source, the WebSocket counterparts of the TCP peers in `peer.rs`. One
//! thread per connection, blocking I/O, TCP_NODELAY.
//!
//! A minimal but correct server: the opening handshake is tungstenite's
//! (request checked, 101 with `Sec-WebSocket-Accept`), then frames are read
//! by [`FrameReader`] in server mode (every client frame must be masked;
//! payloads unmasked in place; partial reads anywhere in a frame are fine)
//! and written unmasked. Pings are answered, a close is answered with the
//! same code and the TCP connection is then closed by the server.
//!
//! * echo: every data frame goes back as it came (same opcode, same FIN
//!   bit, same payload), so a 64-byte message comes back as one 64-byte
//!   message.
//! * sink: the data payloads, taken as one byte stream, carry an 8-byte
//!   big-endian count and then that many bytes; after the last one the sink
//!   sends one binary message of one byte, [`SINK_ACK`]; again until the
//!   connection closes. (The same protocol as the TCP sink, so one client
//!   measures both.)
//! * source: waits for an 8-byte big-endian count in the same way, then
//!   sends that many payload bytes in binary messages of `msg` bytes (the
//!   last one shorter if need be), then a close 1000. Nothing is sent
//!   before the count, so a connection opened only to see that the
//!   bridge's port accepts costs nothing.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::peer::accept_loop;
use crate::scenarios::SINK_ACK;
use crate::ws::{self, Frame, FrameReader, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG};

/// Stack of a connection thread.
const STACK: usize = 256 * 1024;
/// Read buffer of a connection.
const READ_BUF: usize = 256 * 1024;
/// Most bytes one source connection sends, whatever it is asked for.
const SOURCE_LIMIT: u64 = 64 << 30;
/// Bound on the opening handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The count in front of each transfer (sink and source): 8 bytes
/// big-endian, possibly split across frames.
#[derive(Default)]
struct Counted {
    head: [u8; 8],
    have: usize,
    /// Bytes of the current transfer still to come (after the count).
    left: u64,
}

impl Counted {
    /// Takes a piece of payload; returns how many transfers it completed.
    /// With `head_only`, stops after the first count (the source's request)
    /// and leaves `left` at that count.
    fn feed(&mut self, mut p: &[u8], head_only: bool) -> usize {
        let mut done = 0;
        while !p.is_empty() {
            if self.have < 8 {
                let take = (8 - self.have).min(p.len());
                self.head[self.have..self.have + take].copy_from_slice(&p[..take]);
                self.have += take;
                p = &p[take..];
                if self.have == 8 {
                    self.left = u64::from_be_bytes(self.head);
                    if head_only {
                        return 0;
                    }
                    if self.left == 0 {
                        done += 1;
                        self.have = 0;
                    }
                }
            } else {
                let take = (p.len() as u64).min(self.left);
                self.left -= take;
                p = &p[take as usize..];
                if self.left == 0 {
                    done += 1;
                    self.have = 0;
                }
            }
        }
        done
    }
}

/// The server's side of the handshake, with a bound on how long it takes.
fn open(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    ws::accept(s)?;
    s.set_read_timeout(None)
}

/// Answers the bridge's close (same code; none if it sent none), then
/// closes the TCP connection, reading what is left so it ends without a
/// reset.
fn answer_close(mut s: &TcpStream, f: &Frame) {
    let mut v = Vec::new();
    let code = f.control.get(..2).unwrap_or(&[]);
    ws::push_server_frame(&mut v, true, OP_CLOSE, code);
    let _ = s.write_all(&v);
    linger_close(s);
}

/// A close is answered (and the connection is done: false); a ping gets
/// its pong; other frames pass.
fn control(r: &mut FrameReader, f: &Frame) -> bool {
    match f.opcode {
        OP_CLOSE => {
            answer_close(r.stream(), f);
            false
        }
        OP_PING => {
            let pong = r.control_frame(OP_PONG, &f.control);
            r.stream().write_all(&pong).is_ok()
        }
        _ => true,
    }
}

fn linger_close(mut s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut b = [0u8; 4096];
    while matches!(s.read(&mut b), Ok(n) if n > 0) {}
}

fn echo(s: TcpStream) {
    if open(&s).is_err() {
        return;
    }
    let mut r = FrameReader::new(s, READ_BUF);
    r.server = true;
    let mut out = Vec::with_capacity(READ_BUF + 14);
    let mut payload = Vec::new();
    loop {
        payload.clear();
        let f = match r.next_frame(&mut |p| payload.extend_from_slice(p)) {
            Ok(f) => f,
            Err(_) => return,
        };
        out.clear();
        match f.opcode {
            OP_CLOSE => return answer_close(r.stream(), &f),
            OP_PING => ws::push_server_frame(&mut out, true, OP_PONG, &f.control),
            OP_PONG => continue,
            op => ws::push_server_frame(&mut out, f.fin, op, &payload),
        }
        if r.stream().write_all(&out).is_err() {
            return;
        }
    }
}

fn sink(s: TcpStream) {
    if open(&s).is_err() {
        return;
    }
    let mut r = FrameReader::new(s, READ_BUF);
    r.server = true;
    let mut ack = Vec::new();
    ws::push_server_frame(&mut ack, true, OP_BINARY, &[SINK_ACK]);
    let mut state = Counted::default();
    loop {
        let mut done = 0;
        let f = match r.next_frame(&mut |p| done += state.feed(p, false)) {
            Ok(f) => f,
            Err(_) => return,
        };
        if !control(&mut r, &f) {
            return;
        }
        for _ in 0..done {
            if r.stream().write_all(&ack).is_err() {
                return;
            }
        }
    }
}

/// The writing half of a source connection: the socket, and whether a
/// close frame went out on it (nothing may follow one).
struct SourceOut {
    s: TcpStream,
    closed: bool,
}

fn source(s: TcpStream, msg: usize) {
    if open(&s).is_err() {
        return;
    }
    let Ok(w) = s.try_clone() else { return };
    let mut r = FrameReader::new(s, 64 * 1024);
    r.server = true;
    // The request: the count, answering pings while it comes.
    let mut req = Counted::default();
    while req.have < 8 {
        let f = match r.next_frame(&mut |p| {
            req.feed(p, true);
        }) {
            Ok(f) => f,
            Err(_) => return,
        };
        if !control(&mut r, &f) {
            return;
        }
    }
    let total = req.left.min(SOURCE_LIMIT);
    let out = Arc::new(Mutex::new(SourceOut {
        s: w,
        closed: false,
    }));

    // Reads while the writer sends: pongs for pings, and the bridge's close
    // (the answer to ours, or its own), after which nothing more is sent.
    let out_r = out.clone();
    let reader = thread::Builder::new().stack_size(STACK).spawn(move || {
        while let Ok(f) = r.next_frame(&mut |_| {}) {
            let mut o = out_r.lock().unwrap_or_else(|e| e.into_inner());
            match f.opcode {
                OP_PING if !o.closed => {
                    let pong = r.control_frame(OP_PONG, &f.control);
                    if o.s.write_all(&pong).is_err() {
                        break;
                    }
                }
                OP_CLOSE => {
                    if !o.closed {
                        let mut v = Vec::new();
                        ws::push_server_frame(
                            &mut v,
                            true,
                            OP_CLOSE,
                            f.control.get(..2).unwrap_or(&[]),
                        );
                        let _ = o.s.write_all(&v);
                        o.closed = true;
                    }
                    break;
                }
                _ => {}
            }
        }
        out_r.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        linger_close(r.stream());
    });

    let payload = ws::pattern(msg.max(1));
    let mut frame = Vec::with_capacity(payload.len() + 14);
    ws::push_server_frame(&mut frame, true, OP_BINARY, &payload);
    let mut left = total;
    while left > 0 {
        let n = left.min(payload.len() as u64) as usize;
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        if o.closed {
            break;
        }
        let ok = if n == payload.len() {
            o.s.write_all(&frame)
        } else {
            let mut last = Vec::with_capacity(n + 14);
            ws::push_server_frame(&mut last, true, OP_BINARY, &payload[..n]);
            o.s.write_all(&last)
        };
        if ok.is_err() {
            break;
        }
        left -= n as u64;
    }
    {
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        if !o.closed {
            let mut v = Vec::new();
            ws::push_server_frame(&mut v, true, OP_CLOSE, &1000u16.to_be_bytes());
            let _ = o.s.write_all(&v);
            o.closed = true;
        }
        // A bridge that never answers does not keep the reader forever.
        let _ = o.s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    }
    // The reader ends with the bridge's answering close (or its EOF) and
    // closes the socket.
    if let Ok(h) = reader {
        let _ = h.join();
    }
}

/// Binds the WebSocket echo, source and sink on ephemeral loopback ports,
/// prints `echo=PORT source=PORT sink=PORT` on stdout (as `serve` does),
/// serves until killed or `max_secs`. `msg` is the source's message size.
pub fn serve(max_secs: u64, msg: usize) -> io::Result<()> {
    let echo_l = crate::peer::listen_loopback()?;
    let source_l = crate::peer::listen_loopback()?;
    let sink_l = crate::peer::listen_loopback()?;
    println!(
        "echo={} source={} sink={}",
        echo_l.local_addr()?.port(),
        source_l.local_addr()?.port(),
        sink_l.local_addr()?.port()
    );
    io::stdout().flush()?;
    thread::spawn(move || accept_loop(echo_l, "ws-serve", STACK, echo));
    thread::spawn(move || accept_loop(source_l, "ws-serve", STACK, move |s| source(s, msg)));
    thread::spawn(move || accept_loop(sink_l, "ws-serve", STACK, sink));
    thread::sleep(Duration::from_secs(max_secs));
    eprintln!("wsbench ws-serve: {max_secs} s elapsed, exiting");
    Ok(())
}
