//! `websocksy connect` end to end (issue 8, client mode): refused upgrades,
//! what the server sees of the request, `wss://`, standard input and output
//! pipelines, the directions, SIGTERM and keep-alive, against an
//! independent server (Python `websockets`, [`PyServer`]), websocksy's own
//! server mode ([`Bridge`]) and, where neither can do it, a raw server
//! written byte by byte ([`RawServer`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use websocksy_tests::connect::Connect;
use websocksy_tests::pattern::Check;
use websocksy_tests::pyserver::{field, header, message_data, PyServer};
use websocksy_tests::{certs, Bridge, WAIT};

use crate::connect_util::{
    answer_upgrade, lines, p, plugin_dir, read_client_data, read_client_frame, self_signed,
    server_close, server_frame, settle, RawServer, ABSENCE,
};

/// How soon a `websocksy connect` with nothing left to do must exit: well
/// under the 5 s a close or drain may take when something is waited for.
const PROMPT: Duration = Duration::from_millis(3000);

// ---------------------------------------------------------------------------
// Refused upgrades: 401 is one log line, exit status 1, no retry

#[test]
fn python_401_is_one_log_line_and_exit_1_without_retry() {
    let s = PyServer::start(&["--status", "401"]);
    let mut c = Connect::start(
        &s.url("/feed"),
        "mirror://",
        &["--retry", "--retry-interval", "0.05"],
    );
    c.expect_exit(WAIT, 1);
    settle(&c);
    let line = c.wait_log("server answered 401");
    assert!(
        line.contains("401 Unauthorized: refused by ws_server.py: status 401"),
        "the status and the first line of the body: {line}"
    );
    assert_eq!(c.count_log("server answered"), 1, "{}", c.logs());
    assert_eq!(
        c.count_log("; retry "),
        0,
        "no retry after 401: {}",
        c.logs()
    );
    s.wait_line("response conn=1 status=401");
    assert_eq!(s.count("request conn="), 1, "{}", s.output());
}

/// The body of a refusal may come in a later segment than its head (a
/// server that writes them separately): the log line still has its first
/// line.
#[test]
fn a_refusal_whose_body_comes_after_its_head_is_logged_with_the_body() {
    let raw = RawServer::new();
    let mut c = Connect::start(&raw.url("/"), "mirror://", &[]);
    let mut s = raw.accept_raw();
    s.write_all(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\n",
    )
    .unwrap();
    // The head alone; the body follows once websocksy had time to read it
    // (or at once, should it hang up on the head alone).
    s.set_read_timeout(Some(ABSENCE)).unwrap();
    let hung_up_early = matches!(s.read(&mut [0u8; 1]), Ok(0));
    let _ = s.write_all(b"token expired, log in\r\n");
    c.expect_exit(WAIT, 1);
    settle(&c);
    let line = c.wait_log("server answered 403");
    assert!(
        line.ends_with("403 Forbidden: token expired, log in"),
        "the first line of the body is missing (websocksy hung up after \
         the head alone: {hung_up_early}): {line}"
    );
}

#[test]
fn python_403_is_not_retried_either() {
    let s = PyServer::start(&["--status", "403"]);
    let mut c = Connect::start(&s.url("/"), "mirror://", &["--retry"]);
    c.expect_exit(WAIT, 1);
    settle(&c);
    let line = c.wait_log("server answered 403");
    assert!(line.contains("status 403"), "{line}");
    assert_eq!(c.count_log("; retry "), 0, "{}", c.logs());
    s.wait_line("response conn=1 status=403");
    assert_eq!(s.count("request conn="), 1, "{}", s.output());
}

#[test]
fn python_500_is_retried_until_retry_max() {
    let s = PyServer::start(&["--status", "500"]);
    let mut c = Connect::start(
        &s.url("/"),
        "mirror://",
        &["--retry", "--retry-interval", "0.02", "--retry-max", "2"],
    );
    c.expect_exit(WAIT, 1);
    settle(&c);
    assert_eq!(c.count_log("server answered 500"), 3, "{}", c.logs());
    c.wait_log("retry 1 of 2 in ");
    c.wait_log("retry 2 of 2 in ");
    c.wait_log("giving up after 2 retries");
    s.wait_line("response conn=3 status=500");
}

