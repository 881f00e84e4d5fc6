//! Examples taken from the README itself and used as a user would: the
//! "Writing a backend in C" example, built with the command it gives, and
//! the noVNC command line, against a client that behaves like noVNC.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use websocksy_tests::peers;
use websocksy_tests::ws;
use websocksy_tests::{temp_dir, Bridge};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("read README.md")
}

/// The first fenced block of `lang` after `heading` in README.md.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme = readme();
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let fence = format!("```{lang}\n");
    let start = readme[at..].find(&fence).expect("a code block") + at + fence.len();
    let len = readme[start..].find("```").expect("a closed code block");
    readme[start..start + len].to_string()
}

#[test]
fn readme_c_backend_builds_with_its_command_and_bridges() {
    let echo = peers::tcp_echo();
    let source = readme_block("### Writing a backend in C", "c")
        .replace("tcp://127.0.0.1:5900", &format!("tcp://{echo}"));
    assert!(
        source.lines().count() <= 40,
        "the example should stay about 30 lines"
    );
    let dir = temp_dir("readme-c");
    std::fs::write(dir.join("hello.c"), source).unwrap();
    // The README's command line, run from the repository root.
    let command = readme_block("### Writing a backend in C", "sh");
    let cc_line = command
        .lines()
        .find(|l| l.starts_with("cc "))
        .expect("a cc command");
    let args: Vec<String> = cc_line
        .split_whitespace()
        .skip(1)
        .map(|a| match a {
            "-Iinclude" => format!("-I{}/../include", env!("CARGO_MANIFEST_DIR")),
            "backend_hello.so" => dir.join("backend_hello.so").display().to_string(),
            "hello.c" => dir.join("hello.c").display().to_string(),
            other => other.to_string(),
        })
        .collect();
    let cc = std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc).args(&args).output().expect("run cc");
    assert!(
        out.status.success(),
        "{cc} {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let so = dir.join("backend_hello.so");
    let b = Bridge::start(&["-b", so.to_str().unwrap()]);
    // Without the cookie: 401 and the reason.
    let mut s = b.connect();
    s.write_all(ws::request("/vnc", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut s).unwrap();
    assert_eq!(r.status, 401, "{}", r.head);
    // With it: bridged to the echo peer.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/vnc", &["Cookie: token=abc"]);
    s.write_all(&ws::text("through the README backend"))
        .unwrap();
    let f = ws::read_frame(&mut s).unwrap();
    assert_eq!(f.payload, b"through the README backend");
}

/// What a VNC server sends first, before the client says anything (RFC 6143 7.1.1).
const RFB_GREETING: &[u8] = b"RFB 003.008\n";
/// Where the README's noVNC command line says the VNC server is.
const README_VNC: &str = "host=tcp://127.0.0.1:5900";

/// A fake VNC server on port 0: sends the greeting on accept, then holds
/// the connection open, reading until the bridge closes it.
fn fake_vnc_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind fake VNC server");
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                if s.write_all(RFB_GREETING).is_ok() {
                    let _ = std::io::copy(&mut s, &mut std::io::sink());
                }
            });
        }
    });
    addr
}

