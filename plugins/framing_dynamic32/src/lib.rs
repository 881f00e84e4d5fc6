//! Length-prefixed records: the framings `lengthprefix` and `dynamic32`.
//!
//! # `lengthprefix`
//!
//! Each record of the peer's stream is `offset` bytes of anything, a length
//! field of `bytes` bytes, then the payload; the length field's value plus
//! `adjust` is the payload's size. Each record is one binary message.
//! `framing-config` is a comma-separated list of (all optional):
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `bytes=1\|2\|4\|8` | size of the length field | `4` |
//! | `endian=big\|little` | byte order of the length field | `big` |
//! | `offset=N` | bytes before the length field (part of the header) | `0` |
//! | `adjust=N` | signed, added to the length field to get the payload size: `-4` when a 4-byte field counts itself | `0` |
//! | `include-header=yes\|no` | whether the message includes the header (offset bytes and length field) or is the payload only | `yes` |
//! | `max=N` | largest message (as sent) accepted; a larger record closes the connection with 1011 | none |
//!
//! Numbers are read like C's `strtoul(.., 0)` (`16`, `0x10`, `020`). Records
//! larger than the host's maximum message size close the connection with
//! 1009 even without `max`. A length that does not fit the address space, or
//! a negative payload size after `adjust`, closes it with 1011. With
//! `include-header=no` a record with an empty payload sends nothing.
//!
//! # `dynamic32`
//!
//! The original websocksy's `framing_dynamic32.c` (spec 3.8): a 4-byte
//! length at `offset`, the record being `offset + 4 + static + length` bytes,
//! header included. Config: `offset=N`, `static=N` (signed here; unsigned in
//! the original) and `endian=big|little`, comma-separated. It is
//! `lengthprefix` with `bytes=4`, `adjust=static` and `include-header=yes`,
//! little-endian by default.
//!
//! Fixed defects of the original: a config with a comma hung the server (now
//! parsed properly), no config crashed it (now the defaults: `offset=0`,
//! `static=0`, little endian), unknown keys and an `endian` other than `big`
//! or `little` were ignored (now config errors).
//!
//! Both: bytes left when the peer closes (a truncated record) are sent as one
//! last binary message rather than lost.

use websocksy_plugin::config::{options, parse_bool, parse_int, parse_uint};
use websocksy_plugin::{Frame, Framing, Opcode};

/// How records are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Size of the length field: 1, 2, 4 or 8.
    pub bytes: usize,
    /// Big-endian length field.
    pub big_endian: bool,
    /// Bytes before the length field.
    pub offset: usize,
    /// Added to the length field to get the payload size.
    pub adjust: i64,
    /// Whether messages include the header.
    pub include_header: bool,
    /// Largest message accepted.
    pub max: Option<u64>,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            bytes: 4,
            big_endian: true,
            offset: 0,
            adjust: 0,
            include_header: true,
            max: None,
        }
    }
}

fn endian(v: &str) -> Result<bool, String> {
    match v {
        "big" => Ok(true),
        "little" => Ok(false),
        _ => Err(format!("endian must be big or little, not {v:?}")),
    }
}

fn size(v: &str) -> Result<usize, String> {
    usize::try_from(parse_uint(v)?).map_err(|_| format!("{v:?} is too large"))
}

impl Layout {
    /// Parse a `lengthprefix` config (`None`: defaults).
    pub fn lengthprefix(config: Option<&str>) -> Result<Layout, String> {
        let mut l = Layout::default();
        for item in options(config.unwrap_or("")) {
            let (k, v) = item?;
            let bad = |e: String| format!("lengthprefix: {k}: {e}");
            match k {
                "bytes" => {
                    l.bytes = match parse_uint(v).map_err(bad)? {
                        n @ (1 | 2 | 4 | 8) => n as usize,
                        n => return Err(format!("lengthprefix: bytes must be 1, 2, 4 or 8, not {n}")),
                    }
                }
                "endian" => l.big_endian = endian(v).map_err(bad)?,
                "offset" => l.offset = size(v).map_err(bad)?,
                "adjust" => l.adjust = parse_int(v).map_err(bad)?,
                "include-header" => l.include_header = parse_bool(v).map_err(bad)?,
                "max" => l.max = Some(parse_uint(v).map_err(bad)?),
                _ => {
                    return Err(format!(
                        "lengthprefix: unknown option {k:?} (known: bytes, endian, offset, adjust, include-header, max)"
                    ))
                }
            }
        }
        l.check()
    }

