//! The original websocksy's own plugins (`tests/fixtures/websocksy-v1/`),
//! built from its unmodified sources and run in the real binary. Split from
//! `plugins_v1.rs` only for length; the helpers are its.

use std::io::Write;
use std::net::TcpStream;

use websocksy_tests::peers::TcpPeer;
use websocksy_tests::ws;
use websocksy_tests::{temp_dir, Bridge};

use super::{expect_binary_frames, frame, opts, plugin_dir, read_frames, s, start};

/// One upgraded client and its peer connection.
fn pair(b: &Bridge, peer: &TcpPeer, path: &str, extra: &[&str]) -> (TcpStream, TcpStream) {
    let mut c = b.connect();
    ws::upgrade(&mut c, path, extra);
    let p = peer.accept();
    p.set_nodelay(true).unwrap();
    (c, p)
}

/// The bridge still accepts and upgrades (a crashed one refuses the connect).
fn assert_serving(b: &Bridge) {
    let mut c = b.connect();
    let r = ws::read_response({
        c.write_all(ws::request("/", &[]).as_bytes()).unwrap();
        &mut c
    })
    .expect("the bridge answers after the framing ran");
    assert_eq!(r.status, 101, "{}", r.head);
}

/// Regression: the original's `dynamic32` walks its `config` string without
/// a NULL check, and a route without `framing-config` used to hand it NULL,
/// killing the whole process at the first peer bytes.
#[test]
fn original_dynamic32_without_framing_config_survives_and_frames() {
    let dir = plugin_dir(&["original/framing_dynamic32"]);
    let peer = TcpPeer::new();
    let b = start(&dir, &opts(&[&peer.host_arg(), "framing=dynamic32"]));
    let (mut c, mut p) = pair(&b, &peer, "/", &[]);
    // The defaults: a 4-byte little-endian length at offset 0, then the record.
    p.write_all(b"\x03\x00\x00\x00abc\x02\x00\x00").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(2, b"\x03\x00\x00\x00abc")]);
    p.write_all(b"\x00de").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(2, b"\x02\x00\x00\x00de")]);
    drop((c, p));
    assert_serving(&b);

    // With a config, as before: big-endian lengths.
    let peer = TcpPeer::new();
    let b = start(
        &dir,
        &opts(&[
            &peer.host_arg(),
            "framing=dynamic32",
            "framing-config=endian=big",
        ]),
    );
    let (mut c, mut p) = pair(&b, &peer, "/", &[]);
    p.write_all(b"\x00\x00\x00\x02hi\x00\x00").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(2, b"\x00\x00\x00\x02hi")]);
    p.write_all(b"\x00\x01!").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(2, b"\x00\x00\x00\x01!")]);
}

/// The original's `fixedlength` (`strtoul(config)`: "" is 0, "pass
/// everything through") and `json` (one text message per value, whatever
/// the reads).
#[test]
fn original_fixedlength_and_json_frame_as_they_did() {
    let dir = plugin_dir(&["original/framing_fixedlength", "original/framing_json"]);
    for (config, reads, want) in [
        (
            Some("3"),
            &[&b"abcd"[..], b"ef"][..],
            &[&b"abc"[..], b"def"][..],
        ),
        (None, &[b"whatever"], &[b"whatever"]),
    ] {
        let peer = TcpPeer::new();
        let mut args = vec![peer.host_arg(), "framing=fixedlength".to_string()];
        args.extend(config.map(|c| format!("framing-config={c}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let b = start(&dir, &opts(&args));
        let (mut c, mut p) = pair(&b, &peer, "/", &[]);
        expect_binary_frames(
            &mut c,
            &mut p,
            reads,
            want,
            &format!("fixedlength {config:?}"),
        );
        drop((c, p));
        assert_serving(&b);
    }

    let peer = TcpPeer::new();
    let b = start(&dir, &opts(&[&peer.host_arg(), "framing=json"]));
    let (mut c, mut p) = pair(&b, &peer, "/", &[]);
    p.write_all(br#"{"a": 1}[true, "x"]{"k": "v"#).unwrap();
    assert_eq!(
        read_frames(&mut c, 2),
        [frame(1, br#"{"a": 1}"#), frame(1, br#"[true, "x"]"#)]
    );
    p.write_all(br#""}"#).unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(1, br#"{"k": "v"}"#)]);
}

/// The original's `file` backend choosing peers, protocols and the
/// original's framings; a line without a framing config hands the framing
/// no config (NULL from the plugin), which must not crash either.
#[test]
fn original_file_backend_routes_to_original_framings() {
    let dir = plugin_dir(&[
        "original/backend_file",
        "original/framing_dynamic32",
        "original/framing_json",
    ]);
    let peer = TcpPeer::new();
    let files = temp_dir("plugins-v1-files");
    let write = |name: &str, line: String| {
        std::fs::write(files.join(name), format!("{line}\n")).expect("write a peer file")
    };
    write(
        "chat.txt",
        format!("tcp://{} chat dynamic32 endian=big", peer.addr),
    );
    write("room.txt", format!("tcp://{} * json", peer.addr));
    write("default.txt", format!("tcp://{} * dynamic32", peer.addr));
    let b = start(
        &dir,
        &[
            "-b".into(),
            "file".into(),
            "-c".into(),
            format!("path={}/", s(&files)),
            "-c".into(),
            "expression=%endpoint%.txt".into(),
            "-c".into(),
            "expression=%cookie:session%.txt".into(),
            "-c".into(),
            "expression=default.txt".into(),
        ],
    );
    b.wait_log("loaded websocksy v1 backend 'file'");

    // By endpoint, with the protocol the line names and its framing config.
    let mut c = b.connect();
    let r = ws::upgrade(&mut c, "/chat", &["Sec-WebSocket-Protocol: other, chat"]);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("chat"));
    let mut p = peer.accept();
    p.write_all(b"\x00\x00\x00\x01!").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(2, b"\x00\x00\x00\x01!")]);
    drop((c, p));

    // By cookie: json.
    let (mut c, mut p) = pair(&b, &peer, "/elsewhere", &["Cookie: a=1; session=room"]);
    p.write_all(b"[1,2]").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(1, b"[1,2]")]);
    drop((c, p));

    // The default line: dynamic32 without a config from the backend.
    let (mut c, mut p) = pair(&b, &peer, "/elsewhere", &[]);
    p.write_all(b"\x01\x00\x00\x00z").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(2, b"\x01\x00\x00\x00z")]);
    drop((c, p));
    assert_serving(&b);
}
