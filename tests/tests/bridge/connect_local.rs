//! `websocksy connect --from LOCAL`, every kind of local side (issue 8):
//! the listeners (`tcp-listen`, `unix-listen`, `udp-listen`: one WebSocket
//! connection per local client or source), the single peers (`tcp://`,
//! `udp://`, `unix://`, `unix-dgram://`, `tls://`) and `mirror://`;
//! `-` is in connect.rs. Against Python `websockets` and, for the
//! listener and the mirror, websocksy's own server mode.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::time::Duration;

use websocksy_tests::connect::Connect;
use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::pyserver::{field, message_data, PyServer};
use websocksy_tests::{certs, temp_dir, Bridge, WAIT};

use crate::connect_util::{json_text, p, read_client_data, RawServer};

/// Write `msg` and read it back (an echo behind the connection).
fn echo<S: Read + Write>(s: &mut S, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg, "{:?}", String::from_utf8_lossy(&got));
}

fn tcp_to(at: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(at).expect("connect to the tcp-listen side");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The `conn=K` of the server connection that received the text message
/// `data` (waiting for its line).
fn conn_of(s: &PyServer, data: &str) -> String {
    let line = s.wait_line(&format!("data={}", json_text(data)));
    assert!(line.starts_with("message "), "{line}");
    assert_eq!(message_data(&line).as_deref(), Some(data.as_bytes()));
    field(&line, "conn").expect("conn=")
}

#[test]
fn tcp_listen_gives_each_local_client_its_own_connection() {
    let s = PyServer::start(&["--echo"]);
    let c = Connect::start(&s.url("/tcp"), "tcp-listen://127.0.0.1:0", &[]);
    let at = c.listener("tcp-listen://");
    let mut a = tcp_to(at);
    let mut b = tcp_to(at);
    echo(&mut a, b"from a");
    echo(&mut b, b"from b");
    s.wait_lines("open conn=", 2, WAIT);
    let (ka, kb) = (conn_of(&s, "from a"), conn_of(&s, "from b"));
    assert_ne!(ka, kb, "one connection for two local clients");
    // a leaves: its connection closes with 1000, a gets EOF; b goes on.
    a.shutdown(Shutdown::Write).unwrap();
    let closed = s.wait_line(&format!("close conn={ka} "));
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    echo(&mut b, b"b again");
    assert_eq!(s.count(&format!("close conn={kb} ")), 0, "{}", s.output());
    // A third client gets a third connection.
    let mut d = tcp_to(at);
    echo(&mut d, b"from d");
    s.wait_lines("open conn=", 3, WAIT);
}

#[test]
fn tcp_listen_against_websocksy_mirror() {
    let server = Bridge::start(&["-c", "host=mirror://"]);
    let c = Connect::start(&server.url("/"), "tcp-listen://127.0.0.1:0", &[]);
    let at = c.listener("tcp-listen://");
    let mut a = tcp_to(at);
    let mut b = tcp_to(at);
    echo(&mut a, b"mirrored a");
    echo(&mut b, b"mirrored b");
    drop(a);
    echo(&mut b, b"b still mirrored");
    // Two connections reached the server.
    server.wait_log_n(" open", 2, WAIT);
}

#[test]
fn unix_listen_gives_each_local_client_its_own_connection() {
    let s = PyServer::start(&["--echo"]);
    let path = temp_dir("connect-unix-listen").join("local.sock");
    let from = format!("unix-listen://{}", path.display());
    let c = Connect::start(&s.url("/"), &from, &[]);
    c.wait_log("listening on unix-listen://");
    let unix = || {
        let u = UnixStream::connect(&path).expect("connect to unix-listen");
        u.set_read_timeout(Some(WAIT)).unwrap();
        u
    };
    let mut a = unix();
    let mut b = unix();
    echo(&mut a, b"unix a");
    echo(&mut b, b"unix b");
    let (ka, kb) = (conn_of(&s, "unix a"), conn_of(&s, "unix b"));
    assert_ne!(ka, kb);
    drop(a);
    let closed = s.wait_line(&format!("close conn={ka} "));
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    echo(&mut b, b"unix b again");
}

#[test]
fn udp_listen_one_connection_per_source_one_datagram_per_message() {
    let s = PyServer::start(&["--echo"]);
    let c = Connect::start(&s.url("/udp"), "udp-listen://127.0.0.1:0", &[]);
    let at = c.listener("udp-listen://");
    let source = || {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(WAIT)).unwrap();
        u
    };
    let (a, b) = (source(), source());
    // Two datagrams sent before the connection is open, one with a
    // newline inside: each is one message, whole.
    a.send_to(b"a one\nstill one", at).unwrap();
    a.send_to(b"a two", at).unwrap();
    b.send_to(b"b one", at).unwrap();
    let recv = |u: &UdpSocket| {
        let mut buf = [0u8; 2048];
        let (n, from) = u.recv_from(&mut buf).expect("a reply datagram");
        assert_eq!(from, at, "replies leave from the listen address");
        buf[..n].to_vec()
    };
    assert_eq!(recv(&a), b"a one\nstill one");
    assert_eq!(recv(&a), b"a two");
    assert_eq!(recv(&b), b"b one");
    let ka = conn_of(&s, "a one\nstill one");
    assert_eq!(conn_of(&s, "a two"), ka, "one connection per source");
    let kb = conn_of(&s, "b one");
    assert_ne!(ka, kb, "two sources share a connection");
    assert_eq!(s.count("open conn="), 2, "{}", s.output());
    assert_eq!(s.count("message conn="), 3, "{}", s.output());
    // Later datagrams go on the same connections.
    b.send_to(b"b two", at).unwrap();
    assert_eq!(recv(&b), b"b two");
    assert_eq!(conn_of(&s, "b two"), kb);
    assert_eq!(s.count("open conn="), 2, "{}", s.output());
}

