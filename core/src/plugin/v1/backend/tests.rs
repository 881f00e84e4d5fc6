//! A v1 backend written in Rust the way a C plugin would be, driven through
//! [`create`] and the [`Backend`] trait.

use super::super::exports::core_framing;
use super::super::test_plugins::{lines, msg, serial};
use super::*;
use crate::config::Origin;
use crate::framing::{drive, Opcode};
use std::ffi::{c_int, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the fake query returns; set by each test.
#[derive(Clone, Default)]
struct Reply {
    transport: c_uint,
    host: Option<&'static str>,
    port: Option<&'static str>,
    framing: Option<WsFraming>,
    config: Option<&'static str>,
    protocol: usize,
    sleep_ms: u64,
}

/// What the fake query saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    endpoint: String,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    state: c_uint,
    version: c_uint,
    key: String,
    aliased: bool,
    ws_fd: c_int,
    ws_headers: usize,
}

static REPLY: Mutex<Option<Reply>> = Mutex::new(None);
static SEEN_QUERY: Mutex<Option<Seen>> = Mutex::new(None);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);
static CLEANUPS: AtomicUsize = AtomicUsize::new(0);
static CONFIGURED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn s(p: *const c_char) -> String {
    c_name(p).unwrap_or_default()
}

fn dup(v: Option<&str>) -> *mut c_char {
    v.map_or(ptr::null_mut(), |v| {
        let c = CString::new(v).unwrap();
        // SAFETY: strdup of a valid C string; the host frees it.
        unsafe { libc::strdup(c.as_ptr()) }
    })
}

unsafe extern "C" fn fake_init() -> u64 {
    1
}

unsafe extern "C" fn fake_init_2() -> u64 {
    2
}

unsafe extern "C" fn fake_configure(key: *mut c_char, value: *mut c_char) -> u64 {
    let (k, v) = (s(key), s(value));
    let bad = k == "bad";
    CONFIGURED.lock().unwrap().push((k, v));
    u64::from(bad)
}

