//! The client-mode test harness checked on its own, before any test of
//! `websocksy connect` relies on it: `tests/peers/ws_server.py` (the
//! independent Python `websockets` server, [`PyServer`]) driven by this
//! crate's raw WebSocket client, in each of its modes; and [`Connect`]'s
//! stdout and exit-status plumbing on the binary as it is.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use websocksy_tests::connect::Connect;
use websocksy_tests::pattern::Check;
use websocksy_tests::pyserver::{self, field, header, message_data, sha256_hex, PyServer};
use websocksy_tests::{certs, peers, ws, WAIT};

fn tcp(s: &PyServer) -> TcpStream {
    let c = TcpStream::connect(s.addr).expect("connect to ws_server.py");
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

#[test]
fn echo_reports_request_open_messages_and_close() {
    let s = PyServer::start(&["--echo", "--subprotocols", "b,c"]);
    let mut c = tcp(&s);
    let r = ws::upgrade(
        &mut c,
        "/feed?x=1",
        &["X-Test: a b", "Sec-WebSocket-Protocol: a, c"],
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("c"));
    c.write_all(&ws::text("héllo")).unwrap();
    c.write_all(&ws::binary(&[0, 1, 255])).unwrap();
    let f = ws::read_frame(&mut c).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, "héllo".as_bytes()));
    let f = ws::read_frame(&mut c).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (2, &[0u8, 1, 255][..]));
    c.write_all(&ws::close(1000, "bye now")).unwrap();
    let (_, close) = ws::read_until_close(&mut c).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    // The server half-closes after the handshake and reports the close
    // when the client's TCP close arrives, as a client must send it.
    assert!(ws::at_eof(&mut c));
    drop(c);

    let req = s.wait_line("request conn=1 ");
    assert_eq!(field(&req, "path").as_deref(), Some("/feed?x=1"));
    assert_eq!(
        s.wait_line("response conn=1 "),
        "response conn=1 status=101"
    );
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "subprotocol").as_deref(), Some("c"));
    assert_eq!(field(&open, "cert").as_deref(), Some("-"));
    assert_eq!(header(&open, "X-Test").as_deref(), Some("a b"));
    assert_eq!(
        header(&open, "sec-websocket-protocol").as_deref(),
        Some("a, c")
    );
    let m = s.wait_lines("message conn=1 ", 2, WAIT);
    assert!(m[0].1.contains(" text len=6 "), "{}", m[0].1);
    assert_eq!(message_data(&m[0].1), Some("héllo".as_bytes().to_vec()));
    assert_eq!(
        field(&m[0].1, "sha256"),
        Some(sha256_hex("héllo".as_bytes()))
    );
    assert_eq!(message_data(&m[1].1), Some(vec![0, 1, 255]));
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"));
    assert_eq!(field(&closed, "reason").as_deref(), Some("bye now"));
    assert_eq!(field(&closed, "messages_in").as_deref(), Some("2"));
    assert_eq!(field(&closed, "bytes_in").as_deref(), Some("9"));
    assert_eq!(field(&closed, "bytes_out").as_deref(), Some("9"));
    assert_eq!(s.count("open conn="), 1);
}

#[test]
fn sink_counts_and_sends_nothing() {
    let s = PyServer::start(&["--sink", "--quiet"]);
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[]);
    let big = vec![7u8; 200_000];
    for _ in 0..3 {
        c.write_all(&ws::binary(&big)).unwrap();
    }
    c.write_all(&ws::close(1000, "")).unwrap();
    // Nothing but the close answer comes back.
    let (data, close) = ws::read_until_close(&mut c).unwrap();
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(close.close_code(), Some(1000));
    drop(c);
    let closed = s.wait_line("close conn=1 ");
    assert!(
        closed.contains("code=1000 ")
            && closed.contains("messages_in=3 bytes_in=600000 messages_out=0 bytes_out=0"),
        "{closed}"
    );
    assert_eq!(s.count("message "), 0, "--quiet: {:?}", s.lines());
}

#[test]
fn source_speaks_first_sends_the_pattern_and_closes_1000() {
    let s = PyServer::start(&[
        "--source", "5", "100000", "--send", "first", "--send", "second",
    ]);
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[]);
    let (frames, close) = ws::read_until_close(&mut c).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    c.write_all(&ws::close(1000, "")).unwrap();
    drop(c);
    assert_eq!(frames.len(), 7);
    assert_eq!(
        (frames[0].opcode, frames[0].payload.as_slice()),
        (1, &b"first"[..])
    );
    assert_eq!(
        (frames[1].opcode, frames[1].payload.as_slice()),
        (1, &b"second"[..])
    );
    let mut check = Check::new();
    for f in &frames[2..] {
        assert_eq!((f.opcode, f.fin, f.payload.len()), (2, true, 100_000));
        check.feed(&f.payload);
    }
    assert_eq!(check.pos, 500_000);
    assert_eq!(s.wait_lines("sent conn=1 ", 7, WAIT).len(), 7);
    let closed = s.wait_line("close conn=1 ");
    assert!(
        closed.contains("messages_out=7 bytes_out=500011"),
        "{closed}"
    );
}

