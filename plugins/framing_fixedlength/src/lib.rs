//! `fixedlength`: every N bytes of the peer's stream are one binary message
//! (the original websocksy's `framing_fixedlength.c`, spec 3.7).
//!
//! `framing-config` is N, read like C's `strtoul(config, NULL, 0)`: decimal,
//! `0x` hexadecimal or leading-`0` octal (`16`, `0x10`, `020`). `0` passes
//! everything through as it arrives.
//!
//! Decisions where the original misbehaved:
//! - no config: the original crashed (NULL `strtoul`); here state creation
//!   fails with a message, so the connection is refused with HTTP 500 (or
//!   start-up stops, when the config came from the command line);
//! - an unparsable config (`abc`, `4abc`): the original silently passed
//!   everything through (strtoul returned 0 or a prefix); here it is a
//!   config error;
//! - bytes left when the peer closes (a partial record) are sent as one last
//!   binary message rather than lost.

use websocksy_plugin::config::parse_uint;
use websocksy_plugin::{Frame, Framing, Opcode};

/// The `fixedlength` framing.
pub struct FixedLength;

impl Framing for FixedLength {
    /// The record size; 0 = pass-through.
    type State = usize;
    const NAME: &'static str = "fixedlength";

    fn new_state(&self, config: Option<&str>) -> Result<usize, String> {
        let config = config
            .ok_or("fixedlength needs the record size as its framing config (e.g. 16 or 0x10)")?;
        let n = parse_uint(config).map_err(|e| format!("fixedlength: bad record size: {e}"))?;
        usize::try_from(n).map_err(|_| format!("fixedlength: record size {n} is too large"))
    }

    fn frame(&self, size: &mut usize, data: &[u8], _last_read: usize) -> Frame {
        match *size {
            0 => Frame::binary(data.len()),
            n if data.len() >= n => Frame::binary(n),
            _ => Frame::More,
        }
    }

    fn finish(&self, _: &mut usize, _: &[u8]) -> Option<Opcode> {
        Some(Opcode::Binary)
    }
}

websocksy_plugin::export!(framings: [FixedLength]);

#[cfg(test)]
mod tests {
    use super::*;
    use websocksy_plugin::testing::{Harness, Message};

    fn bin(chunks: &[&[u8]]) -> Vec<Message> {
        chunks.iter().map(Message::binary).collect()
    }

    #[test]
    fn a26_four_byte_records() {
        let mut h = Harness::new(&FixedLength, Some("4")).unwrap();
        assert_eq!(h.feed(b"abcdefghij").unwrap(), bin(&[b"abcd", b"efgh"]));
        assert_eq!(h.buffered(), b"ij");
        assert_eq!(h.feed(b"kl").unwrap(), bin(&[b"ijkl"]));
        assert_eq!(h.finish(), None);
    }

    #[test]
    fn a26_hex_config() {
        let mut h = Harness::new(&FixedLength, Some("0x3")).unwrap();
        assert_eq!(h.feed(b"abcdefg").unwrap(), bin(&[b"abc", b"def"]));
        assert_eq!(h.finish(), Some(Message::binary(b"g")));
    }

    #[test]
    fn octal_config() {
        let mut h = Harness::new(&FixedLength, Some("010")).unwrap();
        assert_eq!(h.feed(b"0123456789").unwrap(), bin(&[b"01234567"]));
    }

    #[test]
    fn a26_zero_passes_through() {
        let mut h = Harness::new(&FixedLength, Some("0")).unwrap();
        assert_eq!(h.feed(b"abcdefghij").unwrap(), bin(&[b"abcdefghij"]));
        assert_eq!(h.feed(b"k").unwrap(), bin(&[b"k"]));
    }

    #[test]
    fn records_split_over_many_reads() {
        let mut h = Harness::new(&FixedLength, Some("5")).unwrap();
        let mut got = Vec::new();
        for b in b"hello world!!" {
            got.extend(h.feed(&[*b]).unwrap());
        }
        assert_eq!(got, bin(&[b"hello", b" worl"]));
        assert_eq!(h.finish(), Some(Message::binary(b"d!!")));
    }

    #[test]
    fn text_looking_records_stay_binary() {
        let mut h = Harness::new(&FixedLength, Some("2")).unwrap();
        assert_eq!(h.feed(b"ok").unwrap(), bin(&[b"ok"]));
    }

    #[test]
    fn b46_missing_or_bad_config_is_an_error_not_a_crash() {
        let e = Harness::new(&FixedLength, None).err().unwrap();
        assert!(e.contains("record size"), "{e}");
        for bad in ["", "abc", "4abc", "-1", "0x", "08", "99999999999999999999"] {
            assert!(Harness::new(&FixedLength, Some(bad)).is_err(), "{bad:?}");
        }
    }
}
