//! `json`: each JSON value of the peer's stream is one text message (the
//! original websocksy's `framing_json.c`, spec 3.9, with a real scanner).
//!
//! The stream is read as a sequence of JSON values (RFC 8259), optionally
//! separated by whitespace: `{"a":1}[1,2] "s"\n3\n` gives `{"a":1}`,
//! `[1,2]`, ` "s"`, `\n3`. As in the original, whitespace before a value is
//! part of its message.
//!
//! - Objects and arrays nest to `max-depth` levels (scanned iteratively);
//!   strings follow the JSON grammar: escapes (`\"`, `\\`, `\uXXXX`, ...) and
//!   UTF-8 text (validated); numbers follow the JSON grammar; `true`,
//!   `false`, `null`.
//! - A value split across reads is kept and completed by later reads; the
//!   scanner keeps its state, so each byte is scanned once.
//! - A number at the end of the buffer is incomplete: more digits may come.
//!   It is sent as soon as any byte follows it, or when the peer closes
//!   (the original sent `12` of `123` split as `12` | `3` as two values).
//! - Invalid input: with `invalid=binary` (the default) the bytes from the
//!   start of the buffer through the end of the offending line (the next
//!   `\n` after the error), or the whole buffer when there is no newline yet,
//!   are sent as one binary message, and scanning starts afresh after them.
//!   The original dumped the whole buffer; cutting at the line lets a
//!   newline-delimited stream recover at the next line. With
//!   `invalid=close` the connection closes with 1011 instead.
//! - When the peer closes: leftover whitespace is dropped, a pending
//!   top-level number is sent as text, anything else (an incomplete value)
//!   as binary.
//!
//! `framing-config`, comma-separated, all optional: `max-depth=N` (default
//! 512), `invalid=binary|close` (default `binary`).
//!
//! The same two keys are library-level options, the defaults every
//! connection starts from: `[framing:json]` lines in the config file
//! (`max-depth = 64`, `invalid = close`) or `--framing-option
//! json:invalid=close`. A connection's `framing-config` overrides them.

mod scanner;

use scanner::{Scan, Scanner};
use websocksy_plugin::config::{options, parse_uint};
use websocksy_plugin::{ConfigError, Frame, Framing, Opcode};

/// Default nesting limit.
pub const DEFAULT_MAX_DEPTH: usize = 512;

/// The `json` framing, with the defaults its library-level options set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json {
    max_depth: usize,
    close_on_invalid: bool,
}

impl Default for Json {
    fn default() -> Json {
        Json {
            max_depth: DEFAULT_MAX_DEPTH,
            close_on_invalid: false,
        }
    }
}

fn max_depth_value(v: &str) -> Result<usize, String> {
    parse_uint(v)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("max-depth must be a positive number, not {v:?}"))
}

fn invalid_value(v: &str) -> Result<bool, String> {
    match v {
        "binary" => Ok(false),
        "close" => Ok(true),
        _ => Err(format!("invalid must be binary or close, not {v:?}")),
    }
}

/// One connection's state.
pub struct State {
    scanner: Scanner,
    close_on_invalid: bool,
}

impl Framing for Json {
    type State = State;
    const NAME: &'static str = "json";

    fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "max-depth" => self.max_depth = max_depth_value(value).map_err(ConfigError::Invalid)?,
            "invalid" => {
                self.close_on_invalid = invalid_value(value).map_err(ConfigError::Invalid)?
            }
            _ => return Err(ConfigError::UnknownKey),
        }
        Ok(())
    }

    fn new_state(&self, config: Option<&str>) -> Result<State, String> {
        let mut max_depth = self.max_depth;
        let mut close_on_invalid = self.close_on_invalid;
        for item in options(config.unwrap_or("")) {
            let (k, v) = item.map_err(|e| format!("json: {e}"))?;
            match k {
                "max-depth" => max_depth = max_depth_value(v).map_err(|e| format!("json: {e}"))?,
                "invalid" => {
                    close_on_invalid = invalid_value(v).map_err(|e| format!("json: {e}"))?
                }
                _ => {
                    return Err(format!(
                        "json: unknown option {k:?} (known: max-depth, invalid)"
                    ))
                }
            }
        }
        Ok(State {
            scanner: Scanner::new(max_depth),
            close_on_invalid,
        })
    }

    fn frame(&self, state: &mut State, data: &[u8], _last_read: usize) -> Frame {
        match state.scanner.scan(data) {
            Scan::Incomplete => Frame::More,
            Scan::Complete(n) => {
                state.scanner.reset();
                Frame::text(n)
            }
            Scan::Invalid(at) => {
                state.scanner.reset();
                if state.close_on_invalid {
                    return Frame::Error(format!("invalid JSON at byte {at} of the unframed data"));
                }
                let end = data[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |i| at + i + 1);
                Frame::binary(end)
            }
        }
    }

    fn finish(&self, state: &mut State, data: &[u8]) -> Option<Opcode> {
        if data
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return None;
        }
        match state.scanner.scan(data) {
            Scan::Incomplete if state.scanner.complete_at_end() => Some(Opcode::Text),
            _ => Some(Opcode::Binary),
        }
    }
}