#[test]
fn drop_after_n_messages_on_every_connection() {
    // Without a close frame: the TCP connection just ends.
    let s = PyServer::start(&["--drop-after", "2"]);
    for conn in 1..=2 {
        let mut c = tcp(&s);
        ws::upgrade(&mut c, "/", &[]);
        for m in ["one", "two"] {
            c.write_all(&ws::text(m)).unwrap();
            let f = ws::read_frame(&mut c).unwrap();
            assert_eq!(f.payload, m.as_bytes());
        }
        assert!(ws::at_eof(&mut c), "connection {conn} not dropped");
        s.wait_line(&format!("drop conn={conn} after=2 with=abort"));
        let closed = s.wait_line(&format!("close conn={conn} "));
        assert_eq!(field(&closed, "code").as_deref(), Some("1006"));
    }
    assert_eq!(s.count("open conn="), 2);

    // With a close frame of this code.
    let s = PyServer::start(&["--drop-after", "1", "--drop-with", "1001"]);
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[]);
    c.write_all(&ws::text("one")).unwrap();
    let (echoed, close) = ws::read_until_close(&mut c).unwrap();
    assert_eq!(echoed.len(), 1);
    assert_eq!(close.close_code(), Some(1001));
    c.write_all(&ws::close(1001, "")).unwrap();
    drop(c);
    s.wait_line("drop conn=1 after=1 with=1001");
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1001"));
}

#[test]
fn status_refuses_the_first_requests_then_upgrades() {
    let s = PyServer::start(&["--status", "403", "--status-times", "1"]);
    let mut c = tcp(&s);
    c.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut c).unwrap();
    assert_eq!(r.status, 403, "{}", r.head);
    let body = ws::read_body(&mut c, &r).unwrap();
    assert_eq!(body, b"refused by ws_server.py: status 403\n");
    s.wait_line("response conn=1 status=403");
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[]);
    s.wait_line("response conn=2 status=101");
    s.wait_line("open conn=2 ");
}

#[test]
fn basic_credentials_are_required_and_reported() {
    use base64::Engine;
    let s = PyServer::start(&["--require-basic", "alice:s3cret"]);
    let mut c = tcp(&s);
    c.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut c).unwrap();
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"ws_server.py\"")
    );
    let wrong = base64::engine::general_purpose::STANDARD.encode("alice:nope");
    let mut c = tcp(&s);
    c.write_all(ws::request("/", &[&format!("Authorization: Basic {wrong}")]).as_bytes())
        .unwrap();
    assert_eq!(ws::read_response(&mut c).unwrap().status, 401);
    let right = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[&format!("Authorization: Basic {right}")]);
    let open = s.wait_line("open conn=3 ");
    assert_eq!(field(&open, "user").as_deref(), Some("alice"));
    assert_eq!(
        header(&open, "authorization"),
        Some(format!("Basic {right}"))
    );
    assert_eq!(s.count("status=401"), 2);
}

#[test]
fn tls_with_a_client_certificate() {
    let certs = certs::shared();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (cert, key, ca) = (
        p(&certs.server_cert),
        p(&certs.server_key),
        p(&certs.ca_cert),
    );
    let s = PyServer::start(&["--tls", &cert, &key, "--client-ca", &ca]);
    assert!(
        s.url("/x").starts_with("wss://127.0.0.1:"),
        "{}",
        s.url("/x")
    );
    let client = ws::TlsClient {
        ca: Some(&certs.ca_cert),
        cert: Some((&certs.client_cert, &certs.client_key)),
        name: Some("localhost"),
    };
    let mut c = ws::tls_connect(s.addr, client).expect("TLS handshake with ws_server.py");
    ws::upgrade(&mut c, "/secure", &[]);
    c.write_all(&ws::text("over tls")).unwrap();
    assert_eq!(ws::read_frame(&mut c).unwrap().payload, b"over tls");
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "cert").as_deref(), Some("CN=alice,O=Example"));

    // No client certificate: the handshake fails (TLS 1.3 shows it on the
    // first read) and the server sees no request.
    let anon = ws::TlsClient {
        ca: Some(&certs.ca_cert),
        cert: None,
        name: Some("localhost"),
    };
    if let Ok(mut c) = ws::tls_connect(s.addr, anon) {
        let _ = c.write_all(ws::request("/", &[]).as_bytes());
        assert!(ws::read_response(&mut c).is_err());
    }
    assert_eq!(s.count("request conn="), 1);
}

#[test]
fn restarts_on_the_same_port() {
    let port = peers::closed_port();
    let mut s = PyServer::start(&["--port", &port.to_string()]);
    assert_eq!(s.port(), port);
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[]);
    s.wait_line("open conn=1 ");
    s.stop();
    assert!(ws::at_eof(&mut c));
    // Again at once, although the old connection may be in TIME_WAIT.
    let s = PyServer::start(&["--port", &port.to_string(), "--sink"]);
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/again", &[]);
    s.wait_line("open conn=1 path=/again ");
}

#[test]
fn ipv6_listener() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let s = PyServer::start(&["--host", "::1"]);
    assert!(s.addr.is_ipv6(), "{}", s.addr);
    assert!(s.url("/").starts_with("ws://[::1]:"), "{}", s.url("/"));
    let mut c = tcp(&s);
    ws::upgrade(&mut c, "/", &[]);
    s.wait_line("open conn=1 ");
}

#[test]
fn script_runs_standalone_with_help() {
    let out = std::process::Command::new(pyserver::python())
        .arg(pyserver::script())
        .arg("--help")
        .output()
        .expect("run ws_server.py --help");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--drop-after"));
}

/// `Connect`'s stdout collection and exit status, on what the binary does
/// today (`--version` needs no client mode).
#[test]
fn connect_runner_collects_stdout_and_the_exit_status() {
    let mut c = Connect::spawn(&["--version"]);
    let out = c.wait_stdout_eof(WAIT);
    assert!(
        String::from_utf8_lossy(&out).starts_with("websocksy "),
        "{out:?}"
    );
    c.expect_exit(WAIT, 0);
    assert_eq!(c.try_exit().and_then(|s| s.code()), Some(0));
    assert!(c
        .wait_stdout_until(Duration::from_millis(1), |b| b.ends_with(b"\n"))
        .is_ok());
}
