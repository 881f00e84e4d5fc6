//! The real client address: trusted proxies' headers (`--trusted-proxy`),
//! the PROXY protocol in front of the bridge (`--proxy-protocol`) and to
//! the peer (`proxy-protocol = v1|v2`, `?proxy-protocol=`). What the
//! bridge believes is checked where it shows: its log lines and the PROXY
//! header a peer receives (parsed by `ppp` in the test peer).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use websocksy_tests::peers::{self, ProxyPeer, ProxySeen};
use websocksy_tests::ws;
use websocksy_tests::{binary, compile_plugin, run_cli, temp_dir, Bridge};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A bridge to `peer` that sends it a PROXY header of `version`.
fn to_proxy_peer(peer: &ProxyPeer, version: &str, args: &[&str]) -> Bridge {
    let host = format!("host=tcp://{}", peer.addr);
    let pp = format!("proxy-protocol={version}");
    let mut full = vec!["-c", &host, "-c", &pp];
    full.extend_from_slice(args);
    Bridge::start(&full)
}

/// Upgrade with `headers`, check data reaches the peer after the header,
/// and return what the peer's PROXY header said.
fn seen_through(b: &Bridge, peer: &ProxyPeer, headers: &[&str]) -> (TcpStream, ProxySeen) {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", headers);
    let seen = peer.seen().unwrap_or_else(|got| {
        panic!(
            "peer got no valid PROXY header: {:?}\n{}",
            String::from_utf8_lossy(&got),
            b.logs()
        )
    });
    // The peer echoes what follows the header: the client's bytes came after it.
    s.write_all(&ws::binary(b"after the header")).unwrap();
    let f = ws::read_frame(&mut s).expect("echo through the peer");
    assert_eq!(f.payload, b"after the header");
    (s, seen)
}

#[test]
fn proxy_header_to_the_peer_carries_the_client_v1_and_v2() {
    let peer = ProxyPeer::new();
    let b = to_proxy_peer(&peer, "v1", &[]);
    let (s, seen) = seen_through(&b, &peer, &[]);
    let local = s.local_addr().unwrap();
    assert_eq!(seen.version, 1);
    assert_eq!(seen.source, Some(local));
    assert_eq!(seen.destination, Some(b.addr));
    assert_eq!(
        seen.header,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            local.port(),
            b.addr.port()
        )
        .into_bytes()
    );

    let peer = ProxyPeer::new();
    let b = to_proxy_peer(&peer, "v2", &[]);
    let (s, seen) = seen_through(&b, &peer, &[]);
    assert_eq!(seen.version, 2);
    assert_eq!(seen.source, Some(s.local_addr().unwrap()));
    assert_eq!(seen.destination, Some(b.addr));
}

#[test]
fn proxy_header_to_a_unix_stream_peer() {
    let dir = temp_dir("identity-unix");
    let (peer, path) = ProxyPeer::unix(&dir, "peer.sock");
    let host = format!("host=unix://{}?proxy-protocol=v2", path.display());
    let b = Bridge::start(&["-c", &host]);
    let (s, seen) = seen_through(&b, &peer, &[]);
    assert_eq!(seen.version, 2);
    assert_eq!(seen.source, Some(s.local_addr().unwrap()));
    assert_eq!(seen.destination, Some(b.addr));
}

#[test]
fn untrusted_forwarding_headers_are_ignored() {
    let peer = ProxyPeer::new();
    // Only 10/8 is trusted; the test connects from 127.0.0.1.
    let b = to_proxy_peer(&peer, "v1", &["--trusted-proxy", "10.0.0.0/8"]);
    let (s, seen) = seen_through(
        &b,
        &peer,
        &[
            "X-Forwarded-For: 203.0.113.9",
            "Forwarded: for=203.0.113.9",
            "X-Real-IP: 203.0.113.9",
        ],
    );
    let direct = s.local_addr().unwrap();
    assert_eq!(seen.source, Some(direct));
    b.wait_log(&format!("{direct} -> tcp://{} open", peer.addr));
    assert!(!b.logs().contains("203.0.113.9"), "{}", b.logs());
}

