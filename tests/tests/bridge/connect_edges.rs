//! Edges of the client role (`websocksy connect`) found in review, one
//! test each: what is owed to a slow local side across a reconnect, when
//! reconnects must stop (an idle timeout, data that cannot be framed,
//! `--retry-max` against a server that accepts and drops), the close
//! deadline with a kept local side, a read-only local side while
//! disconnected, and `udp-listen` sources while disconnected. Two more
//! show what writing them turned up: frames behind a 101 that compaction
//! alone has no room for, and datagrams that race a new source's socket.
//!
//! Nothing here waits with a sleep: each step waits for a log line, an
//! event line of `ws_server.py`, a connect, an answer to a ping, an EOF or
//! the local side's writes stalling (backpressure), and a negative ("it
//! does not redial for ever") is shown by the end state that excludes it
//! (the session's `closed:` line, the process's exit status).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use websocksy_tests::connect::Connect;
use websocksy_tests::pattern::Pattern;
use websocksy_tests::peers;
use websocksy_tests::pyserver::{field, message_data, PyServer};
use websocksy_tests::{temp_dir, ws, WAIT};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Read an upgrade request and return the 101 that answers it (not sent:
/// a test may send frames in the same write).
fn answer(c: &mut TcpStream) -> Vec<u8> {
    let mut req = Vec::new();
    let mut b = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = ws::read_some(c, &mut b).expect("read the upgrade request");
        assert!(n > 0, "EOF in the upgrade request: {req:?}");
        req.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&req).to_string();
    let key = text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no key in {text:?}"));
    use base64::Engine;
    let accept = base64::engine::general_purpose::STANDARD
        .encode(openssl::sha::sha1(format!("{key}{GUID}").as_bytes()));
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// A frame as a server sends it (unmasked).
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    ws::frame_with(true, 0, opcode, false, payload)
}

/// One frame from the bridge (a client: masked), unmasked: (opcode, payload).
fn read_client_frame(c: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    c.read_exact(&mut h)?;
    assert_ne!(h[1] & 0x80, 0, "frames from a client must be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            c.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            c.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    c.read_exact(&mut key)?;
    let mut payload = vec![0u8; len as usize];
    c.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    Ok((h[0] & 0x0f, payload))
}

/// The next connection to `l` within `wait`, if any.
fn accept_within(l: &TcpListener, wait: Duration) -> Option<TcpStream> {
    let l = l.try_clone().expect("clone the listener");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((c, _)) = l.accept() {
            let _ = tx.send(c);
        }
    });
    let c = rx.recv_timeout(wait).ok()?;
    c.set_read_timeout(Some(WAIT)).unwrap();
    Some(c)
}

/// Bytes waiting in `s`'s receive queue (FIONREAD). For a Unix stream
/// socket that nobody reads, this is everything the other end wrote: a
/// Unix socket has no send queue of its own, so a write either lands here
/// or does not happen.
fn queued(s: &UnixStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, on a descriptor we own.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", io::Error::last_os_error());
    usize::try_from(n).expect("a byte count")
}

/// Send a ping tagged `tag` and wait for the bridge's pong. The bridge
/// answers a ping once it has parsed it, and writes the payload parsed
/// before it to the local side (as far as the local side takes it)
/// before the pong leaves: a synchronisation point on what it has read.
fn ping_pong(c: &mut TcpStream, tag: &[u8], b: &Connect) {
    c.write_all(&server_frame(9, tag)).unwrap();
    expect_pong(c, tag, b);
}

fn expect_pong(c: &mut TcpStream, tag: &[u8], b: &Connect) {
    match read_client_frame(c) {
        Ok((10, p)) if p == tag => {}
        other => panic!(
            "expected the pong {:?}, got {other:?}; log:\n{}",
            String::from_utf8_lossy(tag),
            b.logs()
        ),
    }
}

