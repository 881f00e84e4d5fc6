//! The plugin host (`core/src/plugin/`) against small C plugins of
//! `tests/plugins/host/`: backends and framings loaded from a plugin
//! directory, by path and by `--plugin`; log lines under the plugin's name;
//! one-line start-up errors with exit status 2; misbehaving framings that
//! cost one connection; a slow backend that stalls nobody else.
//!
//! The plugins are compiled once per run with `$CC` (default `cc`) and the
//! flags every C plugin must pass. Test plugins:
//! - `backend_route.so`: backend `route` (`route = PATH PEER [FRAMING]`,
//!   `hub = PATH`, `slow = PATH`, `fail = MSG`), 403 for unknown paths;
//! - `framing_bad.so`: framings `semicolon` (well behaved, with options
//!   `separator` and `opcode`), `overrun`, `negative`, `badop`;
//! - `framing_old.so`: the same built with `-DTEST_OLD_SIZE`, its
//!   descriptors as large as the first ABI 2.0 framings (before
//!   `configure` was appended);
//! - `badmajor.so` / `badminor.so` / `badnextminor.so`: a framing
//!   descriptor of ABI 1.0 / 2.99 / 2.3;
//! - `nosym.so`: a shared object without the entry symbol.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws;
use websocksy_tests::{compile_plugin, run_cli, temp_dir, Bridge};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `tests/plugins/host/<src>.c` built as `<out>.so` with `defines`, once per run.
fn build(src: &str, out: &str, defines: &[&str]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let dir = DIR.get_or_init(|| temp_dir("plugin-host-build"));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(p) = built.get(out) {
        return p.clone();
    }
    let so = dir.join(format!("{out}.so"));
    let src = repo_root()
        .join("tests/plugins/host")
        .join(format!("{src}.c"));
    compile_plugin(&src, &repo_root().join("include"), &so, defines);
    built.insert(out.to_string(), so.clone());
    so
}

fn route_so() -> PathBuf {
    build("backend_route", "backend_route", &[])
}

fn framing_so() -> PathBuf {
    build("framing_bad", "framing_bad", &[])
}

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

/// A fresh plugin directory holding copies of `files`.
fn plugin_dir(files: &[PathBuf]) -> PathBuf {
    let dir = temp_dir("plugin-host-dir");
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).expect("copy plugin");
    }
    dir
}

fn start(args: &[String]) -> Bridge {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Bridge::start(&args)
}

