//! The Rust plugins (`plugins/*`, built on the `websocksy-plugin` SDK),
//! loaded by the real binary: the `file` backend choosing peers from files,
//! the `fixedlength`, `dynamic32`, `lengthprefix` and `json` framings over a
//! real TCP peer (`json` also with library-level options from
//! `[framing:json]` and `--framing-option`), and a panicking plugin that
//! must cost one connection only.
//!
//! The harness builds the plugin crates with the binary; cargo puts the
//! cdylibs next to it. The tests load them from a scratch directory of
//! symlinks to those files, so that other libraries that happen to be in
//! the target directory cannot make start-up fail.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{binary, temp_dir, Bridge};

const LIBS: [&str; 5] = [
    "libbackend_file.so",
    "libframing_fixedlength.so",
    "libframing_dynamic32.so",
    "libframing_json.so",
    "libframing_test_panic.so",
];

/// A directory holding (symlinks to) the Rust plugins just built.
fn plugin_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = binary().parent().expect("target dir").to_path_buf();
        let dir = temp_dir("rust-plugins");
        for lib in LIBS {
            let src = target.join(lib);
            assert!(src.is_file(), "{} was not built", src.display());
            std::os::unix::fs::symlink(&src, dir.join(lib)).expect("symlink plugin");
        }
        dir.display().to_string()
    })
}

fn start(args: &[&str]) -> Bridge {
    let mut full = vec!["--plugin-dir", plugin_dir()];
    full.extend_from_slice(args);
    Bridge::start(&full)
}

/// A bridge to a fresh peer with `-c framing=NAME [-c framing-config=CONFIG]`,
/// an upgraded client and the peer's end.
fn framed(framing: &str, config: Option<&str>) -> (Bridge, TcpStream, TcpStream) {
    let peer = TcpPeer::new();
    let host = peer.host_arg();
    let framing = format!("framing={framing}");
    let config = config.map(|c| format!("framing-config={c}"));
    let mut args = vec!["-c", &host, "-c", &framing];
    if let Some(c) = &config {
        args.extend(["-c", c]);
    }
    let b = start(&args);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let p = peer.accept();
    p.set_nodelay(true).unwrap();
    (b, s, p)
}

fn frames(s: &mut TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let f = ws::read_frame(s).unwrap();
            (f.opcode, f.payload)
        })
        .collect()
}

fn bin(p: &[u8]) -> (u8, Vec<u8>) {
    (2, p.to_vec())
}

fn text(p: &str) -> (u8, Vec<u8>) {
    (1, p.as_bytes().to_vec())
}

/// Nothing more arrives for a moment (the rest stays buffered).
fn quiet(s: &mut TcpStream) {
    assert_eq!(
        ws::read_frame_within(s, Duration::from_millis(200)).unwrap(),
        None
    );
}

/// Let the bridge read what was written so far on its own.
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

// ---------------------------------------------------------------------------
// Framings

#[test]
fn fixedlength_records_across_reads() {
    // A26
    let (_b, mut s, mut p) = framed("fixedlength", Some("4"));
    p.write_all(b"abcdefghij").unwrap();
    assert_eq!(frames(&mut s, 2), [bin(b"abcd"), bin(b"efgh")]);
    quiet(&mut s);
    p.write_all(b"kl").unwrap();
    assert_eq!(frames(&mut s, 1), [bin(b"ijkl")]);
}

#[test]
fn fixedlength_hex_and_zero() {
    let (_b, mut s, mut p) = framed("fixedlength", Some("0x3"));
    p.write_all(b"abcdefg").unwrap();
    assert_eq!(frames(&mut s, 2), [bin(b"abc"), bin(b"def")]);
    // The partial record goes out when the peer closes.
    drop(p);
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(
        data,
        [Frame {
            fin: true,
            opcode: 2,
            payload: b"g".to_vec()
        }]
    );
    assert_eq!(close.close_code(), Some(1000));

    let (_b, mut s, mut p) = framed("fixedlength", Some("0"));
    p.write_all(b"pass").unwrap();
    assert_eq!(frames(&mut s, 1), [bin(b"pass")]);
}

