//! RFC 6455 framing after the upgrade: spec 4.3, 4.6 and cases A9-A21,
//! B38-B40, B45. Most tests use the `mirror://` peer, which echoes each
//! message with its opcode; the ones about what a peer sees use TcpPeer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{cpu_ticks, Bridge};

const SHORT: Duration = Duration::from_secs(3);

fn mirror() -> Bridge {
    Bridge::start(&["-c", "host=mirror://"])
}

fn open(b: &Bridge) -> TcpStream {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    s
}

/// Read exactly `n` raw bytes from the client socket.
fn raw(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).expect("read raw bytes");
    v
}

fn echo_frame(s: &mut TcpStream) -> Frame {
    ws::read_frame(s).expect("read echoed frame")
}

/// The bridge closes with `code`; we answer the close and the TCP
/// connection then ends promptly.
fn expect_close(s: &mut TcpStream, code: u16) {
    let (data, close) = ws::read_until_close(s).expect("read close frame");
    assert!(data.is_empty(), "data frames before the close: {data:?}");
    assert_eq!(
        close.close_code(),
        Some(code),
        "close payload {:?}",
        String::from_utf8_lossy(&close.payload)
    );
    // Whatever the reason text is, it must be valid UTF-8 (RFC 6455 5.5.1).
    assert!(std::str::from_utf8(&close.payload[2..]).is_ok());
    let _ = s.write_all(&ws::close(code, ""));
    assert!(
        ws::closes_within(s, SHORT),
        "TCP connection not closed after the close handshake"
    );
}

/// The process is alive and a new connection works end to end.
fn assert_serves(b: &Bridge) {
    let mut s = open(b);
    s.write_all(&ws::text("still alive")).unwrap();
    let f = echo_frame(&mut s);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"still alive"[..]));
    s.write_all(&ws::close(1000, "")).unwrap();
    let (_, c) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(c.close_code(), Some(1000));
}

/// A protocol-error case: send `bytes` after the upgrade, expect `code`,
/// then check the bridge still serves.
fn protocol_error(bytes: &[u8], code: u16) {
    let b = mirror();
    let mut s = open(&b);
    let _ = s.write_all(bytes);
    expect_close(&mut s, code);
    assert_serves(&b);
}

#[test]
fn text_echo_exact_bytes() {
    // A9 with a real peer: the peer gets exactly `hello`, its echo comes
    // back as one unmasked final text frame.
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::text("hello")).unwrap();
    assert_eq!(peers::read_n(&mut p, 5), b"hello");
    p.write_all(b"hello").unwrap();
    assert_eq!(raw(&mut s, 7), b"\x81\x05hello");

    // And through the mirror.
    let b = mirror();
    let mut s = open(&b);
    s.write_all(&ws::text("hello")).unwrap();
    assert_eq!(raw(&mut s, 7), b"\x81\x05hello");
}

#[test]
fn binary_echo_exact_bytes() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::binary(b"\x00\xff")).unwrap();
    assert_eq!(peers::read_n(&mut p, 2), b"\x00\xff");
    p.write_all(b"\x00\xff").unwrap();
    assert_eq!(raw(&mut s, 4), b"\x82\x02\x00\xff");

    let b = mirror();
    let mut s = open(&b);
    s.write_all(&ws::binary(b"\x00\xff")).unwrap();
    assert_eq!(raw(&mut s, 4), b"\x82\x02\x00\xff");
}

#[test]
fn rfc_example_masked_frame_reaches_peer() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ])
    .unwrap();
    assert_eq!(peers::read_n(&mut p, 5), b"Hello");
    s.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), b"", "peer got more than Hello");
}

#[test]
fn ping_gets_pong_with_same_payload() {
    let b = mirror();
    let mut s = open(&b);
    s.write_all(&ws::frame(true, 9, b"pingdata")).unwrap();
    assert_eq!(raw(&mut s, 10), b"\x8a\x08pingdata");
    s.write_all(&ws::frame(true, 9, b"")).unwrap();
    assert_eq!(raw(&mut s, 2), b"\x8a\x00");
    // A 125-byte ping is the largest allowed.
    let big = vec![b'x'; 125];
    s.write_all(&ws::frame(true, 9, &big)).unwrap();
    let f = echo_frame(&mut s);
    assert_eq!((f.fin, f.opcode, f.payload), (true, 10, big));
}