    /// Parse a `dynamic32` config (`None`: defaults).
    pub fn dynamic32(config: Option<&str>) -> Result<Layout, String> {
        let mut l = Layout {
            big_endian: false,
            ..Layout::default()
        };
        for item in options(config.unwrap_or("")) {
            let (k, v) = item?;
            let bad = |e: String| format!("dynamic32: {k}: {e}");
            match k {
                "offset" => l.offset = size(v).map_err(bad)?,
                "static" => l.adjust = parse_int(v).map_err(bad)?,
                "endian" => l.big_endian = endian(v).map_err(bad)?,
                _ => {
                    return Err(format!(
                        "dynamic32: unknown option {k:?} (known: offset, static, endian)"
                    ))
                }
            }
        }
        l.check()
    }

    fn check(self) -> Result<Layout, String> {
        if self.offset.checked_add(self.bytes).is_none() {
            return Err(format!("offset {} is too large", self.offset));
        }
        Ok(self)
    }

    fn header(&self) -> usize {
        self.offset + self.bytes
    }

    fn length_field(&self, data: &[u8]) -> u64 {
        let field = &data[self.offset..self.header()];
        let mut raw = [0u8; 8];
        if self.big_endian {
            raw[8 - self.bytes..].copy_from_slice(field);
            u64::from_be_bytes(raw)
        } else {
            raw[..self.bytes].copy_from_slice(field);
            u64::from_le_bytes(raw)
        }
    }

    /// The next record's (total size, header size to discard first).
    fn record(&self, data: &[u8]) -> Result<Option<usize>, String> {
        let header = self.header();
        if data.len() < header {
            return Ok(None);
        }
        let field = self.length_field(data);
        let payload = i128::from(field) + i128::from(self.adjust);
        if payload < 0 {
            return Err(format!(
                "length field {field} with adjust {} gives a negative payload size",
                self.adjust
            ));
        }
        let total = usize::try_from(payload + header as i128).map_err(|_| {
            format!("length field {field} gives a record too large for this machine")
        })?;
        let sent = if self.include_header {
            total
        } else {
            total - header
        };
        if let Some(max) = self.max {
            if sent as u64 > max {
                return Err(format!("record of {sent} bytes exceeds max={max}"));
            }
        }
        Ok(Some(total))
    }
}

/// One connection's state.
#[derive(Debug)]
pub struct State {
    layout: Layout,
    /// The header was discarded; this much payload follows (already buffered).
    payload: Option<usize>,
}

fn frame(state: &mut State, data: &[u8]) -> Frame {
    if let Some(p) = state.payload.take() {
        // The whole record was buffered before its header was dropped.
        return Frame::binary(p.min(data.len()));
    }
    let total = match state.layout.record(data) {
        Ok(Some(total)) => total,
        Ok(None) => return Frame::More,
        Err(e) => return Frame::Error(e),
    };
    if data.len() < total {
        return Frame::More;
    }
    if state.layout.include_header {
        return Frame::binary(total);
    }
    let header = state.layout.header();
    if total > header {
        state.payload = Some(total - header);
    }
    Frame::Discard(header)
}

/// The `lengthprefix` framing.
pub struct LengthPrefix;

impl Framing for LengthPrefix {
    type State = State;
    const NAME: &'static str = "lengthprefix";

    fn new_state(&self, config: Option<&str>) -> Result<State, String> {
        Ok(State {
            layout: Layout::lengthprefix(config)?,
            payload: None,
        })
    }

    fn frame(&self, state: &mut State, data: &[u8], _last_read: usize) -> Frame {
        frame(state, data)
    }

    fn finish(&self, _: &mut State, _: &[u8]) -> Option<Opcode> {
        Some(Opcode::Binary)
    }
}

/// The `dynamic32` framing.
pub struct Dynamic32;

impl Framing for Dynamic32 {
    type State = State;
    const NAME: &'static str = "dynamic32";

    fn new_state(&self, config: Option<&str>) -> Result<State, String> {
        Ok(State {
            layout: Layout::dynamic32(config)?,
            payload: None,
        })
    }

    fn frame(&self, state: &mut State, data: &[u8], _last_read: usize) -> Frame {
        frame(state, data)
    }

