//! The C plugins of `plugins/c/` against the real binary and real peers.
//!
//! The plugins are compiled from the test, once per run, with the system C
//! compiler (`$CC`, default `cc`) and the flags every C example must pass
//! (`-std=c99 -Wall -Wextra -Werror -pedantic -shared -fPIC`), into a
//! scratch directory the bridge loads with `--plugin-dir` (wasmtime's
//! `wasm-c-examples.rs` pattern):
//!
//! - `backend_example.so`: `-b example`, routes by the longest path prefix
//!   (`route = PREFIX URL`, `default = URL`), 404 when nothing matches,
//!   `?framing=NAME` picks the framing, logs the User-Agent at debug;
//! - `framing_netstring.so`: framing `netstring`, `LEN:DATA,` → one message
//!   of DATA, `framing-config = max=N`, 1011 on a malformed stream.
//!
//! One test builds both with AddressSanitizer and runs the (uninstrumented)
//! bridge with libasan preloaded. No compiler, or no libasan, is a failure
//! with a message saying what to install, never a skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{cc, compile_plugin, run_cli, temp_dir, Bridge, WAIT};

const ASAN_FLAGS: &[&str] = &["-fsanitize=address", "-fno-omit-frame-pointer", "-g"];
const PLUGINS: &[(&str, &str)] = &[
    ("backend_example.c", "backend_example.so"),
    ("framing_netstring.c", "framing_netstring.so"),
];
const INSTALL_HINT: &str =
    "install a C compiler with AddressSanitizer (Debian: apt-get install -y build-essential, \
                            which brings gcc and libasan8)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Panics (never skips) when the C compiler does not run.
fn check_cc() {
    let cc = cc();
    match Command::new(&cc[0])
        .args(&cc[1..])
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => {}
        r => panic!(
            "no C compiler: {cc:?} (from $CC, default cc) does not run ({r:?}). \
             The C plugin tests fail rather than skip without one: {INSTALL_HINT}"
        ),
    }
}

/// Compile every C plugin with `extra` flags into a fresh directory.
fn build_plugins(tag: &str, extra: &[&str]) -> PathBuf {
    check_cc();
    let dir = temp_dir(tag);
    let src = repo_root().join("plugins/c");
    for (c, so) in PLUGINS {
        compile_plugin(
            &src.join(c),
            &repo_root().join("include"),
            &dir.join(so),
            extra,
        );
    }
    dir
}

/// The plugins built once per run with the plain flags.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_plugins("c-plugins", &[]))
}

fn dir_arg(dir: &Path) -> String {
    dir.to_str().expect("temp dir path is UTF-8").to_string()
}

/// `--plugin-dir <plugins> -b example` with these `-c` options.
fn example_args(dir: &Path, options: &[String]) -> Vec<String> {
    let mut args = vec![
        "--plugin-dir".to_string(),
        dir_arg(dir),
        "-b".into(),
        "example".into(),
    ];
    for o in options {
        args.push("-c".into());
        args.push(o.clone());
    }
    args
}

fn start_example(options: &[String]) -> Bridge {
    let args = example_args(plugin_dir(), options);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Bridge::start(&args)
}

fn route(prefix: &str, peer: impl std::fmt::Display) -> String {
    format!("route={prefix} tcp://{peer}")
}

/// Read data frames until their payloads add up to `len` bytes; the bytes.
fn read_echo(s: &mut std::net::TcpStream, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        let f = ws::read_frame(s).expect("read echo");
        assert!(f.opcode == 1 || f.opcode == 2, "unexpected frame {f:?}");
        got.extend_from_slice(&f.payload);
    }
    got
}

fn data(f: &Frame) -> (u8, &[u8]) {
    (f.opcode, f.payload.as_slice())
}

/// Upgrade to `path`, check the bridge connected to `peer`, and echo one
/// message through it.
fn assert_routed(b: &Bridge, path: &str, peer: &TcpPeer) {
    let mut s = b.connect();
    ws::upgrade(&mut s, path, &["User-Agent: websocksy-c-test/1.0"]);
    peers::echo_on(peer.accept());
    let msg = format!("to {path}");
    s.write_all(&ws::text(&msg)).unwrap();
    assert_eq!(read_echo(&mut s, msg.len()), msg.as_bytes(), "{path}");
    s.write_all(&ws::close(1000, "")).unwrap();
}