#[test]
fn unsolicited_pong_is_ignored() {
    let b = mirror();
    let mut s = open(&b);
    s.write_all(&ws::frame(true, 10, b"unasked")).unwrap();
    s.write_all(&ws::text("after pong")).unwrap();
    let f = echo_frame(&mut s);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"after pong"[..]));
}

#[test]
fn unmasked_frame_closes_1002_and_peer_sees_eof() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::frame_with(true, 0, 1, false, b"naked"))
        .unwrap();
    expect_close(&mut s, 1002);
    assert_eq!(
        peers::read_to_eof(&mut p),
        b"",
        "the unmasked payload reached the peer"
    );
    // The same bridge still serves a new client.
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::text("ok")).unwrap();
    assert_eq!(peers::read_n(&mut p, 2), b"ok");
}

#[test]
fn unknown_data_opcode_3_closes_1002() {
    protocol_error(&ws::frame(true, 3, b"x"), 1002);
}

#[test]
fn unknown_control_opcode_b_closes_1002() {
    protocol_error(&ws::frame(true, 0xB, b"x"), 1002);
}

#[test]
fn client_close_is_echoed_and_peer_sees_eof() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::text("last")).unwrap();
    s.write_all(&ws::close(4000, "going away now")).unwrap();
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(close.close_code(), Some(4000));
    assert!(
        ws::closes_within(&mut s, SHORT),
        "no TCP close after the close handshake"
    );
    assert_eq!(peers::read_to_eof(&mut p), b"last");
}

#[test]
fn client_tcp_eof_reaches_peer() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::binary(b"before eof")).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), b"before eof");
    assert!(
        ws::closes_within(&mut s, SHORT),
        "client socket not closed after its EOF"
    );
}

#[test]
fn peer_eof_sends_data_then_close_1000() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    p.write_all(b"bye").unwrap();
    p.shutdown(Shutdown::Write).unwrap();
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(
        data,
        [Frame {
            fin: true,
            opcode: 1,
            payload: b"bye".to_vec()
        }]
    );
    assert_eq!(close.close_code(), Some(1000));
    s.write_all(&ws::close(1000, "")).unwrap();
    assert!(
        ws::closes_within(&mut s, SHORT),
        "no TCP close after peer EOF"
    );
}

#[test]
fn frame_one_byte_per_write_is_reassembled() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    ws::write_bytewise(&mut s, &ws::text("chunked frame"));
    s.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), b"chunked frame");

    let b = mirror();
    let mut s = open(&b);
    ws::write_bytewise(&mut s, &ws::binary(&[7u8; 300]));
    let f = echo_frame(&mut s);
    assert_eq!((f.opcode, f.payload), (2, vec![7u8; 300]));
}

#[test]
fn two_frames_in_one_write_both_forwarded() {
    let b = mirror();
    let mut s = open(&b);
    let mut bytes = ws::text("first");
    bytes.extend_from_slice(&ws::binary(b"second"));
    s.write_all(&bytes).unwrap();
    let f1 = echo_frame(&mut s);
    let f2 = echo_frame(&mut s);
    assert_eq!((f1.opcode, f1.payload.as_slice()), (1, &b"first"[..]));
    assert_eq!((f2.opcode, f2.payload.as_slice()), (2, &b"second"[..]));

    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&bytes).unwrap();
    s.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), b"firstsecond");
}

#[test]
fn payload_300_bytes_round_trips() {
    let b = mirror();
    let mut s = open(&b);
    let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&ws::binary(&payload)).unwrap();
    // 16-bit length on the way back.
    assert_eq!(raw(&mut s, 4), [0x82, 126, 0x01, 0x2c]);
    assert_eq!(raw(&mut s, 300), payload);
}