#[test]
fn udp_listen_idle_source_is_closed() {
    let s = PyServer::start(&["--echo"]);
    let c = Connect::start(
        &s.url("/"),
        "udp-listen://127.0.0.1:0",
        &["--idle-timeout", "0.5"],
    );
    let at = c.listener("udp-listen://");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.send_to(b"then silence", at).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(u.recv(&mut buf).unwrap(), 12);
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1001"), "{closed}");
    // Once that session is over, the source comes back: a new connection.
    // (While it is still closing, see the next test.)
    c.wait_log("closed: code 1001");
    u.send_to(b"back", at).unwrap();
    assert_eq!(u.recv(&mut buf).unwrap(), 4);
    s.wait_line("open conn=2 ");
}

/// A source that sends again while its old connection is still closing
/// (the server has not answered the close yet) must not lose the datagram
/// to that dying session: it gets a new connection.
#[test]
fn udp_listen_source_back_while_its_old_connection_closes() {
    let raw = RawServer::new();
    let c = Connect::start(
        &raw.url("/"),
        "udp-listen://127.0.0.1:0",
        &["--idle-timeout", "0.3", "--ping", "0"],
    );
    let at = c.listener("udp-listen://");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"first", at).unwrap();
    let (mut s1, _) = raw.accept();
    assert_eq!(read_client_data(&mut s1).payload, b"first");
    // Idle: websocksy closes with 1001; this server never answers, so the
    // old session waits (up to its close deadline) for the close handshake.
    let close = read_client_data(&mut s1);
    assert_eq!(close.close_code(), Some(1001), "{close:?}");
    u.send_to(b"back", at).unwrap();
    // A new dial takes milliseconds; the old session lingers for 5 s.
    let (mut s2, _) = raw.accept_within(Duration::from_secs(3), None);
    assert_eq!(read_client_data(&mut s2).payload, b"back");
    drop(s1);
}

#[test]
fn tcp_peer_once() {
    let s = PyServer::start(&["--echo"]);
    let peer = TcpPeer::new();
    let from = format!("tcp://{}", peer.addr);
    let mut c = Connect::start(&s.url("/"), &from, &[]);
    let mut l = peer.accept();
    echo(&mut l, b"from the tcp peer");
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "path").as_deref(), Some("/"));
    // The peer hangs up: the connection closes with 1000, exit 0.
    l.shutdown(Shutdown::Write).unwrap();
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    c.expect_exit(WAIT, 0);
}

#[test]
fn tcp_peer_that_refuses_is_exit_1_and_no_dial() {
    let s = PyServer::start(&["--echo"]);
    let from = format!("tcp://127.0.0.1:{}", peers::closed_port());
    let mut c = Connect::start(&s.url("/"), &from, &[]);
    c.expect_exit(WAIT, 1);
    assert_eq!(s.count("request conn="), 0, "{}", s.output());
}