#[test]
fn python_401_then_upgrade_with_retry_on_auth_failure() {
    let s = PyServer::start(&[
        "--status",
        "401",
        "--status-times",
        "1",
        "--send",
        "after the refusal",
        "--sink",
    ]);
    let c = Connect::start(
        &s.url("/"),
        "mirror://",
        &[
            "--retry",
            "--retry-interval",
            "0.05",
            "--retry-on-auth-failure",
        ],
    );
    let refused = c.wait_log("server answered 401");
    assert!(refused.contains("; retry 1 in "), "{refused}");
    c.wait_log(" open");
    // The mirror sends the server's message back: the second connection works.
    let m = s.wait_line("message conn=2 ");
    assert_eq!(message_data(&m), Some(b"after the refusal".to_vec()));
}

#[test]
fn websocksy_auth_401_without_and_with_retry_on_auth_failure() {
    let env = [("CRED", "alice:s3cret")];
    let server = Bridge::spawn_env(
        &[
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-c",
            "host=mirror://",
            "--auth",
            "$CRED",
        ],
        &env,
    );
    // No credentials: refused once, no retry although --retry is on.
    let mut c = Connect::start(&server.url("/"), "mirror://", &["--retry"]);
    c.expect_exit(WAIT, 1);
    settle(&c);
    let line = c.wait_log("server answered 401");
    assert!(line.contains("401 Unauthorized: "), "{line}");
    assert_eq!(c.count_log("server answered"), 1, "{}", c.logs());
    assert_eq!(c.count_log("; retry "), 0, "{}", c.logs());

    // Wrong credentials with --retry-on-auth-failure: retried until
    // --retry-max, then exit 1.
    let mut c = Connect::spawn_env(
        &[
            "connect",
            &server.url("/"),
            "--from",
            "mirror://",
            "--auth",
            "$WRONG",
            "--retry",
            "--retry-interval",
            "0.02",
            "--retry-max",
            "2",
            "--retry-on-auth-failure",
        ],
        &[("WRONG", "alice:nope")],
    );
    c.expect_exit(WAIT, 1);
    settle(&c);
    assert_eq!(c.count_log("server answered 401"), 3, "{}", c.logs());
    c.wait_log("giving up after 2 retries");

    // The right ones: open.
    let mut c = Connect::spawn_env(
        &[
            "connect",
            &server.url("/"),
            "--from",
            "-",
            "--auth",
            "$CRED",
            "--framing",
            "newline",
        ],
        &env,
    );
    c.write_stdin(b"let me in\n");
    assert_eq!(c.wait_stdout(10), b"let me in\n");
    assert!(!c.logs().contains("s3cret"), "{}", c.logs());
}

// ---------------------------------------------------------------------------
// What the server sees of the request

#[test]
fn headers_protocols_origin_and_basic_credentials_as_python_sees_them() {
    let s = PyServer::start(&[
        "--require-basic",
        "alice:s3cret",
        "--subprotocols",
        "p3,p2",
        "--sink",
    ]);
    let c = Connect::spawn_env(
        &[
            "connect",
            &s.url("/in?x=1"),
            "--from",
            "mirror://",
            "--header",
            "X-One: 1",
            "--header",
            "X-Two: two words",
            "--protocol",
            "p1",
            "--protocol",
            "p2",
            "--origin",
            "https://app.example",
            "--auth",
            "$CRED",
        ],
        &[("CRED", "alice:s3cret")],
    );
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "path").as_deref(), Some("/in?x=1"));
    assert_eq!(field(&open, "user").as_deref(), Some("alice"), "{open}");
    assert_eq!(field(&open, "subprotocol").as_deref(), Some("p2"));
    assert_eq!(header(&open, "x-one").as_deref(), Some("1"));
    assert_eq!(header(&open, "x-two").as_deref(), Some("two words"));
    assert_eq!(
        header(&open, "sec-websocket-protocol").as_deref(),
        Some("p1, p2"),
        "offered in order"
    );
    assert_eq!(
        header(&open, "origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header(&open, "host"),
        Some(s.addr.to_string()),
        "Host is the URL's authority"
    );
    let logged = c.wait_log(" open");
    assert!(logged.contains("(protocol p2)"), "{logged}");
    assert!(!c.logs().contains("s3cret"), "{}", c.logs());
}