websocksy_plugin::export!(framings: [Json::default()]);

#[cfg(test)]
mod tests {
    use super::*;
    use websocksy_plugin::testing::{Harness, Message};

    static JSON: Json = Json {
        max_depth: DEFAULT_MAX_DEPTH,
        close_on_invalid: false,
    };

    fn harness() -> Harness<'static, Json> {
        Harness::new(&JSON, None).unwrap()
    }

    fn texts(v: &[&str]) -> Vec<Message> {
        v.iter().map(Message::text).collect()
    }

    #[test]
    fn a28_six_values_in_one_read() {
        let mut h = harness();
        let got = h
            .feed(br#"{"a":1}[1,2]"str" 123 true{"b":[{"c":null}]}"#)
            .unwrap();
        assert_eq!(
            got,
            texts(&[
                r#"{"a":1}"#,
                "[1,2]",
                r#""str""#,
                " 123",
                " true",
                r#"{"b":[{"c":null}]}"#
            ])
        );
        assert!(h.buffered().is_empty());
    }

    #[test]
    fn a28_garbage_then_value_is_one_binary_frame() {
        let mut h = harness();
        assert_eq!(
            h.feed(br#"xyz{"a":1}"#).unwrap(),
            [Message::binary(br#"xyz{"a":1}"#)]
        );
        assert!(h.buffered().is_empty());
        // The next read scans afresh.
        assert_eq!(h.feed(br#"{"b":2}"#).unwrap(), texts(&[r#"{"b":2}"#]));
    }

    #[test]
    fn split_after_comma_is_completed_by_the_next_read() {
        let mut h = harness();
        assert_eq!(h.feed(br#"{"a":[1,"#).unwrap(), []);
        assert_eq!(h.feed(br#"2]}"#).unwrap(), texts(&[r#"{"a":[1,2]}"#]));
    }

    #[test]
    fn non_ascii_strings_are_text() {
        let mut h = harness();
        assert_eq!(
            h.feed(r#"{"a":"é"}"#.as_bytes()).unwrap(),
            texts(&[r#"{"a":"é"}"#])
        );
        // Split inside the character.
        let mut h = harness();
        let v = r#"["日本語 ✓ 𝄞"]"#.as_bytes();
        assert_eq!(h.feed(&v[..4]).unwrap(), []);
        assert_eq!(h.feed(&v[4..]).unwrap(), [Message::text(v)]);
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let mut h = harness();
        let got = h.feed(br#"{"a":"say \"hi\" \\"}"b\"}""#).unwrap();
        assert_eq!(got, texts(&[r#"{"a":"say \"hi\" \\"}"#, r#""b\"}""#]));
        // A backslash at the end of a read.
        let mut h = harness();
        assert_eq!(h.feed(br#"["a\"#).unwrap(), []);
        assert_eq!(h.feed(br#""]"]"#).unwrap(), texts(&[r#"["a\"]"]"#]));
    }

    #[test]
    fn numbers_wait_for_a_delimiter() {
        let mut h = harness();
        assert_eq!(h.feed(b"12").unwrap(), []);
        assert_eq!(h.feed(b"3\n").unwrap(), texts(&["123"]));
        assert_eq!(h.buffered(), b"\n");
        assert_eq!(h.feed(b"-4.5e1").unwrap(), []);
        assert_eq!(h.finish(), Some(Message::text("\n-4.5e1")));
    }

    #[test]
    fn finish_cases() {
        let mut h = harness();
        h.feed(b"{\"a\":1}\n  \r\n").unwrap();
        assert_eq!(h.finish(), None, "trailing whitespace is dropped");
        let mut h = harness();
        h.feed(b"{\"a\":").unwrap();
        assert_eq!(h.finish(), Some(Message::binary(b"{\"a\":")));
        let mut h = harness();
        h.feed(b"1.").unwrap();
        assert_eq!(h.finish(), Some(Message::binary(b"1.")));
    }

    #[test]
    fn invalid_line_is_dumped_up_to_its_newline() {
        let mut h = harness();
        let got = h.feed(b"{\"a\" x}\n{\"b\":1}\n").unwrap();
        assert_eq!(
            got,
            [Message::binary(b"{\"a\" x}\n"), Message::text(b"{\"b\":1}")]
        );
        assert_eq!(h.buffered(), b"\n");
        // Invalid UTF-8 after a value: binary, per frame (no sticky opcode).
        let mut h = harness();
        assert_eq!(
            h.feed(b"{\"a\":1}\xff\xfe").unwrap(),
            [Message::text(b"{\"a\":1}"), Message::binary(b"\xff\xfe")]
        );
    }

    #[test]
    fn invalid_close_option() {
        let mut h = Harness::new(&JSON, Some("invalid=close")).unwrap();
        assert_eq!(h.feed(b"[1]").unwrap(), texts(&["[1]"]));
        assert!(h
            .feed(b"[1,]")
            .unwrap_err()
            .contains("invalid JSON at byte 3"));
    }

    #[test]
    fn depth_limit() {
        let mut h = Harness::new(&JSON, Some("max-depth=2")).unwrap();
        assert_eq!(h.feed(b"[[1]]").unwrap(), texts(&["[[1]]"]));
        assert_eq!(h.feed(b"[[[1]]]").unwrap(), [Message::binary(b"[[[1]]]")]);
        // The default handles deep input without recursion.
        let mut h = harness();
        let mut deep = vec![b'['; DEFAULT_MAX_DEPTH];
        deep.extend(vec![b']'; DEFAULT_MAX_DEPTH]);
        assert_eq!(h.feed(&deep).unwrap(), [Message::text(&deep)]);
    }

    #[test]
    fn byte_at_a_time_stream() {
        let input = " {\"k\":[true,false,null,-0.1e-2,\"\\u00e9\\\"\"]} [] \"x\"\n42 ";
        let mut h = harness();
        let mut got = Vec::new();
        for b in input.as_bytes() {
            got.extend(h.feed(&[*b]).unwrap());
        }
        assert_eq!(
            got,
            texts(&[
                " {\"k\":[true,false,null,-0.1e-2,\"\\u00e9\\\"\"]}",
                " []",
                " \"x\"",
                "\n42"
            ])
        );
        assert_eq!(h.finish(), None);
    }

    #[test]
    fn large_value_in_many_reads_is_linear() {
        // 1 MiB array fed in 1-byte... too slow if rescanned quadratically;
        // fed in 16-byte reads it must finish quickly.
        let mut v = b"[".to_vec();
        for i in 0..100_000 {
            v.extend_from_slice(format!("{i},").as_bytes());
        }
        v.extend_from_slice(b"0]");
        let mut h = harness();
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        for chunk in v.chunks(16) {
            got.extend(h.feed(chunk).unwrap());
        }
        assert_eq!(got, [Message::text(&v)]);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn library_options_are_the_defaults_a_config_overrides() {
        let mut json = Json::default();
        assert_eq!(json, JSON);
        json.configure("invalid", "close").unwrap();
        json.configure("max-depth", "0x2").unwrap();
        assert_eq!(
            json,
            Json {
                max_depth: 2,
                close_on_invalid: true
            }
        );
        let mut h = Harness::new(&json, None).unwrap();
        assert_eq!(h.feed(b"[[1]]").unwrap(), texts(&["[[1]]"]));
        assert!(h
            .feed(b"[[[1]]]")
            .unwrap_err()
            .contains("invalid JSON at byte 2"));
        // The connection's config wins, key by key.
        let mut h = Harness::new(&json, Some("invalid=binary")).unwrap();
        assert_eq!(h.feed(b"[[[1]]]").unwrap(), [Message::binary(b"[[[1]]]")]);
        let mut h = Harness::new(&json, Some("max-depth=3")).unwrap();
        assert_eq!(h.feed(b"[[[1]]]").unwrap(), texts(&["[[[1]]]"]));
        assert!(h.feed(b"[1,]").is_err(), "still closes on invalid");
    }

    #[test]
    fn bad_library_options() {
        let mut json = Json::default();
        assert_eq!(json.configure("depth", "3"), Err(ConfigError::UnknownKey));
        for (k, v) in [("max-depth", "0"), ("max-depth", "x"), ("invalid", "maybe")] {
            match json.configure(k, v) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(v), "{m}"),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
        assert_eq!(json, Json::default(), "a refused value changes nothing");
    }

    #[test]
    fn b46_bad_configs() {
        for bad in [
            "max-depth=0",
            "max-depth=x",
            "invalid=maybe",
            "depth=3",
            "x",
        ] {
            assert!(Harness::new(&JSON, Some(bad)).is_err(), "{bad:?}");
        }
        assert!(Harness::new(&JSON, Some("")).is_ok());
        assert!(Harness::new(&JSON, Some("max-depth=4,invalid=binary")).is_ok());
    }
}