#[test]
fn trusted_proxy_header_is_believed_and_no_other() {
    let peer = ProxyPeer::new();
    let b = to_proxy_peer(&peer, "v1", &["--trusted-proxy", "127.0.0.1"]);
    // X-Forwarded-For (the default): the rightmost hop that is not a
    // trusted proxy.
    let (_s, seen) = seen_through(
        &b,
        &peer,
        &["X-Forwarded-For: 198.51.100.99, 198.51.100.1, 127.0.0.1"],
    );
    assert_eq!(seen.source, Some(a("198.51.100.1:0")));
    b.wait_log("198.51.100.1:0 -> ");
    // The other headers are the client's word: ignored, even alone.
    let me = |s: &TcpStream| s.local_addr().unwrap();
    let (s, seen) = seen_through(&b, &peer, &["X-Real-IP: 192.0.2.44"]);
    assert_eq!(seen.source, Some(me(&s)));
    let (s, seen) = seen_through(&b, &peer, &["Forwarded: for=192.0.2.60"]);
    assert_eq!(seen.source, Some(me(&s)));
    assert!(!b.logs().contains("192.0.2.44"), "{}", b.logs());
    assert!(!b.logs().contains("192.0.2.60"), "{}", b.logs());

    // Proxies that set Forwarded: only it counts, its port is kept, and an
    // IPv6 client over IPv4 reaches the peer as TCP6.
    let peer = ProxyPeer::new();
    let b = to_proxy_peer(
        &peer,
        "v1",
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy-header",
            "forwarded",
        ],
    );
    let (_s, seen) = seen_through(
        &b,
        &peer,
        &[
            "X-Real-IP: 192.0.2.44",
            "X-Forwarded-For: 198.51.100.1",
            "Forwarded: for=unknown, for=\"192.0.2.60:4711\";proto=https",
        ],
    );
    assert_eq!(seen.source, Some(a("192.0.2.60:4711")));
    let (_s, seen) = seen_through(&b, &peer, &["Forwarded: for=\"[2001:db8::7]:4711\""]);
    assert_eq!(seen.source, Some(a("[2001:db8::7]:4711")));
    assert!(
        seen.header
            .starts_with(b"PROXY TCP6 2001:db8::7 :: 4711 0\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen.header)
    );
    b.wait_log("[2001:db8::7]:4711 -> ");
    let (s, seen) = seen_through(&b, &peer, &["X-Forwarded-For: 198.51.100.1"]);
    assert_eq!(seen.source, Some(me(&s)));
}

#[test]
fn per_address_cap_counts_the_forwarded_address() {
    let b = Bridge::start(&[
        "-c",
        "host=mirror://",
        "--trusted-proxy",
        "127.0.0.0/8",
        "--max-connections-per-ip",
        "1",
    ]);
    let mut one = b.connect();
    ws::upgrade(&mut one, "/", &["X-Forwarded-For: 192.0.2.1"]);
    let mut two = b.connect();
    ws::upgrade(&mut two, "/", &["X-Forwarded-For: 192.0.2.2"]);
    let mut three = b.connect();
    three
        .write_all(ws::request("/", &["X-Forwarded-For: 192.0.2.1"]).as_bytes())
        .unwrap();
    let r = ws::read_response(&mut three).unwrap();
    assert_eq!(r.status, 429, "{}", r.head);
    b.wait_log("conn 3 192.0.2.1:0 -> - refused: 429");
    for s in [&mut one, &mut two] {
        s.write_all(&ws::text("still")).unwrap();
        assert_eq!(ws::read_frame(s).unwrap().payload, b"still");
    }
}

fn proxied_bridge(peer: &ProxyPeer) -> Bridge {
    to_proxy_peer(
        peer,
        "v2",
        &["--proxy-protocol", "--handshake-timeout", "1"],
    )
}

/// Send `header` and the upgrade request in one write (the bridge must not
/// eat the request with the header), then check the peer's view.
fn through_proxy_header(b: &Bridge, peer: &ProxyPeer, header: &[u8]) -> ProxySeen {
    let mut s = b.connect();
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(ws::request("/", &[]).as_bytes());
    s.write_all(&bytes).unwrap();
    let r = ws::read_response(&mut s).expect("101 after a PROXY header");
    assert_eq!(r.status, 101, "{}\n{}", r.head, b.logs());
    let seen = peer.seen().expect("PROXY header to the peer");
    s.write_all(&ws::text("x")).unwrap();
    assert_eq!(ws::read_frame(&mut s).unwrap().payload, b"x");
    seen
}