#[test]
fn fixedlength_without_config_fails_start_up() {
    // B46: the original crashed on the first peer data.
    let (code, _, err) = websocksy_tests::run_cli(&[
        "--plugin-dir",
        plugin_dir(),
        "-p",
        "0",
        "-l",
        "127.0.0.1",
        "-c",
        "host=tcp://127.0.0.1:9",
        "-c",
        "framing=fixedlength",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("record size"), "{err}");
}

#[test]
fn dynamic32_default_little_endian() {
    // A27
    let (_b, mut s, mut p) = framed("dynamic32", None);
    p.write_all(b"\x03\x00\x00\x00abc\x02\x00\x00\x00de\x05\x00")
        .unwrap();
    assert_eq!(
        frames(&mut s, 2),
        [bin(b"\x03\x00\x00\x00abc"), bin(b"\x02\x00\x00\x00de")]
    );
    quiet(&mut s);
    // The rest of the third record, its prefix split across reads.
    p.write_all(b"\x00").unwrap();
    settle();
    p.write_all(b"\x00vwxyz").unwrap();
    assert_eq!(frames(&mut s, 1), [bin(b"\x05\x00\x00\x00vwxyz")]);
}

#[test]
fn dynamic32_comma_separated_config() {
    // B46: the original hung the whole server on a comma.
    let (_b, mut s, mut p) = framed("dynamic32", Some("offset=2,endian=big,static=1"));
    p.write_all(b"HH\x00\x00\x00\x01xyQ").unwrap();
    assert_eq!(frames(&mut s, 1), [bin(b"HH\x00\x00\x00\x01xy")]);
}

#[test]
fn lengthprefix_payload_only() {
    let (_b, mut s, mut p) = framed("lengthprefix", Some("bytes=2,include-header=no"));
    p.write_all(b"\x00\x05hello\x00\x03").unwrap();
    settle();
    p.write_all(b"abc").unwrap();
    assert_eq!(frames(&mut s, 2), [bin(b"hello"), bin(b"abc")]);
}

#[test]
fn lengthprefix_over_max_closes_1011() {
    let (_b, mut s, mut p) = framed("lengthprefix", Some("bytes=1,max=3"));
    p.write_all(b"\x02ab\x09").unwrap();
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(
        data,
        [Frame {
            fin: true,
            opcode: 2,
            payload: b"\x02ab".to_vec()
        }]
    );
    assert_eq!(close.close_code(), Some(1011));
}

#[test]
fn json_six_values_in_one_write() {
    // A28
    let (_b, mut s, mut p) = framed("json", None);
    p.write_all(br#"{"a":1}[1,2]"str" 123 true{"b":[{"c":null}]}"#)
        .unwrap();
    assert_eq!(
        frames(&mut s, 6),
        [
            text(r#"{"a":1}"#),
            text("[1,2]"),
            text(r#""str""#),
            text(" 123"),
            text(" true"),
            text(r#"{"b":[{"c":null}]}"#)
        ]
    );
}

#[test]
fn json_garbage_is_one_binary_frame() {
    // A28
    let (_b, mut s, mut p) = framed("json", None);
    p.write_all(br#"xyz{"a":1}"#).unwrap();
    assert_eq!(frames(&mut s, 1), [bin(br#"xyz{"a":1}"#)]);
    // The stream recovers.
    p.write_all(r#"{"b":"é \"q\""}"#.as_bytes()).unwrap();
    assert_eq!(frames(&mut s, 1), [text(r#"{"b":"é \"q\""}"#)]);
}

#[test]
fn json_value_split_after_comma() {
    // The original dumped `{"a":[1,` as binary.
    let (_b, mut s, mut p) = framed("json", None);
    p.write_all(br#"{"a":[1,"#).unwrap();
    quiet(&mut s);
    p.write_all(br#"2]}"#).unwrap();
    assert_eq!(frames(&mut s, 1), [text(r#"{"a":[1,2]}"#)]);
}

#[test]
fn json_number_at_eof_is_sent_on_close() {
    let (_b, mut s, mut p) = framed("json", None);
    p.write_all(b"[1]\n42").unwrap();
    assert_eq!(frames(&mut s, 1), [text("[1]")]);
    quiet(&mut s);
    drop(p);
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(
        data,
        [Frame {
            fin: true,
            opcode: 1,
            payload: b"\n42".to_vec()
        }]
    );
    assert_eq!(close.close_code(), Some(1000));
}

#[test]
fn json_invalid_close_option() {
    let (_b, mut s, mut p) = framed("json", Some("invalid=close"));
    p.write_all(b"[1,]").unwrap();
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(close.close_code(), Some(1011));
}

// ---------------------------------------------------------------------------
// Library-level framing options: [framing:NAME] and --framing-option

/// A bridge to a fresh peer with `-c framing=json` and `extra` arguments, an
/// upgraded client and the peer's end.
fn json_bridge(extra: &[&str]) -> (Bridge, TcpStream, TcpStream) {
    let peer = TcpPeer::new();
    let host = peer.host_arg();
    let mut args = vec!["-c", &host, "-c", "framing=json"];
    args.extend_from_slice(extra);
    let b = start(&args);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let p = peer.accept();
    p.set_nodelay(true).unwrap();
    (b, s, p)
}

fn write_cfg(text: &str) -> String {
    let path = temp_dir("framing-options").join("websocksy.cfg");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn json_framing_section_in_config_file_sets_invalid_close() {
    // Without any framing-config: the [framing:json] default closes on
    // invalid JSON instead of sending it as binary.
    let cfg = write_cfg("[framing:json]\ninvalid = close\n");
    let (_b, mut s, mut p) = json_bridge(&[&cfg]);
    p.write_all(b"[1]").unwrap();
    assert_eq!(frames(&mut s, 1), [text("[1]")]);
    p.write_all(b"[1,]").unwrap();
    let (data, close) = ws::read_until_close(&mut s).unwrap();
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(close.close_code(), Some(1011));

    // A connection's framing-config still overrides the library default.
    let (_b, mut s, mut p) = json_bridge(&[&cfg, "-c", "framing-config=invalid=binary"]);
    p.write_all(b"[1,]\n").unwrap();
    assert_eq!(frames(&mut s, 1), [bin(b"[1,]\n")]);
}

#[test]
fn json_framing_option_flag_sets_max_depth() {
    let (_b, mut s, mut p) = json_bridge(&["--framing-option", "json:max-depth=2"]);
    p.write_all(b"[[1]]").unwrap();
    assert_eq!(frames(&mut s, 1), [text("[[1]]")]);
    // Too deep: invalid, so the default `invalid=binary` sends it as binary.
    p.write_all(b"[[[1]]]\n").unwrap();
    assert_eq!(frames(&mut s, 1), [bin(b"[[[1]]]\n")]);
    // The flag comes after the file's line, so it wins.
    let cfg = write_cfg("[framing:json]\nmax-depth = 1\n");
    let (_b, mut s, mut p) = json_bridge(&[&cfg, "--framing-option", "json:max-depth=2"]);
    p.write_all(b"[[1]]").unwrap();
    assert_eq!(frames(&mut s, 1), [text("[[1]]")]);
}

/// Exit 2 with one stderr line containing every string of `names`.
fn startup_fails(extra: &[&str], names: &[&str]) {
    let mut full = vec![
        "--plugin-dir",
        plugin_dir(),
        "-p",
        "0",
        "-l",
        "127.0.0.1",
        "-c",
        "host=tcp://127.0.0.1:9",
        "-c",
        "framing=json",
    ];
    full.extend_from_slice(extra);
    let (code, _, err) = websocksy_tests::run_cli(&full);
    assert_eq!(code, 2, "{extra:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{extra:?}: not one line: {err}");
    assert!(lines[0].starts_with("websocksy: "), "{err}");
    for n in names {
        assert!(lines[0].contains(n), "{extra:?}: {err} lacks {n:?}");
    }
}

#[test]
fn bad_framing_options_fail_start_up_naming_their_origin() {
    let cfg = write_cfg("[core]\nping = 0\n[framing:json]\nmax-depth = 3\ncolour = red\n");
    startup_fails(
        &[&cfg],
        &[&format!(
            "{cfg}:5: unknown option 'colour' for framing 'json'"
        )],
    );
    startup_fails(
        &["--framing-option", "json:colour=red"],
        &["argument '--framing-option json:colour=red': unknown option 'colour' for framing 'json'"],
    );
    startup_fails(
        &["--framing-option", "json:max-depth=0"],
        &[
            "argument '--framing-option json:max-depth=0': invalid value '0' for option \
             'max-depth' of framing 'json':",
            "positive number",
        ],
    );
    let cfg = write_cfg("[framing:jsno]\nmax-depth = 3\n");
    startup_fails(
        &[&cfg],
        &[
            &format!("{cfg}:2: unknown framing 'jsno' (available: "),
            "json",
        ],
    );
    startup_fails(
        &["--framing-option", "newline:eol=crlf"],
        &["argument '--framing-option newline:eol=crlf': framing 'newline' takes no options"],
    );
    startup_fails(
        &["--framing-option", "json"],
        &[
            "'--framing-option <NAME:KEY=VALUE>'",
            "expected NAME:KEY=VALUE",
        ],
    );
}

// ---------------------------------------------------------------------------
// A panicking plugin

#[test]
fn panic_in_frame_closes_that_connection_with_1011_only() {
    let peer = TcpPeer::new();
    let host = peer.host_arg();
    let b = start(&["-c", &host, "-c", "framing=test-panic"]);

    let mut s1 = b.connect();
    ws::upgrade(&mut s1, "/", &[]);
    let mut p1 = peer.accept();
    let mut s2 = b.connect();
    ws::upgrade(&mut s2, "/", &[]);
    let mut p2 = peer.accept();

    p1.write_all(b"hello").unwrap();
    assert_eq!(frames(&mut s1, 1), [bin(b"hello")]);
    p1.write_all(b"now panic").unwrap();
    let (data, close) = ws::read_until_close(&mut s1).unwrap();
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(close.close_code(), Some(1011));
    b.wait_log("frame of 'test-panic' panicked: test-panic: the peer said panic");

    // The other connection and new ones carry on.
    p2.write_all(b"still here").unwrap();
    assert_eq!(frames(&mut s2, 1), [bin(b"still here")]);
    let mut s3 = b.connect();
    ws::upgrade(&mut s3, "/", &[]);
    let mut p3 = peer.accept();
    p3.write_all(b"new").unwrap();
    assert_eq!(frames(&mut s3, 1), [bin(b"new")]);
    s3.write_all(&ws::text("up")).unwrap();
    assert_eq!(peers::read_n(&mut p3, 2), b"up");
}

// ---------------------------------------------------------------------------
// The file backend

/// A peer directory: `base/` holds the files, and `outside.txt` sits next to
/// it, where no request may reach.
struct Files {
    root: PathBuf,
}

impl Files {
    fn new(files: &[(&str, String)]) -> Files {
        let root = temp_dir("file-backend");
        std::fs::create_dir_all(root.join("base")).unwrap();
        for (name, content) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        Files { root }
    }

    fn base(&self) -> String {
        self.root.join("base").display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn file_bridge(files: &Files, expressions: &[&str]) -> Bridge {
    let path = format!("path={}", files.base());
    let exprs: Vec<String> = expressions
        .iter()
        .map(|e| format!("expression={e}"))
        .collect();
    let mut args = vec!["-b", "file", "-c", &path];
    for e in &exprs {
        args.extend(["-c", e]);
    }
    start(&args)
}

/// Upgrade through the bridge and check that `peer` gets the connection,
/// that data flows, and the response's subprotocol.
fn routed_to(b: &Bridge, target: &str, headers: &[&str], peer: &TcpPeer, protocol: Option<&str>) {
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, target, headers);
    assert_eq!(
        r.header("Sec-WebSocket-Protocol"),
        protocol,
        "{target} {headers:?}: {}",
        r.head
    );
    let mut p = peer.accept();
    s.write_all(&ws::text("ping")).unwrap();
    assert_eq!(peers::read_n(&mut p, 4), b"ping");
}

fn refused(b: &Bridge, target: &str, headers: &[&str]) -> (u16, String) {
    let mut s = b.connect();
    s.write_all(ws::request(target, headers).as_bytes())
        .unwrap();
    let r = ws::read_response(&mut s).unwrap();
    let body = ws::read_body(&mut s, &r).unwrap();
    (r.status, String::from_utf8_lossy(&body).into_owned())
}

fn addr(p: &TcpPeer) -> String {
    format!("tcp://{}", p.addr)
}

#[test]
fn file_backend_a29_routes() {
    let (t1, t2, ab, sess, hdr, dflt) = (
        TcpPeer::new(),
        TcpPeer::new(),
        TcpPeer::new(),
        TcpPeer::new(),
        TcpPeer::new(),
        TcpPeer::new(),
    );
    let f = Files::new(&[
        (
            "base/test.txt",
            format!("{} p1\n{} p2\n", addr(&t1), addr(&t2)),
        ),
        ("base/a_b.txt", format!("{} x\n", addr(&ab))),
        ("base/sess42.txt", format!("{} x\n", addr(&sess))),
        ("base/.._.._etc.txt", format!("{}\n", addr(&hdr))),
        ("base/default.txt", format!("{} *\n", addr(&dflt))),
    ]);
    let b = file_bridge(
        &f,
        &[
            "%endpoint%.txt",
            "%cookie:session%.txt",
            "%header:X-Foo-Bar%.txt",
            "default.txt",
        ],
    );
    // No protocols: the first line.
    routed_to(&b, "/test", &[], &t1, None);
    // A protocol selects its line and is echoed.
    routed_to(
        &b,
        "/test",
        &["Sec-WebSocket-Protocol: p2"],
        &t2,
        Some("p2"),
    );
    routed_to(&b, "/test/", &[], &t1, None);
    routed_to(&b, "/a/b", &[], &ab, None);
    // Cookies with or without the space after `;`.
    routed_to(&b, "/x", &["Cookie: foo=1; session=sess42"], &sess, None);
    routed_to(&b, "/x", &["Cookie: foo=1;session=sess42"], &sess, None);
    // Header names match case-insensitively; `/` in values becomes `_`.
    routed_to(&b, "/x", &["x-foo-bar: ../../etc"], &hdr, None);
    // `*` takes the first offer.
    routed_to(
        &b,
        "/x",
        &["Sec-WebSocket-Protocol: q1, q2"],
        &dflt,
        Some("q1"),
    );
}

#[test]
fn file_backend_no_match_is_404() {
    let t = TcpPeer::new();
    let f = Files::new(&[("base/test.txt", format!("{} p1\n", addr(&t)))]);
    let b = file_bridge(&f, &["%endpoint%.txt"]);
    // Case-sensitive subprotocols: P1 is not p1.
    let (status, body) = refused(&b, "/test", &["Sec-WebSocket-Protocol: P1"]);
    assert_eq!(status, 404);
    assert!(body.contains("no peer for this request"), "{body:?}");
    assert_eq!(refused(&b, "/missing", &[]).0, 404);
    routed_to(
        &b,
        "/test",
        &["Sec-WebSocket-Protocol: P1, p1"],
        &t,
        Some("p1"),
    );
}

#[test]
fn file_backend_never_leaves_path() {
    let outside = TcpPeer::new();
    let sanitised = TcpPeer::new();
    let f = Files::new(&[
        ("peer.txt", format!("{}\n", addr(&outside))),
        ("outside.txt", format!("{}\n", addr(&outside))),
        ("base/.._.._etc_passwd", format!("{}\n", addr(&sanitised))),
    ]);
    let b = file_bridge(
        &f,
        &[
            "%header:X-Dir%/peer.txt",
            "%header:X-Foo%.txt",
            "%endpoint%",
        ],
    );
    // A header that is exactly `..` would climb out of `path`: skipped.
    assert_eq!(refused(&b, "/nothing", &["X-Dir: .."]).0, 404);
    // `../..` is sanitised to `.._..`: stays inside.
    assert_eq!(refused(&b, "/nothing", &["X-Foo: ../outside"]).0, 404);
    assert_eq!(refused(&b, "/nothing", &["X-Foo: ../.."]).0, 404);
    // The endpoint's slashes are replaced, so this names a file in `path`.
    routed_to(&b, "/../../etc/passwd", &[], &sanitised, None);
    assert_eq!(refused(&b, "/..", &[]).0, 404);
}

#[test]
fn file_backend_line_framing_and_host_only_line() {
    let framed_peer = TcpPeer::new();
    let sep_peer = TcpPeer::new();
    let plain = TcpPeer::new();
    let f = Files::new(&[
        (
            "base/f.txt",
            format!(
                "{} y fixedlength 2\n{} P1 separator ; x\n",
                addr(&framed_peer),
                addr(&sep_peer)
            ),
        ),
        (
            "base/plain.txt",
            format!("# a comment\n\n{}\n", addr(&plain)),
        ),
        ("base/unknown.txt", format!("{} text text\n", addr(&plain))),
    ]);
    let b = file_bridge(&f, &["%endpoint%.txt"]);

    // A30: per-line framing and its config.
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, "/f", &["Sec-WebSocket-Protocol: y"]);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("y"));
    let mut p = framed_peer.accept();
    p.write_all(b"abcde").unwrap();
    assert_eq!(frames(&mut s, 2), [bin(b"ab"), bin(b"cd")]);

    // The rest of the line is the config, spaces included.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/f", &["Sec-WebSocket-Protocol: P1"]);
    let mut p = sep_peer.accept();
    p.write_all(b"a; xb; x").unwrap();
    assert_eq!(frames(&mut s, 2), [bin(b"a; x"), bin(b"b; x")]);

    // B50: a host-only line with no protocols offered (the original crashed).
    routed_to(&b, "/plain", &[], &plain, None);
    // With protocols offered, host-only lines are skipped.
    assert_eq!(refused(&b, "/plain", &["Sec-WebSocket-Protocol: z"]).0, 404);

    // An unknown framing name falls back to auto, as in the original.
    routed_to(&b, "/unknown", &[], &plain, None);
    b.wait_log("unknown framing \"text\", using auto");
}

#[test]
fn file_backend_files_are_read_per_request() {
    let first = TcpPeer::new();
    let second = TcpPeer::new();
    let f = Files::new(&[]);
    let b = file_bridge(&f, &["%endpoint%.txt"]);
    assert_eq!(refused(&b, "/live", &[]).0, 404);
    let file: &Path = &f.root.join("base/live.txt");
    std::fs::write(file, format!("{}\n", addr(&first))).unwrap();
    routed_to(&b, "/live", &[], &first, None);
    std::fs::write(file, format!("{}\n", addr(&second))).unwrap();
    routed_to(&b, "/live", &[], &second, None);
}

#[test]
fn file_backend_bad_options_fail_start_up() {
    let f = Files::new(&[]);
    let path = format!("path={}", f.base());
    for (args, needle) in [
        (vec!["-b", "file", "-c", "expression=x"], "path"),
        (vec!["-b", "file", "-c", &path], "expression"),
        (
            vec!["-b", "file", "-c", &path, "-c", "nope=1"],
            "unknown option 'nope'",
        ),
        (
            vec!["-b", "file", "-c", &path, "-c", "expression=%cookie:x"],
            "unterminated",
        ),
        (
            vec![
                "-b",
                "file",
                "-c",
                "path=/nonexistent/peers",
                "-c",
                "expression=x",
            ],
            "/nonexistent/peers",
        ),
    ] {
        let mut full = vec!["--plugin-dir", plugin_dir(), "-p", "0", "-l", "127.0.0.1"];
        full.extend(args.iter().copied());
        let (code, _, err) = websocksy_tests::run_cli(&full);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
