//! TLS listeners (`--cert/--key`, `--bind wss://`), client certificates,
//! refusals of bad TLS clients, and certificate reload on SIGHUP.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use websocksy_tests::certs;
use websocksy_tests::ws::{self, TlsClient};
use websocksy_tests::{peers, run_cli, temp_dir, Bridge};

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A bridge serving wss:// on -l/-p with the test server certificate.
fn tls_bridge(extra: &[&str]) -> Bridge {
    let c = certs::shared();
    let mut args = vec!["--cert", p(&c.server_cert), "--key", p(&c.server_key)];
    args.extend(extra);
    Bridge::start(&args)
}

fn trusting() -> TlsClient<'static> {
    TlsClient {
        ca: Some(&certs::shared().ca_cert),
        ..TlsClient::default()
    }
}

/// Upgrade over TLS and check one echo of `msg`: proof that a TLS
/// connection works end to end at this moment.
fn wss_echo(addr: SocketAddr, c: TlsClient, msg: &[u8]) -> ws::TlsStream {
    let mut s = ws::tls_connect(addr, c).unwrap_or_else(|e| panic!("TLS to {addr}: {e}"));
    ws::upgrade(&mut s, "/", &[]);
    s.write_all(&ws::binary(msg)).unwrap();
    let f = ws::read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.payload.len()), (2, msg.len()));
    assert!(f.payload == msg, "echo differs");
    s
}

/// Plain TCP to a TLS port: the connection is closed with nothing sent.
fn closed_silently(s: &mut TcpStream, within: Duration) {
    let mut b = [0u8; 64];
    let t = Instant::now();
    loop {
        match ws::read_some(s, &mut b) {
            Ok(0) | Err(_) => break,
            // OpenSSL may answer a bad ClientHello with an alert: TLS
            // bytes, never HTTP.
            Ok(n) => assert_eq!(b[0], 0x15, "not a TLS alert: {:?}", &b[..n]),
        }
        assert!(t.elapsed() < within, "not closed within {within:?}");
    }
}

#[test]
fn wss_echo_through_tcp_peer_with_large_messages() {
    let echo = peers::tcp_echo();
    let b = tls_bridge(&["-c", &format!("host=tcp://{echo}"), "-c", "framing=binary"]);
    let mut s = ws::tls_connect(b.addr, trusting()).expect("TLS handshake");
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"http/1.1"[..]));
    let version = s.ssl().version_str();
    assert!(version == "TLSv1.3" || version == "TLSv1.2", "{version}");
    ws::upgrade(&mut s, "/", &[]);
    // Larger than one TLS record and than the bridge's read buffer.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&ws::binary(&big)).unwrap();
    let mut got = Vec::new();
    while got.len() < big.len() {
        let f = ws::read_frame(&mut s).unwrap();
        assert_eq!(f.opcode, 2);
        got.extend_from_slice(&f.payload);
    }
    assert!(got == big, "echo differs");
    s.write_all(&ws::text("small")).unwrap();
    assert_eq!(ws::read_frame(&mut s).unwrap().payload, b"small");
    s.write_all(&ws::close(1000, "bye")).unwrap();
    let (_, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    // close_notify, then EOF: a clean end, not a truncation.
    assert!(ws::at_eof(&mut s));
    assert_eq!(
        s.get_shutdown() & openssl::ssl::ShutdownState::RECEIVED,
        openssl::ssl::ShutdownState::RECEIVED
    );
    b.wait_log("closed: code 1000");
}

#[test]
fn many_small_frames_each_way_over_tls() {
    let b = tls_bridge(&["-c", "host=mirror://"]);
    let mut s = ws::tls_connect(b.addr, trusting()).expect("TLS handshake");
    ws::upgrade(&mut s, "/", &[]);
    let mut all = Vec::new();
    for i in 0..500u32 {
        all.extend_from_slice(&ws::text(&format!("m{i}")));
    }
    s.write_all(&all).unwrap();
    for i in 0..500u32 {
        let f = ws::read_frame(&mut s).unwrap();
        assert_eq!(f.payload, format!("m{i}").as_bytes());
    }
}