/// Read from the local side until `expected` has arrived, checking every
/// byte as it comes (so a corruption fails at once, naming its offset).
fn expect_local(l: &mut UnixStream, expected: &[u8], b: &Connect) {
    l.set_read_timeout(Some(WAIT)).unwrap();
    let mut at = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while at < expected.len() {
        let n = match l.read(&mut buf) {
            Ok(0) => panic!(
                "EOF on the local side after {at} of {} bytes; log:\n{}",
                expected.len(),
                b.logs()
            ),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "reading the local side after {at} of {} bytes: {e}; log:\n{}",
                expected.len(),
                b.logs()
            ),
        };
        assert!(
            at + n <= expected.len(),
            "{} bytes more than expected on the local side",
            at + n - expected.len()
        );
        if let Some(i) = buf[..n]
            .iter()
            .zip(&expected[at..at + n])
            .position(|(g, w)| g != w)
        {
            panic!(
                "the local side got {:#04x} at byte {} of {}, expected {:#04x}; log:\n{}",
                buf[i],
                at + i,
                expected.len(),
                expected[at + i],
                b.logs()
            );
        }
        at += n;
    }
}

/// A reconnect while payload is still owed to a local side that takes
/// nothing, with frames arriving in the same read as the next 101: the
/// bridge keeps that payload in its input buffer (`pend`, raw offsets)
/// and must keep it, in step, when it makes room there for what came with
/// the 101.
///
/// The buffer's state is made exact by lock-step: every chunk the server
/// sends ends with a ping, and the next is sent only after its pong (the
/// bridge answers once it has parsed the chunk and written its payload to
/// the local side, as far as that takes it); the local side is a Unix
/// socket, whose queued bytes (FIONREAD) are exactly what the bridge wrote
/// to it. Rounds of a chunk `E` without payload (unsolicited pongs up to
/// `lead` bytes, a ping, and the first header byte of the next frame,
/// which the bridge keeps at offset `|E| - 1` of its buffer) and a chunk
/// `D` of data frames (the rest of that header first, a frame boundary
/// last) go on until the local side stops taking `D`'s payload: from then
/// on the payload owed stays at that offset. A fill `F` (one data frame)
/// leaves `room` bytes of the 64 KiB buffer free, conn 1 is reset, and
/// conn 2's 101 comes with 2 KiB of frames in the same read. The local
/// side must then get all of conn 1's payload and conn 2's after it.
fn owed_payload_across_a_reconnect(lead: usize, room: usize) {
    let dir = temp_dir("edges-owed");
    let path = dir.join("local.sock");
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let from = format!("unix-listen://{}", path.display());
    let b = Connect::start(
        &url,
        &from,
        &["--retry", "--retry-interval", "0.05", "--ping", "0"],
    );
    b.wait_log("listening on unix-listen://");
    // The local client; it reads nothing until the end.
    let mut local = UnixStream::connect(&path).expect("connect to unix-listen");
    let mut c1 = accept_within(&server, WAIT).expect("the bridge never dialled");
    let head = answer(&mut c1);
    c1.write_all(&head).unwrap();

    let pat = Pattern::new();
    // Conn 1's payload so far: byte i of it is i % 251.
    let mut sent = 0usize;
    let data_frame = |len: usize, sent: &mut usize| {
        let f = server_frame(2, pat.at(*sent as u64, len));
        *sent += len;
        f
    };
    // E: unsolicited pongs (nothing for the local side) up to `lead`
    // bytes, a ping, then (added per round) the first header byte of D.
    let pong = server_frame(10, &[b'p'; 125]);
    let mut e = Vec::new();
    while e.len() + pong.len() <= lead {
        e.extend_from_slice(&pong);
    }
    let tag_e = b"e";
    e.extend_from_slice(&server_frame(9, tag_e));
    let e_len = e.len() + 1;
    const D_FRAMES: usize = 8;
    const D_PAYLOAD: usize = 1000;
    let mut rounds = 0;
    let d_len = loop {
        rounds += 1;
        assert!(
            rounds < 2000,
            "the local side never stopped taking data ({sent} bytes queued)"
        );
        let mut d = Vec::new();
        for _ in 0..D_FRAMES {
            d.extend_from_slice(&data_frame(D_PAYLOAD, &mut sent));
        }
        // E: its last byte is the first of D's header.
        let mut chunk = e.clone();
        chunk.push(d[0]);
        c1.write_all(&chunk).unwrap();
        expect_pong(&mut c1, tag_e, &b);
        // D: the rest of its first header, its frames, a ping.
        let tag_d = format!("d{rounds}");
        let mut chunk = d[1..].to_vec();
        chunk.extend_from_slice(&server_frame(9, tag_d.as_bytes()));
        let d_len = chunk.len();
        c1.write_all(&chunk).unwrap();
        expect_pong(&mut c1, tag_d.as_bytes(), &b);
        let taken = queued(&local);
        if taken < sent {
            break d_len;
        }
        assert_eq!(taken, sent, "the local side got more than was sent");
    };
    let taken = queued(&local);
    // F: one data frame and a ping, up to `room` bytes short of the
    // buffer's end (64 KiB: a pooled buffer's size).
    let end = e_len + d_len;
    let tag_f = b"fill";
    let f_len = 64 * 1024 - room - end;
    let payload = f_len - 4 - (2 + tag_f.len());
    let mut chunk = data_frame(payload, &mut sent);
    chunk.extend_from_slice(&server_frame(9, tag_f));
    assert_eq!(chunk.len(), f_len);
    c1.write_all(&chunk).unwrap();
    expect_pong(&mut c1, tag_f, &b);
    assert_eq!(
        queued(&local),
        taken,
        "the local side took more after it had stopped: the precondition \
         (its socket full) does not hold"
    );
    // Conn 1 ends with a reset: everything it sent was parsed (the pongs
    // say so), so all of its payload is owed to the local side.
    peers::set_linger_zero(&c1);
    drop(c1);

    // Conn 2: the 101 and frames in one write, more of them than fit in
    // one read of the answer (2 KiB), then a ping.
    let mut c2 = accept_within(&server, WAIT)
        .unwrap_or_else(|| panic!("the bridge did not dial again; log:\n{}", b.logs()));
    let mut second = b"HELLO".to_vec();
    second.extend((0..95).map(|i| b'a' + (i % 26) as u8));
    let tail: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut w = answer(&mut c2);
    w.extend_from_slice(&server_frame(2, &second));
    w.extend_from_slice(&server_frame(2, &tail));
    assert!(w.len() > 2048 + 64);
    c2.write_all(&w).unwrap();
    ping_pong(&mut c2, b"conn 2", &b);

    // The local side reads: all of conn 1's payload, then conn 2's.
    let mut expected = pat.bytes(sent);
    expected.extend_from_slice(&second);
    expected.extend_from_slice(&tail);
    expect_local(&mut local, &expected, &b);
    assert_eq!(b.count_log("panicked"), 0, "log:\n{}", b.logs());
    assert_eq!(b.count_log(&format!("{url} open")), 2, "log:\n{}", b.logs());
    eprintln!(
        "{rounds} rounds, {sent} bytes of conn 1, {taken} taken before the stall, \
         payload owed from buffer offset {}",
        e_len - 1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 1: the payload owed sits 8 KiB into the buffer; making room for
/// the frames behind the 101 moves it to the front, and `pend` must move
/// with it (it did not: the next frame's payload was joined at the stale
/// offset, out of the buffer's bounds, and the process panicked).
#[test]
fn reconnect_owing_payload_with_frames_behind_the_101() {
    owed_payload_across_a_reconnect(8 * 1024, 8);
}

/// The same with the payload owed just 3 bytes into the buffer: moving it
/// to the front frees fewer bytes than came with the 101, so the buffer
/// must grow too, or the rest of that read is lost (`client_open` copied
/// only what fitted, and the stream went on from the middle of a frame:
/// here, conn 2's pong never comes).
#[test]
fn reconnect_owing_payload_with_more_behind_the_101_than_compaction_frees() {
    owed_payload_across_a_reconnect(0, 8);
}

/// Defect 2: `--idle-timeout` with `--retry`: an idle connection closes
/// and its session ends; there is nothing to reconnect for.
#[test]
fn idle_timeout_ends_the_session_without_a_reconnect() {
    let s = PyServer::start(&["--echo"]);
    let b = Connect::start(
        &s.url("/"),
        "udp-listen://127.0.0.1:0",
        &[
            "--retry",
            "--retry-interval",
            "0.05",
            "--idle-timeout",
            "0.5",
        ],
    );
    let local = b.listener("udp-listen://");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.send_to(b"hello", local).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = u.recv_from(&mut buf).expect("the echo");
    assert_eq!(&buf[..n], b"hello");
    // Idle from here: the connection closes with 1001 and the session ends.
    b.wait_log("closed: code 1001 idle timeout");
    let close = s.wait_line("close conn=1 ");
    assert_eq!(field(&close, "code").as_deref(), Some("1001"), "{close}");
    assert_eq!(
        s.count("open conn="),
        1,
        "a reconnect after the idle timeout:\n{}",
        s.output()
    );
    assert_eq!(b.count_log("connection ended"), 0, "log:\n{}", b.logs());
}

/// Defect 4: local data the framing cannot cut (invalid JSON with
/// `invalid=close`) fails the connection with 1011; it would fail the next
/// one too, so the session ends: the local client gets EOF, and the
/// server saw one connection.
#[test]
fn local_data_that_cannot_be_framed_ends_the_session() {
    let s = PyServer::start(&["--echo"]);
    let b = Connect::start(
        &s.url("/"),
        "tcp-listen://127.0.0.1:0",
        &[
            "--retry",
            "--retry-interval",
            "0.05",
            "--framing",
            "json",
            "--framing-config",
            "invalid=close",
        ],
    );
    let local = b.listener("tcp-listen://");
    let mut l = TcpStream::connect(local).unwrap();
    l.set_read_timeout(Some(WAIT)).unwrap();
    s.wait_line("open conn=1 ");
    l.write_all(b"[1,]").unwrap();
    let mut got = Vec::new();
    if let Err(e) = l.read_to_end(&mut got) {
        panic!(
            "no EOF on the local side ({e}); server:\n{}\nlog:\n{}",
            s.output(),
            b.logs()
        );
    }
    assert!(got.is_empty(), "{got:?}");
    // The bridge lingers for the local client's end, then logs the close.
    drop(l);
    b.wait_log("closed: code 1011");
    let close = s.wait_line("close conn=1 ");
    assert_eq!(field(&close, "code").as_deref(), Some("1011"), "{close}");
    assert_eq!(s.count("open conn="), 1, "{}", s.output());
}

/// Defect 5: the server's close arrives while much is queued for it and
/// it reads nothing more (its TCP connection stays open): the close
/// deadline (5 s) still holds with a kept local side, which then goes on
/// to a new connection.
#[test]
fn server_close_behind_a_stuck_queue_reconnects_at_the_close_deadline() {
    let server = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Small windows, inherited by the accepted connection.
    server.set_recv_buffer_size(4096).unwrap();
    server
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    server.listen(8).unwrap();
    let server: TcpListener = server.into();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let b = Connect::start(
        &url,
        "tcp-listen://127.0.0.1:0",
        &["--retry", "--retry-interval", "0.05", "--ping", "0"],
    );
    let local = b.listener("tcp-listen://");
    let mut l = TcpStream::connect(local).unwrap();
    let mut c1 = accept_within(&server, WAIT).expect("the bridge never dialled");
    let head = answer(&mut c1);
    c1.write_all(&head).unwrap();
    b.wait_log(" open");
    // The local side writes until the bridge stops reading it: everything
    // on the way to the server, which reads nothing, is full.
    l.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the bridge never stopped reading"
        );
        match l.write(&chunk) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write to the bridge: {e}"),
        }
    }
    // The server closes; the bridge's answer waits behind the queue.
    c1.write_all(&server_frame(8, &1000u16.to_be_bytes()))
        .unwrap();
    let closed_at = Instant::now();
    let c2 = accept_within(&server, Duration::from_secs(5) + WAIT);
    let took = closed_at.elapsed();
    let Some(mut c2) = c2 else {
        panic!(
            "no new connection {took:?} after the server's close; log:\n{}",
            b.logs()
        );
    };
    eprintln!("reconnected {took:?} after the server's close");
    b.wait_log("close timed out");
    b.wait_log("connection ended: code 1000");
    // The kept local side goes on over the new connection.
    let head = answer(&mut c2);
    c2.write_all(&head).unwrap();
    let (op, payload) = read_client_frame(&mut c2).expect("a frame on conn 2");
    assert!(
        matches!(op, 1 | 2) && !payload.is_empty(),
        "{op} {}",
        payload.len()
    );
    drop(c1);
}

