//! `auto` and `binary`: every read becomes a message as soon as it arrives.

use super::{Framed, Framing, FramingState, Opcode};

/// Frames everything buffered: Text if it is valid UTF-8, else Binary.
///
/// Unlike the original, a multi-byte character cut in two by a read boundary
/// does not turn both halves into binary messages: the valid prefix goes out
/// as Text and the 1-3 bytes of the unfinished character wait for the next
/// read. `framing-config` is ignored.
pub struct Auto;

/// Frames everything buffered as Binary. `framing-config` is ignored.
pub struct Binary;

struct AutoState;

struct BinaryState;

impl Framing for Auto {
    fn new_state(&self, _config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        Ok(Box::new(AutoState))
    }
}

impl Framing for Binary {
    fn new_state(&self, _config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        Ok(Box::new(BinaryState))
    }
}

impl FramingState for AutoState {
    fn frame(&mut self, data: &[u8], _last_read: usize) -> Framed {
        if data.is_empty() {
            return Framed::More;
        }
        match std::str::from_utf8(data) {
            Ok(_) => Framed::Message {
                len: data.len(),
                opcode: Opcode::Text,
            },
            // `error_len() == None` means the input merely ended too early:
            // the rest of the character is most likely in the next read.
            // At most 3 bytes are held back, so this cannot fill the buffer.
            Err(e) if e.error_len().is_none() => match e.valid_up_to() {
                0 => Framed::More,
                len => Framed::Message {
                    len,
                    opcode: Opcode::Text,
                },
            },
            Err(_) => Framed::Message {
                len: data.len(),
                opcode: Opcode::Binary,
            },
        }
    }
}

impl FramingState for BinaryState {
    fn frame(&mut self, data: &[u8], _last_read: usize) -> Framed {
        if data.is_empty() {
            return Framed::More;
        }
        Framed::Message {
            len: data.len(),
            opcode: Opcode::Binary,
        }
    }

    fn finish(&mut self, _data: &[u8]) -> Option<Opcode> {
        // Never reached with bytes in practice (frame() takes everything),
        // but a binary framing should not switch to Text at the last moment.
        Some(Opcode::Binary)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{drive, Event};
    use super::*;

    fn auto() -> Box<dyn FramingState> {
        Auto.new_state(None).unwrap()
    }

    fn text(b: &[u8]) -> Event {
        Event::Message(Opcode::Text, b.to_vec())
    }

    fn bin(b: &[u8]) -> Event {
        Event::Message(Opcode::Binary, b.to_vec())
    }

    #[test]
    fn case22_binary_bytes_are_binary() {
        let (ev, rest) = drive(auto().as_mut(), &[b"\xff\x00"]);
        assert_eq!(ev, [bin(b"\xff\x00")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn case22_utf8_is_one_text_frame() {
        let s = "héllo €".as_bytes();
        let (ev, rest) = drive(auto().as_mut(), &[s]);
        assert_eq!(ev, [text(s)]);
        assert!(rest.is_empty());
    }

    #[test]
    fn each_read_is_one_message() {
        let (ev, rest) = drive(auto().as_mut(), &[b"one", b"two\n", b"\xff\x01"]);
        assert_eq!(ev, [text(b"one"), text(b"two\n"), bin(b"\xff\x01")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn split_character_stays_text() {
        // "café!" with the é (C3 A9) split between two reads.
        let (ev, rest) = drive(auto().as_mut(), &[b"caf\xc3", b"\xa9!"]);
        assert_eq!(ev, [text(b"caf"), text("é!".as_bytes())]);
        assert!(rest.is_empty());
    }

    #[test]
    fn split_character_alone_waits() {
        let mut st = auto();
        assert_eq!(st.frame(b"\xc3", 1), Framed::More);
        let (ev, rest) = drive(st.as_mut(), &[b"\xc3", b"\xa9"]);
        assert_eq!(ev, [text("é".as_bytes())]);
        assert!(rest.is_empty());
    }

    #[test]
    fn four_byte_character_over_three_reads() {
        let (ev, rest) = drive(auto().as_mut(), &[b"\xf0\x9f", b"\x98", b"\x80x"]);
        assert_eq!(ev, [text("😀x".as_bytes())]);
        assert!(rest.is_empty());
    }

    #[test]
    fn unfinished_character_then_garbage_is_binary() {
        let (ev, rest) = drive(auto().as_mut(), &[b"\xc3", b"\xff"]);
        assert_eq!(ev, [bin(b"\xc3\xff")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn invalid_before_unfinished_tail_is_binary() {
        let (ev, rest) = drive(auto().as_mut(), &[b"a\xffb\xc3"]);
        assert_eq!(ev, [bin(b"a\xffb\xc3")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn strict_utf8() {
        // The original's loose check accepted these; std rejects them.
        for bad in [
            &b"\xc0\xaf"[..],
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xf8\x88\x80\x80",
        ] {
            let (ev, _) = drive(auto().as_mut(), &[bad]);
            assert_eq!(ev, [bin(bad)], "{bad:x?}");
        }
    }

    #[test]
    fn leftover_at_eof_is_binary() {
        let mut st = auto();
        let (ev, rest) = drive(st.as_mut(), &[b"ab\xe2\x82"]);
        assert_eq!(ev, [text(b"ab")]);
        assert_eq!(rest, b"\xe2\x82");
        assert_eq!(st.finish(&rest), Some(Opcode::Binary));
    }

    #[test]
    fn empty_buffer_needs_more() {
        assert_eq!(auto().frame(b"", 0), Framed::More);
        assert_eq!(Binary.new_state(None).unwrap().frame(b"", 0), Framed::More);
    }

    #[test]
    fn config_is_ignored() {
        assert!(Auto.new_state(Some("whatever")).is_ok());
        assert!(Binary.new_state(Some("whatever")).is_ok());
    }

    #[test]
    fn binary_frames_everything_as_binary() {
        let mut st = Binary.new_state(None).unwrap();
        let (ev, rest) = drive(st.as_mut(), &[b"hello", b"\xc3", b"\xa9"]);
        assert_eq!(ev, [bin(b"hello"), bin(b"\xc3"), bin(b"\xa9")]);
        assert!(rest.is_empty());
        assert_eq!(st.finish(b"text"), Some(Opcode::Binary));
    }

    #[test]
    fn burst_concatenates_to_input() {
        let input: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let reads: Vec<&[u8]> = input.chunks(16383).collect();
        for framing in [&Auto as &dyn Framing, &Binary] {
            let (ev, rest) = drive(framing.new_state(None).unwrap().as_mut(), &reads);
            assert!(rest.is_empty());
            let mut out = Vec::new();
            for e in ev {
                match e {
                    Event::Message(_, b) => out.extend(b),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(out, input);
        }
    }
}
