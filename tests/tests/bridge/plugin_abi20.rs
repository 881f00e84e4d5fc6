//! A plugin built against ABI 2.0 in the current host: the proof that
//! minors only append. `tests/fixtures/abi-2.0/` holds the 2.0 header as it
//! shipped and `backend_v20.c`, written against it (see its README); both
//! are frozen. The plugin is compiled here with `$CC` and the flags every C
//! plugin must pass, with only the fixture directory on the include path.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use websocksy_tests::peers::TcpPeer;
use websocksy_tests::ws;
use websocksy_tests::{compile_plugin, temp_dir, Bridge};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/abi-2.0")
}

/// A plugin directory holding `backend_v20.so`, built once per run.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("abi20");
        compile_plugin(
            &fixture_dir().join("backend_v20.c"),
            &fixture_dir(),
            &dir.join("backend_v20.so"),
            &[],
        );
        dir
    })
}

/// `-b v20` (found in the plugin directory) answering `peer`.
fn start(peer: &str, extra: &[&str]) -> Bridge {
    let dir = plugin_dir().to_str().expect("UTF-8 temp path").to_string();
    let mut args = vec!["--plugin-dir", &dir, "-b", "v20", "-c"];
    let peer = format!("peer={peer}");
    args.push(&peer);
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

/// The upgrade request's answer, and the connection.
fn ask(b: &Bridge, path: &str, extra: &[&str]) -> (TcpStream, ws::Response) {
    let mut c = b.connect();
    c.write_all(ws::request(path, extra).as_bytes()).unwrap();
    let r = ws::read_response(&mut c).expect("response");
    (c, r)
}

#[test]
fn the_fixture_is_the_2_0_header() {
    let h = std::fs::read_to_string(fixture_dir().join("websocksy.h")).unwrap();
    assert!(h.contains("the plugin interface of websocksy, ABI 2.0\n"));
    assert!(h.contains("#define WSY_ABI_MAJOR 2\n#define WSY_ABI_MINOR 0\n"));
}

#[test]
fn plugin_abi20_backend_reads_the_2_0_fields_from_the_current_host() {
    let peer = TcpPeer::new();
    let b = start(&format!("tcp://{}", peer.addr), &[]);
    b.wait_log("v20 plugin loaded");
    let (mut c, r) = ask(
        &b,
        "/a/b?x=1&y",
        &[
            "X-Probe: probe value",
            "Cookie: a=1; c=crumb",
            "Sec-WebSocket-Protocol: one, two",
            "sec-websocket-protocol: three",
        ],
    );
    assert_eq!(r.status, 101, "{}", r.head);
    let h = |name: &str| {
        r.header(name)
            .unwrap_or_else(|| panic!("no {name} in {}", r.head))
            .to_string()
    };
    // The host hands the 2.0 plugin its own, larger, struct; the plugin
    // knows the 2.0 one and reads inside it.
    assert_eq!(
        h("X-V20-Size"),
        std::mem::size_of::<websocksy_abi::wsy_request>().to_string()
    );
    assert_eq!(
        h("X-V20-Sizeof"),
        websocksy_abi::wsy_request::SIZE_2_0.to_string()
    );
    assert!(
        websocksy_abi::wsy_request::SIZE_2_0 < std::mem::size_of::<websocksy_abi::wsy_request>()
    );
    assert_eq!(
        h("X-V20-Host"),
        format!(
            "{}.{}",
            websocksy_abi::WSY_ABI_MAJOR,
            websocksy_abi::WSY_ABI_MINOR
        )
    );
    assert_eq!(h("X-V20-Target"), "[/a/b?x=1&y]");
    assert_eq!(h("X-V20-Path"), "[/a/b]");
    assert_eq!(h("X-V20-Query"), "[x=1&y]");
    let client = h("X-V20-Client");
    assert!(client.starts_with("[127.0.0.1:"), "{client}");
    assert_eq!(h("X-V20-TLS"), "0");
    // Host, Upgrade, Connection, Key, Version and the four above.
    assert_eq!(h("X-V20-Header-Count"), "9");
    assert_eq!(h("X-V20-Probe"), "[probe value]");
    assert_eq!(h("X-V20-Cookie"), "[crumb]");
    assert_eq!(h("X-V20-Protocols"), "[one][two][three]");
    // The last offered subprotocol, by index.
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("three"));

    // The peer it answered works both ways.
    let mut p = peer.accept();
    c.write_all(&ws::text("to the peer")).unwrap();
    assert_eq!(websocksy_tests::peers::read_n(&mut p, 11), b"to the peer");
    p.write_all(b"back").unwrap();
    let f = ws::read_frame(&mut c).unwrap();
    assert_eq!(f.payload, b"back");

    // Absent is not empty: no '?' gives a NULL query, no protocols none.
    let (_c, r) = ask(&b, "/plain", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("X-V20-Query"), Some("(absent)"));
    assert_eq!(r.header("X-V20-Protocols"), Some("(none)"));
    assert_eq!(r.header("Sec-WebSocket-Protocol"), None);
    let _p = peer.accept();

    let (_c, r) = ask(&b, "/", &["Cookie: deny=1"]);
    assert_eq!(r.status, 403, "{}", r.head);
}

#[test]
fn plugin_abi20_framing_frames_in_the_current_host() {
    let peer = TcpPeer::new();
    let b = start(&format!("tcp://{}", peer.addr), &["-c", "framing=v20pipe"]);
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"ab|cd").unwrap();
    p.write_all(b"|e").unwrap();
    for want in [&b"ab"[..], b"cd"] {
        let f = ws::read_frame(&mut c).unwrap();
        assert_eq!((f.opcode, f.payload.as_slice()), (1, want));
    }
}
