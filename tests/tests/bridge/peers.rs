//! Peer transports and peer life cycle: TCP (IP literal and DNS name),
//! UDP, Unix stream and datagram, mirror, unreachable peers, peer EOF and
//! reset, client close draining, and a slow peer connect that must not
//! stall the event loop.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer, UnansweringPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{run_cli, temp_dir, Bridge, WAIT};

/// A UDP socket as the peer, a bridge pointing at it, and an upgraded client.
fn udp_peer_and_client() -> (UdpSocket, Bridge, TcpStream) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let b = Bridge::start(&[
        "-c",
        &format!("host=udp://127.0.0.1:{}", peer.local_addr().unwrap().port()),
    ]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    (peer, b, s)
}

/// Upgrade, send `msgs` (opcode, payload) and expect each echoed as-is.
fn echo_roundtrip(b: &Bridge, msgs: &[(u8, &[u8])]) {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    for (op, payload) in msgs {
        s.write_all(&ws::frame(true, *op, payload)).unwrap();
        let f = ws::read_frame(&mut s).unwrap();
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (*op, *payload),
            "echo of {:?}",
            String::from_utf8_lossy(payload)
        );
    }
    s.write_all(&ws::close(1000, "")).unwrap();
    let (_, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(close.close_code(), Some(1000));
}

/// Send an upgrade request and read a refusal: (status, whole rest of the
/// stream after the head). The bridge must close after answering.
fn refused(b: &Bridge) -> (u16, String, String) {
    let mut s = b.connect();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut s).expect("a response");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("read to EOF after the refusal");
    (
        r.status,
        r.head,
        String::from_utf8_lossy(&rest).into_owned(),
    )
}

fn data(op: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    (op, payload.to_vec())
}

fn op_payload(f: &Frame) -> (u8, Vec<u8>) {
    (f.opcode, f.payload.clone())
}

#[test]
fn tcp_echo_text_and_binary() {
    let echo = peers::tcp_echo();
    let b = Bridge::start(&["-c", &format!("host=tcp://{echo}")]);
    echo_roundtrip(
        &b,
        &[
            (1, b"hello"),
            (2, b"\x00\xff\x10"),
            (1, "héllo €".as_bytes()),
        ],
    );
}

#[test]
fn dns_name_host_with_separate_port() {
    let echo = peers::tcp_echo();
    let port = echo.port().to_string();
    let b = Bridge::start(&["-c", "host=localhost", "-c", &format!("port={port}")]);
    echo_roundtrip(&b, &[(1, b"via a resolved name")]);
    let open = b.wait_log(" open");
    assert!(
        open.contains(&format!("localhost:{port}")),
        "open line should name the peer: {open}"
    );
}

#[test]
fn host_without_scheme_is_tcp() {
    // A32
    let echo = peers::tcp_echo();
    let b = Bridge::start(&[
        "-c",
        "host=127.0.0.1",
        "-c",
        &format!("port={}", echo.port()),
    ]);
    echo_roundtrip(&b, &[(1, b"no scheme")]);
}

#[test]
fn host_embedded_port_without_port_option() {
    // B53: the original tried port 5900 and failed.
    let echo = peers::tcp_echo();
    let b = Bridge::start(&["-c", &format!("host=tcp://127.0.0.1:{}", echo.port())]);
    echo_roundtrip(&b, &[(1, b"embedded port")]);
}

#[test]
fn udp_one_message_is_one_datagram_each_way() {
    // A31
    let (peer, _b, mut s) = udp_peer_and_client();

    // Three messages in one TCP write: they reach the bridge together and
    // must still leave as three datagrams.
    let sent: [&[u8]; 3] = [b"alpha", b"\x00\x01\x02\x03\xff", &[b'g'; 1000]];
    let mut burst = ws::text("alpha");
    burst.extend(ws::binary(sent[1]));
    burst.extend(ws::binary(sent[2]));
    s.write_all(&burst).unwrap();
    let mut buf = [0u8; 65536];
    let mut from = None;
    for want in sent {
        let (n, f) = peer
            .recv_from(&mut buf)
            .expect("a datagram from the bridge");
        assert_eq!(&buf[..n], want, "datagram boundaries");
        from = Some(f);
    }
    // Nothing extra was sent in between: the next datagram is the next message.
    s.write_all(&ws::text("end")).unwrap();
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"end");

    let from = from.unwrap();
    for reply in [&b"one"[..], b"\x00\xfe", b"three"] {
        peer.send_to(reply, from).unwrap();
    }
    let got: Vec<_> = (0..3)
        .map(|_| op_payload(&ws::read_frame(&mut s).unwrap()))
        .collect();
    assert_eq!(
        got,
        [data(1, b"one"), data(2, b"\x00\xfe"), data(1, b"three")]
    );
}

