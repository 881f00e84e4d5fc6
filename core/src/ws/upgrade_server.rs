//! The server side of the HTTP/1.1 upgrade request (RFC 6455 section 4.2): parse, validate,
//! and write the 101 or the error response.
//!
//! Unlike the original, header names match case-insensitively, every
//! malformed request gets an answer (400/405/426/431) instead of silence,
//! and bytes pipelined after the request are handed to the WebSocket layer.
//! Requests the original upgraded although RFC 6455 and RFC 9112 forbid it
//! (HTTP/1.0, no `Host` or two, two `Sec-WebSocket-Key`s, a body) get 400.

use std::fmt::Write as _;

use tungstenite::handshake::derive_accept_key;

/// Largest request head accepted; the original's line buffer was the same size.
pub const MAX_REQUEST: usize = 16 * 1024;
const MAX_HEADERS: usize = 128;

/// A valid upgrade request.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub protocols: Vec<String>,
    /// The `Sec-WebSocket-Accept` value for the 101.
    pub accept: String,
    /// Bytes of the request head; the rest of the buffer is WebSocket data.
    pub head_len: usize,
}

/// Why a request is refused, as an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }
}

pub enum Parsed {
    Incomplete,
    Upgrade(Upgrade),
    Refused(Refusal),
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A key must be 16 random bytes in base64: 22 symbols and `==`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22] == b'='
        && b[23] == b'='
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Whether a `Content-Length` value announces a body: `Some(false)` for
/// zero, `Some(true)` for any other number, `None` if it is not a number.
/// RFC 9112 section 6.3 lets a list of identical values (`0, 0`) stand for
/// one; digits are compared as zero or not, so no length can overflow.
fn announces_body(value: &str) -> Option<bool> {
    let mut body = None;
    for v in value.split(',').map(str::trim) {
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let this = v.bytes().any(|c| c != b'0');
        if body.is_some_and(|b| b != this) {
            return None;
        }
        body = Some(this);
    }
    body
}