unsafe extern "C" fn fake_cleanup() {
    CLEANUPS.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn fake_query(
    endpoint: *mut c_char,
    protocols: usize,
    protocol: *mut *mut c_char,
    headers: usize,
    header: *mut WsHttpHeader,
    ws: *mut Websocket,
) -> WsPeerInfo {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_RUNNING.fetch_max(now, Ordering::SeqCst);
    let reply = REPLY.lock().unwrap().clone().unwrap_or_default();
    // SAFETY: the host's arguments per the v1 contract.
    let seen = unsafe {
        let ws = &*ws;
        Seen {
            endpoint: s(endpoint),
            protocols: (0..protocols).map(|i| s(*protocol.add(i))).collect(),
            headers: (0..headers)
                .map(|i| (s((*header.add(i)).tag), s((*header.add(i)).value)))
                .collect(),
            state: ws.state,
            version: ws.websocket_version,
            key: s(ws.socket_key),
            aliased: ws.request_path == endpoint
                && ptr::eq(ws.header.as_ptr(), header)
                && ws.protocol == protocol
                && (*protocol.add(protocols)).is_null(),
            ws_fd: ws.ws_fd,
            ws_headers: ws.headers,
        }
    };
    // The endpoint is writable (backend_file trims it in place).
    // SAFETY: at least the NUL is there.
    unsafe { *endpoint = 0 };
    *SEEN_QUERY.lock().unwrap() = Some(seen);
    std::thread::sleep(std::time::Duration::from_millis(reply.sleep_ms));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    WsPeerInfo {
        transport: reply.transport,
        host: dup(reply.host),
        port: dup(reply.port),
        framing: reply.framing,
        framing_config: dup(reply.config),
        protocol: reply.protocol,
    }
}

fn opt(k: &str, v: &str) -> BackendOption {
    BackendOption {
        key: k.into(),
        value: v.into(),
        origin: Origin::Argument(format!("-c {k}={v}")),
    }
}

fn fake(options: &[BackendOption]) -> Result<Arc<dyn Backend>, String> {
    create(
        "fake",
        Path::new("/p/backend_fake.so"),
        fake_init,
        Some(fake_configure),
        fake_query,
        Some(fake_cleanup),
        options,
    )
}

fn request(headers: &[(&str, &str)], protocols: &[&str]) -> Request {
    Request {
        target: "/a/b?x=1".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        client: "127.0.0.1:1".parse().unwrap(),
        tls: false,
        tls_client: None,
        user: None,
    }
}

fn reply(r: Reply) {
    *REPLY.lock().unwrap() = Some(r);
}

#[test]
fn backend_init_and_configure() {
    let _g = serial();
    assert_eq!(backend_name(Path::new("/x/backend_file.so")), "file");
    let e = create(
        "fake",
        Path::new("/p/backend_fake.so"),
        fake_init_2,
        None,
        fake_query,
        None,
        &[],
    )
    .err()
    .unwrap();
    assert!(e.contains("init() returned 2"), "{e}");
    CONFIGURED.lock().unwrap().clear();
    let cleanups = CLEANUPS.load(Ordering::SeqCst);
    let b = fake(&[opt("a", "1"), opt("b", "two words")]).unwrap();
    assert_eq!(
        *CONFIGURED.lock().unwrap(),
        [("a".into(), "1".into()), ("b".into(), "two words".into())]
    );
    assert!(b.blocking());
    b.shutdown();
    assert_eq!(
        CLEANUPS.load(Ordering::SeqCst),
        cleanups + 1,
        "cleanup at shutdown"
    );
    assert!(matches!(
        b.query(&request(&[], &[])),
        Decision::Reject { status: 503, .. }
    ));
    drop(b);
    assert_eq!(
        CLEANUPS.load(Ordering::SeqCst),
        cleanups + 1,
        "cleanup only once"
    );
    drop(fake(&[]).unwrap());
    assert_eq!(
        CLEANUPS.load(Ordering::SeqCst),
        cleanups + 2,
        "cleanup at drop"
    );
    let e = fake(&[opt("a", "1"), opt("bad", "x")]).err().unwrap();
    assert_eq!(
        e,
        "argument '-c bad=x': backend 'fake' rejected option 'bad'"
    );
    let e = create(
        "fake",
        Path::new("/p/backend_fake.so"),
        fake_init,
        None,
        fake_query,
        None,
        &[opt("k", "v")],
    )
    .err()
    .unwrap();
    assert!(
        e.starts_with("argument '-c k=v': backend 'fake' takes no options"),
        "{e}"
    );
}

#[test]
fn backend_query_sees_the_v1_request() {
    let _g = serial();
    let b = fake(&[]).unwrap();
    let mut headers = vec![
        ("Host", "example"),
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "p1, p2"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Cookie", "a=1; session=s42"),
    ];
    let extra: Vec<String> = (0..10).map(|i| format!("X-{i}")).collect();
    headers.extend(extra.iter().map(|n| (n.as_str(), "v")));
    reply(Reply {
        host: Some("tcp://127.0.0.1:7000"),
        protocol: 1,
        ..Reply::default()
    });
    let d = b.query(&request(&headers, &["p1", "p2"]));
    let seen = SEEN_QUERY.lock().unwrap().take().unwrap();
    assert_eq!(seen.endpoint, "/a/b?x=1");
    assert_eq!(seen.protocols, ["p1", "p2"]);
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Host",
            "Sec-WebSocket-Extensions",
            "Cookie",
            "X-0",
            "X-1",
            "X-2",
            "X-3",
            "X-4",
            "X-5",
            "X-6"
        ]
    );
    assert_eq!(seen.headers[2].1, "a=1; session=s42");
    assert_eq!(
        (seen.state, seen.version, seen.ws_fd, seen.ws_headers),
        (WS_HTTP, 13, -1, 10)
    );
    assert_eq!(seen.key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(seen.aliased, "arguments must be the struct's own fields");
    match d {
        Decision::Peer(c) => {
            assert_eq!(
                c.address,
                PeerAddress::parse("tcp://127.0.0.1:7000", None).unwrap()
            );
            assert_eq!(c.protocol, Some(1));
            assert_eq!(c.framing_name, "auto");
            assert_eq!(c.framing_config, None);
        }
        Decision::Reject { status, reason } => panic!("{status} {reason}"),
    }

    // Connection without "upgrade" is an ordinary header, lowercased;
    // an Upgrade header that is not "websocket" too.
    reply(Reply {
        host: None,
        ..Reply::default()
    });
    let d = b.query(&request(
        &[("Connection", "Keep-Alive"), ("Upgrade", "h2c")],
        &[],
    ));
    let seen = SEEN_QUERY.lock().unwrap().take().unwrap();
    assert_eq!(
        seen.headers,
        [
            ("Connection".into(), "keep-alive".into()),
            ("Upgrade".into(), "h2c".into())
        ]
    );
    assert!(
        matches!(d, Decision::Reject { status: 500, ref reason } if reason == "Peer connection failed")
    );
}

