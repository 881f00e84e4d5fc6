//! The door: HTTP Basic authentication (401), the Origin allow-list (403),
//! the per-address connection cap (429). Every refusal is checked for its
//! exact status and headers, and for leaving other connections alone.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use websocksy_tests::ws::{self, Response};
use websocksy_tests::{run_cli, temp_dir, Bridge, WAIT};

const SHORT: Duration = Duration::from_secs(3);

/// A bridge to the mirror with these arguments, and extra environment.
fn mirror(args: &[&str], env: &[(&str, &str)]) -> Bridge {
    let mut full = vec!["-l", "127.0.0.1", "-p", "0", "-c", "host=mirror://"];
    full.extend_from_slice(args);
    Bridge::spawn_env(&full, env)
}

fn basic(user_password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// An upgraded connection to the mirror that echoes.
fn open(b: &Bridge, headers: &[&str]) -> TcpStream {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", headers);
    assert_echo(&mut s, "hello");
    s
}

fn assert_echo(s: &mut TcpStream, text: &str) {
    s.write_all(&ws::text(text)).unwrap();
    let f = ws::read_frame(s).expect("read echo");
    assert_eq!((f.opcode, f.payload.as_slice()), (1, text.as_bytes()));
}

/// Send an upgrade request with `headers`; expect `status`, a one-line
/// body, and the connection closed after it.
fn refused(b: &Bridge, s: &mut TcpStream, headers: &[&str], status: u16) -> Response {
    s.write_all(ws::request("/", headers).as_bytes()).unwrap();
    let r = ws::read_response(s).expect("read response");
    assert_eq!(r.status, status, "{}\nlog:\n{}", r.head, b.logs());
    assert!(
        r.head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{}",
        r.head
    );
    let body = ws::read_body(s, &r).expect("body");
    assert_eq!(String::from_utf8_lossy(&body).lines().count(), 1);
    assert!(ws::closes_within(s, SHORT), "not closed after {status}");
    r
}

const REALM: &str = "Basic realm=\"websocksy\"";

#[test]
fn basic_auth_from_an_environment_variable() {
    let b = mirror(
        &["--auth", "$WSY_TEST_USERS"],
        &[("WSY_TEST_USERS", "alice:s3cret")],
    );
    let good = basic("alice:s3cret");
    let mut kept = open(&b, &[&good]);
    b.wait_log("open user alice");

    let r = refused(&b, &mut b.connect(), &[], 401);
    assert_eq!(r.header("WWW-Authenticate"), Some(REALM));
    let r = refused(&b, &mut b.connect(), &[&basic("alice:s3cre")], 401);
    assert_eq!(r.header("WWW-Authenticate"), Some(REALM));
    refused(&b, &mut b.connect(), &[&basic("bob:s3cret")], 401);
    refused(&b, &mut b.connect(), &["Authorization: Bearer s3cret"], 401);
    b.wait_log("refused: 401 wrong credentials");
    b.wait_log("refused: 401 no credentials");
    // The open connection never noticed.
    assert_echo(&mut kept, "still here");
    // The password is never logged.
    assert!(!b.logs().contains("s3cret"), "{}", b.logs());
}

fn bcrypt_line(user: &str, password: &str) -> String {
    let h = bcrypt::hash_with_result(password, 4)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{h}")
}

#[test]
fn basic_auth_file_with_plain_and_bcrypt_entries() {
    let dir = temp_dir("auth");
    let file = dir.join("users");
    std::fs::write(
        &file,
        format!(
            "# users\n\nbob:plain pw\n{}\n",
            bcrypt_line("carol", "open sesame")
        ),
    )
    .unwrap();
    let path = file.display().to_string();
    let b = mirror(&["--auth", &path], &[]);
    let mut kept = open(&b, &[&basic("carol:open sesame")]);
    b.wait_log("open user carol");
    open(&b, &[&basic("bob:plain pw")]);
    b.wait_log("open user bob");
    let r = refused(&b, &mut b.connect(), &[&basic("carol:open sesam")], 401);
    assert_eq!(r.header("WWW-Authenticate"), Some(REALM));
    // An unknown user is refused the same way (after a dummy bcrypt check).
    refused(&b, &mut b.connect(), &[&basic("dave:open sesame")], 401);
    refused(&b, &mut b.connect(), &[], 401);
    assert_echo(&mut kept, "still here");
}

/// An independent client: Python's `websockets`, which sends Basic
/// credentials from the URI's user info.
#[test]
fn basic_auth_with_python_websockets() {
    let b = mirror(
        &["--auth", "$WSY_TEST_USERS"],
        &[("WSY_TEST_USERS", "erin:pa55")],
    );
    let script = r#"
import sys
from websockets.sync.client import connect
from websockets.exceptions import InvalidStatus
addr = sys.argv[1]
with connect(f"ws://erin:pa55@{addr}/") as c:
    c.send("via python")
    print("echo", c.recv(timeout=10))
try:
    connect(f"ws://erin:wrong@{addr}/")
    print("wrong accepted")
except InvalidStatus as e:
    print("status", e.response.status_code, e.response.headers.get("WWW-Authenticate"))
try:
    connect(f"ws://{addr}/")
    print("missing accepted")
except InvalidStatus as e:
    print("status", e.response.status_code, e.response.headers.get("WWW-Authenticate"))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(b.addr.to_string())
        .output()
        .expect("run python3 (with the websockets package, see .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "echo via python",
            "status 401 Basic realm=\"websocksy\"",
            "status 401 Basic realm=\"websocksy\""
        ]
    );
    b.wait_log("open user erin");
}