/// Parse what has arrived so far.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => {
            return Parsed::Refused(Refusal::new(431, "Request Header Fields Too Large"))
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(Refusal::new(431, "Request Header Fields Too Large"))
        }
        Err(e) => return Parsed::Refused(Refusal::new(400, format!("Bad Request ({e})"))),
    };
    if head_len > MAX_REQUEST {
        return Parsed::Refused(Refusal::new(431, "Request Header Fields Too Large"));
    }
    // httparse reads only HTTP/1.0 and HTTP/1.1 (anything else is an error
    // above), and RFC 6455 section 4.1 requires 1.1 or higher: a 1.0 client
    // cannot be switched to another protocol, so answering it 101 would be a lie.
    if req.version != Some(1) {
        return Parsed::Refused(Refusal::new(
            400,
            "Bad Request (a WebSocket upgrade needs HTTP/1.1)",
        ));
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    let (mut upgrade, mut connection, mut version) = (false, false, None);
    let mut keys: Vec<&str> = Vec::new();
    let (mut hosts, mut body) = (0usize, None::<String>);
    let mut protocols: Vec<String> = Vec::new();
    for h in req.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Parsed::Refused(Refusal::new(
                400,
                format!("Bad Request (header '{}' is not UTF-8)", h.name),
            ));
        };
        let value = value.trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys.push(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if !protocols.iter().any(|q| q == p) {
                    protocols.push(p.to_string());
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("transfer-encoding") && body.is_none() {
            body = Some(format!(
                "an upgrade request must not have a body: {name}: {value}"
            ));
        } else if name.eq_ignore_ascii_case("content-length") && body.is_none() {
            body = match announces_body(value) {
                Some(false) => None,
                Some(true) => Some(format!(
                    "an upgrade request must not have a body: {name}: {value}"
                )),
                None => Some(format!("invalid {name}: {value}")),
            };
        }
        headers.push((name.to_string(), value.to_string()));
    }
    // RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request
    // without Host or with more than one (RFC 6455 section 4.2.1 lists Host
    // among the fields a handshake must carry).
    match hosts {
        0 => return Parsed::Refused(Refusal::new(400, "Bad Request (missing Host)")),
        1 => {}
        _ => return Parsed::Refused(Refusal::new(400, "Bad Request (more than one Host header)")),
    }
    // Whatever follows the head is read as WebSocket frames, so a body would
    // be too: a proxy in front forwards the body it was given with the
    // request, and whoever wrote that body would inject frames into the
    // session as if the client had sent them. Refuse any body rather than
    // skip it (RFC 6455 gives a handshake none). A Content-Length that is not
    // a number makes the message's framing invalid (RFC 9112 section 6.3):
    // refused too.
    if let Some(why) = body {
        return Parsed::Refused(Refusal::new(400, format!("Bad Request ({why})")));
    }
    if req.method != Some("GET") {
        let mut r = Refusal::new(405, "Method Not Allowed");
        r.headers.push(("Allow", "GET"));
        return Parsed::Refused(r);
    }
    let upgrade_required = || {
        let mut r = Refusal::new(426, "Upgrade Required");
        r.headers.push(("Upgrade", "websocket"));
        // RFC 9110 section 7.8: whoever sends Upgrade also sends the
        // `upgrade` connection option, so proxies do not forward it.
        // `error_response` adds `close` to this same header, as the connection
        // closes after the answer (RFC 9112 section 9.6): one header, both.
        r.headers.push(("Connection", "Upgrade"));
        r.headers.push(("Sec-WebSocket-Version", "13"));
        r
    };
    if !upgrade {
        return Parsed::Refused(upgrade_required());
    }
    if version.as_deref() != Some("13") {
        return Parsed::Refused(upgrade_required());
    }
    if !connection {
        return Parsed::Refused(Refusal::new(
            400,
            "Bad Request (Connection header lacks 'upgrade')",
        ));
    }
    // RFC 6455 section 11.3.1: the key appears once. With two, which one the
    // client will check the Accept against is anybody's guess.
    let key = match keys[..] {
        [k] if valid_key(k) => k,
        [_] => {
            return Parsed::Refused(Refusal::new(400, "Bad Request (invalid Sec-WebSocket-Key)"))
        }
        [] => return Parsed::Refused(Refusal::new(400, "Bad Request (missing Sec-WebSocket-Key)")),
        [_, _, ..] => {
            return Parsed::Refused(Refusal::new(
                400,
                "Bad Request (more than one Sec-WebSocket-Key)",
            ))
        }
    };
    Parsed::Upgrade(Upgrade {
        target: req.path.unwrap_or("/").to_string(),
        headers,
        protocols,
        accept: derive_accept_key(key.as_bytes()),
        head_len,
    })
}

