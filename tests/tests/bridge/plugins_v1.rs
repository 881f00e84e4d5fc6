//! The original websocksy's plugins (API version 1) loaded unmodified:
//! small v1-style plugins in `tests/plugins/v1/`, written against a v1
//! header reproduced from the published ABI facts, compiled the way the
//! original's makefile built plugins (plus our warning flags) and loaded
//! from a plugin directory.
//!
//! Loading them at all is the export test: the framing plugins call
//! `core_register_framing`/`core_framing` from their constructors, so
//! `dlopen(RTLD_NOW)` only succeeds if the executable exports them.
//!
//! Test plugins:
//! - `backend_v1echo.so`: backend `v1echo` (`target`, `port`, `transport`,
//!   `framing`, `framing-config`, `protocol`, `report`); `/reject` answers
//!   host NULL, `/slow...` sleeps 2 s; `X-V1-Framing` and cookie `cfg`
//!   override the framing; `backend_v1two.so` is the same built with an
//!   `init` that returns 2;
//! - `backend_v1noconf.so`: no `configure`; the path names the peer;
//! - `framing_v1lines.so`: `v1lines` (lines; `ERR` → -1, `PING` → ping
//!   opcode, `B...` keeps the preset binary opcode, `discard-empty`);
//! - `framing_v1fixed.so`: `fixedlength`, the original plugin's logic;
//! - `framing_v1wrap.so`: `v1wrap`, delegating to `core_framing(NAME)`.
//!
//! And the original's own four plugins, byte for byte
//! (`tests/fixtures/websocksy-v1/`, see its README), built with the
//! original makefile's flags: `backend_file`, `framing_dynamic32`,
//! `framing_fixedlength` and `framing_json` (their tests are in
//! `plugins_v1/original.rs`).

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{cc, compile_plugin, run_cli, temp_dir, Bridge};

fn v1_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/v1")
}

/// The original websocksy's sources: `websocksy.h` and `plugins/`.
fn original_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/websocksy-v1")
}

/// `<out>.so`, made by `make` the first time it is asked for in a run.
fn build(out: &str, make: impl FnOnce(&Path)) -> PathBuf {
    static BUILT: Mutex<Option<(PathBuf, HashMap<String, PathBuf>)>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, built) = built.get_or_insert_with(|| (temp_dir("plugins-v1-build"), HashMap::new()));
    if let Some(p) = built.get(out) {
        return p.clone();
    }
    let so = dir.join(format!("{out}.so"));
    make(&so);
    built.insert(out.to_string(), so.clone());
    so
}

/// The original's `plugins/<name>.c`, built as its makefile built it
/// (`$(CC) -fPIC -g -I../ -shared`): its code predates our warning flags,
/// and the point is to load it as it shipped.
fn build_original(name: &str, so: &Path) {
    let cc = cc();
    let mut cmd = Command::new(&cc[0]);
    cmd.args(&cc[1..])
        .args(["-fPIC", "-g", "-shared", "-I"])
        .arg(original_dir())
        .arg("-o")
        .arg(so)
        .arg(original_dir().join(format!("plugins/{name}.c")));
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?} (set $CC to a C compiler): {e}"));
    assert!(
        o.status.success(),
        "compiling the original's {name}.c failed (it needs the nettle headers): {cmd:?}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A plugin by name: `original/NAME` is the original's `plugins/NAME.c`,
/// anything else a test plugin of `tests/plugins/v1/`.
fn so(name: &str) -> PathBuf {
    if let Some(orig) = name.strip_prefix("original/") {
        return build(&format!("original_{orig}"), |so| build_original(orig, so));
    }
    let (src, defines): (&str, &[&str]) = match name {
        "backend_v1two" => ("backend_v1echo", &["-DV1ECHO_INIT=2"]),
        _ => (name, &[]),
    };
    build(name, |so| {
        compile_plugin(&v1_dir().join(format!("{src}.c")), &v1_dir(), so, defines)
    })
}

/// A fresh plugin directory holding these plugins (see [`so`]), each under
/// its source name (`original/NAME` as `NAME.so`).
fn plugin_dir(names: &[&str]) -> PathBuf {
    let dir = temp_dir("plugins-v1-dir");
    for n in names {
        let file = n.strip_prefix("original/").unwrap_or(n);
        std::fs::copy(so(n), dir.join(format!("{file}.so"))).expect("copy plugin");
    }
    dir
}

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

/// `--plugin-dir DIR` plus `args`.
fn start(dir: &Path, args: &[String]) -> Bridge {
    let mut all = vec!["--plugin-dir".to_string(), s(dir)];
    all.extend(args.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    Bridge::start(&all)
}

fn opts(pairs: &[&str]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|o| ["-c".to_string(), o.to_string()])
        .collect()
}

/// The `v1echo` backend sending everyone to `peer`, with these extra options.
fn v1echo(dir: &Path, peer: &TcpPeer, extra: &[&str]) -> Bridge {
    let mut args = vec!["-b".to_string(), "v1echo".into()];
    args.extend(opts(&[&format!("target=tcp://{}", peer.addr)]));
    args.extend(opts(extra));
    start(dir, &args)
}

fn frame(op: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    (op, payload.to_vec())
}

fn read_frames(s: &mut TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let f = ws::read_frame(s).expect("read frame");
            (f.opcode, f.payload)
        })
        .collect()
}

