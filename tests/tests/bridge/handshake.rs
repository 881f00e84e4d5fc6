//! The HTTP upgrade: spec 4.2 and cases A1-A8, B41-B44, plus the error
//! responses the re-implementation adds (400/405/408/426/431/502).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use websocksy_tests::peers;
use websocksy_tests::ws::{self, Response, ACCEPT, KEY};
use websocksy_tests::Bridge;

const MIRROR: &str = "host=mirror://";
const SHORT: Duration = Duration::from_secs(3);

fn mirror() -> Bridge {
    Bridge::start(&["-c", MIRROR])
}

/// Send `raw` in one write and read the response head.
fn send(b: &Bridge, raw: &str) -> (TcpStream, Response) {
    let mut s = b.connect();
    s.write_all(raw.as_bytes()).expect("send request");
    let r = ws::read_response(&mut s).expect("read response");
    (s, r)
}

/// An error response: the given status, a Content-Length, a one-line body,
/// and then the connection closes.
fn assert_refused(s: &mut TcpStream, r: &Response, status: u16) -> String {
    assert_eq!(r.status, status, "unexpected response:\n{}", r.head);
    assert!(
        r.head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{}",
        r.head
    );
    let body = ws::read_body(s, r).expect("read body");
    let body = String::from_utf8(body).expect("body is UTF-8");
    assert!(
        body.ends_with('\n'),
        "body {body:?} does not end with a newline"
    );
    assert_eq!(body.lines().count(), 1, "body {body:?} is not one line");
    assert!(!body.trim().is_empty(), "empty body");
    assert!(
        ws::closes_within(s, SHORT),
        "connection not closed after {status}"
    );
    body
}

/// A message goes through the bridge and back (mirror).
fn assert_echo(s: &mut TcpStream, text: &str) {
    s.write_all(&ws::text(text)).unwrap();
    let f = ws::read_frame(s).expect("read echo");
    assert_eq!(
        (f.fin, f.opcode, f.payload.as_slice()),
        (true, 1, text.as_bytes())
    );
}