#[test]
fn proxy_protocol_v1_and_v2_accepted() {
    let peer = ProxyPeer::new();
    let b = proxied_bridge(&peer);
    let seen = through_proxy_header(&b, &peer, b"PROXY TCP4 192.0.2.10 127.0.0.1 5555 443\r\n");
    assert_eq!(seen.source, Some(a("192.0.2.10:5555")));
    // The destination it was told is the one passed on.
    assert_eq!(seen.destination, Some(a("127.0.0.1:443")));
    b.wait_log("192.0.2.10:5555 -> ");

    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (a("[2001:db8::5]:6000"), a("[2001:db8::1]:443")),
    )
    .build()
    .unwrap();
    let seen = through_proxy_header(&b, &peer, &v2);
    assert_eq!(seen.source, Some(a("[2001:db8::5]:6000")));
    b.wait_log("[2001:db8::5]:6000 -> ");

    // LOCAL (the proxy's own health check): the direct address stands.
    let local = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::Protocol::Unspecified,
        ppp::v2::Addresses::Unspecified,
    )
    .build()
    .unwrap();
    let seen = through_proxy_header(&b, &peer, &local);
    assert_eq!(seen.source.map(|s| s.ip()), Some(a("127.0.0.1:0").ip()));
}

#[test]
fn missing_or_malformed_proxy_header_closes_with_a_log_line() {
    let peer = ProxyPeer::new();
    let b = proxied_bridge(&peer);
    // A good connection first, kept open meanwhile.
    let mut kept = b.connect();
    kept.write_all(b"PROXY TCP4 192.0.2.3 127.0.0.1 1 2\r\n")
        .unwrap();
    ws::upgrade(&mut kept, "/", &[]);
    peer.seen().expect("header to the peer");

    // No header at all: closed without an HTTP answer.
    let mut s = b.connect();
    s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    assert!(ws::closes_within(&mut s, Duration::from_secs(3)));
    let direct = s.local_addr().unwrap();
    b.wait_log(&format!("{direct} closed: bad PROXY header"));

    let mut s = b.connect();
    s.write_all(b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n")
        .unwrap();
    assert!(ws::closes_within(&mut s, Duration::from_secs(3)));

    // Half a header, then EOF: closed at once, not at the deadline.
    let mut s = b.connect();
    s.write_all(b"PROXY TCP4 192.0").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let direct = s.local_addr().unwrap();
    assert!(ws::closes_within(&mut s, Duration::from_secs(3)));
    b.wait_log(&format!("{direct} closed: closed inside its PROXY header"));

    // Half a header, then silence: closed at the handshake timeout.
    let mut s = b.connect();
    s.write_all(b"PROXY TCP4 192.0").unwrap();
    assert!(ws::closes_within(&mut s, Duration::from_secs(5)));
    let direct = s.local_addr().unwrap();
    b.wait_log(&format!("{direct} closed: no PROXY header in time"));

    kept.write_all(&ws::text("still")).unwrap();
    assert_eq!(ws::read_frame(&mut kept).unwrap().payload, b"still");
}

/// A directory holding a symlink to the file backend plugin just built.
fn plugin_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = binary().parent().expect("target dir").to_path_buf();
        let dir = temp_dir("identity-plugins");
        let lib = "libbackend_file.so";
        std::os::unix::fs::symlink(target.join(lib), dir.join(lib)).expect("symlink plugin");
        dir.display().to_string()
    })
}

/// A directory of file-backend answers, one peer address per file; the
/// backend's `path=` option for it.
fn peer_files(tag: &str, files: &[(&str, String)]) -> String {
    let dir = temp_dir(tag);
    for (name, address) in files {
        std::fs::write(dir.join(name), format!("{address}\n")).expect("write peer file");
    }
    format!("path={}", dir.display())
}