#[test]
fn udp_peer_once() {
    // The server speaks first: its message is a datagram to the peer,
    // whose answer (to where that came from) is a message back.
    let s = PyServer::start(&["--send", "hello udp", "--echo"]);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let from = format!("udp://{}", peer.local_addr().unwrap());
    let _c = Connect::start(&s.url("/"), &from, &[]);
    let mut buf = [0u8; 2048];
    let (n, src) = peer.recv_from(&mut buf).expect("the server's message");
    assert_eq!(&buf[..n], b"hello udp");
    peer.send_to(b"one datagram\nwhole", src).unwrap();
    let m = s.wait_line("message conn=1 ");
    assert_eq!(message_data(&m), Some(b"one datagram\nwhole".to_vec()));
    let (n, _) = peer.recv_from(&mut buf).expect("the echo");
    assert_eq!(&buf[..n], b"one datagram\nwhole");
}

#[test]
fn unix_peer_once() {
    let s = PyServer::start(&["--echo"]);
    let path = temp_dir("connect-unix-peer").join("peer.sock");
    let l = UnixListener::bind(&path).unwrap();
    let from = format!("unix://{}", path.display());
    let mut c = Connect::start(&s.url("/"), &from, &[]);
    let (mut u, _) = l.accept().unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    echo(&mut u, b"from the unix peer");
    drop(u);
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    c.expect_exit(WAIT, 0);
}

#[test]
fn unix_dgram_peer_once() {
    let s = PyServer::start(&["--send", "hello dgram", "--echo"]);
    let path = temp_dir("connect-unix-dgram").join("peer.sock");
    let peer = UnixDatagram::bind(&path).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let from = format!("unix-dgram://{}", path.display());
    let _c = Connect::start(&s.url("/"), &from, &[]);
    let mut buf = [0u8; 2048];
    let (n, src) = peer.recv_from(&mut buf).expect("the server's message");
    assert_eq!(&buf[..n], b"hello dgram");
    // websocksy's socket has an address to answer to.
    let sent = if let Some(p) = src.as_pathname() {
        peer.send_to(b"answer", p)
    } else {
        use std::os::linux::net::SocketAddrExt;
        assert!(
            src.as_abstract_name().is_some(),
            "websocksy's unix-dgram socket is unbound: no way to answer"
        );
        peer.send_to_addr(b"answer", &src)
    };
    sent.unwrap();
    let m = s.wait_line("message conn=1 ");
    assert_eq!(message_data(&m), Some(b"answer".to_vec()));
    let (n, _) = peer.recv_from(&mut buf).expect("the echo");
    assert_eq!(&buf[..n], b"answer");
}

#[test]
fn tls_peer_once() {
    let k = certs::shared();
    // The peer echoes; the server sends one message and keeps what comes
    // back (an echo server there would bounce it forever).
    let (addr, refused) = peers::tls_echo(&k.server_cert, &k.server_key, None);
    let s = PyServer::start(&["--send", "over tls to the peer", "--sink"]);
    let from = format!("tls://localhost:{}", addr.port());
    let _c = Connect::start(&s.url("/"), &from, &["--peer-ca", p(&k.ca_cert)]);
    let m = s.wait_line("message conn=1 ");
    assert_eq!(message_data(&m), Some(b"over tls to the peer".to_vec()));

    // A peer whose certificate is not trusted: no connection, exit 1.
    let mut c = Connect::start(&s.url("/"), &from, &["--peer-ca", p(&k.other_ca_cert)]);
    c.expect_exit(WAIT, 1);
    assert!(
        refused.recv_timeout(WAIT).is_ok(),
        "the peer saw no failed handshake"
    );
    assert_eq!(s.count("open conn="), 1, "{}", s.output());
}

#[test]
fn mirror_against_python_and_websocksy() {
    let s = PyServer::start(&["--send", "first", "--send", "second", "--sink"]);
    let _c = Connect::start(&s.url("/"), "mirror://", &[]);
    let m = s.wait_lines("message conn=1 ", 2, WAIT);
    assert_eq!(message_data(&m[0].1), Some(b"first".to_vec()));
    assert_eq!(message_data(&m[1].1), Some(b"second".to_vec()));
    assert!(m[0].1.contains(" text "), "text stays text: {}", m[0].1);

    // websocksy's server with a TCP peer: what the peer writes goes to the
    // client, the mirror sends it back, the server writes it to the peer.
    let peer = TcpPeer::new();
    let server = Bridge::start(&["-c", &peer.host_arg()]);
    let _c = Connect::start(&server.url("/"), "mirror://", &[]);
    let mut l = peer.accept();
    echo(&mut l, b"round the mirror");
}