/// A request with exactly these header lines (no defaults).
fn raw(request_line: &str, headers: &[&str]) -> String {
    let mut r = format!("{request_line}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

#[test]
fn rfc_sample_key_gets_exact_accept() {
    let b = mirror();
    let (mut s, r) = send(&b, &ws::request("/chat", &[]));
    assert_eq!(r.status, 101, "{}", r.head);
    assert!(r.head.starts_with("HTTP/1.1 101 "), "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(ACCEPT, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(
        r.header("Upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{}",
        r.head
    );
    assert!(
        r.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{}",
        r.head
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), None, "{}", r.head);
    assert_echo(&mut s, "after upgrade");
}

#[test]
fn version_8_gets_426_with_version_13() {
    let b = mirror();
    let req =
        ws::request("/", &[]).replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let (mut s, r) = send(&b, &req);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"), "{}", r.head);
    assert_refused(&mut s, &r, 426);
}

#[test]
fn missing_version_gets_426_with_version_13() {
    let b = mirror();
    let req = ws::request("/", &[]).replace("Sec-WebSocket-Version: 13\r\n", "");
    assert!(!req.contains("Version"));
    let (mut s, r) = send(&b, &req);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"), "{}", r.head);
    assert_refused(&mut s, &r, 426);
}

#[test]
fn connection_token_list_and_upgrade_case() {
    let b = mirror();
    let req = raw(
        "GET /x HTTP/1.1",
        &[
            "Host: localhost",
            "Upgrade: WebSocket",
            "Connection: keep-alive, Upgrade",
            &format!("Sec-WebSocket-Key: {KEY}"),
            "Sec-WebSocket-Version: 13",
        ],
    );
    let (mut s, r) = send(&b, &req);
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_echo(&mut s, "tokens");
}

#[test]
fn lowercase_header_names_accepted() {
    let b = mirror();
    let req = raw(
        "GET / HTTP/1.1",
        &[
            "host: localhost",
            "upgrade: websocket",
            "connection: upgrade",
            &format!("sec-websocket-key: {KEY}"),
            "sec-websocket-version: 13",
        ],
    );
    let (mut s, r) = send(&b, &req);
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_echo(&mut s, "lower");
}

#[test]
fn post_gets_405_with_allow_get() {
    let b = mirror();
    let req = ws::request("/", &[]).replacen("GET ", "POST ", 1);
    let (mut s, r) = send(&b, &req);
    assert_eq!(r.header("Allow"), Some("GET"), "{}", r.head);
    assert_refused(&mut s, &r, 405);
}

#[test]
fn missing_key_gets_400() {
    let b = mirror();
    let req = ws::request("/", &[]).replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
    assert!(!req.contains("Key"));
    let (mut s, r) = send(&b, &req);
    assert_refused(&mut s, &r, 400);
}

#[test]
fn garbage_request_line_gets_400() {
    let b = mirror();
    let (mut s, r) = send(&b, "THIS IS NOT HTTP AT ALL\r\nHost: x\r\n\r\n");
    assert_refused(&mut s, &r, 400);
}

#[test]
fn plain_get_without_upgrade_gets_426() {
    let b = mirror();
    let (mut s, r) = send(&b, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"), "{}", r.head);
    assert_refused(&mut s, &r, 426);
}

#[test]
fn huge_header_gets_431() {
    let b = mirror();
    let mut s = b.connect();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    // The bridge may answer before it has read everything; that is fine.
    let _ = s.write_all(big.as_bytes());
    let r = ws::read_response(&mut s).expect("read 431");
    assert_refused(&mut s, &r, 431);
    assert_eq!(b.count_log("panicked"), 0, "{}", b.logs());
}

#[test]
fn request_one_byte_per_write_upgrades() {
    let b = mirror();
    let mut s = b.connect();
    ws::write_bytewise(&mut s, ws::request("/slow", &[]).as_bytes());
    let r = ws::read_response(&mut s).expect("read 101");
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_echo(&mut s, "bytewise");
}

#[test]
fn cr_and_lf_split_across_writes_upgrades() {
    let b = mirror();
    let mut s = b.connect();
    let req = ws::request("/split", &[]);
    // Split right between the CR and the LF of the request line and of the
    // key line (the original merged the key line with the version line).
    let key_line_end = req.find(KEY).unwrap() + KEY.len() + 1;
    let first_end = req.find("\r\n").unwrap() + 1;
    let parts = [
        &req[..first_end],
        &req[first_end..key_line_end],
        &req[key_line_end..],
    ];
    assert!(parts[0].ends_with('\r') && parts[1].starts_with('\n') && parts[1].ends_with('\r'));
    assert!(parts[2].starts_with('\n'));
    for p in parts {
        s.write_all(p.as_bytes()).unwrap();
        s.flush().unwrap();
    }
    let r = ws::read_response(&mut s).expect("read 101");
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_echo(&mut s, "split");
}

#[test]
fn frame_pipelined_with_request_is_echoed_at_once() {
    let b = mirror();
    let mut s = b.connect();
    let mut bytes = ws::request("/", &[]).into_bytes();
    // Contains CRLF on purpose: the original parsed it as a header line.
    bytes.extend_from_slice(&ws::text("pipelined\r\nframe"));
    s.write_all(&bytes).unwrap();
    let r = ws::read_response(&mut s).expect("read 101");
    assert_eq!(r.status, 101, "{}", r.head);
    s.set_read_timeout(Some(SHORT)).unwrap();
    let f = ws::read_frame(&mut s).expect("pipelined frame not echoed without further input");
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (1, &b"pipelined\r\nframe"[..])
    );
}

#[test]
fn refused_peer_gets_502_and_never_101() {
    let port = peers::closed_port();
    let b = Bridge::start(&["-c", &format!("host=tcp://127.0.0.1:{port}")]);
    let (mut s, r) = send(&b, &ws::request("/", &[]));
    assert!(!r.head.contains(" 101 "), "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Accept"), None, "{}", r.head);
    assert_refused(&mut s, &r, 502);
}

#[test]
fn refused_peer_with_separate_port_option_gets_502() {
    let port = peers::closed_port();
    let b = Bridge::start(&["-c", "host=tcp://127.0.0.1", "-c", &format!("port={port}")]);
    let (mut s, r) = send(&b, &ws::request("/", &[]));
    assert_refused(&mut s, &r, 502);
}

fn upgrade_with(b: &Bridge, extra: &[&str]) -> (TcpStream, Response) {
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, "/", extra);
    (s, r)
}