/// Defect 6: `--read-only --retry`, the server unreachable: the local
/// side is still watched while disconnected, so a local client that
/// leaves ends its session.
#[test]
fn read_only_local_client_leaving_while_disconnected_ends_its_session() {
    let port = peers::closed_port();
    let b = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "tcp-listen://127.0.0.1:0",
        &[
            "--retry",
            "--read-only",
            "--retry-interval",
            "0.05",
            "--retry-max-interval",
            "0.1",
        ],
    );
    let local = b.listener("tcp-listen://");
    let l = TcpStream::connect(local).unwrap();
    // Its session is dialling in vain.
    b.wait_log("retry 2 ");
    drop(l);
    b.wait_log("closed: no connection was opened");
}

/// Defect 7: `--read-only` with `udp-listen`: what the server sends
/// reaches the source, and nothing the source sends reaches the server,
/// not even the datagram that started the session.
#[test]
fn read_only_udp_listen_sends_no_datagram() {
    let s = PyServer::start(&["--sink", "--send", "from the server"]);
    let b = Connect::start(
        &s.url("/"),
        "udp-listen://127.0.0.1:0",
        &["--read-only", "--idle-timeout", "0.5"],
    );
    let local = b.listener("udp-listen://");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.send_to(b"first", local).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = u.recv_from(&mut buf).expect("the server's message");
    assert_eq!(&buf[..n], b"from the server");
    u.send_to(b"second", local).unwrap();
    // The connection idles out; the server counts what it received.
    let close = s.wait_line("close conn=1 ");
    assert_eq!(field(&close, "code").as_deref(), Some("1001"), "{close}");
    assert_eq!(
        field(&close, "messages_in").as_deref(),
        Some("0"),
        "{}",
        s.output()
    );
    assert_eq!(s.count("message "), 0, "{}", s.output());
}