/// `-b <backend_route.so> --plugin <framing_bad.so>` with these routes.
fn route_bridge(routes: &[String], extra: &[&str]) -> Bridge {
    let dir = plugin_dir(&[]);
    let mut args = vec![
        "--plugin-dir".into(),
        s(&dir),
        "-b".into(),
        s(&route_so()),
        "--plugin".into(),
        s(&framing_so()),
    ];
    for r in routes {
        args.push("-c".into());
        args.push(format!("route={r}"));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    start(&args)
}

/// The bridge's answer to an upgrade request for `path`.
fn ask(b: &Bridge, path: &str, extra: &[&str]) -> (TcpStream, ws::Response) {
    let mut c = b.connect();
    c.write_all(ws::request(path, extra).as_bytes()).unwrap();
    let r = ws::read_response(&mut c).expect("response");
    (c, r)
}

fn round_trip(c: &mut TcpStream, msg: &str) {
    c.write_all(&ws::text(msg)).unwrap();
    let f = ws::read_frame(c).expect("echo");
    assert_eq!((f.opcode, f.payload.as_slice()), (1, msg.as_bytes()));
}

/// ABI 2.2: a C backend's `answer_hub` (found with WSY_HAS_FIELD) makes
/// its clients share one peer connection; other routes to the same peer
/// keep their own.
#[test]
fn c_backend_answers_a_hub() {
    let peer = TcpPeer::new();
    let b = route_bridge(
        &[
            format!("/feed tcp://{} newline", peer.addr),
            format!("/own tcp://{} newline", peer.addr),
        ],
        &["-c", "hub=/feed"],
    );
    let (mut a, r) = ask(&b, "/feed", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    let mut p = peer.accept();
    let (mut c, r) = ask(&b, "/feed", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    assert!(peer.accept_within(Duration::from_millis(100)).is_none());
    let (_own, r) = ask(&b, "/own", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    let _own_peer = peer.accept();
    p.write_all(b"to both\n").unwrap();
    for m in [&mut a, &mut c] {
        assert_eq!(ws::read_frame(m).unwrap().payload, b"to both\n");
    }
}

#[test]
fn c_backend_routes_by_path_and_rejects_otherwise() {
    let echo = peers::tcp_echo();
    // Found as backend_route.so in the plugin directory by `-b route`.
    let dir = plugin_dir(&[route_so(), framing_so()]);
    let b = start(&[
        "--plugin-dir".into(),
        s(&dir),
        "-b".into(),
        "route".into(),
        "-c".into(),
        format!("route=/echo tcp://{echo}"),
        "-c".into(),
        "route=/mirror mirror://".into(),
    ]);
    let (mut c, r) = ask(
        &b,
        "/echo",
        &["Sec-WebSocket-Protocol: chat, other", "X-Echo: seen-it"],
    );
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("chat"));
    assert_eq!(r.header("X-Seen"), Some("seen-it"));
    round_trip(&mut c, "through the tcp echo");

    let (mut m, r) = ask(&b, "/mirror?x=1", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), None);
    round_trip(&mut m, "mirrored");

    let (mut c, r) = ask(&b, "/elsewhere", &[]);
    assert_eq!(r.status, 403, "{}", r.head);
    assert_eq!(ws::read_body(&mut c, &r).unwrap(), b"forbidden\n");

    let (_c, r) = ask(&b, "/echo", &["Cookie: a=1; deny=yes"]);
    assert_eq!(r.status, 401, "{}", r.head);

    // The plugin's log lines carry its name as their target.
    let line = b.wait_log("query /elsewhere");
    assert!(line.contains("websocksy::plugin::backend_route"), "{line}");
    let line = b.wait_log("started with 2 route(s)");
    assert!(
        line.contains(" INFO ") && line.contains("websocksy::plugin::backend_route"),
        "{line}"
    );
}

#[test]
fn c_framing_selected_by_name() {
    let peer = TcpPeer::new();
    // From the plugin directory (every non-backend .so is loaded).
    let dir = plugin_dir(&[framing_so()]);
    let b = start(&[
        "--plugin-dir".into(),
        s(&dir),
        "-c".into(),
        peer.host_arg(),
        "-c".into(),
        "framing=semicolon".into(),
    ]);
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"ab;cd;").unwrap();
    p.write_all(b"e").unwrap();
    p.write_all(b"f;").unwrap();
    let got: Vec<(u8, Vec<u8>)> = (0..3)
        .map(|_| {
            let f = ws::read_frame(&mut c).unwrap();
            (f.opcode, f.payload)
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, b"ab".to_vec()),
            (1, b"cd".to_vec()),
            (1, b"ef".to_vec())
        ]
    );
    c.write_all(&ws::close(1000, "")).unwrap();
    drop(p);
    // state_free ran when the connection ended.
    let line = b.wait_log("semicolon state freed after 3 messages");
    assert!(line.contains("websocksy::plugin::framing_bad"), "{line}");

    // Its config, checked at start-up by the defaultpeer, and used.
    let peer = TcpPeer::new();
    let b = start(&[
        "--plugin".into(),
        s(&framing_so()),
        "-c".into(),
        peer.host_arg(),
        "-c".into(),
        "framing=semicolon".into(),
        "-c".into(),
        "framing-config=binary".into(),
    ]);
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    peer.accept().write_all(b"xy;").unwrap();
    let f = ws::read_frame(&mut c).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (2, &b"xy"[..]));

    let (code, _, err) = run_cli(&[
        "--plugin",
        &s(&framing_so()),
        "-c",
        "framing=semicolon",
        "-c",
        "framing-config=bogus",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("config must be text or binary"), "{err}");
}

