//! `separator`: a message ends just after each occurrence of a byte string.

use super::{Framed, Framing, FramingState, Opcode};

/// Cuts the stream after every occurrence of the separator given as
/// `framing-config` (escapes as in [`parse_escapes`]); the separator stays
/// in the message, and messages are Binary. An unset or empty config passes
/// everything through like `binary`.
pub struct Separator;

/// Turn a config string into bytes, resolving the escapes `\r \t \n \f \0 \\`
/// and `\xHH` (exactly two hex digits, either case). Any other character
/// stands for its UTF-8 bytes.
///
/// The original silently mangled bad escapes (and hung the server on a
/// short `\x`), so every malformed escape is an error naming it.
pub fn parse_escapes(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        let byte = match chars.next() {
            Some('r') => b'\r',
            Some('t') => b'\t',
            Some('n') => b'\n',
            Some('f') => 0x0c,
            Some('0') => 0,
            Some('\\') => b'\\',
            Some('x') => {
                let digits: String = chars.clone().take(2).collect();
                match hex_byte(&digits) {
                    Some(b) => {
                        chars.nth(1);
                        b
                    }
                    None => {
                        return Err(format!(
                            "invalid escape \"\\x{digits}\": \\x needs exactly two hex digits"
                        ))
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "invalid escape \"\\{other}\": accepted are \\r \\t \\n \\f \\0 \\\\ \\xHH"
                ))
            }
            None => return Err("trailing lone \"\\\": write \"\\\\\" for a backslash".into()),
        };
        out.push(byte);
    }
    Ok(out)
}

fn hex_byte(digits: &str) -> Option<u8> {
    // from_str_radix alone would accept a sign ("+1") and a single digit.
    if digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        u8::from_str_radix(digits, 16).ok()
    } else {
        None
    }
}

/// Where the first message in `data` ends (just past the first `sep`), if
/// any. `sep` must not be empty.
///
/// Everything before the last `last_read` bytes was already searched by the
/// call that returned `More`, so only a separator that straddles the old/new
/// boundary (starting at most `sep.len() - 1` bytes back) or lies entirely in
/// the new bytes can be found. Starting there finds split separators, which
/// the original missed, and keeps the total work linear in the stream length
/// instead of rescanning the buffer on every read.
pub(super) fn frame_end(sep: &[u8], data: &[u8], last_read: usize) -> Option<usize> {
    debug_assert!(!sep.is_empty());
    let unsearched = last_read.min(data.len());
    let start = (data.len() - unsearched).saturating_sub(sep.len() - 1);
    data[start..]
        .windows(sep.len())
        .position(|w| w == sep)
        .map(|i| start + i + sep.len())
}

struct SeparatorState {
    sep: Vec<u8>,
}

impl Framing for Separator {
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        let sep = parse_escapes(config.unwrap_or(""))
            .map_err(|e| format!("separator framing-config: {e}"))?;
        Ok(Box::new(SeparatorState { sep }))
    }
}

impl FramingState for SeparatorState {
    fn frame(&mut self, data: &[u8], last_read: usize) -> Framed {
        if data.is_empty() {
            return Framed::More;
        }
        if self.sep.is_empty() {
            return Framed::Message {
                len: data.len(),
                opcode: Opcode::Binary,
            };
        }
        match frame_end(&self.sep, data, last_read) {
            Some(len) => Framed::Message {
                len,
                opcode: Opcode::Binary,
            },
            None => Framed::More,
        }
    }