/// `openssl s_client` with `args`, sending an HTTP/1.0 request the
/// bridge refuses (so it closes and s_client exits after reading the
/// TLS 1.3 tickets); its stdout.
fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    let c = certs::shared();
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-ign_eof"])
        .args(["-CAfile", p(&c.ca_cert), "-servername", "localhost"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sessions_resume_with_tickets_and_the_cache() {
    let b = tls_bridge(&["-c", "host=mirror://"]);
    let sess = temp_dir("sess").join("tls13.pem");
    let first = s_client(b.addr, &["-sess_out", p(&sess)]);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(first.contains("HTTP/1.1 400"), "{first}");
    let second = s_client(b.addr, &["-sess_in", p(&sess)]);
    assert!(second.contains("Reused, TLSv1.3"), "{second}");
    // TLS 1.2 resumption, five times over.
    let again = s_client(b.addr, &["-tls1_2", "-reconnect"]);
    assert_eq!(again.matches("Reused, TLSv1.2").count(), 5, "{again}");
}

#[test]
fn tls_1_1_is_refused() {
    let b = tls_bridge(&["-c", "host=mirror://"]);
    let out = s_client(b.addr, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!out.contains("HTTP/1.1"), "{out}");
    b.wait_log("TLS handshake failed: unsupported protocol");
    // TLS 1.2 is still fine.
    let out = s_client(b.addr, &["-tls1_2"]);
    assert!(out.contains("HTTP/1.1 400"), "{out}");
}

#[test]
fn bind_ws_wss_and_unix_at_once() {
    let c = certs::shared();
    let dir = temp_dir("bind");
    let sock = dir.join("ws.sock");
    let unix = format!("unix:{}?mode=0600", sock.display());
    let mut b = Bridge::spawn(&[
        "--bind",
        "ws://127.0.0.1:0",
        "--bind",
        "wss://127.0.0.1:0",
        "--bind",
        &unix,
        "--cert",
        p(&c.server_cert),
        "--key",
        p(&c.server_key),
        "-c",
        "host=mirror://",
    ]);
    let plain = b.listener("ws://");
    let tls = b.listener("wss://");
    b.wait_log(&format!("listening on unix:{}", sock.display()));
    // --bind without -l/-p: no default listener.
    assert_eq!(b.count_log("(max "), 0, "{}", b.logs());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut s = TcpStream::connect(plain).unwrap();
    s.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
    ws::upgrade(&mut s, "/", &[]);
    s.write_all(&ws::text("plain")).unwrap();
    assert_eq!(ws::read_frame(&mut s).unwrap().payload, b"plain");

    wss_echo(tls, trusting(), b"tls");

    let mut u = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    u.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
    ws::upgrade(&mut u, "/", &[]);
    u.write_all(&ws::text("unix")).unwrap();
    assert_eq!(ws::read_frame(&mut u).unwrap().payload, b"unix");
    drop((s, u));

    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(websocksy_tests::WAIT).success());
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn stale_unix_socket_is_replaced() {
    let dir = temp_dir("stale");
    let sock = dir.join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let b = Bridge::spawn(&[
        "--bind",
        &format!("unix:{}", sock.display()),
        "-c",
        "host=mirror://",
    ]);
    b.wait_log("listening on unix:");
    let mut u = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    u.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
    ws::upgrade(&mut u, "/", &[]);
}

#[test]
fn explicit_port_keeps_its_listener_beside_binds() {
    let b = Bridge::start(&["--bind", "ws://127.0.0.1:0", "-c", "host=mirror://"]);
    let extra = b.listener("ws://");
    assert_ne!(extra, b.addr);
    for a in [b.addr, extra] {
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
        ws::upgrade(&mut s, "/", &[]);
    }
}

#[test]
fn plain_http_on_a_tls_port_is_closed_and_logged() {
    let b = tls_bridge(&["-c", "host=mirror://"]);
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    closed_silently(&mut s, websocksy_tests::WAIT);
    let line = b.wait_log(&format!(
        "{me} TLS handshake failed: plain HTTP request on a TLS port"
    ));
    assert!(line.contains(" INFO "), "{line}");
    wss_echo(b.addr, trusting(), b"still serving");
}

#[test]
fn garbage_client_hello_is_closed_and_logged() {
    let b = tls_bridge(&["-c", "host=mirror://"]);
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
    let me = s.local_addr().unwrap();
    // A handshake record header with a body that is no ClientHello.
    let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    junk.extend((0..0x40u8).map(|i| i.wrapping_mul(37)));
    s.write_all(&junk).unwrap();
    closed_silently(&mut s, websocksy_tests::WAIT);
    b.wait_log(&format!("{me} TLS handshake failed: "));
    assert_eq!(b.count_log("TLS handshake failed"), 1, "{}", b.logs());
    wss_echo(b.addr, trusting(), b"still serving");
}

#[test]
fn stalled_handshakes_time_out_without_delaying_others() {
    let b = tls_bridge(&["-c", "host=mirror://", "--handshake-timeout", "1.5"]);
    // Half a ClientHello, and nothing at all.
    let mut half = TcpStream::connect(b.addr).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .unwrap();
    let mut silent = TcpStream::connect(b.addr).unwrap();
    let started = Instant::now();
    // Meanwhile another client gets through at once.
    let mut other = wss_echo(b.addr, trusting(), b"meanwhile");
    // Before the handshake timeout (1.5 s) could have freed anything.
    assert!(started.elapsed() < Duration::from_millis(1400));
    for s in [&mut half, &mut silent] {
        s.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
        let me = s.local_addr().unwrap();
        closed_silently(s, Duration::from_secs(5));
        assert!(started.elapsed() >= Duration::from_millis(1400));
        b.wait_log(&format!("{me} TLS handshake failed: timed out"));
    }
    // The open connection was never held up and still works.
    other.write_all(&ws::text("after")).unwrap();
    assert_eq!(ws::read_frame(&mut other).unwrap().payload, b"after");
}

/// The identity the bridge logged for an mTLS client, or the failure.
#[test]
fn client_certificate_identity_is_logged_and_required() {
    let c = certs::shared();
    let b = tls_bridge(&["-c", "host=mirror://", "--client-ca", p(&c.ca_cert)]);
    let alice = TlsClient {
        cert: Some((&c.client_cert, &c.client_key)),
        ..trusting()
    };
    wss_echo(b.addr, alice, b"alice");
    b.wait_log("open (client cert CN=alice,O=Example; email:alice@example.com)");

    // No certificate with 'require' (the default): no upgrade.
    refused_handshake(&b, trusting(), "peer did not return a certificate");
    // A certificate from a CA the bridge does not trust.
    let mallory = TlsClient {
        cert: Some((&c.other_client_cert, &c.other_client_key)),
        ..trusting()
    };
    refused_handshake(&b, mallory, "certificate verify failed");
    wss_echo(b.addr, alice, b"alice again");
}

/// The TLS handshake (or, in TLS 1.3, the first read after it) fails, no
/// 101 ever comes, and the bridge logs why.
fn refused_handshake(b: &Bridge, c: TlsClient, why: &str) {
    let before = b.count_log("TLS handshake failed");
    if let Ok(mut s) = ws::tls_connect(b.addr, c) {
        let _ = s.write_all(ws::request("/", &[]).as_bytes());
        assert!(ws::read_response(&mut s).is_err(), "upgraded anyway");
    }
    let line = b.wait_log(why);
    assert!(line.contains("TLS handshake failed"), "{line}");
    assert_eq!(b.count_log("TLS handshake failed"), before + 1);
}

#[test]
fn optional_client_certificate() {
    let c = certs::shared();
    let b = tls_bridge(&[
        "-c",
        "host=mirror://",
        "--client-ca",
        p(&c.ca_cert),
        "--client-cert",
        "optional",
    ]);
    wss_echo(b.addr, trusting(), b"anonymous");
    let line = b.wait_log("open");
    assert!(!line.contains("client cert"), "{line}");
    let alice = TlsClient {
        cert: Some((&c.client_cert, &c.client_key)),
        ..trusting()
    };
    wss_echo(b.addr, alice, b"alice");
    b.wait_log("(client cert CN=alice,O=Example; email:alice@example.com)");
}

/// The certificate a TLS server presents, unverified.
fn served_cert(addr: SocketAddr) -> X509 {
    let mut conn = SslConnector::builder(SslMethod::tls_client()).unwrap();
    conn.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect(addr).unwrap();
    let s = conn
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect("localhost", tcp)
        .expect("TLS handshake");
    s.ssl().peer_certificate().expect("server certificate")
}

fn der(path: &Path) -> Vec<u8> {
    X509::from_pem(&std::fs::read(path).unwrap())
        .unwrap()
        .to_der()
        .unwrap()
}

#[test]
fn sighup_reloads_certificates_and_keeps_the_old_on_error() {
    let c = certs::shared();
    let dir = temp_dir("reload");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(&c.server_cert, &cert).unwrap();
    std::fs::copy(&c.server_key, &key).unwrap();
    let b = Bridge::start(&["--cert", p(&cert), "--key", p(&key), "-c", "host=mirror://"]);
    let mut old = wss_echo(b.addr, trusting(), b"before");

    // A broken certificate file: the old one keeps serving.
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    b.signal(libc::SIGHUP);
    let line = b.wait_log("TLS reload failed, keeping the old certificate: ");
    assert!(line.contains(p(&cert)), "{line}");
    assert_eq!(served_cert(b.addr).to_der().unwrap(), der(&c.server_cert));
    wss_echo(b.addr, trusting(), b"old cert");

    // A good new pair: new handshakes get it; the open connection goes on.
    std::fs::copy(&c.expired_cert, &cert).unwrap();
    std::fs::copy(&c.expired_key, &key).unwrap();
    b.signal(libc::SIGHUP);
    b.wait_log("TLS certificates reloaded");
    assert_eq!(served_cert(b.addr).to_der().unwrap(), der(&c.expired_cert));
    old.write_all(&ws::text("still here")).unwrap();
    assert_eq!(ws::read_frame(&mut old).unwrap().payload, b"still here");
}

#[test]
fn tls_settings_errors_are_one_line_at_start() {
    let c = certs::shared();
    let (cert, key) = (p(&c.server_cert), p(&c.server_key));
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--cert", cert], "--cert: cert needs key".into()),
        (vec!["--key", key], "--key: key needs cert".into()),
        (
            vec!["--cert", cert, "--key", key, "--client-cert", "optional"],
            "--client-cert: client-cert needs client-ca".into(),
        ),
        (
            vec!["--bind", "wss://127.0.0.1:0"],
            "--bind: wss://127.0.0.1:0 needs cert and key".into(),
        ),
        (
            vec!["--cert", cert, "--key", p(&c.client_key)],
            format!(
                "--key: key '{}' does not match certificate '{cert}'",
                p(&c.client_key)
            ),
        ),
        (
            vec!["--cert", "/nonexistent.pem", "--key", key],
            "--cert: cannot read certificate '/nonexistent.pem': No such file".into(),
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = run_cli(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    // In the file, the line is named.
    let dir = temp_dir("tlsconf");
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "garbage\n").unwrap();
    let conf = dir.join("w.conf");
    std::fs::write(
        &conf,
        format!("[core]\nport = 0\ncert = {}\nkey = {key}\n", bad.display()),
    )
    .unwrap();
    let (code, _, err) = run_cli(&[p(&conf)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:3: bad certificate '{}'",
            conf.display(),
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn cert_and_bind_from_the_config_file() {
    let c = certs::shared();
    let dir = temp_dir("tlsfile");
    let conf = dir.join("w.conf");
    std::fs::write(
        &conf,
        format!(
            "[core]\nbind = wss://127.0.0.1:0\nbind = ws://127.0.0.1:0\ncert = {}\nkey = {}\n\
             [backend]\nhost = mirror://\n",
            c.server_cert.display(),
            c.server_key.display()
        ),
    )
    .unwrap();
    let b = Bridge::spawn(&[p(&conf)]);
    wss_echo(b.listener("wss://"), trusting(), b"from the file");
}

/// Upgrade over plain TCP and check one echo through the peer.
fn ws_echo(b: &Bridge, msg: &str) {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    s.write_all(&ws::text(msg)).unwrap();
    assert_eq!(ws::read_frame(&mut s).unwrap().payload, msg.as_bytes());
}

#[test]
fn tls_peer_verified_with_peer_ca_by_name_and_by_address() {
    let c = certs::shared();
    let (peer, _) = peers::tls_echo(&c.server_cert, &c.server_key, None);
    // By name: SNI and the DNS name are checked (resolved off the loop).
    let b = Bridge::start(&[
        "-c",
        &format!("host=tls://localhost:{}", peer.port()),
        "--peer-ca",
        p(&c.ca_cert),
    ]);
    ws_echo(&b, "by name");
    b.wait_log(&format!("-> tls://localhost:{} open", peer.port()));
    // By address, with the default backend's own peer-ca option.
    let b = Bridge::start(&[
        "-c",
        &format!("host=tls://{peer}"),
        "-c",
        &format!("peer-ca={}", c.ca_cert.display()),
    ]);
    ws_echo(&b, "by address");
    // A large message both ways through the TLS peer.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let big = vec![b'x'; 200_000];
    s.write_all(&ws::binary(&big)).unwrap();
    let mut got = 0;
    while got < big.len() {
        got += ws::read_frame(&mut s).unwrap().payload.len();
    }
    assert_eq!(got, big.len());
}

#[test]
fn tls_peer_that_fails_verification_gets_502() {
    let c = certs::shared();
    // The system's CAs do not know the test CA.
    let (peer, _) = peers::tls_echo(&c.server_cert, &c.server_key, None);
    let b = Bridge::start(&["-c", &format!("host=tls://{peer}")]);
    let mut s = b.connect();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    assert_eq!(ws::read_response(&mut s).unwrap().status, 502);
    b.wait_log(&format!(
        "cannot connect to peer tls://{peer}: certificate verify failed: "
    ));
    // An expired certificate, from a trusted CA.
    let (expired, _) = peers::tls_echo(&c.expired_cert, &c.expired_key, None);
    let b = Bridge::start(&[
        "-c",
        &format!("host=tls://{expired}"),
        "--peer-ca",
        p(&c.ca_cert),
    ]);
    let mut s = b.connect();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    assert_eq!(ws::read_response(&mut s).unwrap().status, 502);
    b.wait_log("certificate verify failed: certificate has expired");
}

/// Without `--peer-ca`, peers are verified against the system bundle
/// read at start-up (`SSL_CERT_FILE` first), never against a hashed
/// directory looked up during verification (on the event loop).
#[test]
fn tls_peer_trust_comes_from_the_bundle_read_at_start_up() {
    let c = certs::shared();
    let (peer, _) = peers::tls_echo(&c.server_cert, &c.server_key, None);
    let host = format!("host=tls://{peer}");
    let spawn =
        |env: &[(&str, &str)]| Bridge::spawn_env(&["-l", "127.0.0.1", "-p", "0", "-c", &host], env);
    // The bundle named by SSL_CERT_FILE is the system store.
    let b = spawn(&[("SSL_CERT_FILE", p(&c.ca_cert))]);
    ws_echo(&b, "trusted through SSL_CERT_FILE");
    // The test CA only in a hashed directory (as /etc/ssl/certs is): not
    // consulted, so the peer is not trusted.
    let dir = temp_dir("hashed-ca");
    let ca = X509::from_pem(&std::fs::read(&c.ca_cert).unwrap()).unwrap();
    std::fs::copy(
        &c.ca_cert,
        dir.join(format!("{:08x}.0", ca.subject_name_hash())),
    )
    .unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let b = spawn(&[("SSL_CERT_FILE", p(&empty)), ("SSL_CERT_DIR", p(&dir))]);
    let mut s = b.connect();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    assert_eq!(ws::read_response(&mut s).unwrap().status, 502);
    b.wait_log(&format!(
        "cannot connect to peer tls://{peer}: certificate verify failed"
    ));
}

/// A peer that offers no version above TLS 1.1 is refused.
#[test]
fn tls_peer_below_1_2_is_refused() {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVersion};
    let c = certs::shared();
    let mut a = SslAcceptor::mozilla_intermediate(SslMethod::tls()).unwrap();
    a.set_certificate_chain_file(&c.server_cert).unwrap();
    a.set_private_key_file(&c.server_key, SslFiletype::PEM)
        .unwrap();
    a.set_max_proto_version(Some(SslVersion::TLS1_1)).unwrap();
    a.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
    // Old protocols need the lowest security level in OpenSSL 3.
    a.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
    let a = a.build();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            let r = a.accept(s).map(|t| t.ssl().version_str().to_string());
            let _ = tx.send(r.map_err(|e| e.to_string()));
        }
    });
    let b = Bridge::start(&[
        "-c",
        &format!("host=tls://{addr}"),
        "--peer-ca",
        p(&c.ca_cert),
    ]);
    let mut s = b.connect();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    assert_eq!(ws::read_response(&mut s).unwrap().status, 502);
    let seen = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.is_err(), "handshake done with {seen:?}");
    b.wait_log(&format!("cannot connect to peer tls://{addr}"));
}

#[test]
fn peer_insecure_accepts_an_expired_certificate_and_says_so() {
    let c = certs::shared();
    let (peer, _) = peers::tls_echo(&c.expired_cert, &c.expired_key, None);
    let b = Bridge::start(&["-c", &format!("host=tls://{peer}"), "--peer-insecure"]);
    let line = b.wait_log("not verified");
    assert!(line.contains("WARN"), "{line}");
    ws_echo(&b, "insecure");
}

#[test]
fn tls_peer_gets_our_client_certificate() {
    let c = certs::shared();
    let (peer, refused) = peers::tls_echo(&c.server_cert, &c.server_key, Some(&c.ca_cert));
    let b = Bridge::start(&[
        "-c",
        &format!("host=tls://{peer}"),
        "--peer-ca",
        p(&c.ca_cert),
        "--peer-cert",
        p(&c.client_cert),
        "--peer-key",
        p(&c.client_key),
    ]);
    ws_echo(&b, "with a client certificate");
    assert!(refused.try_recv().is_err());
}

#[test]
fn idle_tls_connections_own_no_record_buffers() {
    const CONNS: usize = 400;
    let limit = websocksy_tests::raise_nofile_limit();
    assert!(
        limit >= (CONNS * 2 + 256) as libc::rlim_t,
        "descriptor limit {limit}"
    );
    let echo = peers::tcp_echo();
    let b = tls_bridge(&[
        "-k",
        "0",
        "-c",
        &format!("host=tcp://{echo}"),
        "-c",
        "framing=binary",
    ]);
    let before = b.rss_kib();
    let msg = vec![7u8; 64 * 1024];
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let mut s = ws::tls_connect(b.addr, trusting()).expect("TLS handshake");
        ws::upgrade(&mut s, "/", &[]);
        // A message both ways, so OpenSSL has had its record buffers.
        s.write_all(&ws::binary(&msg)).unwrap();
        let mut got = 0;
        while got < msg.len() {
            got += ws::read_frame(&mut s).unwrap().payload.len();
        }
        clients.push(s);
    }
    let after = b.rss_kib();
    let per = (after.saturating_sub(before)) as f64 / CONNS as f64;
    eprintln!("idle TLS connections: RSS {before} -> {after} KiB, {per:.1} KiB each");
    // About 17 KiB measured (the SSL object and its session; a plain
    // connection is about 3): two record buffers kept per connection, or
    // a gather buffer, would add 16-34 KiB.
    assert!(per < 24.0, "{per:.1} KiB per idle TLS connection");
    drop(clients);
}