#[test]
fn payload_70000_bytes_round_trips() {
    let b = mirror();
    let mut s = open(&b);
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    s.write_all(&ws::binary(&payload)).unwrap();
    // 64-bit length on the way back.
    let mut head = vec![0x82, 127];
    head.extend_from_slice(&70_000u64.to_be_bytes());
    assert_eq!(raw(&mut s, 10), head);
    assert_eq!(raw(&mut s, 70_000), payload);
    // Text of the same size too, through a real TCP peer.
    let echo = peers::tcp_echo();
    let b = Bridge::start(&["-c", &format!("host=tcp://{echo}"), "-c", "framing=binary"]);
    let mut s = open(&b);
    s.write_all(&ws::binary(&payload)).unwrap();
    let mut got = Vec::new();
    while got.len() < payload.len() {
        let f = echo_frame(&mut s);
        assert_eq!(f.opcode, 2);
        got.extend_from_slice(&f.payload);
    }
    assert_eq!(got, payload);
}

#[test]
fn fragmented_message_with_ping_between() {
    let b = mirror();
    let mut s = open(&b);
    let mut bytes = ws::frame(false, 1, b"Hel");
    bytes.extend_from_slice(&ws::frame(true, 9, b"mid"));
    bytes.extend_from_slice(&ws::frame(false, 0, b"lo "));
    bytes.extend_from_slice(&ws::frame(true, 0, b"World"));
    s.write_all(&bytes).unwrap();
    let pong = echo_frame(&mut s);
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"mid"[..]));
    let f = echo_frame(&mut s);
    assert_eq!(
        f,
        Frame {
            fin: true,
            opcode: 1,
            payload: b"Hello World".to_vec()
        }
    );
}

#[test]
fn fragmented_message_reaches_tcp_peer_whole() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::frame(false, 2, b"ab")).unwrap();
    s.write_all(&ws::frame(false, 0, b"cd")).unwrap();
    s.write_all(&ws::frame(true, 0, b"ef")).unwrap();
    s.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), b"abcdef");
}

#[test]
fn utf8_split_across_fragments_is_valid() {
    let b = mirror();
    let mut s = open(&b);
    let euro = "€".as_bytes();
    s.write_all(&ws::frame(false, 1, &[b'a', euro[0]])).unwrap();
    s.write_all(&ws::frame(false, 0, &euro[1..2])).unwrap();
    s.write_all(&ws::frame(true, 0, &[euro[2], b'b'])).unwrap();
    let f = echo_frame(&mut s);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, "a€b".as_bytes()));
}

#[test]
fn continuation_without_start_closes_1002() {
    protocol_error(&ws::frame(true, 0, b"orphan"), 1002);
}

#[test]
fn new_message_inside_fragmented_one_closes_1002() {
    let mut bytes = ws::frame(false, 1, b"start");
    bytes.extend_from_slice(&ws::frame(true, 1, b"interloper"));
    protocol_error(&bytes, 1002);
}

#[test]
fn rsv_bits_close_1002() {
    for rsv in [1u8, 2, 4] {
        protocol_error(&ws::frame_with(true, rsv, 1, true, b"rsv"), 1002);
    }
}

#[test]
fn control_frame_with_126_bytes_closes_1002() {
    protocol_error(&ws::frame(true, 9, &[b'p'; 126]), 1002);
}

#[test]
fn fragmented_ping_closes_1002() {
    protocol_error(&ws::frame(false, 9, b"frag"), 1002);
}

#[test]
fn invalid_utf8_text_closes_1007() {
    protocol_error(&ws::frame(true, 1, b"ok\xff\xfe"), 1007);
}

#[test]
fn invalid_utf8_across_fragments_closes_1007() {
    // `\xe2\x82` is a valid start of `€`; `(` cannot continue it.
    let mut bytes = ws::frame(false, 1, b"ab\xe2\x82");
    bytes.extend_from_slice(&ws::frame(true, 0, b"(cd"));
    protocol_error(&bytes, 1007);
}