#[test]
fn proxy_protocol_suffix_from_a_plugin_backend() {
    let peer = ProxyPeer::new();
    let udp = peers::udp_echo();
    let path = peer_files(
        "identity-files",
        &[
            ("pp.txt", format!("tcp://{}?proxy-protocol=v2", peer.addr)),
            ("udp.txt", format!("udp://{udp}?proxy-protocol=v1")),
        ],
    );
    let b = Bridge::start(&[
        "--plugin-dir",
        plugin_dir(),
        "-b",
        "file",
        "-c",
        &path,
        "-c",
        "expression=%endpoint%.txt",
    ]);
    let mut kept = b.connect();
    ws::upgrade(&mut kept, "/pp", &[]);
    let seen = peer
        .seen()
        .expect("PROXY header from the file backend's peer");
    assert_eq!(
        (seen.version, seen.source),
        (2, Some(kept.local_addr().unwrap()))
    );

    // The same suffix on a datagram peer: 502 with the reason.
    let mut s = b.connect();
    s.write_all(ws::request("/udp", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut s).unwrap();
    assert_eq!(r.status, 502, "{}", r.head);
    let body = String::from_utf8(ws::read_body(&mut s, &r).unwrap()).unwrap();
    assert!(
        body.contains("proxy-protocol needs a stream peer"),
        "{body}"
    );
    // The first connection never noticed.
    kept.write_all(&ws::text("still")).unwrap();
    assert_eq!(ws::read_frame(&mut kept).unwrap().payload, b"still");
}

/// With `--auth`, backends see the user, never the credentials: the file
/// backend cannot route on an `Authorization` header the bridge consumed.
#[test]
fn backends_never_see_checked_credentials() {
    let by_header = ProxyPeer::new();
    let fallback = ProxyPeer::new();
    // The header value `Basic dTpw` (u:p) with '/' unchanged: no '/' in it.
    let path = peer_files(
        "identity-auth-files",
        &[
            (
                "Basic dTpw.txt",
                format!("tcp://{}?proxy-protocol=v1", by_header.addr),
            ),
            (
                "default.txt",
                format!("tcp://{}?proxy-protocol=v1", fallback.addr),
            ),
        ],
    );
    let args = [
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "--plugin-dir",
        plugin_dir(),
        "-b",
        "file",
        "-c",
        &path,
        "-c",
        "expression=%header:Authorization%.txt",
        "-c",
        "expression=default.txt",
    ];
    // Without --auth the header reaches the backend (the control case)...
    let b = Bridge::spawn(&args);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &["Authorization: Basic dTpw"]);
    by_header.seen().expect("routed by the header");
    // ...with it, the backend never sees it.
    let mut with_auth = args.to_vec();
    with_auth.extend(["--auth", "$WSY_TEST_USERS"]);
    let b = Bridge::spawn_env(&with_auth, &[("WSY_TEST_USERS", "u:p")]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &["Authorization: Basic dTpw"]);
    fallback.seen().expect("routed without the header");
    b.wait_log("open user u");
}

/// A plugin backend (ABI 2.1) gets the user Basic authentication accepted
/// and the client address a trusted proxy reported: the identity test
/// backend echoes both on the 101.
#[test]
fn plugin_backends_get_the_user_and_the_real_client() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = temp_dir("identity-c");
    let so = dir.join("backend_identity.so");
    compile_plugin(
        &root.join("tests/plugins/host/backend_identity.c"),
        &root.join("include"),
        &so,
        &[],
    );
    let so = so.display().to_string();
    let b = Bridge::spawn_env(
        &[
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "--plugin",
            &so,
            "-b",
            "identity",
            "--auth",
            "$WSY_TEST_USERS",
            "--trusted-proxy",
            "127.0.0.1",
        ],
        &[("WSY_TEST_USERS", "alice:pw")],
    );
    let mut s = b.connect();
    let r = ws::upgrade(
        &mut s,
        "/",
        &[
            "Authorization: Basic YWxpY2U6cHc=",
            "X-Forwarded-For: 198.51.100.7",
        ],
    );
    assert_eq!(r.header("X-User"), Some("[alice]"), "{}", r.head);
    assert_eq!(r.header("X-Client"), Some("[198.51.100.7:0]"), "{}", r.head);
    b.wait_log("conn 1 198.51.100.7:0 -> mirror:// open user alice");
}

#[test]
fn proxy_protocol_to_a_datagram_peer_stops_the_start() {
    let (code, _, err) = run_cli(&[
        "-p",
        "0",
        "-c",
        "host=udp://127.0.0.1:9",
        "-c",
        "proxy-protocol=v1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("argument '-c proxy-protocol=v1': proxy-protocol needs a stream peer"),
        "{err}"
    );
    let (code, _, err) = run_cli(&["-p", "0", "-c", "host=tcp://127.0.0.1:9?proxy-protocol=v3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected v1 or v2"), "{err}");
}