#[test]
fn url_user_info_gives_basic_credentials_and_is_not_logged() {
    let s = PyServer::start(&["--require-basic", "bob:pa ss", "--sink"]);
    let url = format!("ws://bob:pa%20ss@{}/u", s.addr);
    let c = Connect::start(&url, "mirror://", &[]);
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "user").as_deref(), Some("bob"), "{open}");
    c.wait_log(" open");
    assert!(
        !c.logs().contains("pa%20ss") && !c.logs().contains("pa ss"),
        "the password is in the log:\n{}",
        c.logs()
    );
}

#[test]
fn auth_from_a_file() {
    let s = PyServer::start(&["--require-basic", "carol:from a file", "--sink"]);
    let f = websocksy_tests::temp_dir("connect-auth").join("credentials");
    std::fs::write(&f, "carol:from a file\nignored second line\n").unwrap();
    let c = Connect::start(&s.url("/"), "mirror://", &["--auth", p(&f)]);
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "user").as_deref(), Some("carol"), "{open}");
    c.wait_log(" open");
    assert!(!c.logs().contains("from a file"), "{}", c.logs());
}

#[test]
fn no_offered_protocol_is_fine_and_a_server_choosing_another_fails() {
    // The server accepts none of the offered: upgraded without one.
    let s = PyServer::start(&["--subprotocols", "x", "--sink"]);
    let c = Connect::start(&s.url("/"), "mirror://", &["--protocol", "y"]);
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "subprotocol").as_deref(), Some("-"));
    let logged = c.wait_log(" open");
    assert!(!logged.contains("(protocol"), "{logged}");

    // A 101 naming a subprotocol that was not offered is refused.
    let raw = RawServer::new();
    let mut c = Connect::start(&raw.url("/"), "mirror://", &["--protocol", "a"]);
    let (_s, head) = raw.accept_with(Some("b"));
    assert!(head.contains("Sec-WebSocket-Protocol: a\r\n"), "{head}");
    c.expect_exit(WAIT, 1);
    settle(&c);
    let line = c.wait_log("bad upgrade answer");
    assert!(line.to_lowercase().contains("protocol"), "{line}");
}

// ---------------------------------------------------------------------------
// Dialling

#[test]
fn timeout_bounds_an_upgrade_nobody_answers() {
    // Connects complete (the kernel's backlog) but nothing is ever read.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", l.local_addr().unwrap());
    let started = Instant::now();
    let mut c = Connect::start(&url, "mirror://", &["--timeout", "0.5"]);
    c.expect_exit(WAIT, 1);
    settle(&c);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "--timeout 0.5 took {took:?}"
    );
    c.wait_log("timed out");
}

#[test]
fn open_message_text_and_binary() {
    let s = PyServer::start(&["--sink"]);
    let _text = Connect::start(&s.url("/"), "mirror://", &["--open-message", "hi there"]);
    let m = s.wait_line("message conn=1 ");
    assert!(m.contains(" text len=8 "), "{m}");
    assert_eq!(message_data(&m), Some(b"hi there".to_vec()));
    let _bin = Connect::start(
        &s.url("/"),
        "mirror://",
        &["--open-message", "hi", "--open-message-binary"],
    );
    let m = s.wait_line("message conn=2 ");
    assert!(m.contains(" binary len=2 "), "{m}");
    assert_eq!(message_data(&m), Some(b"hi".to_vec()));
}

#[test]
fn http_scheme_and_an_ipv6_literal() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let s = PyServer::start(&["--host", "::1", "--echo"]);
    let url = format!("http://[::1]:{}/v6", s.port());
    let mut c = pipe(&url, &[]);
    round_trip(&mut c, "over ipv6\n");
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "path").as_deref(), Some("/v6"));
    assert_eq!(header(&open, "host"), Some(format!("[::1]:{}", s.port())));
    c.close_stdin();
    c.expect_exit(WAIT, 0);
}

#[test]
fn a_listener_without_retry_closes_the_local_client_and_keeps_running() {
    let port = websocksy_tests::peers::closed_port();
    let mut c = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "tcp-listen://127.0.0.1:0",
        &[],
    );
    let at = c.listener("tcp-listen://");
    for _ in 0..2 {
        let mut l = TcpStream::connect(at).unwrap();
        l.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        l.read_to_end(&mut got).expect("EOF for the local client");
        assert!(got.is_empty(), "{got:?}");
    }
    c.wait_log_n("cannot connect", 2, WAIT);
    assert!(c.try_exit().is_none(), "a listener exited:\n{}", c.logs());
    // And once the server is there, the next local client gets through.
    let _s = PyServer::start(&["--port", &port.to_string(), "--echo"]);
    let mut l = TcpStream::connect(at).unwrap();
    l.set_read_timeout(Some(WAIT)).unwrap();
    l.write_all(b"now").unwrap();
    let mut got = [0u8; 3];
    l.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"now");
}