/// An independent client: Python's `websockets` over `wss://`, verifying
/// the bridge with the test CA and showing a client certificate. Its
/// asyncio client, not the threaded sync one: that one reads and writes
/// one `ssl` socket from two threads and, when it sets the close timeout
/// while the other thread is inside a blocking read, CPython reports "The
/// read operation timed out" at once (close code 1006 here, intermittently).
const PYTHON_CLIENT: &str = r#"
import asyncio, ssl, sys
from websockets.asyncio.client import connect
url, ca, cert, key = sys.argv[1:5]
async def main():
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    async with connect(url, ssl=ctx, server_hostname="localhost", max_size=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        big = bytes(range(256)) * 4096
        await ws.send(big)
        assert await ws.recv() == big
        await ws.close(1000, "done")
        assert ws.close_code == 1000, ws.close_code
    print("python websockets: ok", ssl.OPENSSL_VERSION)
asyncio.run(main())
"#;

#[test]
fn python_websockets_client_over_wss() {
    let c = certs::shared();
    let b = tls_bridge(&["-c", "host=mirror://", "--client-ca", p(&c.ca_cert)]);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", PYTHON_CLIENT])
        .arg(format!("wss://{}/", b.addr))
        .args([p(&c.ca_cert), p(&c.client_cert), p(&c.client_key)])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'websockets'"),
        "this test needs Python's websockets: {python} -m pip install websockets\n{text}"
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("python websockets: ok"), "{text}");
    b.wait_log("open (client cert CN=alice,O=Example; email:alice@example.com)");
    b.wait_log("closed: code 1000 done, 1048581 bytes in, 1048581 bytes out");
}