#[test]
fn auth_spec_mistakes_stop_the_start() {
    let (code, _, err) = run_cli(&["--auth", "alice:s3cret"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("$NAME"), "{err}");
    assert!(!err.contains("s3cret"), "credentials echoed: {err}");

    let dir = temp_dir("auth-bad");
    let file = dir.join("users");
    std::fs::write(&file, "# ok\nalice:x\nno colon here\n").unwrap();
    let path = file.display().to_string();
    let (code, _, err) = run_cli(&["--auth", &path, "-p", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{path}:3: ")), "{err}");

    let (code, _, err) = run_cli(&["--auth", "$WSY_TEST_SURELY_UNSET", "-p", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("WSY_TEST_SURELY_UNSET"), "{err}");
}

#[test]
fn origin_allow_list() {
    let b = mirror(
        &[
            "--origin",
            "https://app.example.com",
            "--origin",
            "https://*.example.org",
        ],
        &[],
    );
    let mut kept = open(&b, &["Origin: https://app.example.com"]);
    // Scheme and host case-insensitive, default port normalised.
    open(&b, &["Origin: HTTPS://App.Example.com:443"]);
    // One or more labels under the wildcard.
    open(&b, &["Origin: https://a.example.org"]);
    open(&b, &["Origin: https://a.b.example.org"]);
    for origin in [
        "Origin: https://example.org",
        "Origin: https://evil.com",
        "Origin: http://app.example.com",
        "Origin: https://app.example.com:8443",
        "Origin: null",
    ] {
        refused(&b, &mut b.connect(), &[origin], 403);
    }
    // Browsers always send Origin: without one, the list cannot vouch.
    refused(&b, &mut b.connect(), &[], 403);
    b.wait_log("refused: 403 origin 'https://evil.com' not allowed");
    b.wait_log("refused: 403 no Origin header");
    assert_echo(&mut kept, "still here");

    let b = mirror(&["--origin", "null"], &[]);
    open(&b, &["Origin: null"]);
    refused(
        &b,
        &mut b.connect(),
        &["Origin: https://app.example.com"],
        403,
    );
}

#[test]
fn no_origin_list_accepts_everything() {
    let b = mirror(&[], &[]);
    open(&b, &["Origin: https://anything.example"]);
    open(&b, &[]);
}

/// A client socket bound to `local` (any 127/8 address works on Linux).
fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let bind: SocketAddr = format!("{local}:0").parse().unwrap();
    s.bind(&bind.into())
        .expect("bind a loopback source address");
    s.connect(&to.into()).expect("connect to bridge");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn per_address_cap() {
    let b = mirror(&["--max-connections-per-ip", "2"], &[]);
    let mut first = open(&b, &[]);
    let mut second = open(&b, &[]);
    let r = refused(&b, &mut b.connect(), &[], 429);
    assert!(
        r.head.starts_with("HTTP/1.1 429 Too Many Requests"),
        "{}",
        r.head
    );
    b.wait_log("refused: 429 too many connections from this address");
    // Another address still gets in, and the first two still work.
    let mut other = connect_from("127.0.0.2", b.addr);
    ws::upgrade(&mut other, "/", &[]);
    assert_echo(&mut other, "from .2");
    assert_echo(&mut first, "first");
    // A refused connection held no slot, and a closed one gives its slot
    // back: once `second` is gone, 127.0.0.1 may open one again.
    second.write_all(&ws::close(1000, "")).unwrap();
    let _ = ws::read_until_close(&mut second);
    drop(second);
    b.wait_log("closed: code 1000");
    let _again = open(&b, &[]);
    refused(&b, &mut b.connect(), &[], 429);
    assert_echo(&mut first, "first again");
}

#[test]
fn admission_keys_in_the_config_file() {
    let dir = temp_dir("admission-cfg");
    let cfg = dir.join("websocksy.cfg");
    std::fs::write(
        &cfg,
        "[core]\nlisten = 127.0.0.1\nport = 0\nauth = $WSY_TEST_USERS\n\
         origin = https://a.example\norigin = https://b.example\n\
         max-connections-per-ip = 5\ntrusted-proxy = 10.0.0.0/8\n\
         proxy-protocol = false\n[backend]\nhost = mirror://\n",
    )
    .unwrap();
    let path = cfg.display().to_string();
    let b = Bridge::spawn_env(&[&path], &[("WSY_TEST_USERS", "u:p")]);
    let auth = basic("u:p");
    let mut kept = open(&b, &["Origin: https://b.example", &auth]);
    refused(
        &b,
        &mut b.connect(),
        &["Origin: https://c.example", &auth],
        403,
    );
    refused(&b, &mut b.connect(), &["Origin: https://a.example"], 401);
    assert_echo(&mut kept, "still here");

    std::fs::write(
        &cfg,
        "[core]\norigin = https://a.example\norigin = ftp:/x\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&[&path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{path}:3: invalid value 'ftp:/x' for 'origin'")),
        "{err}"
    );
}

/// bcrypt checks run on threads of their own: a burst of password guesses
/// queued before a connection whose peer needs a name lookup does not
/// delay it (the lookup runs on the worker pool, which the checks never
/// occupy). The guessed ones are all answered in the end: queued, not
/// refused.
#[test]
fn password_guesses_never_delay_name_lookups() {
    const GUESSES: usize = 8;
    let dir = temp_dir("auth-lanes");
    let file = dir.join("users");
    // Cost 10: tens of milliseconds a check, so eight of them on two
    // threads take far longer than a lookup.
    let h = bcrypt::hash_with_result("open sesame", 10)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(&file, format!("carol:{h}\nbob:plain pw\n")).unwrap();
    let echo = websocksy_tests::peers::tcp_echo();
    let host = format!("host=tcp://localhost:{}", echo.port());
    let path = file.display().to_string();
    let b = Bridge::start(&["-c", &host, "--auth", &path]);
    let mut guesses: Vec<TcpStream> = (0..GUESSES)
        .map(|i| {
            let mut s = b.connect();
            let wrong = basic(&format!("carol:guess {i}"));
            s.write_all(ws::request("/", &[&wrong]).as_bytes()).unwrap();
            s
        })
        .collect();
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, "/", &[&basic("bob:plain pw")]);
    assert_eq!(r.status, 101);
    let open = b.wait_log("open user bob");
    // A lookup behind the checks would wait for at least five of them
    // (four workers, then the queue); on its own lane it waits for none.
    let refused_before = b.count_log("refused: 401");
    assert!(
        refused_before < 2,
        "the lookup waited for {refused_before} password checks:\n{open}\n{}",
        b.logs()
    );
    assert_echo(&mut s, "looked up");
    for g in &mut guesses {
        let r = ws::read_response(g).expect("a response to each guess");
        assert_eq!(r.status, 401, "{}", r.head);
    }
}