// ---------------------------------------------------------------------------
// wss://

/// `websocksy connect URL --from - --framing newline ARGS...`
fn pipe(url: &str, args: &[&str]) -> Connect {
    let mut full = vec!["--framing", "newline"];
    full.extend_from_slice(args);
    Connect::start(url, "-", &full)
}

/// One line through the connection and back (an echo server or a
/// mirror behind it).
fn round_trip(c: &mut Connect, line: &str) {
    let before = c.stdout_len();
    c.write_stdin(line.as_bytes());
    let out = c.wait_stdout(before + line.len());
    assert_eq!(&out[before..], line.as_bytes());
}

#[test]
fn wss_to_python_with_the_test_ca_and_a_client_certificate() {
    let k = certs::shared();
    let s = PyServer::start(&[
        "--tls",
        p(&k.server_cert),
        p(&k.server_key),
        "--client-ca",
        p(&k.ca_cert),
    ]);
    let url = s.url("/secure");
    assert!(url.starts_with("wss://"), "{url}");
    let mut c = pipe(
        &url,
        &[
            "--ca",
            p(&k.ca_cert),
            "--cert",
            p(&k.client_cert),
            "--key",
            p(&k.client_key),
        ],
    );
    round_trip(&mut c, "over tls\n");
    let open = s.wait_line("open conn=1 ");
    assert_eq!(field(&open, "cert").as_deref(), Some("CN=alice,O=Example"));
    c.close_stdin();
    c.expect_exit(WAIT, 0);
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");

    // Without the client certificate the server refuses the handshake:
    // the attempt fails, exit status 1.
    // Standard input stays open: the failure alone ends the process.
    let mut c = pipe(&url, &["--ca", p(&k.ca_cert)]);
    c.expect_exit(PROMPT, 1);
    settle(&c);
    assert_eq!(s.count("open conn="), 1, "{}", s.output());
}

#[test]
fn wss_to_websocksy_tls_listener_with_client_ca() {
    let k = certs::shared();
    let server = Bridge::start(&[
        "--cert",
        p(&k.server_cert),
        "--key",
        p(&k.server_key),
        "--client-ca",
        p(&k.ca_cert),
        "-c",
        "host=mirror://",
    ]);
    let url = format!("wss://{}/", server.addr);
    let mut c = pipe(
        &url,
        &[
            "--ca",
            p(&k.ca_cert),
            "--cert",
            p(&k.client_cert),
            "--key",
            p(&k.client_key),
        ],
    );
    round_trip(&mut c, "mirrored over tls\n");
    // The server saw alice's certificate.
    server.wait_log("CN=alice");
    c.close_stdin();
    c.expect_exit(WAIT, 0);

    // A certificate from a CA the server does not trust: refused.
    let mut c = pipe(
        &url,
        &[
            "--ca",
            p(&k.ca_cert),
            "--cert",
            p(&k.other_client_cert),
            "--key",
            p(&k.other_client_key),
        ],
    );
    c.expect_exit(PROMPT, 1);
    settle(&c);
}

#[test]
fn wss_with_the_wrong_ca_fails_naming_certificate_verification() {
    let k = certs::shared();
    let s = PyServer::start(&["--tls", p(&k.server_cert), p(&k.server_key)]);
    let mut c = pipe(&s.url("/"), &["--ca", p(&k.other_ca_cert)]);
    c.expect_exit(PROMPT, 1);
    settle(&c);
    let logs = c.logs();
    assert!(
        logs.contains("certificate verify failed"),
        "no line names certificate verification:\n{logs}"
    );
    assert_eq!(s.count("request conn="), 0, "{}", s.output());
}