    fn finish(&self, _: &mut State, _: &[u8]) -> Option<Opcode> {
        Some(Opcode::Binary)
    }
}

websocksy_plugin::export!(framings: [Dynamic32, LengthPrefix]);

#[cfg(test)]
mod tests {
    use super::*;
    use websocksy_plugin::testing::{Harness, Message};

    fn bin(chunks: &[&[u8]]) -> Vec<Message> {
        chunks.iter().map(Message::binary).collect()
    }

    #[test]
    fn a27_default_little_endian_two_records_and_a_remainder() {
        for config in [None, Some("")] {
            let mut h = Harness::new(&Dynamic32, config).unwrap();
            let got = h
                .feed(b"\x03\x00\x00\x00abc\x02\x00\x00\x00de\x05\x00")
                .unwrap();
            assert_eq!(got, bin(&[b"\x03\x00\x00\x00abc", b"\x02\x00\x00\x00de"]));
            assert_eq!(h.buffered(), b"\x05\x00");
        }
    }

    #[test]
    fn a27_big_endian() {
        let mut h = Harness::new(&Dynamic32, Some("endian=big")).unwrap();
        assert_eq!(
            h.feed(b"\x00\x00\x00\x03abc").unwrap(),
            bin(&[b"\x00\x00\x00\x03abc"])
        );
    }

    #[test]
    fn a27_offset() {
        let mut h = Harness::new(&Dynamic32, Some("offset=2")).unwrap();
        assert_eq!(
            h.feed(b"HH\x01\x00\x00\x00x").unwrap(),
            bin(&[b"HH\x01\x00\x00\x00x"])
        );
    }

    #[test]
    fn a27_static() {
        let mut h = Harness::new(&Dynamic32, Some("static=2")).unwrap();
        assert_eq!(
            h.feed(b"\x01\x00\x00\x00xyzQ").unwrap(),
            bin(&[b"\x01\x00\x00\x00xyz"])
        );
        assert_eq!(h.buffered(), b"Q");
    }

    #[test]
    fn a27_prefix_split_across_reads() {
        let mut h = Harness::new(&Dynamic32, None).unwrap();
        assert_eq!(h.feed(b"\x03\x00").unwrap(), []);
        assert_eq!(h.feed(b"\x00").unwrap(), []);
        assert_eq!(h.feed(b"\x00ab").unwrap(), []);
        assert_eq!(h.feed(b"c\x01").unwrap(), bin(&[b"\x03\x00\x00\x00abc"]));
        assert_eq!(h.finish(), Some(Message::binary(b"\x01")));
    }

    #[test]
    fn b46_comma_separated_options_work_no_hang() {
        let mut h = Harness::new(&Dynamic32, Some("offset=1,endian=big,static=-1")).unwrap();
        // offset 1, BE length 3, static -1 -> payload 2
        assert_eq!(
            h.feed(b"H\x00\x00\x00\x03abc").unwrap(),
            bin(&[b"H\x00\x00\x00\x03ab"])
        );
        assert_eq!(h.buffered(), b"c");
    }

    #[test]
    fn b46_bad_configs_are_errors() {
        for bad in [
            "a=1,b=2",
            "endian=middle",
            "offset=x",
            "offset",
            "bytes=2",
            "static=1.5",
        ] {
            assert!(Harness::new(&Dynamic32, Some(bad)).is_err(), "{bad:?}");
        }
        for bad in [
            "bytes=3",
            "endian=bigger",
            "include-header=maybe",
            "adjust=x",
            "static=1",
            "max=-1",
        ] {
            assert!(Harness::new(&LengthPrefix, Some(bad)).is_err(), "{bad:?}");
        }
        assert!(Harness::new(&LengthPrefix, Some("offset=18446744073709551615")).is_err());
    }

    #[test]
    fn lengthprefix_defaults_big_endian_4_bytes_header_included() {
        let mut h = Harness::new(&LengthPrefix, None).unwrap();
        assert_eq!(
            h.feed(b"\x00\x00\x00\x02hi\x00\x00\x00\x00").unwrap(),
            bin(&[b"\x00\x00\x00\x02hi", b"\x00\x00\x00\x00"])
        );
    }