#[test]
fn udp_reply_datagram_ending_mid_character_is_still_one_message() {
    // A datagram is a message: auto framing must not hold back an
    // incomplete UTF-8 tail and glue it to the next datagram.
    let (peer, _b, mut s) = udp_peer_and_client();
    s.write_all(&ws::text("hi")).unwrap();
    let mut buf = [0u8; 64];
    let (_, from) = peer.recv_from(&mut buf).unwrap();
    peer.send_to(b"caf\xc3", from).unwrap();
    peer.send_to(b"\xa9", from).unwrap();
    peer.send_to(b"next", from).unwrap();
    let got: Vec<_> = (0..3)
        .map(|_| op_payload(&ws::read_frame(&mut s).unwrap()))
        .collect();
    assert_eq!(
        got,
        [data(2, b"caf\xc3"), data(2, b"\xa9"), data(1, b"next")]
    );
}

#[test]
fn unix_stream_echo() {
    let dir = temp_dir("unix-echo");
    let path = peers::unix_echo(&dir, "echo.sock");
    let b = Bridge::start(&["-c", &format!("host=unix://{}", path.display())]);
    echo_roundtrip(&b, &[(1, b"over a unix socket"), (2, b"\x00\xff")]);
}

#[test]
fn unix_dgram_replies_arrive() {
    // The original never bound its datagram socket, so replies were lost.
    let dir = temp_dir("unix-dgram");
    let path = peers::unix_dgram_echo(&dir, "dgram.sock");
    let b = Bridge::start(&["-c", &format!("host=unix-dgram://{}", path.display())]);
    echo_roundtrip(&b, &[(1, b"first"), (2, b"\xff\x00second"), (1, b"third")]);
}

#[test]
fn mirror_keeps_boundaries_and_opcodes() {
    let b = Bridge::start(&["-c", "host=mirror://"]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    // All in one write: boundaries must come from the messages, not reads.
    let mut burst = ws::text("a");
    burst.extend(ws::binary(b"\x00\x01\x02"));
    burst.extend(ws::text(""));
    burst.extend(ws::text("héllo"));
    burst.extend(ws::binary(&[0xab; 300]));
    // A fragmented text message is one message.
    burst.extend(ws::frame(false, 1, b"fra"));
    burst.extend(ws::frame(true, 0, b"gment"));
    s.write_all(&burst).unwrap();
    let got: Vec<_> = (0..6)
        .map(|_| op_payload(&ws::read_frame(&mut s).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            data(1, b"a"),
            data(2, b"\x00\x01\x02"),
            data(1, b""),
            data(1, "héllo".as_bytes()),
            data(2, &[0xab; 300]),
            data(1, b"fragment"),
        ]
    );
    s.write_all(&ws::close(1000, "")).unwrap();
    let (rest, close) = ws::read_until_close(&mut s).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(close.close_code(), Some(1000));
}

#[test]
fn refused_peer_gives_502_with_reason_and_no_101() {
    // A4 (the original answered 500 without a reason).
    let port = peers::closed_port();
    let b = Bridge::start(&["-c", &format!("host=tcp://127.0.0.1:{port}")]);
    let (status, head, body) = refused(&b);
    assert_eq!(status, 502, "{head}");
    assert!(!body.contains("101"), "no 101 after the refusal: {body:?}");
    assert!(
        body.to_lowercase().contains("refused"),
        "body should give the reason: {body:?}"
    );
    assert!(
        body.contains(&port.to_string()),
        "body should name the peer: {body:?}"
    );
}

#[test]
fn missing_unix_path_gives_502() {
    let dir = temp_dir("unix-missing");
    let path = dir.join("nobody-here.sock");
    let b = Bridge::start(&["-c", &format!("host=unix://{}", path.display())]);
    let (status, head, body) = refused(&b);
    assert_eq!(status, 502, "{head}");
    assert!(
        body.contains("nobody-here.sock"),
        "body should name the peer: {body:?}"
    );
}

#[test]
fn fifo_peer_is_a_startup_error() {
    let (code, _out, err) = run_cli(&["-p", "0", "-l", "127.0.0.1", "-c", "host=fifotx://x"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("fifotx://x"),
        "the error should name the host: {err}"
    );
}

#[test]
fn peer_eof_delivers_last_data_then_close_1000() {
    // A18
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"bye").unwrap();
    drop(p);
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    let frames: Vec<_> = frames.iter().map(op_payload).collect();
    assert_eq!(frames, [data(1, b"bye")]);
    assert_eq!(close.close_code(), Some(1000));
    s.write_all(&ws::close(1000, "")).unwrap();
    assert!(
        ws::at_eof(&mut s),
        "the bridge should close the TCP connection"
    );
}

#[test]
fn peer_reset_after_upgrade_closes_with_1014() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let p = peer.accept();
    peers::set_linger_zero(&p);
    drop(p);
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(
        close.close_code(),
        Some(1014),
        "close payload {:?}",
        String::from_utf8_lossy(&close.payload)
    );
}