#[test]
fn wss_insecure_against_a_self_signed_server_works_and_warns() {
    let (cert, key) = self_signed();
    let s = PyServer::start(&["--tls", p(cert), p(key)]);
    // Verified against the system's CAs: refused.
    let mut c = pipe(&s.url("/"), &[]);
    c.expect_exit(PROMPT, 1);
    settle(&c);
    assert!(
        c.logs().contains("certificate verify failed"),
        "{}",
        c.logs()
    );
    // --insecure: works, with a warning.
    let mut c = pipe(&s.url("/"), &["--insecure"]);
    round_trip(&mut c, "unverified\n");
    let warn = c.wait_log("--insecure: the server's certificate is not verified");
    assert!(warn.contains("WARN"), "{warn}");
    c.close_stdin();
    c.expect_exit(WAIT, 0);
}

#[test]
fn sni_names_the_certificate_checked_and_is_sent() {
    let k = certs::shared();
    // 127.0.0.2 is not in the certificate (localhost, 127.0.0.1 and ::1 are).
    let s = PyServer::start(&[
        "--host",
        "127.0.0.2",
        "--tls",
        p(&k.server_cert),
        p(&k.server_key),
    ]);
    let url = s.url("/");
    let mut c = pipe(&url, &["--ca", p(&k.ca_cert)]);
    c.expect_exit(PROMPT, 1);
    settle(&c);
    assert!(
        c.logs().contains("certificate verify failed"),
        "{}",
        c.logs()
    );
    let mut c = pipe(&url, &["--ca", p(&k.ca_cert), "--sni", "localhost"]);
    round_trip(&mut c, "by name\n");
    c.close_stdin();
    c.expect_exit(WAIT, 0);
    let mut c = pipe(&url, &["--ca", p(&k.ca_cert), "--sni", "other.example"]);
    c.expect_exit(PROMPT, 1);
    settle(&c);
    assert!(
        c.logs().contains("certificate verify failed"),
        "{}",
        c.logs()
    );

    // What the server receives as SNI: --sni, else the URL's host name,
    // nothing for an IP literal.
    for (url_host, sni, want) in [
        ("127.0.0.1", Some("localhost"), Some("localhost")),
        ("localhost", None, Some("localhost")),
        ("127.0.0.1", None, None),
    ] {
        let (seen, port) = sni_server(k);
        let url = format!("wss://{url_host}:{port}/");
        let mut args = vec!["--ca", p(&k.ca_cert), "--from", "mirror://"];
        if let Some(n) = sni {
            args.extend(["--sni", n]);
        }
        let mut full = vec!["connect", url.as_str()];
        full.extend(args);
        let mut c = Connect::spawn(&full);
        let got = seen
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no TLS handshake from websocksy:\n{}", c.logs()));
        assert_eq!(got.as_deref(), want, "SNI for {url} with --sni {sni:?}");
        c.wait_log(" open");
        c.signal(libc::SIGTERM);
        c.expect_exit(WAIT, 0);
    }
}

/// A TLS WebSocket server on 127.0.0.1 (the test server certificate)
/// that reports the SNI name of its one connection, upgrades it and
/// answers close frames. Returns the report channel and its port.
fn sni_server(k: &certs::Certs) -> (std::sync::mpsc::Receiver<Option<String>>, u16) {
    use openssl::ssl::{NameType, SslAcceptor, SslFiletype, SslMethod};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate_chain_file(&k.server_cert).unwrap();
    b.set_private_key_file(&k.server_key, SslFiletype::PEM)
        .unwrap();
    let acceptor = b.build();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(WAIT)).unwrap();
        let Ok(mut t) = acceptor.accept(s) else {
            return;
        };
        let name = t.ssl().servername(NameType::HOST_NAME).map(str::to_string);
        let _ = tx.send(name);
        answer_upgrade(&mut t, None);
        // Until the client's close: answer it.
        while let Ok(f) = read_client_frame(&mut t) {
            if f.opcode == 8 {
                let _ = t.write_all(&server_frame(8, &f.payload));
                return;
            }
        }
    });
    (rx, port)
}

// ---------------------------------------------------------------------------
// Standard input and output

#[test]
fn stdin_newline_pipeline_through_python_echo() {
    let s = PyServer::start(&["--echo"]);
    let mut c = pipe(&s.url("/"), &[]);
    let input: String = lines(40, "nl").concat();
    c.write_stdin(input.as_bytes());
    // Every line is one message, in order.
    let msgs = s.wait_lines("message conn=1 ", 40, WAIT);
    for (i, (_, m)) in msgs.iter().enumerate() {
        assert!(m.contains(" text "), "{m}");
        assert_eq!(
            message_data(m),
            Some(format!("nl line {i:03}\n").into_bytes())
        );
    }
    let out = c.wait_stdout(input.len());
    assert_eq!(String::from_utf8_lossy(&out), input);
    c.close_stdin();
    c.expect_exit(WAIT, 0);
    assert_eq!(c.wait_stdout_eof(WAIT), input.as_bytes());
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    assert_eq!(field(&closed, "messages_in").as_deref(), Some("40"));
}