/// Run with `args`; expect exit 2 and exactly one line on stderr, naming `file`.
fn startup_error(args: &[String], file: &str, want: &str) -> String {
    let (code, _out, err) = run_cli(args);
    assert_eq!(code, 2, "args {args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("websocksy: "), "{err}");
    assert!(lines[0].contains(file), "does not name {file}: {err}");
    assert!(lines[0].contains(want), "lacks {want:?}: {err}");
    lines[0].to_string()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

#[test]
fn startup_errors_name_the_file_and_exit_2() {
    let empty = plugin_dir(&[]);
    let e = s(&empty);
    // Missing files.
    startup_error(
        &args(&["--plugin-dir", &e, "--plugin", "/nonexistent/x.so"]),
        "/nonexistent/x.so",
        "cannot load plugin",
    );
    startup_error(
        &args(&["--plugin-dir", &e, "-b", "/nonexistent/backend_x.so"]),
        "/nonexistent/backend_x.so",
        "No such file",
    );
    startup_error(
        &args(&["--plugin-dir", &e, "-b", "nosuch"]),
        &e,
        "unknown backend 'nosuch'",
    );
    startup_error(
        &args(&["--plugin-dir", "/nonexistent/plugins"]),
        "/nonexistent/plugins",
        "plugin directory",
    );

    // Not a plugin: a shared object without the symbol, and junk.
    let nosym = build("nosym", "nosym", &[]);
    startup_error(
        &args(&["--plugin-dir", &e, "--plugin", &s(&nosym)]),
        &s(&nosym),
        "not a websocksy plugin (no websocksy_plugin_v2 symbol)",
    );
    let junk_dir = plugin_dir(&[]);
    let junk = junk_dir.join("junk.so");
    std::fs::write(&junk, b"this is not an ELF file\n").unwrap();
    startup_error(
        &args(&["--plugin-dir", &e, "--plugin", &s(&junk)]),
        &s(&junk),
        "cannot load plugin",
    );
    // The same junk found in the plugin directory.
    startup_error(
        &args(&["--plugin-dir", &s(&junk_dir)]),
        &s(&junk),
        "cannot load plugin",
    );

    // Version mismatches.
    let major = build(
        "badversion",
        "badmajor",
        &["-DTEST_MAJOR=1", "-DTEST_MINOR=0"],
    );
    startup_error(
        &args(&["--plugin-dir", &e, "--plugin", &s(&major)]),
        &s(&major),
        "built for ABI 1.0, host supports 2.2",
    );
    let minor = build(
        "badversion",
        "badminor",
        &["-DTEST_MAJOR=2", "-DTEST_MINOR=99"],
    );
    startup_error(
        &args(&["--plugin-dir", &e, "--plugin", &s(&minor)]),
        &s(&minor),
        "built for ABI 2.99, host supports 2.2",
    );
    // The next minor: a plugin that needs 2.3 is refused by this 2.2 host.
    let next = build(
        "badversion",
        "badnextminor",
        &["-DTEST_MAJOR=2", "-DTEST_MINOR=3"],
    );
    startup_error(
        &args(&["--plugin-dir", &e, "--plugin", &s(&next)]),
        &s(&next),
        "built for ABI 2.3, host supports 2.2",
    );

    // Configure failing: the config file's line, or the argument.
    let cfg = empty.join("w.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[core]\nbackend = {}\n\n[backend]\nroute = /x mirror://\nfail = boom\n",
            s(&route_so())
        ),
    )
    .unwrap();
    let line = startup_error(
        &args(&["--plugin-dir", &e, &s(&cfg)]),
        &format!("{}:6:", s(&cfg)),
        "boom",
    );
    assert!(line.contains("option 'fail' of backend 'route'"), "{line}");
    startup_error(
        &args(&[
            "--plugin-dir",
            &e,
            "-b",
            &s(&route_so()),
            "-c",
            "route=/x mirror://",
            "-c",
            "color=red",
        ]),
        "argument '-c color=red'",
        "unknown option 'color' for backend 'route'",
    );
    // start failing names the plugin file.
    startup_error(
        &args(&["--plugin-dir", &e, "-b", &s(&route_so())]),
        &s(&route_so()),
        "failed to start: no route configured",
    );
}

/// Upgrade to `path` and send one message the echo peer returns; expect a
/// close with 1011.
fn expect_1011(b: &Bridge, path: &str) {
    let (mut c, r) = ask(b, path, &[]);
    assert_eq!(r.status, 101, "{path}: {}", r.head);
    c.write_all(&ws::text("x")).unwrap();
    let (frames, close) = ws::read_until_close(&mut c).expect("close");
    assert!(frames.is_empty(), "{path}: {frames:?}");
    assert_eq!(close.close_code(), Some(1011), "{path}: {close:?}");
}

#[test]
fn misbehaving_framings_close_one_connection_with_1011() {
    let echo = peers::tcp_echo();
    let b = route_bridge(
        &[
            format!("/overrun tcp://{echo} overrun"),
            format!("/negative tcp://{echo} negative"),
            format!("/badop tcp://{echo} badop"),
            format!("/echo tcp://{echo}"),
        ],
        &[],
    );
    let (mut keep, r) = ask(&b, "/echo", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    round_trip(&mut keep, "before");
    expect_1011(&b, "/overrun");
    expect_1011(&b, "/negative");
    expect_1011(&b, "/badop");
    b.wait_log("framing 'overrun' returned 2 for 1 bytes");
    b.wait_log("framing 'negative' returned error -1");
    b.wait_log("framing 'badop' set invalid opcode 7");
    // The open connection and new ones are served as before.
    round_trip(&mut keep, "after");
    let (mut c, r) = ask(&b, "/echo", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    round_trip(&mut c, "new");
}

#[test]
fn slow_c_backend_does_not_delay_other_connections() {
    let b = route_bridge(
        &["/slow mirror://".into(), "/fast mirror://".into()],
        &["-c", "slow=/slow"],
    );
    let mut slow = b.connect();
    slow.write_all(ws::request("/slow", &[]).as_bytes())
        .unwrap();
    b.wait_log("query /slow");
    let t = Instant::now();
    let (mut fast, r) = ask(&b, "/fast", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    round_trip(&mut fast, "quick");
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "round trip took {took:?} while a query slept"
    );
    // The slow one is still waiting, then gets its answer.
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        std::io::Read::read(&mut slow, &mut byte).is_err(),
        "the slow query answered early"
    );
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = ws::read_response(&mut slow).expect("slow response");
    assert_eq!(r.status, 101, "{}", r.head);
    round_trip(&mut slow, "late");
}

/// A bridge to a fresh peer with `--plugin <so> -c framing=semicolon` and
/// `extra`; the peer writes `input`; the first `n` messages.
fn semicolon_messages(
    so: &Path,
    extra: &[&str],
    input: &[u8],
    n: usize,
) -> (Bridge, Vec<(u8, Vec<u8>)>) {
    let peer = TcpPeer::new();
    let mut a = args(&["--plugin", &s(so), "-c", "framing=semicolon", "-c"]);
    a.push(peer.host_arg());
    a.extend(extra.iter().map(|x| x.to_string()));
    let b = start(&a);
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    peer.accept().write_all(input).unwrap();
    let got = (0..n)
        .map(|_| {
            let f = ws::read_frame(&mut c).unwrap();
            (f.opcode, f.payload)
        })
        .collect();
    (b, got)
}

#[test]
fn c_framing_configure_sets_library_defaults() {
    // From the config file: another separator, binary by default.
    let dir = plugin_dir(&[]);
    let cfg = dir.join("f.cfg");
    std::fs::write(
        &cfg,
        "[framing:semicolon]\nseparator = |\nopcode = binary\n",
    )
    .unwrap();
    let (b, got) = semicolon_messages(&framing_so(), &[&s(&cfg)], b"ab|cd;e|", 2);
    assert_eq!(got, [(2, b"ab".to_vec()), (2, b"cd;e".to_vec())]);
    // configure was called once per option, in order, before any state.
    let first = b.wait_log("semicolon configured separator=|");
    assert!(first.contains("websocksy::plugin::framing_bad"), "{first}");
    b.wait_log("semicolon configured opcode=binary");
    let logs = b.logs();
    assert!(
        logs.find("separator=|") < logs.find("opcode=binary"),
        "{logs}"
    );

    // From the command line; the connection's framing-config overrides the
    // opcode. The defaultpeer makes a state at start-up to check that
    // config: configure must come first, or it would fail with WSY_ESTATE.
    let (_b, got) = semicolon_messages(
        &framing_so(),
        &[
            "--framing-option",
            "semicolon:separator=/",
            "--framing-option",
            "semicolon:opcode=binary",
            "-c",
            "framing-config=text",
        ],
        b"x/y/",
        2,
    );
    assert_eq!(got, [(1, b"x".to_vec()), (1, b"y".to_vec())]);
}

#[test]
fn c_framing_option_errors_exit_2() {
    let fso = s(&framing_so());
    let e = s(&plugin_dir(&[]));
    let base = |extra: &[&str]| {
        let mut a = args(&[
            "--plugin-dir",
            &e,
            "--plugin",
            &fso,
            "-c",
            "framing=semicolon",
        ]);
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    startup_error(
        &base(&["--framing-option", "semicolon:color=red"]),
        "argument '--framing-option semicolon:color=red'",
        "unknown option 'color' for framing 'semicolon'",
    );
    let cfg = plugin_dir(&[]).join("bad.cfg");
    std::fs::write(&cfg, "[framing:semicolon]\nopcode = text\nseparator = ab\n").unwrap();
    startup_error(
        &base(&[&s(&cfg)]),
        &format!("{}:3:", s(&cfg)),
        "invalid value 'ab' for option 'separator' of framing 'semicolon': separator must be one byte",
    );
    // A framing whose descriptor has no configure takes no options.
    startup_error(
        &base(&["--framing-option", "overrun:k=v"]),
        "argument '--framing-option overrun:k=v'",
        "framing 'overrun' takes no options (got 'k')",
    );
    startup_error(
        &base(&["--framing-option", "nosuch:k=v"]),
        "argument '--framing-option nosuch:k=v'",
        "unknown framing 'nosuch'",
    );
}

#[test]
fn framing_descriptor_without_configure_field_still_loads() {
    // Registered with size = offsetof(wsy_framing, configure), as plugins
    // built before the field was appended: it loads and frames as before.
    let old = build("framing_bad", "framing_old", &["-DTEST_OLD_SIZE"]);
    let (_b, got) = semicolon_messages(&old, &[], b"ab;cd;", 2);
    assert_eq!(got, [(1, b"ab".to_vec()), (1, b"cd".to_vec())]);
    // Its configure pointer lies past `size`: the host must not call it.
    let e = s(&plugin_dir(&[]));
    startup_error(
        &args(&[
            "--plugin-dir",
            &e,
            "--plugin",
            &s(&old),
            "--framing-option",
            "semicolon:separator=|",
        ]),
        "argument '--framing-option semicolon:separator=|'",
        "framing 'semicolon' takes no options (got 'separator')",
    );
}

#[test]
fn cleanup_runs_at_exit() {
    // A backend registered by a library loaded with --plugin, chosen by name.
    let dir = plugin_dir(&[]);
    let mut b = start(&[
        "--plugin-dir".into(),
        s(&dir),
        "--plugin".into(),
        s(&route_so()),
        "-b".into(),
        "route".into(),
        "-c".into(),
        "route=/m mirror://".into(),
    ]);
    let (mut c, r) = ask(&b, "/m", &[]);
    assert_eq!(r.status, 101, "{}", r.head);
    round_trip(&mut c, "hello");
    drop(c);
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(Duration::from_secs(10)).success());
    let line = b.wait_log("cleanup");
    assert!(line.contains("websocksy::plugin::backend_route"), "{line}");
}