#[test]
fn tls_peer_failures_hold_up_no_other_connection() {
    let c = certs::shared();
    // A peer whose certificate the system store does not trust, one that
    // accepts TCP and never answers the ClientHello, and the mirror, each
    // chosen per path by the file backend (a backend's answer, not only
    // the defaultpeer, may name a tls:// peer).
    let (untrusted, _) = peers::tls_echo(&c.server_cert, &c.server_key, None);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let dir = temp_dir("tls-routes");
    std::fs::write(dir.join("bad.txt"), format!("tls://{untrusted}\n")).unwrap();
    std::fs::write(dir.join("stall.txt"), format!("tls://{silent_addr}\n")).unwrap();
    std::fs::write(dir.join("good.txt"), "mirror://\n").unwrap();
    let backend = websocksy_tests::binary()
        .parent()
        .expect("target dir")
        .join("libbackend_file.so");
    let path = format!("path={}", dir.display());
    let b = Bridge::start(&[
        "-b",
        p(&backend),
        "-c",
        &path,
        "-c",
        "expression=%endpoint%.txt",
        "--connect-timeout",
        "1.5",
    ]);
    let started = Instant::now();
    let mut stalled = b.connect();
    stalled
        .write_all(ws::request("/stall", &[]).as_bytes())
        .unwrap();
    let mut bad = b.connect();
    bad.write_all(ws::request("/bad", &[]).as_bytes()).unwrap();
    assert_eq!(ws::read_response(&mut bad).unwrap().status, 502);
    b.wait_log(&format!(
        "cannot connect to peer tls://{untrusted}: certificate verify failed: \
         self-signed certificate in certificate chain"
    ));
    let mut good = b.connect();
    ws::upgrade(&mut good, "/good", &[]);
    good.write_all(&ws::text("meanwhile")).unwrap();
    assert_eq!(ws::read_frame(&mut good).unwrap().payload, b"meanwhile");
    assert!(started.elapsed() < Duration::from_millis(1400));
    // The silent peer's handshake counts against the connect timeout.
    assert_eq!(ws::read_response(&mut stalled).unwrap().status, 502);
    assert!(started.elapsed() >= Duration::from_millis(1400));
    b.wait_log(&format!("peer connect for tls://{silent_addr} timed out"));
    drop(silent);
}