#[test]
fn stdin_json_pipeline_through_python_echo() {
    let s = PyServer::start(&["--echo"]);
    let mut c = Connect::start(
        &s.url("/"),
        "-",
        &["--plugin-dir", plugin_dir(), "--framing", "json"],
    );
    let input = r#"{"a":1}[1,2]"str" 123 true{"b":[{"c":null}]}"#;
    c.write_stdin(input.as_bytes());
    let want = [
        r#"{"a":1}"#,
        "[1,2]",
        r#""str""#,
        " 123",
        " true",
        r#"{"b":[{"c":null}]}"#,
    ];
    let msgs = s.wait_lines("message conn=1 ", want.len(), WAIT);
    for (w, (_, m)) in want.iter().zip(&msgs) {
        assert!(m.contains(" text "), "{m}");
        assert_eq!(message_data(m), Some(w.as_bytes().to_vec()), "{m}");
    }
    let out = c.wait_stdout(input.len());
    assert_eq!(String::from_utf8_lossy(&out), input);
    // A value cut across two writes is one message.
    c.write_stdin(br#"{"split":[1,"#);
    c.write_stdin(br#"2]}"#);
    let m = s.wait_line(r#"data="{\"split\":[1,2]}""#);
    assert!(m.contains("message conn=1 text"), "{m}");
    c.close_stdin();
    c.expect_exit(WAIT, 0);
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "messages_in").as_deref(), Some("7"));
}

#[test]
fn at_end_of_input_what_the_server_still_sends_reaches_stdout() {
    // The raw server, once the client's close arrived, sends two more
    // messages and only then its close: websocksy must write them out and
    // exit 0 after the server's close.
    let raw = RawServer::new();
    let mut c = pipe(&raw.url("/"), &[]);
    let (mut s, _) = raw.accept();
    c.write_stdin(b"last words\n");
    c.close_stdin();
    let f = read_client_data(&mut s);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"last words\n"[..]));
    let close = read_client_data(&mut s);
    assert_eq!(close.close_code(), Some(1000), "{close:?}");
    s.write_all(&server_frame(2, b"late one,")).unwrap();
    s.write_all(&server_frame(1, b" late two")).unwrap();
    assert!(c.try_exit().is_none(), "exited before the server's close");
    s.write_all(&server_close(1000, "")).unwrap();
    // The server closes TCP first (RFC 6455 7.1.1).
    drop(s);
    c.expect_exit(PROMPT, 0);
    assert_eq!(c.wait_stdout_eof(WAIT), b"late one, late two");
}

#[test]
fn a_server_closing_1000_first_exits_0_with_everything_on_stdout() {
    let s = PyServer::start(&["--source", "5", "3000", "--send", "hello "]);
    let mut c = pipe(&s.url("/"), &[]);
    // Standard input stays open: the server ends the connection, and that
    // ends the process at once (nothing more can be sent anywhere).
    c.expect_exit(PROMPT, 0);
    let out = c.wait_stdout_eof(WAIT);
    assert!(
        out.starts_with(b"hello "),
        "{:?}",
        &out[..out.len().min(16)]
    );
    let mut check = Check::new();
    check.feed(&out[6..]);
    assert_eq!(check.pos, 15_000);
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    // Websocksy's own server ends the same way when its peer hangs up.
    let peer = websocksy_tests::peers::TcpPeer::new();
    let server = Bridge::start(&["-c", &peer.host_arg()]);
    let mut c = pipe(&server.url("/"), &[]);
    let mut p2 = peer.accept();
    p2.write_all(b"from the peer").unwrap();
    drop(p2);
    c.expect_exit(PROMPT, 0);
    assert_eq!(c.wait_stdout_eof(WAIT), b"from the peer");
}

#[test]
fn a_server_that_aborts_exits_1() {
    let s = PyServer::start(&["--drop-after", "1"]);
    let mut c = pipe(&s.url("/"), &[]);
    c.write_stdin(b"one\n");
    s.wait_line("drop conn=1 after=1 with=abort");
    c.expect_exit(PROMPT, 1);
    settle(&c);
    // Abnormal: the log says how it ended.
    assert!(c.logs().contains("closed"), "{}", c.logs());
    let _ = c.wait_stdout_eof(WAIT);
}