/// All `Sec-WebSocket-Protocol` values in a response.
fn protocols(r: &Response) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn subprotocol_star_selects_first_offer() {
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=*"]);
    let (mut s, r) = upgrade_with(&b, &["Sec-WebSocket-Protocol: p1, p2"]);
    assert_eq!(protocols(&r), ["p1"], "{}", r.head);
    assert_echo(&mut s, "star");
    // Nothing offered: nothing selected, still upgraded.
    let (_, r) = upgrade_with(&b, &[]);
    assert!(protocols(&r).is_empty(), "{}", r.head);
}

#[test]
fn subprotocol_match_is_case_insensitive_and_echoes_client_spelling() {
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=p2"]);
    let (_, r) = upgrade_with(&b, &["Sec-WebSocket-Protocol: p1,P2"]);
    assert_eq!(protocols(&r), ["P2"], "{}", r.head);
}

#[test]
fn subprotocol_mismatch_upgrades_without_header() {
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=p2"]);
    let (mut s, r) = upgrade_with(&b, &["Sec-WebSocket-Protocol: p3"]);
    assert!(protocols(&r).is_empty(), "{}", r.head);
    assert_echo(&mut s, "mismatch");
}

#[test]
fn subprotocol_headers_accumulate() {
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=b"]);
    let (_, r) = upgrade_with(
        &b,
        &["Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: b"],
    );
    assert_eq!(protocols(&r), ["b"], "{}", r.head);
    // Offers keep their order across headers: `*` takes the first header's.
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=*"]);
    let (_, r) = upgrade_with(
        &b,
        &["Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: b"],
    );
    assert_eq!(protocols(&r), ["a"], "{}", r.head);
}

#[test]
fn subprotocol_offers_are_trimmed_and_deduplicated() {
    let offer = "Sec-WebSocket-Protocol:  p1 ,p1, p2 ";
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=*"]);
    let (_, r) = upgrade_with(&b, &[offer]);
    assert_eq!(protocols(&r), ["p1"], "{}", r.head);
    assert!(
        r.head.contains("Sec-WebSocket-Protocol: p1\r\n"),
        "{}",
        r.head
    );
    let b = Bridge::start(&["-c", MIRROR, "-c", "protocol=P2"]);
    let (mut s, r) = upgrade_with(&b, &[offer]);
    assert_eq!(protocols(&r), ["p2"], "{}", r.head);
    assert_echo(&mut s, "dedup");
}

#[test]
fn handshake_timeout_answers_or_closes_half_request() {
    let b = Bridge::start(&["-c", MIRROR, "--handshake-timeout", "0.5"]);
    let mut s = b.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: webso")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let start = Instant::now();
    match ws::read_response(&mut s) {
        Ok(r) => assert_refused(&mut s, &r, 408),
        Err(e) => {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "no answer within 4 s: {e}"
            );
            String::new()
        }
    };
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}, before the timeout"
    );
    assert!(
        waited < Duration::from_secs(3),
        "closed only after {waited:?}"
    );
    // The bridge still serves others.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    assert_echo(&mut s, "still here");
}

#[test]
fn error_responses_have_content_length_and_one_line_body() {
    let b = mirror();
    let cases: [(String, u16); 4] = [
        (ws::request("/", &[]).replacen("GET ", "DELETE ", 1), 405),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 426),
        (ws::request("/", &[]).replace(KEY, "not-a-key"), 400),
        (
            ws::request("/", &[]).replace("Connection: Upgrade", "Connection: close"),
            400,
        ),
    ];
    for (req, status) in cases {
        let (mut s, r) = send(&b, &req);
        let len: usize = r
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .expect("number");
        let body = assert_refused(&mut s, &r, status);
        assert_eq!(body.len(), len);
    }
}