#[test]
fn client_close_delivers_everything_before_peer_eof() {
    const TOTAL: usize = 1 << 20;
    const CHUNK: usize = 4096;
    let pattern: Vec<u8> = (0..TOTAL)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg(), "-c", "framing=binary"]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    let reader = std::thread::spawn(move || peers::read_to_eof(&mut p));
    let mut out = Vec::with_capacity(TOTAL + TOTAL / CHUNK * 14 + 8);
    for c in pattern.chunks(CHUNK) {
        out.extend(ws::binary(c));
    }
    out.extend(ws::close(1000, "done"));
    s.write_all(&out).unwrap();
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    assert!(frames.is_empty(), "the peer sent nothing");
    assert_eq!(close.close_code(), Some(1000));
    let got = reader.join().expect("peer reader");
    assert_eq!(got.len(), TOTAL, "bytes the peer received before EOF");
    if let Some(i) = got.iter().zip(&pattern).position(|(a, b)| a != b) {
        panic!("first difference at byte {i}");
    }
    assert!(ws::at_eof(&mut s));
}

#[test]
fn slow_peer_connect_does_not_stall_other_clients() {
    // B52: the original connected synchronously inside its event loop.
    let dead = UnansweringPeer::new();
    let b = Bridge::start(&[
        "-c",
        &format!("host=tcp://{}", dead.addr),
        "--connect-timeout",
        "1",
    ]);

    let mut a = b.connect();
    let a_sent = Instant::now();
    a.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    b.wait_log("conn 1 accepted");

    let mut c = b.connect();
    c.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let rc = ws::read_response(&mut c).expect("an answer to the malformed request");
    let c_time = a_sent.elapsed();
    assert_eq!(rc.status, 400, "{}", rc.head);
    assert!(
        c_time < Duration::from_millis(200),
        "client C waited {c_time:?} behind A's connect"
    );

    // A is still waiting for its peer.
    a.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = a.peek(&mut byte);
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "A should still be pending, got {pending:?}"
    );
    a.set_nonblocking(false).unwrap();

    let ra = ws::read_response(&mut a).expect("a refusal for A");
    let a_time = a_sent.elapsed();
    assert_eq!(ra.status, 502, "{}", ra.head);
    assert!(
        a_time >= Duration::from_millis(800),
        "A was refused after only {a_time:?}"
    );
    assert!(
        a_time < Duration::from_secs(5),
        "A was refused after {a_time:?}"
    );
}

#[test]
fn udp_message_too_large_for_one_datagram_closes_1009() {
    // A datagram peer needs whole messages; one that cannot be a UDP
    // datagram is refused as soon as it is known, not gathered first.
    let (peer, b, mut s) = udp_peer_and_client();
    let mut fragmented = ws::frame(false, 2, &[1u8; 40_000]);
    fragmented.extend(ws::frame(true, 0, &[2u8; 40_000]));
    s.write_all(&fragmented).unwrap();
    let (_, close) = ws::read_until_close(&mut s).expect("a close frame");
    assert_eq!(close.close_code(), Some(1009));
    // Nothing reached the peer, and the bridge still serves.
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 65536];
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "a partial datagram was sent"
    );
    let mut again = b.connect();
    ws::upgrade(&mut again, "/", &[]);
    again.write_all(&ws::text("still here")).unwrap();
    let (n, _) = peer.recv_from(&mut buf).expect("the bridge still serves");
    assert_eq!(&buf[..n], b"still here");
}