// ---------------------------------------------------------------------------
// Directions

#[test]
fn read_only_writes_what_the_server_sends_and_sends_nothing() {
    let s = PyServer::start(&["--send", "to the reader", "--echo"]);
    let c = Connect::start(&s.url("/"), "tcp-listen://127.0.0.1:0", &["--read-only"]);
    let mut l = TcpStream::connect(c.listener("tcp-listen://")).unwrap();
    l.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = [0u8; 13];
    l.write_all(b"not to be sent").unwrap();
    l.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to the reader");
    l.shutdown(Shutdown::Write).unwrap();
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(
        field(&closed, "messages_in").as_deref(),
        Some("0"),
        "{closed}"
    );
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    assert_eq!(s.count("message conn="), 0, "{}", s.output());

    // With -: standard input is not read at all.
    let s = PyServer::start(&["--send", "only this way", "--source", "0", "0"]);
    let mut c = Connect::start(&s.url("/"), "-", &["--read-only"]);
    c.write_stdin(b"ignored\n");
    c.expect_exit(WAIT, 0);
    assert_eq!(c.wait_stdout_eof(WAIT), b"only this way");
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(
        field(&closed, "messages_in").as_deref(),
        Some("0"),
        "{closed}"
    );
}

#[test]
fn write_only_sends_and_drops_what_the_server_sends() {
    let s = PyServer::start(&["--send", "dropped", "--echo"]);
    let c = Connect::start(&s.url("/"), "tcp-listen://127.0.0.1:0", &["--write-only"]);
    let mut l = TcpStream::connect(c.listener("tcp-listen://")).unwrap();
    l.set_read_timeout(Some(WAIT)).unwrap();
    l.write_all(b"upward only").unwrap();
    let m = s.wait_line("message conn=1 ");
    assert_eq!(message_data(&m), Some(b"upward only".to_vec()));
    l.shutdown(Shutdown::Write).unwrap();
    // The server's message and the echo were read and dropped: the local
    // client gets EOF and nothing else.
    let mut got = Vec::new();
    l.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    assert_eq!(field(&closed, "messages_out").as_deref(), Some("2"));
}

// ---------------------------------------------------------------------------
// SIGTERM and keep-alive

#[test]
fn sigterm_closes_open_connections_with_1001_and_exits_0() {
    let s = PyServer::start(&["--echo"]);
    let c = Connect::start(&s.url("/"), "tcp-listen://127.0.0.1:0", &[]);
    let at = c.listener("tcp-listen://");
    let mut locals: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut l = TcpStream::connect(at).unwrap();
            l.set_read_timeout(Some(WAIT)).unwrap();
            let msg = format!("client {i}");
            l.write_all(msg.as_bytes()).unwrap();
            let mut got = vec![0u8; msg.len()];
            l.read_exact(&mut got).unwrap();
            assert_eq!(got, msg.as_bytes());
            l
        })
        .collect();
    let mut c = c;
    c.signal(libc::SIGTERM);
    for k in 1..=2 {
        let closed = s.wait_line(&format!("close conn={k} "));
        assert_eq!(field(&closed, "code").as_deref(), Some("1001"), "{closed}");
    }
    // Each local client gets EOF; once they hang up, the process is done.
    for l in &mut locals {
        let mut rest = Vec::new();
        l.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }
    drop(locals);
    c.expect_exit(PROMPT, 0);

    // A single connection (-) the same way.
    let mut c = pipe(&s.url("/"), &[]);
    round_trip(&mut c, "before the signal\n");
    c.signal(libc::SIGTERM);
    let closed = s.wait_line("close conn=3 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1001"), "{closed}");
    // Standard input is still open: nothing to wait for.
    c.expect_exit(PROMPT, 0);
}

#[test]
fn a_ping_from_the_server_is_answered() {
    let raw = RawServer::new();
    let _c = Connect::start(&raw.url("/"), "mirror://", &["--ping", "0"]);
    let (mut s, _) = raw.accept();
    s.write_all(&server_frame(9, b"are you there")).unwrap();
    let f = read_client_frame(&mut s).unwrap();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (10, &b"are you there"[..])
    );
    // And data still flows after it (the mirror sends it back).
    s.write_all(&server_frame(2, b"echo me")).unwrap();
    let f = read_client_data(&mut s);
    assert_eq!((f.opcode, f.payload.as_slice()), (2, &b"echo me"[..]));
}

