//! The client side of the HTTP/1.1 upgrade (RFC 6455 section 4.1): write
//! the request, then check the server's answer. The client role's way in
//! (dialling `ws://`/`wss://` servers) sends [`Request::write`] and feeds
//! what comes back to [`parse_response`] until it is complete; from the
//! 101 on, the session is the same pump as for the server role.
//!
//! The answer is checked as the RFC requires of a client: status 101,
//! `Upgrade: websocket`, `Connection: upgrade`, the `Sec-WebSocket-Accept`
//! derived from our key, and a `Sec-WebSocket-Protocol` only if it is one we
//! offered. Anything else fails the connection; a non-101 status is reported
//! with its number so the caller can log it and decide about retries (401
//! and 403 are not retried unless asked).

use std::fmt::Write as _;

use base64::Engine as _;
use tungstenite::handshake::derive_accept_key;

/// Largest response head read; a server's 101 is a few hundred bytes.
pub const MAX_RESPONSE: usize = 16 * 1024;
const MAX_HEADERS: usize = 128;

/// What goes into one upgrade request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `Host` header: the URL's host, with the port when it is not the
    /// scheme's default; IPv6 literals in brackets.
    pub host: String,
    /// Request target: path and query, `/` when the URL has none.
    pub target: String,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    pub origin: Option<String>,
    /// `user:password` for HTTP Basic authentication.
    pub basic: Option<String>,
    /// Extra headers, in order, as given (`--header 'Name: value'`).
    pub headers: Vec<(String, String)>,
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64. The RFC wants it
/// unpredictable, so it comes from OpenSSL's CSPRNG.
pub fn new_key() -> Result<String, String> {
    let mut raw = [0u8; 16];
    openssl::rand::rand_bytes(&mut raw).map_err(|e| format!("no random bytes: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

impl Request {
    /// The request head for `key`, appended to `out`.
    pub fn write(&self, key: &str, out: &mut Vec<u8>) {
        let mut head = String::with_capacity(256);
        // Infallible: writing to a String.
        let _ = write!(
            head,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            self.target, self.host
        );
        if !self.protocols.is_empty() {
            let _ = write!(
                head,
                "Sec-WebSocket-Protocol: {}\r\n",
                self.protocols.join(", ")
            );
        }
        if let Some(o) = &self.origin {
            let _ = write!(head, "Origin: {o}\r\n");
        }
        if let Some(b) = &self.basic {
            let _ = write!(
                head,
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(b)
            );
        }
        for (n, v) in &self.headers {
            let _ = write!(head, "{n}: {v}\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
    }
}

/// The server's answer, once its head is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Not all of the head yet.
    Incomplete,
    /// A valid 101: bytes after `head_len` are already WebSocket frames.
    Upgraded {
        head_len: usize,
        /// The subprotocol the server chose, one of those offered.
        protocol: Option<String>,
    },
    /// Any other status; the body (if the caller wants its first line for
    /// the log) starts at `head_len`.
    Status {
        status: u16,
        reason: String,
        head_len: usize,
    },
    /// A 101 that breaks the protocol, or no HTTP at all: fail the
    /// connection with this reason.
    Invalid(String),
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Check `buf` (what the server sent so far) against our `key` and the
/// `offered` subprotocols.
pub fn parse_response(buf: &[u8], key: &str, offered: &[String]) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE => {
            return Response::Invalid(format!("response head over {MAX_RESPONSE} bytes"))
        }
        Ok(httparse::Status::Partial) => return Response::Incomplete,
        Err(e) => return Response::Invalid(format!("not an HTTP response: {e}")),
    };
    let status = r.code.unwrap_or(0);
    if status != 101 {
        return Response::Status {
            status,
            reason: r.reason.unwrap_or("").to_string(),
            head_len,
        };
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut accept = None;
    let mut protocol = None;
    for h in r.headers.iter() {
        let Ok(v) = std::str::from_utf8(h.value) else {
            return Response::Invalid(format!("header {} is not UTF-8", h.name));
        };
        let v = v.trim();
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= v.eq_ignore_ascii_case("websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= has_token(v, "upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            if accept.is_some() {
                return Response::Invalid("two Sec-WebSocket-Accept headers".into());
            }
            accept = Some(v);
        } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if protocol.is_some() {
                return Response::Invalid("two Sec-WebSocket-Protocol headers".into());
            }
            protocol = Some(v);
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") && !v.is_empty() {
            // We offered none (RFC 6455 4.1, step 5 of the checks).
            return Response::Invalid(format!("extension {v:?} that was not offered"));
        }
    }
    if !upgrade {
        return Response::Invalid("101 without Upgrade: websocket".into());
    }
    if !connection {
        return Response::Invalid("101 without Connection: upgrade".into());
    }
    match accept {
        Some(a) if a == derive_accept_key(key.as_bytes()) => {}
        Some(_) => return Response::Invalid("wrong Sec-WebSocket-Accept".into()),
        None => return Response::Invalid("101 without Sec-WebSocket-Accept".into()),
    }
    let protocol = match protocol {
        None => None,
        Some(p) => match offered.iter().find(|o| o.as_str() == p) {
            Some(o) => Some(o.clone()),
            None => return Response::Invalid(format!("subprotocol {p:?} that was not offered")),
        },
    };
    Response::Upgraded { head_len, protocol }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC's own example key and answer (RFC 6455 section 1.3).
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn answer(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn request_carries_what_was_asked_for() {
        let r = Request {
            host: "[::1]:8080".into(),
            target: "/feed?x=1".into(),
            protocols: vec!["chat".into(), "superchat".into()],
            origin: Some("https://app.example.com".into()),
            basic: Some("alice:s3cret".into()),
            headers: vec![("X-Token".into(), "abc".into())],
        };
        let mut out = Vec::new();
        r.write(KEY, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /feed?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\n"));
        for line in [
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            &format!("Sec-WebSocket-Key: {KEY}\r\n"),
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Protocol: chat, superchat\r\n",
            "Origin: https://app.example.com\r\n",
            "Authorization: Basic YWxpY2U6czNjcmV0\r\n",
            "X-Token: abc\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from {text:?}");
        }
        assert!(text.ends_with("\r\n\r\n"));
        // The bridge's own server side accepts it.
        match crate::ws::upgrade_server::parse(text.as_bytes()) {
            crate::ws::upgrade_server::Parsed::Upgrade(u) => {
                assert_eq!(u.accept, ACCEPT);
                assert_eq!(u.protocols, ["chat", "superchat"]);
            }
            _ => panic!("the server side refused {text:?}"),
        }
    }

    #[test]
    fn keys_are_fresh_and_well_formed() {
        let (a, b) = (new_key().unwrap(), new_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&a)
                .unwrap()
                .len(),
            16
        );
    }

    #[test]
    fn a_valid_101_with_frames_behind_it() {
        let mut buf = answer("Sec-WebSocket-Protocol: chat\r\n");
        let head = buf.len();
        buf.extend_from_slice(b"\x81\x02hi");
        assert_eq!(
            parse_response(&buf, KEY, &["chat".into()]),
            Response::Upgraded {
                head_len: head,
                protocol: Some("chat".into())
            }
        );
        assert_eq!(
            parse_response(&buf[..head - 1], KEY, &[]),
            Response::Incomplete
        );
    }

    #[test]
    fn other_statuses_are_reported_with_their_number() {
        let buf = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 5\r\n\r\nno!\r\n";
        match parse_response(buf, KEY, &[]) {
            Response::Status {
                status, head_len, ..
            } => {
                assert_eq!(status, 401);
                assert_eq!(&buf[head_len..], b"no!\r\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_101_that_breaks_the_protocol_is_invalid() {
        let bad = |buf: &[u8], offered: &[String]| {
            matches!(parse_response(buf, KEY, offered), Response::Invalid(_))
        };
        let wrong_accept = answer("").replace_ascii(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(bad(&wrong_accept, &[]));
        assert!(bad(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            &[]
        ));
        assert!(bad(
            &answer("").replace_ascii("Upgrade: websocket", "Upgrade: h2c"),
            &[]
        ));
        assert!(bad(
            &answer("").replace_ascii("Connection: Upgrade", "Connection: close"),
            &[]
        ));
        // A subprotocol or an extension we never offered.
        assert!(bad(&answer("Sec-WebSocket-Protocol: chat\r\n"), &[]));
        assert!(bad(
            &answer("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            &[]
        ));
        assert!(bad(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", &[]));
        assert!(bad(&vec![b'a'; MAX_RESPONSE], &[]));
    }

    trait ReplaceAscii {
        fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8>;
    }

    impl ReplaceAscii for Vec<u8> {
        fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8> {
            String::from_utf8_lossy(self).replace(from, to).into_bytes()
        }
    }
}