    #[test]
    fn lengthprefix_every_field_size() {
        let cases: [(&str, &[u8]); 8] = [
            ("bytes=1", b"\x02ab"),
            ("bytes=2", b"\x00\x02ab"),
            ("bytes=2,endian=little", b"\x02\x00ab"),
            ("bytes=4,endian=little", b"\x02\x00\x00\x00ab"),
            ("bytes=8", b"\x00\x00\x00\x00\x00\x00\x00\x02ab"),
            (
                "bytes=8,endian=little",
                b"\x02\x00\x00\x00\x00\x00\x00\x00ab",
            ),
            ("bytes=0x1", b"\x02ab"),
            ("bytes = 1 , endian = little ,", b"\x02ab"),
        ];
        for (config, record) in cases {
            let mut h = Harness::new(&LengthPrefix, Some(config)).unwrap();
            let mut input = record.to_vec();
            input.push(b'!');
            assert_eq!(h.feed(&input).unwrap(), bin(&[record]), "{config}");
            assert_eq!(h.buffered(), b"!", "{config}");
        }
    }

    #[test]
    fn lengthprefix_payload_only() {
        let mut h =
            Harness::new(&LengthPrefix, Some("bytes=2,offset=1,include-header=no")).unwrap();
        let got = h.feed(b"T\x00\x03abcT\x00\x00U\x00\x01z").unwrap();
        // The empty record sends nothing.
        assert_eq!(got, bin(&[b"abc", b"z"]));
        assert_eq!(
            h.discarded(),
            [
                b"T\x00\x03".to_vec(),
                b"T\x00\x00".to_vec(),
                b"U\x00\x01".to_vec()
            ]
        );
    }

    #[test]
    fn lengthprefix_payload_only_split() {
        let mut h = Harness::new(&LengthPrefix, Some("bytes=1,include-header=no")).unwrap();
        assert_eq!(h.feed(b"\x04ab").unwrap(), []);
        assert_eq!(
            h.buffered(),
            b"\x04ab",
            "the header stays until the record is complete"
        );
        assert_eq!(h.feed(b"cd\x01").unwrap(), bin(&[b"abcd"]));
        assert_eq!(h.feed(b"e").unwrap(), bin(&[b"e"]));
    }

    #[test]
    fn lengthprefix_adjust_length_counts_itself() {
        // The length field counts the whole record, its own 2 bytes included.
        let mut h = Harness::new(&LengthPrefix, Some("bytes=2,adjust=-2")).unwrap();
        assert_eq!(
            h.feed(b"\x00\x05abc\x00\x02").unwrap(),
            bin(&[b"\x00\x05abc", b"\x00\x02"])
        );
        // A length smaller than the header is an error.
        assert!(h.feed(b"\x00\x01").unwrap_err().contains("negative"));
    }

    #[test]
    fn lengthprefix_max() {
        let mut h = Harness::new(&LengthPrefix, Some("bytes=1,max=4")).unwrap();
        assert_eq!(h.feed(b"\x03abc").unwrap(), bin(&[b"\x03abc"]));
        // Refused as soon as the header is seen, before the payload arrives.
        assert!(h.feed(b"\x04").unwrap_err().contains("max=4"));
        let mut h = Harness::new(&LengthPrefix, Some("bytes=1,max=4,include-header=no")).unwrap();
        assert_eq!(h.feed(b"\x04abcd").unwrap(), bin(&[b"abcd"]));
    }

    #[test]
    fn lengthprefix_overflow_is_an_error() {
        let mut h = Harness::new(&LengthPrefix, Some("bytes=8")).unwrap();
        assert!(h.feed(&[0xff; 8]).is_err());
        let mut h =
            Harness::new(&LengthPrefix, Some("bytes=8,adjust=-9223372036854775808")).unwrap();
        assert!(h.feed(&[0; 8]).unwrap_err().contains("negative"));
        let mut h =
            Harness::new(&LengthPrefix, Some("bytes=8,adjust=9223372036854775807")).unwrap();
        let e = h.feed(&[0xff; 8]).unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"\x00\x00\x00\x01a\x00\x00\x00\x03bcd\x00\x00\x00\x00";
        let mut h = Harness::new(&LengthPrefix, None).unwrap();
        let mut got = Vec::new();
        for b in input {
            got.extend(h.feed(&[*b]).unwrap());
        }
        assert_eq!(
            got,
            bin(&[
                b"\x00\x00\x00\x01a",
                b"\x00\x00\x00\x03bcd",
                b"\x00\x00\x00\x00"
            ])
        );
        assert!(h.buffered().is_empty());
    }
}