/// Defect 8: `udp-listen` sources while the server is down. A source
/// idle while disconnected is given up after `--idle-timeout` (it used
/// to be dialled for as long as the process ran); and what a source sends
/// meanwhile is held and delivered in order once the server is up.
#[test]
fn udp_listen_while_disconnected_idles_out_and_holds_datagrams() {
    let nowhere = format!("ws://127.0.0.1:{}/", peers::closed_port());
    let retry = [
        "--retry",
        "--retry-interval",
        "0.05",
        "--retry-max-interval",
        "0.1",
    ];

    // An idle source: given up, although the session would still redial.
    let mut args = retry.to_vec();
    args.extend(["--idle-timeout", "0.5"]);
    let b = Connect::start(&nowhere, "udp-listen://127.0.0.1:0", &args);
    let local = b.listener("udp-listen://");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"once", local).unwrap();
    b.wait_log("closed: no connection was opened");
    assert_eq!(
        b.count_log("idle timeout while disconnected"),
        1,
        "log:\n{}",
        b.logs()
    );

    // A source that sends while the server is down (the default idle
    // timeout, 60 s, keeps it): its datagrams arrive in order once the
    // server, started late on the port, is up. The first makes the
    // session and its socket; the others reach that socket while the
    // session waits to redial (how datagrams that race the socket's
    // making fare: the next test).
    let port = peers::closed_port();
    let b = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "udp-listen://127.0.0.1:0",
        &retry,
    );
    let local = b.listener("udp-listen://");
    let sent: Vec<Vec<u8>> = (1..=6).map(|i| format!("held {i}").into_bytes()).collect();
    u.send_to(&sent[0], local).unwrap();
    b.wait_log("retry 1 ");
    for d in &sent[1..] {
        u.send_to(d, local).unwrap();
    }
    let s = PyServer::start(&["--port", &port.to_string(), "--sink"]);
    let got = s.wait_lines("message conn=1 ", sent.len(), WAIT);
    let got: Vec<Vec<u8>> = got
        .iter()
        .map(|(_, l)| message_data(l).unwrap_or_default())
        .collect();
    assert_eq!(got, sent, "{}", s.output());
    assert_eq!(s.count("open conn="), 1, "{}", s.output());
}