#[test]
fn example_backend_routes_by_longest_path_prefix() {
    let (a, ab, fallback) = (TcpPeer::new(), TcpPeer::new(), TcpPeer::new());
    let b = start_example(&[
        route("/a", a.addr),
        route("/ab", ab.addr),
        format!("default=tcp://{}", fallback.addr),
    ]);
    for (path, peer) in [
        ("/ab/x", &ab),
        ("/a/x", &a),
        ("/a", &a),
        ("/abc?x=1", &ab),
        ("/", &fallback),
        ("/b/a", &fallback),
    ] {
        assert_routed(&b, path, peer);
    }
    // host->log at debug, under the plugin's name (RUST_LOG=debug unless
    // the run says otherwise).
    if std::env::var_os("WEBSOCKSY_TEST_LOG").is_none() {
        b.wait_log("User-Agent: websocksy-c-test/1.0");
    }
}

#[test]
fn example_backend_routes_two_echo_peers_without_default() {
    let (one, two) = (TcpPeer::new(), TcpPeer::new());
    let b = start_example(&[route("/one", one.addr), route("/two", two.addr)]);
    for _ in 0..3 {
        assert_routed(&b, "/two/x", &two);
        assert_routed(&b, "/one", &one);
    }
}

#[test]
fn example_backend_rejects_unrouted_path_with_404_and_reason() {
    let a = TcpPeer::new();
    let b = start_example(&[route("/a", a.addr)]);
    let mut s = b.connect();
    s.write_all(ws::request("/elsewhere", &[]).as_bytes())
        .unwrap();
    let r = ws::read_response(&mut s).expect("read response");
    assert_eq!(r.status, 404, "{}", r.head);
    let body = ws::read_body(&mut s, &r).expect("read body");
    assert!(
        String::from_utf8_lossy(&body).contains("no route for this path"),
        "body {:?}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn example_backend_rejects_unknown_framing_with_400() {
    let a = TcpPeer::new();
    let b = start_example(&[route("/a", a.addr)]);
    let mut s = b.connect();
    s.write_all(ws::request("/a?framing=no-such-framing", &[]).as_bytes())
        .unwrap();
    let r = ws::read_response(&mut s).expect("read response");
    assert_eq!(r.status, 400, "{}", r.head);
    let body = ws::read_body(&mut s, &r).expect("read body");
    assert!(
        String::from_utf8_lossy(&body).contains("unknown framing"),
        "{body:?}"
    );
}

/// A bridge with the example backend routing `/ns` to a [`TcpPeer`], a
/// client upgraded to `/ns?framing=netstring`, and the peer's connection.
fn netstring_setup() -> (Bridge, std::net::TcpStream, std::net::TcpStream, TcpPeer) {
    let peer = TcpPeer::new();
    let b = start_example(&[route("/ns", peer.addr)]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/ns?framing=netstring", &[]);
    let p = peer.accept();
    p.set_nodelay(true).unwrap();
    (b, s, p, peer)
}

#[test]
fn netstring_split_across_writes_arrives_as_messages() {
    let (_b, mut s, mut p, _peer) = netstring_setup();
    for chunk in ["5:hel", "lo,3:a", "bc,"] {
        p.write_all(chunk.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(data(&ws::read_frame(&mut s).unwrap()), (1, &b"hello"[..]));
    assert_eq!(data(&ws::read_frame(&mut s).unwrap()), (1, &b"abc"[..]));

    // Byte by byte: every state of the parser waits for more.
    ws::write_bytewise(&mut p, b"4:wxyz,");
    assert_eq!(data(&ws::read_frame(&mut s).unwrap()), (1, &b"wxyz"[..]));

    // Invalid UTF-8 is binary; an empty netstring sends nothing; several
    // netstrings in one write are several messages.
    p.write_all(b"2:\xff\xfe,0:,4:h\xc3\xa9!,").unwrap();
    assert_eq!(
        data(&ws::read_frame(&mut s).unwrap()),
        (2, &b"\xff\xfe"[..])
    );
    assert_eq!(
        data(&ws::read_frame(&mut s).unwrap()),
        (1, "hé!".as_bytes())
    );

    // The client's messages reach the peer unframed.
    s.write_all(&ws::text("raw")).unwrap();
    assert_eq!(peers::read_n(&mut p, 3), b"raw");

    // The peer closes mid-netstring: the fragment is dropped, close 1000.
    p.write_all(b"9:trunc").unwrap();
    drop(p);
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    assert!(frames.is_empty(), "the fragment was sent: {frames:?}");
    assert_eq!(close.close_code(), Some(1000));
}

#[test]
fn netstring_malformed_length_closes_1011() {
    for bad in [
        &b"x:abc,"[..],
        b"3:abc;",
        b"05:hello,",
        b"1234567890123456789:",
    ] {
        let (_b, mut s, mut p, _peer) = netstring_setup();
        p.write_all(b"2:ok,").unwrap();
        assert_eq!(data(&ws::read_frame(&mut s).unwrap()), (1, &b"ok"[..]));
        p.write_all(bad).unwrap();
        let (frames, close) = ws::read_until_close(&mut s).unwrap();
        assert_eq!(
            close.close_code(),
            Some(1011),
            "{:?}: frames {frames:?}",
            String::from_utf8_lossy(bad)
        );
        // `3:abc;` sends abc before it finds the missing comma.
        assert!(frames.iter().all(|f| f.payload == b"abc"), "{frames:?}");
    }
}

#[test]
fn netstring_with_the_default_backend_and_max_config() {
    let peer = TcpPeer::new();
    let dir = dir_arg(plugin_dir());
    let host = peer.host_arg();
    let b = Bridge::start(&[
        "--plugin-dir",
        &dir,
        "-c",
        &host,
        "-c",
        "framing=netstring",
        "-c",
        "framing-config=max=4",
    ]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"4:abcd,").unwrap();
    assert_eq!(data(&ws::read_frame(&mut s).unwrap()), (1, &b"abcd"[..]));
    p.write_all(b"5:hello,").unwrap();
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(close.close_code(), Some(1011));
}

/// Exit status 2 with `names` on stderr.
fn assert_startup_error(args: &[String], names: &[&str]) {
    let (code, _out, err) = run_cli(args);
    assert_eq!(code, 2, "{args:?}: status {code}, stderr {err:?}");
    for n in names {
        assert!(
            err.contains(n),
            "{args:?}: stderr does not name {n:?}: {err:?}"
        );
    }
}

fn listen_args() -> Vec<String> {
    ["-p", "0", "-l", "127.0.0.1"].map(String::from).to_vec()
}

#[test]
fn example_backend_configure_errors_exit_2() {
    let dir = plugin_dir();
    let mut args = listen_args();
    args.extend(example_args(dir, &["bogus=1".into()]));
    assert_startup_error(&args, &["bogus"]);

    let mut args = listen_args();
    args.extend(example_args(dir, &["route=nospace".into()]));
    assert_startup_error(&args, &["route", "PREFIX URL"]);
}

#[test]
fn netstring_bad_config_is_a_startup_error() {
    for config in [
        "framing-config=max=abc",
        "framing-config=max=0",
        "framing-config=size=3",
    ] {
        let mut args = listen_args();
        args.extend(
            [
                "--plugin-dir",
                &dir_arg(plugin_dir()),
                "-c",
                "host=tcp://127.0.0.1:9",
                "-c",
                "framing=netstring",
                "-c",
                config,
            ]
            .map(String::from),
        );
        assert_startup_error(&args, &["max=N"]);
    }
}

/// The path of libasan for `cc`, or a panic saying what to install.
fn libasan() -> String {
    let cc = cc();
    let o = Command::new(&cc[0])
        .args(&cc[1..])
        .arg("-print-file-name=libasan.so")
        .output()
        .expect("run cc -print-file-name");
    let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // Without it, cc prints the bare name back.
    assert!(
        Path::new(&path).is_absolute() && Path::new(&path).exists(),
        "libasan not found ({cc:?} -print-file-name=libasan.so printed {path:?}): {INSTALL_HINT}"
    );
    path
}

#[test]
fn plugins_built_with_asan_run_clean_under_traffic() {
    let libasan = libasan();
    let dir = build_plugins("c-plugins-asan", ASAN_FLAGS);
    let echo = peers::tcp_echo();
    let ns = TcpPeer::new();
    let mut args = listen_args();
    args.extend(example_args(
        &dir,
        &[
            route("/ns", ns.addr),
            route("/echo", echo),
            route("/e", echo),
        ],
    ));
    let mut b = Bridge::spawn_env(
        &args,
        &[
            ("LD_PRELOAD", libasan.as_str()),
            // Any memory error aborts the bridge at once.
            (
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=1:halt_on_error=1",
            ),
            // Leaks are only reported, not fatal: the host leaks its
            // library handles on purpose (plugins stay loaded until exit).
            // The report is searched for the plugins' own leaks below.
            ("LSAN_OPTIONS", "exitcode=0"),
        ],
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", b.pid())).expect("read maps");
    assert!(
        maps.contains("libasan"),
        "libasan is not loaded in the bridge"
    );

    let traffic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..40 {
            asan_round(&b, i, &ns);
        }
    }));
    if let Err(e) = traffic {
        // Most likely ASan stopped the bridge: show its report.
        let _ = b.wait_log_for("SUMMARY: AddressSanitizer", Duration::from_secs(2));
        let why = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!(
            "traffic through the ASan-built plugins failed ({}); the bridge's log:\n{}",
            why.unwrap_or_default(),
            asan_excerpt(&b.logs())
        );
    }
    b.signal(libc::SIGTERM);
    let status = b.wait_exit(WAIT * 2);
    let logs = b.logs();
    assert!(
        !logs.contains("ERROR: AddressSanitizer"),
        "AddressSanitizer reported:\n{}",
        asan_excerpt(&logs)
    );
    assert!(
        status.success(),
        "bridge exited with {status} under ASan; log:\n{}",
        asan_excerpt(&logs)
    );
    let leaks = plugin_leaks(&logs);
    assert!(
        leaks.is_empty(),
        "the C plugins leaked (a state_new without state_free?):\n{}",
        leaks.join("\n\n")
    );
}

/// One round of traffic through both plugins: two routed echoes, a 404,
/// and a netstring connection (state_new ... state_free) that ends one of
/// four ways.
fn asan_round(b: &Bridge, i: usize, ns: &TcpPeer) {
    // The example backend: routed, echoed; a long User-Agent for the log line.
    let mut s = b.connect();
    let path = if i % 2 == 1 { "/e" } else { "/echo/x" };
    ws::upgrade(
        &mut s,
        path,
        &[&format!("User-Agent: asan-{i}-{}", "x".repeat(i * 7))],
    );
    let msg = format!("message {i}");
    s.write_all(&ws::text(&msg)).unwrap();
    assert_eq!(read_echo(&mut s, msg.len()), msg.as_bytes());
    s.write_all(&ws::close(1000, "")).unwrap();

    // A 404 from the backend.
    let mut r = b.connect();
    r.write_all(ws::request("/nowhere", &[]).as_bytes())
        .unwrap();
    assert_eq!(ws::read_response(&mut r).unwrap().status, 404);

    // netstring: messages of growing size, split across writes.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/ns?framing=netstring", &[]);
    let mut p = ns.accept();
    p.set_nodelay(true).unwrap();
    let payload = "y".repeat(i * 37);
    p.write_all(format!("{}:{payload},3:ab", payload.len()).as_bytes())
        .unwrap();
    p.write_all(b"c,").unwrap();
    if !payload.is_empty() {
        assert_eq!(ws::read_frame(&mut s).unwrap().payload, payload.as_bytes());
    }
    assert_eq!(ws::read_frame(&mut s).unwrap().payload, b"abc");
    match i % 4 {
        0 => {
            // A malformed length: 1011.
            p.write_all(b"z:").unwrap();
            let (_, close) = ws::read_until_close(&mut s).unwrap();
            assert_eq!(close.close_code(), Some(1011));
        }
        1 => {
            // The peer leaves mid-netstring: finish drops the rest, 1000.
            p.write_all(b"10:abc").unwrap();
            drop(p);
            let (_, close) = ws::read_until_close(&mut s).unwrap();
            assert_eq!(close.close_code(), Some(1000));
        }
        2 => {
            // The client leaves first.
            s.write_all(&ws::close(1000, "")).unwrap();
            let (_, close) = ws::read_until_close(&mut s).unwrap();
            assert_eq!(close.close_code(), Some(1000));
        }
        _ => drop(s), // the client vanishes without a close frame
    }
}

/// The bridge's log from the first sanitizer line on (else its last 40 lines).
fn asan_excerpt(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    let from = lines
        .iter()
        .position(|l| l.contains("ERROR: AddressSanitizer") || l.contains("ERROR: LeakSanitizer"))
        .unwrap_or(lines.len().saturating_sub(40));
    lines[from..].join("\n")
}

/// LeakSanitizer's reports ("Direct leak of ..." up to a blank line) whose
/// stack passes through one of the C plugins.
fn plugin_leaks(logs: &str) -> Vec<String> {
    let mut reports = Vec::new();
    let mut current: Option<String> = None;
    for line in logs.lines() {
        if line.starts_with("Direct leak") || line.starts_with("Indirect leak") {
            reports.extend(current.replace(line.to_string()));
        } else if line.trim().is_empty() {
            reports.extend(current.take());
        } else if let Some(r) = current.as_mut() {
            r.push('\n');
            r.push_str(line);
        }
    }
    reports.extend(current);
    reports.retain(|r| r.contains("framing_netstring") || r.contains("backend_example"));
    reports
}
