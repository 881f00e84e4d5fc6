//! Command line and configuration file: spec sections 1.1-1.3, cases A35
//! and B53, and the re-implementation's error contract (exit status 2, one
//! `websocksy: ...` line on stderr naming the culprit).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

use websocksy_tests::peers;
use websocksy_tests::ws;
use websocksy_tests::{run_cli, temp_dir, Bridge};

/// Exit status 2 and exactly one stderr line, `websocksy: ...`, that
/// contains every string in `names`.
fn assert_usage_error(args: &[&str], names: &[&str]) -> String {
    let (code, out, err) = run_cli(args);
    assert_eq!(code, 2, "{args:?}: status {code}, stderr {err:?}");
    assert!(out.is_empty(), "{args:?}: stdout {out:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: stderr is not one line: {err:?}");
    assert!(lines[0].starts_with("websocksy: "), "{args:?}: {err:?}");
    for n in names {
        assert!(
            lines[0].contains(n),
            "{args:?}: {err:?} does not name {n:?}"
        );
    }
    lines[0].to_string()
}

fn write_config(tag: &str, text: &str) -> PathBuf {
    let path = temp_dir(tag).join("websocksy.cfg");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Upgrade, send `text`, expect the echo through a TCP echo peer (auto
/// framing: one text frame for one short write).
fn assert_bridges(b: &Bridge, text: &str) {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    s.write_all(&ws::text(text)).unwrap();
    let mut got = Vec::new();
    while got.len() < text.len() {
        let f = ws::read_frame(&mut s).expect("read echo");
        assert_eq!(f.opcode, 1);
        got.extend_from_slice(&f.payload);
    }
    assert_eq!(got, text.as_bytes());
}

/// The spec's defaultpeer example (1.2) with real ports.
fn spec_example(peer_port: u16) -> String {
    format!(
        "[core]\nport = 0\nlisten = 127.0.0.1\nping = 0\n[backend]\nhost = tcp://127.0.0.1\nport = {peer_port}\n\
         framing = newline\nframing-config = lf\nprotocol = *\n"
    )
}

/// Newline framing with lf: `a\nb\n` comes back as two text frames.
fn assert_newline_framing(b: &Bridge) {
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, "/", &["Sec-WebSocket-Protocol: chat, other"]);
    // `protocol = *` picks the first offer.
    assert_eq!(
        r.header("Sec-WebSocket-Protocol"),
        Some("chat"),
        "{}",
        r.head
    );
    s.write_all(&ws::text("a\nb\n")).unwrap();
    let f1 = ws::read_frame(&mut s).unwrap();
    let f2 = ws::read_frame(&mut s).unwrap();
    assert_eq!((f1.opcode, f1.payload.as_slice()), (1, &b"a\n"[..]));
    assert_eq!((f2.opcode, f2.payload.as_slice()), (1, &b"b\n"[..]));
}

#[test]
fn help_exits_0_with_usage() {
    for flag in ["--help", "-h"] {
        let (code, out, _) = run_cli(&[flag]);
        assert_eq!(code, 0, "{flag}");
        assert!(out.contains("Usage"), "{flag}: {out}");
        for opt in [
            "--port",
            "--listen",
            "--ping",
            "--backend",
            "--backend-option",
            "--max-message-size",
        ] {
            assert!(out.contains(opt), "{flag}: help lacks {opt}:\n{out}");
        }
    }
}

#[test]
fn version_exits_0_with_version() {
    for flag in ["--version", "-V"] {
        let (code, out, _) = run_cli(&[flag]);
        assert_eq!(code, 0, "{flag}");
        let line = out.trim_end();
        assert!(line.starts_with("websocksy "), "{flag}: {out:?}");
        assert!(
            line["websocksy ".len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit()),
            "{out:?}"
        );
    }
}

#[test]
fn unknown_flag_is_an_error() {
    assert_usage_error(&["--frobnicate", "1"], &["--frobnicate"]);
    assert_usage_error(&["-q", "foo"], &["-q"]);
}

#[test]
fn backend_option_without_equals_is_an_error() {
    assert_usage_error(&["-c", "hostname"], &["hostname"]);
}

#[test]
fn unknown_defaultpeer_key_is_an_error() {
    assert_usage_error(&["-c", "bogus=1"], &["bogus"]);
}

#[test]
fn unknown_backend_is_an_error() {
    assert_usage_error(&["-b", "nonexistent"], &["nonexistent"]);
}

#[test]
fn port_out_of_range_is_an_error() {
    assert_usage_error(&["-p", "80000"], &["80000"]);
}

#[test]
fn missing_config_file_is_an_error() {
    let path = temp_dir("missing").join("no-such.cfg");
    let path = path.to_str().unwrap();
    assert_usage_error(&[path], &[path]);
}

#[test]
fn unknown_backend_key_in_file_names_file_and_line() {
    let path = write_config(
        "badkey",
        "[core]\nport = 0\n\n[backend]\nhost = mirror://\nbogus = 1\n",
    );
    let p = path.to_str().unwrap();
    assert_usage_error(&[p], &[&format!("{p}:6"), "bogus"]);
}

#[test]
fn spec_example_config_bridges_with_newline_framing() {
    let echo = peers::tcp_echo();
    let path = write_config("example", &spec_example(echo.port()));
    let b = Bridge::start(&[path.to_str().unwrap()]);
    assert_eq!(b.addr.ip().to_string(), "127.0.0.1");
    assert_newline_framing(&b);
}

#[test]
fn crlf_config_file_works() {
    let echo = peers::tcp_echo();
    let path = write_config("crlf", &spec_example(echo.port()).replace('\n', "\r\n"));
    let b = Bridge::start(&[path.to_str().unwrap()]);
    assert_eq!(b.addr.ip().to_string(), "127.0.0.1");
    assert_newline_framing(&b);
}

#[test]
fn comment_lines_are_ignored() {
    let echo = peers::tcp_echo();
    let text = format!(
        "# websocksy test config\n; another comment\n[core]\n# port = 1\nport = 0\n; listen = 10.9.9.9\n\
         listen = 127.0.0.1\n\n[backend]\n# a comment line\n; framing = nonexistent\n# host = tcp://192.0.2.1:9\n\
         host = tcp://127.0.0.1\nport = {}\n",
        echo.port()
    );
    let path = write_config("comments", &text);
    let b = Bridge::start(&[path.to_str().unwrap()]);
    assert_eq!(b.addr.ip().to_string(), "127.0.0.1");
    assert_bridges(&b, "commented");
}

#[test]
fn unknown_core_key_is_ignored() {
    let echo = peers::tcp_echo();
    let text = format!(
        "[core]\nport = 0\nlisten = 127.0.0.1\nfavourite-colour = blue\n[backend]\nhost = tcp://127.0.0.1:{}\n",
        echo.port()
    );
    let path = write_config("corekey", &text);
    let b = Bridge::start(&[path.to_str().unwrap()]);
    assert_bridges(&b, "still runs");
}

#[test]
fn host_with_embedded_port_works_without_port_option() {
    let echo = peers::tcp_echo();
    let b = Bridge::start(&["-c", &format!("host=tcp://127.0.0.1:{}", echo.port())]);
    assert_bridges(&b, "embedded port");
}

/// An echo server on [::1], or None if the machine has no IPv6 loopback.
fn ipv6_echo() -> Option<SocketAddr> {
    let l = TcpListener::bind("[::1]:0").ok()?;
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s: TcpStream = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = ws::read_some(&mut s, &mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Some(addr)
}

#[test]
fn ipv6_listen_and_bracketed_ipv6_peer() {
    let Some(echo) = ipv6_echo() else {
        println!("NOTE: no IPv6 loopback on this machine, skipping the IPv6 test");
        return;
    };
    let host = format!("host=tcp://[::1]:{}", echo.port());
    let b = Bridge::start(&["-l", "::1", "-c", &host]);
    assert_eq!(b.addr.ip().to_string(), "::1", "listening on {}", b.addr);
    assert_ne!(b.addr.port(), 0);
    assert_bridges(&b, "over ipv6");
    // Bracketed listen address as well.
    let b = Bridge::start(&["-l", "[::1]", "-c", &host]);
    assert_eq!(b.addr.ip().to_string(), "::1");
    assert_bridges(&b, "brackets");
}

#[test]
fn port_0_logs_the_bound_port() {
    let b = Bridge::start(&["-c", "host=mirror://"]);
    let line = b.wait_log("listening on ");
    let rest = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .unwrap_or_else(|| panic!("format: {line:?}"));
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    assert!(!digits.is_empty(), "no port in {line:?}");
    assert!(
        rest[digits.len()..].is_empty() || rest[digits.len()..].starts_with(' '),
        "{line:?}"
    );
    let port: u16 = digits.parse().expect("port number");
    assert_ne!(port, 0, "{line:?}");
    assert_eq!(port, b.addr.port());
    // And the port is really the one we can connect to.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
}

#[test]
fn long_options_work() {
    let echo = peers::tcp_echo();
    let b = Bridge::spawn(&[
        "--port",
        "0",
        "--listen",
        "127.0.0.1",
        "--ping",
        "0.3",
        "--backend",
        "defaultpeer",
        "--backend-option",
        "host=tcp://127.0.0.1",
        "--backend-option",
        &format!("port={}", echo.port()),
        "--backend-option",
        "framing=newline",
    ]);
    assert_eq!(b.addr.ip().to_string(), "127.0.0.1");
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    // --backend-option framing=newline took effect: two lines, two frames.
    s.write_all(&ws::text("x\ny\n")).unwrap();
    let f1 = ws::read_frame(&mut s).unwrap();
    let f2 = ws::read_frame(&mut s).unwrap();
    assert_eq!(
        (f1.payload.as_slice(), f2.payload.as_slice()),
        (&b"x\n"[..], &b"y\n"[..])
    );
    // --ping 0.3 took effect: an idle client gets a keep-alive ping soon.
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let f = ws::read_frame(&mut s).expect("keep-alive ping within 3 s");
    assert_eq!(f.opcode, 9, "{f:?}");
}

/// A FIFO would block the open until a writer came, and /dev/urandom never
/// ends: both are refused at once, before anything is read.
#[test]
fn config_file_must_be_a_regular_file() {
    let fifo = temp_dir("fifo").join("websocksy.cfg");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let p = fifo.to_str().unwrap();
    assert_usage_error(&[p], &[p, "not a regular file"]);
    assert_usage_error(&["/dev/urandom"], &["/dev/urandom", "not a regular file"]);
    let dir = temp_dir("dir");
    let d = dir.to_str().unwrap();
    assert_usage_error(&[d], &[d, "not a regular file"]);
}

#[test]
fn config_file_over_1_mib_is_refused() {
    let echo = peers::tcp_echo();
    let mut text = format!(
        "[core]\nport = 0\nlisten = 127.0.0.1\n[backend]\nhost = tcp://127.0.0.1:{}\n",
        echo.port()
    );
    let pad = (1 << 20) - text.len();
    text.push_str(&"\n".repeat(pad));
    // Exactly 1 MiB is still read.
    let path = write_config("mib", &text);
    let b = Bridge::start(&[path.to_str().unwrap()]);
    assert_bridges(&b, "one mebibyte");
    text.push('#');
    let path = write_config("big", &text);
    let p = path.to_str().unwrap();
    assert_usage_error(&[p], &[p, "larger than 1 MiB"]);
}

/// A value that cannot parse is a configuration error (2), from the command
/// line and from a file alike; a well-formed address that cannot be bound is
/// a listener failure (1).
#[test]
fn malformed_listen_address_exits_2_unbindable_exits_1() {
    assert_usage_error(&["-l", "::1]", "-p", "0"], &["--listen", "::1]"]);
    let path = write_config("listen", "[core]\nport = 0\nlisten = ::1]\n");
    let p = path.to_str().unwrap();
    assert_usage_error(&[p], &[&format!("{p}:3"), "listen", "::1]"]);
    // TEST-NET-1 (RFC 5737) is assigned to no interface here.
    let (code, _, err) = run_cli(&["-l", "192.0.2.1", "-p", "0", "-c", "host=mirror://"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("192.0.2.1"), "{err}");
}