#[test]
fn client_identity_reaches_a_plugin_backend() {
    // The ABI 2.1 test backend reports the request's TLS fields on the 101.
    let c = certs::shared();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let so = temp_dir("identity").join("backend_identity.so");
    websocksy_tests::compile_plugin(
        &root.join("tests/plugins/host/backend_identity.c"),
        &root.join("include"),
        &so,
        &[],
    );
    let b = tls_bridge(&[
        "-b",
        p(&so),
        "--client-ca",
        p(&c.ca_cert),
        "--client-cert",
        "optional",
    ]);
    let alice = TlsClient {
        cert: Some((&c.client_cert, &c.client_key)),
        ..trusting()
    };
    let mut s = ws::tls_connect(b.addr, alice).expect("TLS handshake");
    let r = ws::upgrade(&mut s, "/", &[]);
    assert_eq!(
        r.header("X-TLS-Subject"),
        Some("[CN=alice,O=Example]"),
        "{}",
        r.head
    );
    assert_eq!(r.header("X-TLS-SANs"), Some("[email:alice@example.com]"));
    // Without a certificate (optional): no identity.
    let mut s = ws::tls_connect(b.addr, trusting()).expect("TLS handshake");
    let r = ws::upgrade(&mut s, "/", &[]);
    assert_eq!(r.header("X-TLS-Subject"), Some("(absent)"), "{}", r.head);
    assert_eq!(r.header("X-TLS-SANs"), Some("(none)"));
}