/// A refusal whose body and log line give `reason`.
fn assert_refused_because(b: &Bridge, req: &str, reason: &str) {
    let (mut s, r) = send(b, req);
    let body = assert_refused(&mut s, &r, 400);
    assert!(body.contains(reason), "body {body:?} lacks {reason:?}");
    // The operator sees why too (only the reason is checked: the log line's
    // shape belongs to the session).
    b.wait_log(reason);
}

#[test]
fn two_keys_get_400() {
    let b = mirror();
    // RFC 6455 11.3.1: once only. The bridge used to answer with the Accept
    // of the last key, whatever the client meant to check.
    let req = ws::request("/", &["Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA=="]);
    assert_refused_because(&b, &req, "more than one Sec-WebSocket-Key");
    let req = ws::request("/", &[&format!("sec-websocket-key: {KEY}")]);
    assert_refused_because(&b, &req, "more than one Sec-WebSocket-Key");
}

#[test]
fn http_1_0_upgrade_gets_400_not_101() {
    let b = mirror();
    let req = ws::request("/", &[]).replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert!(req.starts_with("GET / HTTP/1.0\r\n"));
    assert_refused_because(&b, &req, "a WebSocket upgrade needs HTTP/1.1");
}

#[test]
fn missing_or_repeated_host_gets_400() {
    let b = mirror();
    let req = ws::request("/", &[]).replace("Host: localhost\r\n", "");
    assert!(!req.to_ascii_lowercase().contains("host"));
    assert_refused_because(&b, &req, "missing Host");
    let req = ws::request("/", &["Host: elsewhere"]);
    assert_refused_because(&b, &req, "more than one Host");
}

#[test]
fn upgrade_with_a_body_gets_400_and_the_body_is_never_a_frame() {
    let b = mirror();
    // The body is a complete client frame. Read as WebSocket data, it came
    // back from the mirror as if the client had sent it.
    let frame = ws::text("injected");
    let mut req = ws::request("/", &[&format!("Content-Length: {}", frame.len())]).into_bytes();
    req.extend_from_slice(&frame);
    let mut s = b.connect();
    s.write_all(&req).unwrap();
    let r = ws::read_response(&mut s).expect("read response");
    // assert_refused also checks that nothing, no echo, follows the body.
    let body = assert_refused(&mut s, &r, 400);
    assert!(body.contains("must not have a body"), "{body:?}");

    let mut chunked = format!("{:x}\r\n", frame.len()).into_bytes();
    chunked.extend_from_slice(&frame);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut req = ws::request("/", &["Transfer-Encoding: chunked"]).into_bytes();
    req.extend_from_slice(&chunked);
    let mut s = b.connect();
    s.write_all(&req).unwrap();
    let r = ws::read_response(&mut s).expect("read response");
    let body = assert_refused(&mut s, &r, 400);
    assert!(body.contains("Transfer-Encoding"), "{body:?}");
    b.wait_log("must not have a body: Content-Length");
    b.wait_log("must not have a body: Transfer-Encoding");
}

#[test]
fn content_length_zero_upgrades_and_pipelined_frames_still_work() {
    let b = mirror();
    let mut bytes = ws::request("/", &["Content-Length: 0"]).into_bytes();
    bytes.extend_from_slice(&ws::text("after an empty body"));
    let mut s = b.connect();
    s.write_all(&bytes).unwrap();
    let r = ws::read_response(&mut s).expect("read 101");
    assert_eq!(r.status, 101, "{}", r.head);
    let f = ws::read_frame(&mut s).expect("pipelined frame echoed");
    assert_eq!(f.payload, b"after an empty body");
}

#[test]
fn a_426_has_exactly_one_connection_header() {
    let b = mirror();
    let (mut s, r) = send(&b, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let connection: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Connection"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(connection.len(), 1, "{}", r.head);
    let tokens: Vec<String> = connection[0]
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    // `upgrade` goes with the Upgrade header (RFC 9110 7.8), `close` says
    // the bridge closes after the answer.
    assert!(tokens.iter().any(|t| t == "upgrade"), "{}", r.head);
    assert!(tokens.iter().any(|t| t == "close"), "{}", r.head);
    assert_eq!(r.header("Upgrade"), Some("websocket"), "{}", r.head);
    assert_refused(&mut s, &r, 426);
}