/// The 101 response.
pub fn switching_protocols(
    accept: &str,
    protocol: Option<&str>,
    extra: &[(String, String)],
    out: &mut Vec<u8>,
) {
    let mut s = String::with_capacity(160);
    s.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    s.push_str(accept);
    s.push_str("\r\n");
    if let Some(p) = protocol {
        let _ = write!(s, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    for (n, v) in extra {
        let _ = write!(s, "{n}: {}\r\n", sanitize(v));
    }
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// Header values from backends must not smuggle in extra lines.
fn sanitize(v: &str) -> String {
    v.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// An error response with a one-line plain-text body; the connection closes after it.
pub fn error_response(status: u16, reason: &str, headers: &[(&str, &str)], out: &mut Vec<u8>) {
    let phrase = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("{}\n", sanitize(reason));
    let mut s = format!("HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n", body.len());
    // Exactly one Connection header: the caller's options (426 sends
    // `Upgrade`) and `close`, since the connection always closes after an
    // error. Two Connection headers are legal HTTP but some clients read only
    // one of them.
    let mut connection = String::new();
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("connection") {
            if !connection.is_empty() {
                connection.push_str(", ");
            }
            connection.push_str(v);
        } else {
            let _ = write!(s, "{n}: {}\r\n", sanitize(v));
        }
    }
    if !has_token(&connection, "close") {
        if !connection.is_empty() {
            connection.push_str(", ");
        }
        connection.push_str("close");
    }
    let _ = write!(s, "Connection: {}\r\n", sanitize(&connection));
    s.push_str("\r\n");
    s.push_str(&body);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn refused(req: &str) -> u16 {
        match parse(req.as_bytes()) {
            Parsed::Refused(r) => r.status,
            Parsed::Upgrade(_) => 101,
            Parsed::Incomplete => 0,
        }
    }

    #[test]
    fn rfc_sample_key() {
        let Parsed::Upgrade(u) = parse(format!("{GOOD}\r\n").as_bytes()) else {
            panic!()
        };
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(u.target, "/chat");
    }

    #[test]
    fn pipelined_bytes_are_not_part_of_the_head() {
        let req = format!("{GOOD}\r\n\u{81}");
        let Parsed::Upgrade(u) = parse(req.as_bytes()) else {
            panic!()
        };
        assert_eq!(u.head_len, req.len() - 2);
    }

    #[test]
    fn statuses() {
        assert_eq!(refused(GOOD), 0);
        assert_eq!(
            refused(&format!("{}\r\n", GOOD.replace("GET", "POST"))),
            405
        );
        assert_eq!(
            refused(&format!(
                "{}\r\n",
                GOOD.replace("Version: 13", "Version: 8")
            )),
            426
        );
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        assert_eq!(
            refused(&format!(
                "{}\r\n",
                GOOD.replace("Connection: Upgrade", "Connection: close")
            )),
            400
        );
        assert_eq!(
            refused(&format!(
                "{}\r\n",
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "x")
            )),
            400
        );
        assert_eq!(refused("GARBAGE\r\n\r\n"), 400);
        assert_eq!(
            refused(&format!(
                "GET / HTTP/1.1\r\nX: {}\r\n",
                "a".repeat(MAX_REQUEST)
            )),
            431
        );
    }

    #[test]
    fn lowercase_names_and_token_lists() {
        let req = "GET / HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nsec-websocket-protocol:  p1 ,p1, p2 \r\nSec-WebSocket-Protocol: b\r\n\r\n";
        let Parsed::Upgrade(u) = parse(req.as_bytes()) else {
            panic!()
        };
        assert_eq!(u.protocols, vec!["p1", "p2", "b"]);
    }

    /// The refusal for `req`, panicking if it was not refused.
    fn refusal(req: &str) -> Refusal {
        match parse(req.as_bytes()) {
            Parsed::Refused(r) => r,
            Parsed::Upgrade(_) => panic!("upgraded: {req:?}"),
            Parsed::Incomplete => panic!("incomplete: {req:?}"),
        }
    }

    /// `GOOD` with `extra` header lines added, and the blank line.
    fn good_with(extra: &str) -> String {
        format!("{GOOD}{extra}\r\n")
    }

    #[test]
    fn two_keys_are_refused() {
        // The same key twice, or two different ones: once only (RFC 6455 11.3.1).
        for second in ["dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="] {
            let r = refusal(&good_with(&format!("Sec-WebSocket-Key: {second}\r\n")));
            assert_eq!(r.status, 400);
            assert!(
                r.reason.contains("more than one Sec-WebSocket-Key"),
                "{r:?}"
            );
        }
        let r = refusal(&good_with("sec-websocket-key: x\r\n"));
        assert_eq!(r.status, 400, "{r:?}");
    }

    #[test]
    fn http_1_0_is_refused() {
        let r = refusal(&good_with("").replace("HTTP/1.1", "HTTP/1.0"));
        assert_eq!(r.status, 400);
        assert!(r.reason.contains("HTTP/1.1"), "{r:?}");
        // Anything but 1.0 and 1.1 is not HTTP/1 at all.
        assert_eq!(refused(&good_with("").replace("HTTP/1.1", "HTTP/2.0")), 400);
    }

    #[test]
    fn host_missing_or_repeated_is_refused() {
        let r = refusal(&good_with("").replace("Host: x\r\n", ""));
        assert_eq!(r.status, 400);
        assert!(r.reason.contains("missing Host"), "{r:?}");
        for second in ["Host: x", "host: y", "HOST: "] {
            let r = refusal(&good_with(&format!("{second}\r\n")));
            assert_eq!(r.status, 400);
            assert!(r.reason.contains("more than one Host"), "{r:?}");
        }
        // RFC 9112 3.2: an empty Host is valid (the target has no authority).
        assert_eq!(refused(&good_with("").replace("Host: x", "Host:")), 101);
        // Host is checked before the method: RFC 9112 says 400 to any request.
        let post = good_with("")
            .replace("GET", "POST")
            .replace("Host: x\r\n", "");
        assert_eq!(refused(&post), 400);
    }

    #[test]
    fn a_body_is_refused() {
        for (header, why) in [
            (
                "Content-Length: 5",
                "must not have a body: Content-Length: 5",
            ),
            ("content-length: 0005", "must not have a body"),
            (
                "Content-Length: 99999999999999999999999",
                "must not have a body",
            ),
            (
                "Transfer-Encoding: chunked",
                "must not have a body: Transfer-Encoding",
            ),
            ("Transfer-Encoding: identity", "must not have a body"),
            (
                "Content-Length: 0\r\nTransfer-Encoding: chunked",
                "Transfer-Encoding",
            ),
            ("Content-Length: -1", "invalid Content-Length"),
            ("Content-Length: 0x10", "invalid Content-Length"),
            ("Content-Length:", "invalid Content-Length"),
            ("Content-Length: 0, 5", "invalid Content-Length"),
            (
                "Content-Length: 0\r\nContent-Length: 5",
                "must not have a body",
            ),
        ] {
            let r = refusal(&good_with(&format!("{header}\r\n")));
            assert_eq!(r.status, 400, "{header}");
            assert!(r.reason.contains(why), "{header}: {r:?}");
        }
    }

    #[test]
    fn an_empty_body_is_fine_and_frames_follow_the_head() {
        for header in [
            "Content-Length: 0",
            "Content-Length: 00",
            "Content-Length: 0, 0",
        ] {
            let head = good_with(&format!("{header}\r\n"));
            let req = format!("{head}\u{81}\u{0}");
            let Parsed::Upgrade(u) = parse(req.as_bytes()) else {
                panic!("{header} refused")
            };
            assert_eq!(u.head_len, head.len(), "{header}");
        }
    }

    /// The lines of a response head that name `header`.
    fn header_lines<'a>(response: &'a str, header: &str) -> Vec<&'a str> {
        let head = response.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n")
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(header))
            })
            .collect()
    }

    #[test]
    fn a_426_has_one_connection_header_with_upgrade_and_close() {
        let r = refusal(&good_with("").replace("Version: 13", "Version: 8"));
        assert_eq!(r.status, 426);
        let mut out = Vec::new();
        error_response(r.status, &r.reason, &r.headers, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            header_lines(&out, "Connection"),
            ["Connection: Upgrade, close"],
            "{out}"
        );
        assert_eq!(
            header_lines(&out, "Upgrade"),
            ["Upgrade: websocket"],
            "{out}"
        );
        assert_eq!(
            header_lines(&out, "Sec-WebSocket-Version"),
            ["Sec-WebSocket-Version: 13"]
        );
    }

    #[test]
    fn error_responses_have_one_connection_close() {
        let mut out = Vec::new();
        error_response(400, "Bad Request (missing Host)", &[], &mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert_eq!(
            header_lines(&out, "Connection"),
            ["Connection: close"],
            "{out}"
        );
        assert!(
            out.ends_with("\r\n\r\nBad Request (missing Host)\n"),
            "{out}"
        );
        // A caller's own `close` is not repeated.
        let mut out = Vec::new();
        error_response(503, "shutting down", &[("Connection", "close")], &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            header_lines(&out, "Connection"),
            ["Connection: close"],
            "{out}"
        );
    }
}