    /// Separator frames are always binary; the last one is no different.
    fn finish(&mut self, _data: &[u8]) -> Option<Opcode> {
        Some(Opcode::Binary)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{drive, Event};
    use super::*;

    fn sep(config: &str) -> Box<dyn FramingState> {
        Separator.new_state(Some(config)).unwrap()
    }

    fn bin(b: &[u8]) -> Event {
        Event::Message(Opcode::Binary, b.to_vec())
    }

    #[test]
    fn escapes() {
        assert_eq!(parse_escapes(r"\r\t\n\f\0\\").unwrap(), b"\r\t\n\x0c\0\\");
        assert_eq!(parse_escapes("plain;").unwrap(), b"plain;");
        assert_eq!(parse_escapes("é").unwrap(), "é".as_bytes());
        assert_eq!(parse_escapes("").unwrap(), b"");
    }

    #[test]
    fn case47_hex_escape_uses_both_digits() {
        assert_eq!(parse_escapes(r"\x41").unwrap(), b"A");
        assert_eq!(parse_escapes(r"\x0a\x0D").unwrap(), b"\n\r");
        assert_eq!(parse_escapes(r"\xfF\x00").unwrap(), b"\xff\x00");
        // Only two digits belong to the escape.
        assert_eq!(parse_escapes(r"\x41B").unwrap(), b"AB");
        assert_eq!(parse_escapes(r"a\x41b").unwrap(), b"aAb");
    }

    #[test]
    fn bad_escapes_are_errors_naming_them() {
        for (bad, named) in [
            (r"\x4", r"\x4"),
            (r"\x", r"\x"),
            (r"\xZZ", r"\xZZ"),
            (r"\x4g", r"\x4g"),
            (r"\x+1", r"\x+1"),
            (r"\xé1", r"\xé1"),
            (r"\q", r"\q"),
            (r"a\", r"\"),
        ] {
            let err = parse_escapes(bad).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_config_fails_new_state() {
        let err = Separator.new_state(Some(r"\x4")).err().unwrap();
        assert!(err.contains("separator") && err.contains(r"\x4"), "{err}");
        assert!(Separator.new_state(Some(r"\q")).is_err());
    }

    #[test]
    fn case25_separator_included_rest_kept() {
        let (ev, rest) = drive(sep(";;").as_mut(), &[b"a;;b;;c"]);
        assert_eq!(ev, [bin(b"a;;"), bin(b"b;;")]);
        assert_eq!(rest, b"c");
    }

    #[test]
    fn case47_hex_separator_matches_0x41() {
        let (ev, rest) = drive(sep(r"\x41").as_mut(), &[b"xAy\x01zAw"]);
        assert_eq!(ev, [bin(b"xA"), bin(b"y\x01zA")]);
        assert_eq!(rest, b"w");
    }

    #[test]
    fn case48_split_separator_is_found() {
        let (ev, rest) = drive(sep(r"\r\n").as_mut(), &[b"abc\r", b"\ndef\r\n"]);
        assert_eq!(ev, [bin(b"abc\r\n"), bin(b"def\r\n")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn separator_split_over_three_reads() {
        let (ev, rest) = drive(sep("<=>").as_mut(), &[b"x<", b"=", b">y<=", b">"]);
        assert_eq!(ev, [bin(b"x<=>"), bin(b"y<=>")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn overlapping_prefix_across_reads() {
        // "aab" must be found even though the old bytes end in a partial match.
        let (ev, rest) = drive(sep("aab").as_mut(), &[b"xa", b"aab"]);
        assert_eq!(ev, [bin(b"xaaab")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn message_spanning_many_reads() {
        let (ev, rest) = drive(sep(";").as_mut(), &[b"ab", b"cd", b"ef;g", b"h"]);
        assert_eq!(ev, [bin(b"abcdef;")]);
        assert_eq!(rest, b"gh");
    }

    #[test]
    fn separator_only_and_back_to_back() {
        let (ev, rest) = drive(sep(";").as_mut(), &[b";;a;", b";"]);
        assert_eq!(ev, [bin(b";"), bin(b";"), bin(b"a;"), bin(b";")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn text_is_still_binary() {
        let (ev, _) = drive(sep("\n").as_mut(), &[b"hello\n"]);
        assert_eq!(ev, [bin(b"hello\n")]);
    }

    #[test]
    fn missing_or_empty_config_passes_through() {
        for config in [None, Some("")] {
            let mut st = Separator.new_state(config).unwrap();
            let (ev, rest) = drive(st.as_mut(), &[b"a;b", b"\nc"]);
            assert_eq!(ev, [bin(b"a;b"), bin(b"\nc")], "{config:?}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn leftover_is_binary_like_every_separator_frame() {
        let mut st = sep(";");
        let (_, rest) = drive(st.as_mut(), &[b"a;tail"]);
        assert_eq!(rest, b"tail");
        assert_eq!(st.finish(&rest), Some(Opcode::Binary));
        assert_eq!(st.finish(b"\xff"), Some(Opcode::Binary));
    }

    #[test]
    fn empty_buffer_needs_more() {
        assert_eq!(sep(";").frame(b"", 0), Framed::More);
    }

    #[test]
    fn searched_bytes_are_not_rescanned() {
        // The contract says bytes before the last `last_read` were searched
        // already; a separator there is not looked for again.
        assert_eq!(frame_end(b";", b"a;b", 1), None);
        assert_eq!(frame_end(b";", b"a;b", 2), Some(2));
        // A separator straddling the boundary is still found.
        assert_eq!(frame_end(b"\r\n", b"abc\r\nd", 2), Some(5));
        assert_eq!(frame_end(b"abc", b"xabc", 1), Some(4));
        // An oversized `last_read` is clamped instead of panicking.
        assert_eq!(frame_end(b";", b"a;", 99), Some(2));
    }

    #[test]
    fn work_is_linear_in_stream_length() {
        // One byte per read without a separator: a rescan from 0 on every
        // call would be quadratic (~5e9 comparisons here) and time out.
        let mut st = sep("\r\n");
        let mut buf = Vec::new();
        for _ in 0..100_000 {
            buf.push(b'x');
            assert_eq!(st.frame(&buf, 1), Framed::More);
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(
            st.frame(&buf, 2),
            Framed::Message {
                len: buf.len(),
                opcode: Opcode::Binary
            }
        );
    }
}