/// A non-reading TLS client makes the bridge's SSL_write say WANT_WRITE
/// until the peer is paused (the stall proves it); the queue must hand
/// OpenSSL the same bytes at each retry. Then the client reads everything
/// and checks it byte for byte, while it uploads a pattern the peer checks.
#[test]
fn tls_backpressure_both_ways_loses_and_corrupts_nothing() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use websocksy_tests::pattern::{Check, Pattern};

    const TOTAL: u64 = 24 << 20;
    let peer = peers::TcpPeer::new();
    let b = tls_bridge(&["-k", "0", "-c", &peer.host_arg(), "-c", "framing=binary"]);
    let mut client = ws::tls_connect(b.addr, trusting()).expect("TLS handshake");
    ws::upgrade(&mut client, "/", &[]);
    let p = peer.accept();
    p.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();

    // The peer writes the pattern as fast as it can; nobody reads yet.
    let written = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&written);
    let mut pw = p.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let pat = Pattern::new();
        while w.load(Ordering::SeqCst) < TOTAL {
            let pos = w.load(Ordering::SeqCst);
            let n = Pattern::PIECE.min((TOTAL - pos) as usize);
            match pw.write(pat.at(pos, n)) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    w.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    });
    let stalled =
        websocksy_tests::wait_stalled("the peer's writes", Duration::from_secs(20), || {
            written.load(Ordering::SeqCst)
        });
    assert!(stalled < TOTAL, "the peer never stalled");

    // The client's upload, while the peer does not read either.
    let frame = ws::frame_zero_key(2, &Pattern::new().bytes(251 * 1024));
    let upload = 40;
    // One TLS stream cannot be used from two threads: the upload and the
    // download take turns on it.
    let mut pr = p.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut check = Check::new();
        let mut buf = vec![0u8; 65536];
        while check.pos < 251 * 1024 * 40 {
            let n = ws::read_some(&mut pr, &mut buf).expect("peer read");
            assert!(n > 0, "peer got EOF after {} bytes", check.pos);
            check.feed(&buf[..n]);
        }
        check.pos
    });
    let mut got = Check::new();
    let mut sent = 0;
    while got.pos < TOTAL || sent < upload {
        if sent < upload {
            client.write_all(&frame).unwrap();
            sent += 1;
        }
        if got.pos < TOTAL {
            let f = ws::read_frame(&mut client).unwrap();
            assert_eq!(f.opcode, 2);
            got.feed(&f.payload);
        }
    }
    writer.join().unwrap();
    assert_eq!(reader.join().unwrap(), 251 * 1024 * 40);
    assert_eq!(got.pos, TOTAL);
}

