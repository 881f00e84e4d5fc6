use std::io::Write;

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws;
use websocksy_tests::Bridge;

#[test]
fn text_echo_through_tcp_peer() {
    let echo = peers::tcp_echo();
    let b = Bridge::start(&["-c", &format!("host=tcp://{echo}")]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/chat", &[]);
    s.write_all(&ws::text("hello")).unwrap();
    let f = ws::read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"hello"[..]));
}

#[test]
fn peer_sees_client_bytes_and_eof() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg()]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    s.write_all(&ws::binary(b"\x00\xff")).unwrap();
    s.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), b"\x00\xff");
    let (_, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(close.close_code(), Some(1000));
}