fn peer(d: Decision) -> PeerChoice {
    match d {
        Decision::Peer(c) => c,
        Decision::Reject { status, reason } => panic!("{status} {reason}"),
    }
}

fn rejected(d: Decision) -> String {
    match d {
        Decision::Peer(c) => panic!("expected a reject, got {}", c.address),
        Decision::Reject { status, reason } => {
            assert_eq!(status, 500);
            reason
        }
    }
}

#[test]
fn backend_answers_become_peers() {
    let _g = serial();
    set_registry(&Registry::with_builtins());
    let b = fake(&[]).unwrap();
    let req = request(&[], &["p1"]);
    let run = |r: Reply| {
        reply(r);
        b.query(&req)
    };
    // Port separately, explicit transports, protocol index out of range.
    let c = peer(run(Reply {
        host: Some("127.0.0.1"),
        port: Some("80"),
        protocol: 1,
        ..Reply::default()
    }));
    assert_eq!(c.address.to_string(), "tcp://127.0.0.1:80");
    assert_eq!(c.protocol, None);
    let c = peer(run(Reply {
        transport: PEER_UDP_CLIENT,
        host: Some("[::1]:53"),
        ..Reply::default()
    }));
    assert_eq!(c.address.to_string(), "udp://[::1]:53");
    let c = peer(run(Reply {
        transport: PEER_UNIX_STREAM,
        host: Some("/tmp/s.sock"),
        ..Reply::default()
    }));
    assert_eq!(c.address.to_string(), "unix:///tmp/s.sock");
    let c = peer(run(Reply {
        host: Some("unix-dgram:///tmp/d"),
        ..Reply::default()
    }));
    assert_eq!(c.address.to_string(), "unix-dgram:///tmp/d");
    assert!(rejected(run(Reply {
        transport: PEER_FIFO_TX,
        host: Some("x"),
        ..Reply::default()
    }))
    .contains("not yet implemented"));
    assert!(rejected(run(Reply {
        transport: 42,
        host: Some("x"),
        ..Reply::default()
    }))
    .contains("transport 42"));
    assert!(rejected(run(Reply {
        host: Some("tcp://h"),
        ..Reply::default()
    }))
    .contains("no port"));

    // Framing: a trampoline maps back to the Rust framing, with its config.
    let newline = core_framing(c"newline".as_ptr().cast_mut());
    let c = peer(run(Reply {
        host: Some("h:1"),
        framing: newline,
        config: Some("lf"),
        ..Reply::default()
    }));
    assert_eq!(
        (c.framing_name.as_str(), c.framing_config.as_deref()),
        ("newline", Some("lf"))
    );
    let mut st = c.framing.new_state(c.framing_config.as_deref()).unwrap();
    let (ev, _) = drive(st.as_mut(), &[b"a\nb"]);
    assert_eq!(ev, [msg(Opcode::Text, b"a\n")]);
    // A plain C function is wrapped.
    let c = peer(run(Reply {
        host: Some("h:1"),
        framing: Some(lines),
        ..Reply::default()
    }));
    let mut st = c.framing.new_state(None).unwrap();
    let (ev, _) = drive(st.as_mut(), &[b"B\n"]);
    assert_eq!(ev, [msg(Opcode::Binary, b"B\n")]);
}

#[test]
fn backend_queries_are_serialized() {
    let _g = serial();
    let b = fake(&[]).unwrap();
    reply(Reply {
        host: Some("h:1"),
        sleep_ms: 50,
        ..Reply::default()
    });
    MAX_RUNNING.store(0, Ordering::SeqCst);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                peer(b.query(&request(&[], &[])));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(MAX_RUNNING.load(Ordering::SeqCst), 1);
}