#[test]
fn sigterm_closes_tls_connections_with_1001_and_close_notify() {
    let mut b = tls_bridge(&["-c", "host=mirror://"]);
    let mut open = wss_echo(b.addr, trusting(), b"before");
    // A client still in its handshake is simply dropped.
    let mut half = TcpStream::connect(b.addr).unwrap();
    half.set_read_timeout(Some(websocksy_tests::WAIT)).unwrap();
    half.write_all(&[0x16, 0x03, 0x01]).unwrap();
    b.wait_log(&format!("accepted from {}", half.local_addr().unwrap()));
    b.signal(libc::SIGTERM);
    let (_, close) = ws::read_until_close(&mut open).unwrap();
    assert_eq!(close.close_code(), Some(1001));
    open.write_all(&ws::close(1001, "")).unwrap();
    assert!(ws::at_eof(&mut open));
    assert_eq!(
        open.get_shutdown() & openssl::ssl::ShutdownState::RECEIVED,
        openssl::ssl::ShutdownState::RECEIVED
    );
    closed_silently(&mut half, websocksy_tests::WAIT);
    // Our close_notify ends the bridge's lingering read at once.
    open.shutdown().unwrap();
    assert!(
        b.wait_exit(Duration::from_secs(3)).success(),
        "{}",
        b.logs()
    );
    b.wait_log("all connections closed, exiting");
}