#[test]
fn websocksy_server_pings_are_answered() {
    // The server pings after 1 s of silence and gives up 1 s later without
    // a pong; the client never pings itself (--ping 0), so only its pongs
    // keep the connection. Three seconds of silence outlive two rounds.
    let server = Bridge::start(&["-c", "host=mirror://", "-k", "1", "--pong-timeout", "1"]);
    let mut c = pipe(&server.url("/"), &["--ping", "0"]);
    round_trip(&mut c, "first\n");
    let quiet = Duration::from_millis(3000);
    assert!(
        server.wait_log_for("keep-alive timeout", quiet).is_none(),
        "the server timed the client out:\n{}",
        server.logs()
    );
    round_trip(&mut c, "still here\n");
    assert_eq!(c.count_log("closed"), 0, "{}", c.logs());
}

#[test]
fn ping_without_a_pong_closes_with_1001() {
    let raw = RawServer::new();
    let c = Connect::start(
        &raw.url("/"),
        "mirror://",
        &["--ping", "1", "--pong-timeout", "1"],
    );
    let (mut s, _) = raw.accept();
    let opened = Instant::now();
    let ping = read_client_frame(&mut s).unwrap();
    assert_eq!(ping.opcode, 9, "{ping:?}");
    let pinged = Instant::now();
    assert!(
        pinged - opened >= Duration::from_millis(900),
        "pinged after {:?} of silence",
        pinged - opened
    );
    // Never answered: a close with 1001 about a second later.
    let close = read_client_frame(&mut s).unwrap();
    assert_eq!(close.close_code(), Some(1001), "{close:?}");
    let waited = pinged.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "closed {waited:?} after the ping"
    );
    c.wait_log("keep-alive timeout");
    let _ = ABSENCE;
}

// ---------------------------------------------------------------------------
// The server's frames, as the client role must take them

#[test]
fn fragments_and_interleaved_pings_from_the_server_make_one_message() {
    let raw = RawServer::new();
    let _c = Connect::start(&raw.url("/"), "mirror://", &["--ping", "0"]);
    let (mut s, _) = raw.accept();
    s.write_all(&frame_fin(false, 1, b"frag")).unwrap();
    s.write_all(&server_frame(9, b"mid")).unwrap();
    s.write_all(&frame_fin(false, 0, b"men")).unwrap();
    s.write_all(&frame_fin(true, 0, b"ted")).unwrap();
    let pong = read_client_frame(&mut s).unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"mid"[..]));
    let f = read_client_data(&mut s);
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (1, &b"fragmented"[..]),
        "the mirror sends the whole message back"
    );
}

fn frame_fin(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    websocksy_tests::ws::frame_with(fin, 0, opcode, false, payload)
}

#[test]
fn a_masked_frame_from_the_server_is_a_protocol_error() {
    let raw = RawServer::new();
    let mut c = Connect::start(&raw.url("/"), "mirror://", &["--ping", "0"]);
    let (mut s, _) = raw.accept();
    // Masked: only clients may send that (RFC 6455 5.1).
    s.write_all(&websocksy_tests::ws::text("masked")).unwrap();
    let close = read_client_data(&mut s);
    assert_eq!(close.close_code(), Some(1002), "{close:?}");
    drop(s);
    c.expect_exit(WAIT, 1);
}

#[test]
fn a_101_with_a_wrong_accept_key_is_refused() {
    let raw = RawServer::new();
    let mut c = Connect::start(&raw.url("/"), "mirror://", &[]);
    let mut s = raw.accept_raw();
    s.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    )
    .unwrap();
    c.expect_exit(WAIT, 1);
    settle(&c);
    let line = c.wait_log("bad upgrade answer");
    assert!(line.contains("Accept"), "{line}");
}

#[test]
fn a_message_over_max_message_size_from_the_server_is_1009() {
    let big = "x".repeat(2000);
    let s = PyServer::start(&["--send", &big, "--sink"]);
    let mut c = Connect::start(&s.url("/"), "mirror://", &["--max-message-size", "1K"]);
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1009"), "{closed}");
    c.expect_exit(WAIT, 1);
}