#[test]
fn invalid_close_codes_close_1002() {
    for code in [999u16, 1005, 1006, 1015, 5000] {
        let b = mirror();
        let mut s = open(&b);
        s.write_all(&ws::close(code, "bad")).unwrap();
        let (_, close) = ws::read_until_close(&mut s).unwrap();
        assert_eq!(
            close.close_code(),
            Some(1002),
            "answer to close code {code}"
        );
        assert!(
            ws::closes_within(&mut s, SHORT),
            "no TCP close after close code {code}"
        );
        assert_serves(&b);
    }
}

#[test]
fn one_byte_close_payload_closes_1002() {
    protocol_error(&ws::frame(true, 8, b"\x03"), 1002);
}

#[test]
fn message_above_max_size_closes_1009() {
    let b = Bridge::start(&["-c", "host=mirror://", "--max-message-size", "1K"]);
    let mut s = open(&b);
    // Exactly the limit passes.
    s.write_all(&ws::binary(&[1u8; 1024])).unwrap();
    let f = echo_frame(&mut s);
    assert_eq!(f.payload.len(), 1024);
    s.write_all(&ws::binary(&[2u8; 1025])).unwrap();
    expect_close(&mut s, 1009);
    // Fragments that only add up to too much.
    let mut s = open(&b);
    s.write_all(&ws::frame(false, 2, &[3u8; 600])).unwrap();
    s.write_all(&ws::frame(true, 0, &[3u8; 600])).unwrap();
    expect_close(&mut s, 1009);
    assert_serves(&b);
}

#[test]
fn huge_64bit_length_is_rejected_without_crash() {
    let b = mirror();
    let mut s = open(&b);
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(u64::MAX - 7).to_be_bytes());
    bytes.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
    bytes.extend_from_slice(&[0u8; 32]);
    let _ = s.write_all(&bytes);
    let (data, close) = ws::read_until_close(&mut s).expect("read close frame");
    assert!(data.is_empty(), "{data:?}");
    let code = close.close_code();
    assert!(
        matches!(code, Some(1009) | Some(1002)),
        "close code {code:?}"
    );
    let _ = s.write_all(&ws::close(code.unwrap_or(1000), ""));
    assert!(
        ws::closes_within(&mut s, SHORT),
        "no TCP close after the bad length"
    );
    assert_serves(&b);
    assert_serves(&b);
}

#[test]
fn protocol_error_does_not_busy_loop() {
    let b = mirror();
    let mut s = open(&b);
    s.write_all(&ws::frame(true, 3, b"x")).unwrap();
    let (_, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(close.close_code(), Some(1002));
    // Leave the connection alone (no close reply) for a measured while:
    // a bridge waiting for the reply must not burn CPU meanwhile.
    let before = cpu_ticks(b.pid());
    let _ = ws::closes_within(&mut s, Duration::from_millis(1000));
    let used = cpu_ticks(b.pid()) - before;
    assert!(
        used < 20,
        "bridge used {used} clock ticks of CPU in 1 s after a protocol error"
    );
}

#[test]
fn registered_close_codes_1012_to_1014_are_echoed() {
    // 1014 is the bridge's own code for a failed peer; a client may send
    // it too, and it is echoed like any valid code (it used to be 1002).
    for code in [1012u16, 1013, 1014] {
        let b = mirror();
        let mut s = open(&b);
        s.write_all(&ws::close(code, "")).unwrap();
        let (_, close) = ws::read_until_close(&mut s).unwrap();
        assert_eq!(
            close.close_code(),
            Some(code),
            "answer to close code {code}"
        );
        assert!(
            ws::closes_within(&mut s, SHORT),
            "no TCP close after {code}"
        );
    }
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_byte_of_a_frame() {
    // Autobahn 6.4.3: one text frame arrives in pieces; the bridge must
    // fail at the piece with the bad byte, before the frame is complete.
    let b = mirror();
    let mut s = open(&b);
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(b"edited");
    let wire = ws::frame(true, 1, &payload);
    let cut = wire.len() - b"edited".len();
    s.write_all(&wire[..cut]).unwrap();
    let (data, close) = ws::read_until_close(&mut s).expect("a close before the frame ends");
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(close.close_code(), Some(1007));
}