/// The peer sends `reads` one write each; the client must receive exactly
/// `want` as binary messages, in order.
fn expect_binary_frames(
    c: &mut TcpStream,
    p: &mut TcpStream,
    reads: &[&[u8]],
    want: &[&[u8]],
    what: &str,
) {
    for r in reads {
        p.write_all(r).unwrap();
    }
    let got = read_frames(c, want.len());
    let want: Vec<(u8, Vec<u8>)> = want.iter().map(|w| frame(2, w)).collect();
    assert_eq!(got, want, "{what}");
}

fn close_code(s: &mut TcpStream) -> Option<u16> {
    let (_, close): (Vec<Frame>, Frame) = ws::read_until_close(s).expect("read until close");
    close.close_code()
}

/// Send `request` and read the response head.
fn ask(b: &Bridge, request: &str) -> (TcpStream, ws::Response) {
    let mut c = b.connect();
    c.write_all(request.as_bytes()).expect("send request");
    let r = ws::read_response(&mut c).expect("read response");
    (c, r)
}

#[test]
fn v1_backend_and_v1_framing_bridge_traffic() {
    let dir = plugin_dir(&["backend_v1echo", "framing_v1lines"]);
    let peer = TcpPeer::new();
    let report = temp_dir("plugins-v1-report").join("report.txt");
    let mut b = v1echo(
        &dir,
        &peer,
        &[
            "framing=v1lines",
            "protocol=p2",
            &format!("report={}", s(&report)),
        ],
    );

    let mut c = b.connect();
    let r = ws::upgrade(
        &mut c,
        "/chat/?x=1",
        &[
            "Sec-WebSocket-Protocol: p1, p2",
            "Cookie: a=1; cfg=discard-empty",
            "X-Foo: bar",
        ],
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("p2"));
    let mut p = peer.accept();
    p.set_nodelay(true).unwrap();

    // Client to peer: untouched.
    c.write_all(&ws::text("to peer")).unwrap();
    assert_eq!(peers::read_n(&mut p, 7), b"to peer");

    // Peer to client through the v1 framing: text lines, the empty line
    // discarded (config from the cookie), "B..." left binary by the preset
    // opcode even after a text line of the same read, a line split across reads.
    p.write_all(b"one\n\nBin\ntw").unwrap();
    assert_eq!(
        read_frames(&mut c, 2),
        [frame(1, b"one\n"), frame(2, b"Bin\n")]
    );
    p.write_all(b"o\n").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(1, b"two\n")]);

    // What query saw: the endpoint with its query, the offers, only the
    // "other" headers, and a websocket struct as the original filled it.
    let seen = std::fs::read_to_string(&report).expect("report");
    let lines: Vec<&str> = seen.lines().collect();
    for want in [
        "endpoint=/chat/?x=1",
        "protocols=2",
        "protocol=p1",
        "protocol=p2",
        "headers=3",
        "header=Host: localhost",
        "header=Cookie: a=1; cfg=discard-empty",
        "header=X-Foo: bar",
        "ws.state=1",
        "ws.request_path=/chat/?x=1",
        "ws.websocket_version=13",
        &format!("ws.socket_key={}", ws::KEY),
        "ws.headers=3",
        "ws.protocols=2",
        "ws.aliased=1",
        "ws.peer_host=(null)",
    ] {
        assert!(
            lines.contains(&want),
            "{want:?} missing from the query report:\n{seen}"
        );
    }
    assert!(
        !seen.contains("Upgrade") && !seen.contains("Sec-WebSocket"),
        "consumed headers leaked:\n{seen}"
    );

    // The NULL-data cleanup call when the connection closes.
    c.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(close_code(&mut c), Some(1000));
    drop((c, p));
    b.wait_log("v1lines: cleanup lines=4 config=discard-empty");

    // A Rust framing picked by the v1 backend through core_framing().
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &["X-V1-Framing: newline", "Cookie: cfg=lf"]);
    let mut p = peer.accept();
    p.write_all(b"a\nb\n").unwrap();
    assert_eq!(read_frames(&mut c, 2), [frame(1, b"a\n"), frame(1, b"b\n")]);

    // cleanup() at shutdown, after the connections are gone.
    b.signal(libc::SIGINT);
    close_code(&mut c);
    drop((c, p));
    assert!(b.wait_exit(Duration::from_secs(15)).success());
    let seen = std::fs::read_to_string(&report).expect("report");
    assert_eq!(seen.lines().last(), Some("cleanup"), "{seen}");
}

