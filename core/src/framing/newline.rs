//! `newline`: one message per line, Text when the line is valid UTF-8.

use super::separator::frame_end;
use super::{Framed, Framing, FramingState, Opcode};

/// Cuts the stream after every line ending; the line ending stays in the
/// message. `framing-config` picks the ending (case-insensitive):
/// `crlf` (`\r\n`), `lf` (`\n`), `cr` (`\r`) or `lfcr` (`\n\r`). Unset or
/// empty means `lf`; the original crashed there, and `lf` is what a line
/// protocol most likely uses. Any other value is a config error, where the
/// original silently fell back to `crlf`.
///
/// Each message is Text if its own bytes are valid UTF-8, else Binary (the
/// original let one text line make every later line of the same read Text).
pub struct Newline;

/// The accepted configs, for the error message.
const ACCEPTED: &str = "crlf, lf, cr, lfcr (unset or empty means lf)";

fn line_ending(config: Option<&str>) -> Result<&'static [u8], String> {
    let config = config.unwrap_or("").trim();
    let ending: &'static [u8] = match config.to_ascii_lowercase().as_str() {
        "" | "lf" => b"\n",
        "crlf" => b"\r\n",
        "cr" => b"\r",
        "lfcr" => b"\n\r",
        _ => {
            return Err(format!(
            "newline framing-config: unknown line ending \"{config}\", expected one of {ACCEPTED}"
        ))
        }
    };
    Ok(ending)
}

struct NewlineState {
    ending: &'static [u8],
}

impl Framing for Newline {
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        Ok(Box::new(NewlineState {
            ending: line_ending(config)?,
        }))
    }
}

impl FramingState for NewlineState {
    fn frame(&mut self, data: &[u8], last_read: usize) -> Framed {
        match frame_end(self.ending, data, last_read) {
            Some(len) => Framed::Message {
                len,
                opcode: Opcode::detect(&data[..len]),
            },
            None => Framed::More,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{drive, Event};
    use super::*;

    fn newline(config: &str) -> Box<dyn FramingState> {
        Newline.new_state(Some(config)).unwrap()
    }

    fn text(b: &[u8]) -> Event {
        Event::Message(Opcode::Text, b.to_vec())
    }

    fn bin(b: &[u8]) -> Event {
        Event::Message(Opcode::Binary, b.to_vec())
    }

    #[test]
    fn configs() {
        assert_eq!(line_ending(Some("crlf")).unwrap(), b"\r\n");
        assert_eq!(line_ending(Some("CRLF")).unwrap(), b"\r\n");
        assert_eq!(line_ending(Some("lf")).unwrap(), b"\n");
        assert_eq!(line_ending(Some("Cr")).unwrap(), b"\r");
        assert_eq!(line_ending(Some("lfcr")).unwrap(), b"\n\r");
        assert_eq!(line_ending(Some(" crlf ")).unwrap(), b"\r\n");
    }

    #[test]
    fn case46_missing_or_empty_config_means_lf() {
        assert_eq!(line_ending(None).unwrap(), b"\n");
        assert_eq!(line_ending(Some("")).unwrap(), b"\n");
        let (ev, rest) = drive(Newline.new_state(None).unwrap().as_mut(), &[b"a\r\nb\n"]);
        assert_eq!(ev, [text(b"a\r\n"), text(b"b\n")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn unknown_config_is_an_error_naming_the_values() {
        for bad in ["crlf2", "\\n", "windows"] {
            let err = Newline.new_state(Some(bad)).err().unwrap();
            assert!(err.contains(bad), "{err}");
            for accepted in ["crlf", "lf", "cr", "lfcr"] {
                assert!(err.contains(accepted), "{err}");
            }
        }
    }

    #[test]
    fn case24_lines_across_reads() {
        let (ev, rest) = drive(newline("lf").as_mut(), &[b"line1\nline2\npart", b"ial\n"]);
        assert_eq!(ev, [text(b"line1\n"), text(b"line2\n"), text(b"partial\n")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn case48_crlf_split_across_reads() {
        let (ev, rest) = drive(newline("crlf").as_mut(), &[b"abc\r", b"\ndef\r\n"]);
        assert_eq!(ev, [text(b"abc\r\n"), text(b"def\r\n")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn case49_opcode_is_per_frame() {
        let (ev, rest) = drive(newline("lf").as_mut(), &[b"txt\n\xff\xfe\n"]);
        assert_eq!(ev, [text(b"txt\n"), bin(b"\xff\xfe\n")]);
        assert!(rest.is_empty());
        // And back to text after a binary line in the same read.
        let (ev, _) = drive(newline("lf").as_mut(), &[b"\xff\nok\n"]);
        assert_eq!(ev, [bin(b"\xff\n"), text(b"ok\n")]);
    }

    #[test]
    fn utf8_line_split_mid_character() {
        let (ev, _) = drive(newline("lf").as_mut(), &[b"caf\xc3", b"\xa9\n"]);
        assert_eq!(ev, [text("café\n".as_bytes())]);
    }

    #[test]
    fn crlf_ignores_bare_lf_and_cr() {
        let (ev, rest) = drive(newline("crlf").as_mut(), &[b"a\nb\rc\r\nd"]);
        assert_eq!(ev, [text(b"a\nb\rc\r\n")]);
        assert_eq!(rest, b"d");
    }

    #[test]
    fn lfcr_and_cr() {
        let (ev, rest) = drive(newline("lfcr").as_mut(), &[b"a\r\nb\n", b"\rc"]);
        assert_eq!(ev, [text(b"a\r\nb\n\r")]);
        assert_eq!(rest, b"c");
        let (ev, rest) = drive(newline("cr").as_mut(), &[b"a\rb\r", b"\n"]);
        assert_eq!(ev, [text(b"a\r"), text(b"b\r")]);
        assert_eq!(rest, b"\n");
    }

    #[test]
    fn leftover_uses_default_finish() {
        let mut st = newline("lf");
        let (_, rest) = drive(st.as_mut(), &[b"done\npartial"]);
        assert_eq!(rest, b"partial");
        assert_eq!(st.finish(&rest), Some(Opcode::Text));
        assert_eq!(st.finish(b"\xff"), Some(Opcode::Binary));
    }

    #[test]
    fn empty_buffer_needs_more() {
        assert_eq!(newline("lf").frame(b"", 0), Framed::More);
    }
}