/// Sources that start together while the server is down: each source's
/// datagrams go over its own connection, all of them, in the order sent.
///
/// A new source's socket is bound to the listener's address before it is
/// connected to its source, and in between the kernel may give it
/// datagrams of any source (its reuse-port group picks by hash), its own
/// included. The fix hands these to their sessions (they used to be sent
/// as the new source's); but they go first, ahead of older datagrams of
/// the same source still queued on the listener's socket, so a source's
/// datagrams can be reordered, a later one even becoming its session's
/// first. Still broken; but a race: alone on an idle machine this fails
/// on every run, beside other tests often not (datagrams must arrive
/// while a socket is being made, hence several rounds of bursts), so it
/// is run on demand (`-- --ignored`) until the listener steers datagrams
/// of sources without a socket to itself.
#[test]
#[ignore = "race reproduction of a defect still present: with many sources starting at once, a source's datagrams can still be reordered (event_loop.rs receive_udp, the listener's reuse-port program notwithstanding)"]
fn udp_listen_sources_starting_together_keep_their_datagrams_apart_and_in_order() {
    const ROUNDS: usize = 6;
    const SOURCES: usize = 10;
    const EACH: usize = 8;
    let port = peers::closed_port();
    let b = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "udp-listen://127.0.0.1:0",
        &[
            "--retry",
            "--retry-interval",
            "0.05",
            "--retry-max-interval",
            "0.5",
        ],
    );
    let local = b.listener("udp-listen://");
    let mut sent: Vec<Vec<Vec<u8>>> = Vec::new();
    // All kept open: a port freed would be given to a later source, the
    // same source for the bridge.
    let mut all = Vec::new();
    for r in 0..ROUNDS {
        let sources: Vec<UdpSocket> = (0..SOURCES)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let round: Vec<Vec<Vec<u8>>> = (0..SOURCES)
            .map(|k| {
                (1..=EACH)
                    .map(|i| format!("round {r} source {k:02} datagram {i}").into_bytes())
                    .collect()
            })
            .collect();
        // Round-robin, so that datagrams of others arrive while the
        // bridge makes each new source's socket; 80 small datagrams fit
        // in the listener socket's buffer, so the kernel drops none.
        for i in 0..EACH {
            for (u, datagrams) in sources.iter().zip(&round) {
                u.send_to(&datagrams[i], local).unwrap();
            }
        }
        sent.extend(round);
        all.extend(sources);
        // This round's sessions exist (each has failed to connect).
        b.wait_log_n("retry 1 ", sent.len(), WAIT);
    }
    let s = PyServer::start(&["--port", &port.to_string(), "--sink"]);
    s.wait_lines("message conn=", sent.len() * EACH, WAIT);
    let mut by_conn: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for l in s.lines().iter().filter(|l| l.starts_with("message conn=")) {
        let conn = field(l, "conn").unwrap_or_default();
        by_conn
            .entry(conn)
            .or_default()
            .push(message_data(l).unwrap_or_default());
    }
    let wrong: Vec<String> = by_conn
        .values()
        .filter(|got| !sent.contains(got))
        .map(|got| {
            got.iter()
                .map(|d| String::from_utf8_lossy(d).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    assert!(
        wrong.is_empty() && by_conn.len() == sent.len(),
        "{} connections for {} sources, {} of them not one source's datagrams in order:\n{}",
        by_conn.len(),
        sent.len(),
        wrong.len(),
        wrong.join("\n")
    );
}