#[test]
fn v1_framing_registered_by_constructor_with_the_default_backend() {
    let dir = plugin_dir(&["framing_v1lines", "framing_v1fixed"]);
    let peer = TcpPeer::new();
    let b = start(&dir, &opts(&[&peer.host_arg(), "framing=v1lines"]));
    // The constructor registered a placeholder, then the real function.
    b.wait_log("Replacing framing v1lines");
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"x\ny\nrest").unwrap();
    assert_eq!(read_frames(&mut c, 2), [frame(1, b"x\n"), frame(1, b"y\n")]);
    drop((c, p));
    // No config: the plugin sees "", never NULL (the original's plugins
    // read it unchecked).
    let line = b.wait_log("v1lines: cleanup lines=2 config=");
    assert!(line.trim_end().ends_with("config="), "{line}");

    // The original's fixedlength logic under its own name (spec case 26).
    for (config, reads, want) in [
        (
            "4",
            &[&b"abcdefghij"[..], b"kl"][..],
            &[&b"abcd"[..], b"efgh", b"ijkl"][..],
        ),
        ("0x3", &[b"abcdef"], &[b"abc", b"def"]),
        ("0", &[b"whatever"], &[b"whatever"]),
    ] {
        let peer = TcpPeer::new();
        let b = start(
            &dir,
            &opts(&[
                &peer.host_arg(),
                "framing=fixedlength",
                &format!("framing-config={config}"),
            ]),
        );
        let mut c = b.connect();
        ws::upgrade(&mut c, "/", &[]);
        let mut p = peer.accept();
        p.set_nodelay(true).unwrap();
        expect_binary_frames(
            &mut c,
            &mut p,
            reads,
            want,
            &format!("fixedlength {config}"),
        );
    }
}

#[test]
fn v1_framing_errors_cost_one_connection() {
    let dir = plugin_dir(&["framing_v1lines"]);
    let peer = TcpPeer::new();
    let b = start(&dir, &opts(&[&peer.host_arg(), "framing=v1lines"]));
    // A negative return (the original hung) and a non-data opcode.
    for bad in [&b"ok\nERR\n"[..], b"PING\n"] {
        let mut c = b.connect();
        ws::upgrade(&mut c, "/", &[]);
        let mut p = peer.accept();
        p.write_all(bad).unwrap();
        assert_eq!(
            close_code(&mut c),
            Some(1011),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // The bridge keeps serving.
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"fine\n").unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(1, b"fine\n")]);
}

/// v1 plugins were written for one thread: with two event loops framing
/// at once, the host still never lets two calls into them overlap (the
/// `check-overlap` config fails a call that finds another one inside).
#[test]
fn v1_framing_calls_never_overlap_across_loops() {
    let dir = plugin_dir(&["framing_v1lines"]);
    let echo = format!("host=tcp://{}", peers::tcp_echo());
    let mut args = opts(&[&echo, "framing=v1lines", "framing-config=check-overlap"]);
    args.extend(["--threads".to_string(), "2".to_string()]);
    let b = start(&dir, &args);
    let clients: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut c = b.connect();
            ws::upgrade(&mut c, "/", &[]);
            c
        })
        .collect();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                for n in 0..15 {
                    let line = format!("client {i} line {n}\n");
                    c.write_all(&ws::text(&line)).unwrap();
                    assert_eq!(read_frames(&mut c, 1), [frame(1, line.as_bytes())]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("every line echoed, framed, in order");
    }
    assert_eq!(b.count_log("two calls at once"), 0, "{}", b.logs());
    // Both loops framed: the sessions were spread.
    let logs = b.logs();
    let loops: std::collections::BTreeSet<&str> = logs
        .lines()
        .filter(|l| l.contains(" open"))
        .filter_map(|l| l.split(" loop ").nth(1))
        .filter_map(|r| r.split(']').next())
        .collect();
    assert_eq!(loops.len(), 2, "{}", b.logs());
}

