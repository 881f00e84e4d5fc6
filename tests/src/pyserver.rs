//! An independent WebSocket server for the client-mode tests:
//! `tests/peers/ws_server.py` (Python `websockets`, asyncio), run as a
//! child process. Its modes (`--echo`, `--sink`, `--source N SIZE`,
//! `--drop-after N`, `--status CODE`, `--require-basic`, `--tls`, ...) and
//! its event lines (`request`, `response`, `open`, `message`, `sent`,
//! `drop`, `close`) are described at the top of the script.
//!
//! Readiness is the script's `listening on HOST:PORT` line; events are
//! waited for as lines, never with sleeps.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Log, WAIT};

/// The script's path.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/ws_server.py")
}

/// The Python to run it with: `$PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A running `ws_server.py`. Killed on drop.
pub struct PyServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `wss` with `--tls`, else `ws`.
    pub scheme: &'static str,
    events: Arc<Log>,
    errors: Arc<Log>,
}

impl PyServer {
    /// Run the script with these arguments and wait for its
    /// `listening on` line (panics with its stderr if it does not come
    /// within [`WAIT`], e.g. when `websockets` is not installed).
    pub fn start(args: &[&str]) -> PyServer {
        let mut child = Command::new(python())
            .arg("-u")
            .arg(script())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {} {}: {e}", python(), script().display()));
        let events = Log::spawn_reader(child.stdout.take().expect("stdout"), "ws_server.py");
        let errors = Log::spawn_reader(child.stderr.take().expect("stderr"), "ws_server.py stderr");
        let scheme = if args.contains(&"--tls") { "wss" } else { "ws" };
        let mut s = PyServer {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            scheme,
            events,
            errors,
        };
        let Some((_, line)) = s.events.wait("listening on ", WAIT) else {
            panic!(
                "{} {} {args:?} did not start (it needs the websockets package: \
                 .ci/run installs it; {} -m pip install websockets==17.4):\n{}",
                python(),
                script().display(),
                python(),
                s.output()
            );
        };
        let addr = line.trim_start_matches("listening on ").trim();
        s.addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        s
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://ADDR/path` (`wss://` with `--tls`); `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// Wait for an event line containing `needle`; return it. Panics after
    /// [`WAIT`] with everything the server said.
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_line_for(needle, WAIT).unwrap_or_else(|| {
            panic!(
                "ws_server.py said no line with {needle:?}; it said:\n{}",
                self.output()
            )
        })
    }

    /// [`PyServer::wait_line`] with this patience, `None` when it did not come.
    pub fn wait_line_for(&self, needle: &str, wait: Duration) -> Option<String> {
        self.events.wait(needle, wait).map(|(_, l)| l)
    }

    /// Wait until `n` event lines contain `needle`; return them with the
    /// time each was read (for intervals between reconnects). Panics after
    /// `wait` with everything the server said.
    pub fn wait_lines(&self, needle: &str, n: usize, wait: Duration) -> Vec<(Instant, String)> {
        let got = self.events.wait_n(needle, n, wait);
        assert!(
            got.len() >= n,
            "ws_server.py said {} of {n} lines with {needle:?}; it said:\n{}",
            got.len(),
            self.output()
        );
        got
    }

    /// Every event line so far.
    pub fn lines(&self) -> Vec<String> {
        self.events.all()
    }

    /// Every event line so far with the time it was read.
    pub fn lines_timed(&self) -> Vec<(Instant, String)> {
        self.events.timed()
    }

    /// Number of event lines containing `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        self.events.count(needle)
    }

    /// The event lines, then anything on stderr (tracebacks), for
    /// failure messages.
    pub fn output(&self) -> String {
        let mut s = self.events.all().join("\n");
        let err = self.errors.all();
        if !err.is_empty() {
            s.push_str("\n-- stderr:\n");
            s.push_str(&err.join("\n"));
        }
        s
    }

    /// Kill it now (the port is free again when this returns; a server
    /// started with `--port` on it can bind it at once).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of `key=` in an event line: a JSON string's text (`reason=`,
/// `data=`, `cert=`), a JSON object as written (`headers=`), or the word
/// up to the next space. `None` when the line has no such field.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    if rest.starts_with('"') {
        return json_string(rest).map(|(s, _)| s);
    }
    if rest.starts_with('{') {
        // `headers=` is always last on its line.
        return Some(rest.to_string());
    }
    Some(rest.split(' ').next().unwrap_or_default().to_string())
}

/// The value of request header `name` (any case) in an `open` or
/// `request` line's `headers=` (repeated headers joined by ", ").
pub fn header(line: &str, name: &str) -> Option<String> {
    let headers = field(line, "headers")?;
    let pat = format!("{}:", json_quote(&name.to_ascii_lowercase()));
    let at = headers.find(&pat)? + pat.len();
    json_string(&headers[at..]).map(|(s, _)| s)
}

/// The payload of a `message` line's `data=`: a text message's text as
/// bytes, a binary one's bytes from hex (messages over 1024 bytes have no
/// `data=`; compare `sha256=` with [`sha256_hex`]).
pub fn message_data(line: &str) -> Option<Vec<u8>> {
    let raw = line.split(" data=").nth(1)?;
    if raw.starts_with('"') {
        return json_string(raw).map(|(s, _)| s.into_bytes());
    }
    let hex = raw.split(' ').next()?;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// SHA-256 of `data` in lower-case hex, as the `sha256=` fields give it.
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_quote(s: &str) -> String {
    format!("\"{s}\"")
}

/// Parse the JSON string at the start of `s` (the script writes ASCII
/// only: `\"`, `\\`, `\uXXXX` with surrogate pairs, and the short escapes);
/// the text and what follows it.
fn json_string(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.strip_prefix('"')?.char_indices();
    let body = &s[1..];
    let mut pending_high: Option<u32> = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                let c = match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let u = u32::from_str_radix(&hex, 16).ok()?;
                        if (0xd800..0xdc00).contains(&u) {
                            pending_high = Some(u);
                            continue;
                        }
                        let u = match pending_high.take() {
                            Some(h) if (0xdc00..0xe000).contains(&u) => {
                                0x10000 + ((h - 0xd800) << 10) + (u - 0xdc00)
                            }
                            _ => u,
                        };
                        char::from_u32(u).unwrap_or('\u{fffd}')
                    }
                    other => other,
                };
                out.push(c);
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let l = r#"close conn=2 code=1000 reason="a \"b\" \u00e9\ud83d\ude00" messages_in=1 bytes_in=5"#;
        assert_eq!(field(l, "conn").as_deref(), Some("2"));
        assert_eq!(field(l, "reason").as_deref(), Some("a \"b\" é😀"));
        assert_eq!(field(l, "bytes_in").as_deref(), Some("5"));
        assert_eq!(field(l, "nope"), None);
        let o = r#"open conn=1 path=/x?y=1 subprotocol=- cert="CN=alice,O=Example" user=- headers={"host":"h","x-a":"1, 2"}"#;
        assert_eq!(field(o, "cert").as_deref(), Some("CN=alice,O=Example"));
        assert_eq!(field(o, "path").as_deref(), Some("/x?y=1"));
        assert_eq!(header(o, "X-A").as_deref(), Some("1, 2"));
        assert_eq!(header(o, "x-b"), None);
        let m = "message conn=1 binary len=2 sha256=00 data=00ff";
        assert_eq!(message_data(m), Some(vec![0, 255]));
        let t = r#"message conn=1 text len=2 sha256=00 data="hi""#;
        assert_eq!(message_data(t), Some(b"hi".to_vec()));
        assert_eq!(
            sha256_hex(b"hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