/// Every inline command in README.md that bridges to the VNC server at
/// 127.0.0.1:5900, as the arguments of the binary (`cargo run --release --`
/// or `websocksy` removed).
fn readme_vnc_commands() -> Vec<Vec<String>> {
    let readme = readme();
    // Inline code spans: the odd pieces between backticks, fences left out.
    let prose: String = readme
        .split("```")
        .step_by(2)
        .collect::<Vec<_>>()
        .join("\n");
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.contains(README_VNC))
        .map(|span| {
            let args = span
                .strip_prefix("cargo run --release -- ")
                .or_else(|| span.strip_prefix("websocksy "))
                .unwrap_or_else(|| panic!("README command {span:?} runs something else"));
            assert!(
                !args.contains(['\'', '"', '\\']),
                "README command {span:?} needs a shell to split"
            );
            args.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

/// Read messages as noVNC does: text messages are dropped, binary payloads
/// form one byte stream; return the first `n` bytes of it.
fn read_binary_like_novnc(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let f = ws::read_frame(s).unwrap_or_else(|e| {
            panic!("no binary message (noVNC would wait forever); have {got:?}: {e}")
        });
        match f.opcode {
            2 | 0 => got.extend_from_slice(&f.payload),
            1 => {} // noVNC: "Ignoring text message"
            op => panic!("unexpected frame with opcode {op}: {f:?}"),
        }
    }
    got
}

/// Connect a WebSocket client through a bridge started with `args`
/// pointed at a fresh fake VNC server.
fn through_bridge_to_fake_vnc(args: &[String]) -> (Bridge, TcpStream) {
    let vnc = fake_vnc_server();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace(README_VNC, &format!("host=tcp://{vnc}")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Bridge::start(&args);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/websockify", &[]);
    (b, s)
}

#[test]
fn readme_novnc_command_delivers_the_vnc_greeting_as_binary() {
    let commands = readme_vnc_commands();
    assert!(
        !commands.is_empty(),
        "README suggests no command line for a VNC server at {README_VNC}"
    );
    for args in &commands {
        let (_b, mut s) = through_bridge_to_fake_vnc(args);
        assert_eq!(
            read_binary_like_novnc(&mut s, RFB_GREETING.len()),
            RFB_GREETING,
            "README command {args:?}"
        );
    }

    // Why the README adds framing=binary: the same command without it (the
    // default `auto`) sends the greeting, valid UTF-8, as a text message,
    // which noVNC drops.
    let mut auto = commands[0].clone();
    let at = auto
        .iter()
        .position(|a| a == "framing=binary")
        .unwrap_or_else(|| panic!("no framing=binary in README command {auto:?}"));
    assert!(at > 0 && auto[at - 1] == "-c", "{auto:?}");
    auto.drain(at - 1..=at);
    assert!(!auto.iter().any(|a| a.contains("framing")), "{auto:?}");
    let (_b, mut s) = through_bridge_to_fake_vnc(&auto);
    let mut text = Vec::new();
    while text.len() < RFB_GREETING.len() {
        let f = ws::read_frame(&mut s).expect("the greeting");
        assert_eq!(
            f.opcode, 1,
            "with {auto:?} the greeting was expected as text: {f:?}"
        );
        text.extend_from_slice(&f.payload);
    }
    assert_eq!(text, RFB_GREETING);
}

/// "wss:// with a password", as a new user would run it: the README's own
/// two lines, the users file made by its `printf` line in a shell, the
/// bridge started with its command line (only the port, the file names and
/// the peer replaced). A client with the password gets through over TLS;
/// one without gets 401 and the realm.
#[test]
fn readme_wss_with_a_password() {
    use base64::Engine;
    use websocksy_tests::certs;
    let block = readme_block("### wss:// with a password", "sh");
    let mut lines = block.lines();
    let make_users = lines.next().expect("the users file line");
    let run = lines.next().expect("the websocksy line");
    let dir = temp_dir("readme-wss");
    let st = Command::new("sh")
        .arg("-c")
        .arg(make_users)
        .current_dir(&dir)
        .status()
        .expect("run sh");
    assert!(st.success(), "{make_users}");
    let users = std::fs::read_to_string(dir.join("users.txt")).unwrap();
    let credentials = users.trim();
    assert!(credentials.starts_with("alice:") && credentials.len() == 6 + 24);

    let c = certs::shared();
    let echo = peers::tcp_echo();
    let args: Vec<String> = run
        .split_whitespace()
        .skip(1)
        .map(|a| match a {
            "wss://0.0.0.0:8443" => "wss://127.0.0.1:0".to_string(),
            "fullchain.pem" => c.server_cert.display().to_string(),
            "key.pem" => c.server_key.display().to_string(),
            "users.txt" => dir.join("users.txt").display().to_string(),
            "host=tcp://127.0.0.1:5900" => format!("host=tcp://{echo}"),
            other => other.to_string(),
        })
        .collect();
    assert!(run.starts_with("websocksy "), "{run}");
    let b = Bridge::spawn(&args);
    let addr = b.listener("wss://");
    let tls = || {
        ws::tls_connect(
            addr,
            ws::TlsClient {
                ca: Some(&c.ca_cert),
                ..Default::default()
            },
        )
        .expect("TLS handshake")
    };

    let basic = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    let mut good = tls();
    assert_eq!(ws::upgrade(&mut good, "/", &[&basic]).status, 101);
    good.write_all(&ws::text("over wss with a password"))
        .unwrap();
    assert_eq!(
        ws::read_frame(&mut good).unwrap().payload,
        b"over wss with a password"
    );
    b.wait_log("open user alice");

    let mut none = tls();
    none.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut none).expect("a response");
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"websocksy\"")
    );
    // The first client is unaffected.
    good.write_all(&ws::text("still open")).unwrap();
    assert_eq!(ws::read_frame(&mut good).unwrap().payload, b"still open");
}