#[test]
fn v1_framing_delegates_through_core_framing() {
    let dir = plugin_dir(&["framing_v1wrap", "framing_v1fixed"]);
    // To a Rust framing (a trampoline), with its config.
    let peer = TcpPeer::new();
    let b = start(
        &dir,
        &opts(&[
            &peer.host_arg(),
            "framing=v1wrap",
            "framing-config=newline:lf",
        ]),
    );
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"a\nb\n").unwrap();
    assert_eq!(read_frames(&mut c, 2), [frame(1, b"a\n"), frame(1, b"b\n")]);
    drop((c, p));
    // The inner state went with the trampoline's NULL-data call.
    b.wait_log("v1wrap: cleanup inner=cleared");

    // To another v1 plugin's function (core_framing returns it as is).
    let peer = TcpPeer::new();
    let b = start(
        &dir,
        &opts(&[
            &peer.host_arg(),
            "framing=v1wrap",
            "framing-config=fixedlength:2",
        ]),
    );
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"abcd").unwrap();
    assert_eq!(read_frames(&mut c, 2), [frame(2, b"ab"), frame(2, b"cd")]);

    // An unknown name is auto.
    let peer = TcpPeer::new();
    let b = start(
        &dir,
        &opts(&[
            &peer.host_arg(),
            "framing=v1wrap",
            "framing-config=nonesuch",
        ]),
    );
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    p.write_all("héllo".as_bytes()).unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(1, "héllo".as_bytes())]);
}

#[test]
fn v1_backend_without_a_host_is_500() {
    let dir = plugin_dir(&["backend_v1echo"]);
    let peer = TcpPeer::new();
    let b = v1echo(&dir, &peer, &[]);
    let (_c, r) = ask(&b, &ws::request("/reject", &[]));
    assert_eq!(r.status, 500, "{}", r.head);

    // A backend without configure works without options.
    let dir = plugin_dir(&["backend_v1noconf"]);
    let echo = peers::tcp_echo();
    let b = start(&dir, &["-b".into(), "v1noconf".into()]);
    let mut c = b.connect();
    ws::upgrade(&mut c, &format!("/{echo}"), &[]);
    c.write_all(&ws::text("hi")).unwrap();
    assert_eq!(read_frames(&mut c, 1), [frame(1, b"hi")]);
    let (_c, r) = ask(&b, &ws::request("/", &[]));
    assert_eq!(r.status, 500, "{}", r.head);
}

#[test]
fn slow_v1_query_does_not_stall_the_loop() {
    let dir = plugin_dir(&["backend_v1echo"]);
    let echo = peers::tcp_echo();
    let b = start(
        &dir,
        &[
            "-b".into(),
            "v1echo".into(),
            "-c".into(),
            format!("target=tcp://{echo}"),
        ],
    );
    let started = Instant::now();
    let mut slow = b.connect();
    slow.write_all(ws::request("/slow", &[]).as_bytes())
        .unwrap();
    b.wait_log("v1echo: query /slow");
    // While the query sleeps on a worker, the loop answers others.
    let (_c, r) = ask(&b, "THIS IS NOT HTTP AT ALL\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a 400 took {:?}",
        started.elapsed()
    );
    let r = ws::read_response(&mut slow).expect("slow response");
    assert_eq!(r.status, 101, "{}", r.head);
    assert!(started.elapsed() >= Duration::from_secs(2));
    slow.write_all(&ws::text("late")).unwrap();
    assert_eq!(read_frames(&mut slow, 1), [frame(1, b"late")]);
}

#[test]
fn v1_backend_start_up_errors() {
    let dir = plugin_dir(&["backend_v1echo", "backend_v1two", "backend_v1noconf"]);
    let base = ["-p", "0", "-l", "127.0.0.1", "--plugin-dir", &s(&dir)];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        run_cli(&args)
    };

    let (code, _, err) = run(&[
        "-b",
        "v1echo",
        "-c",
        "target=tcp://127.0.0.1:9",
        "-c",
        "bogus=1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("argument '-c bogus=1': backend 'v1echo' rejected option 'bogus'"),
        "{err}"
    );

    let file = temp_dir("plugins-v1-conf").join("v1.conf");
    std::fs::write(&file, format!("[core]\nbackend = v1echo\nplugin-dir = {}\n[backend]\ntarget = tcp://127.0.0.1:9\nbogus = 1\n", s(&dir)))
        .unwrap();
    let (code, _, err) = run_cli(&[s(&file)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:6: backend 'v1echo' rejected option 'bogus'",
            s(&file)
        )),
        "{err}"
    );

    let (code, _, err) = run(&["-b", "v1two"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("init() returned 2"), "{err}");

    let (code, _, err) = run(&["-b", "v1noconf", "-c", "k=v"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backend 'v1noconf' takes no options"), "{err}");
}

mod original;
