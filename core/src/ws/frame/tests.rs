use super::*;

use super::testing::client_frame as frame;

#[derive(Debug, PartialEq)]
enum Got {
    Data(Opcode, Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, Vec<u8>),
}

/// Feed `wire` to a reader `chunk` bytes at a time, the way reads arrive;
/// data pieces of one message are joined.
fn run(role: Role, max: usize, wire: &[u8], chunk: usize) -> (Vec<Got>, Option<Fail>) {
    let mut r = FrameReader::new(role, max);
    let mut buf: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut fed = 0;
    let mut partial: Vec<u8> = Vec::new();
    loop {
        match r.next(&mut buf) {
            Ok(None) => {
                if fed == wire.len() {
                    return (got, None);
                }
                let end = (fed + chunk).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
            Ok(Some((used, ev))) => {
                assert!(used > 0, "a step must use bytes");
                match ev {
                    Event::Nothing => {}
                    Event::Data {
                        opcode,
                        start,
                        len,
                        first,
                        last,
                    } => {
                        if first {
                            partial.clear();
                        }
                        partial.extend_from_slice(&buf[start..start + len]);
                        if last {
                            got.push(Got::Data(opcode, std::mem::take(&mut partial)));
                        }
                    }
                    Event::Ping(p) => got.push(Got::Ping(p.as_slice().to_vec())),
                    Event::Pong => got.push(Got::Pong),
                    Event::Close(c, why) => got.push(Got::Close(c, why.as_slice().to_vec())),
                }
                buf.drain(..used);
            }
            Err(f) => return (got, Some(f)),
        }
    }
}

#[test]
fn messages_arrive_whole_whatever_the_read_size() {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    let mut wire = frame(0x81, "héllo".as_bytes());
    wire.extend(frame(0x82, &big));
    wire.extend(frame(0x82, b""));
    for chunk in [1, 2, 3, 5, 7, 13, 4096, 1 << 20] {
        let (got, err) = run(Role::Server, 1 << 20, &wire, chunk);
        assert_eq!(err, None, "chunk {chunk}");
        let want = vec![
            Got::Data(Opcode::Text, "héllo".as_bytes().to_vec()),
            Got::Data(Opcode::Binary, big.clone()),
            Got::Data(Opcode::Binary, vec![]),
        ];
        assert!(got == want, "chunk {chunk}: {} messages", got.len());
    }
}

#[test]
fn fragments_with_a_ping_between_them() {
    let mut wire = frame(0x01, b"ab");
    wire.extend(frame(0x89, b"are you there"));
    wire.extend(frame(0x00, b"cd"));
    wire.extend(frame(0x80, b"ef"));
    wire.extend(frame(0x88, &[0x03, 0xf6, b'b', b'y', b'e']));
    let (got, err) = run(Role::Server, 100, &wire, 3);
    assert_eq!(err, None);
    assert_eq!(
        got,
        vec![
            Got::Ping(b"are you there".to_vec()),
            Got::Data(Opcode::Text, b"abcdef".to_vec()),
            Got::Close(Some(1014), b"bye".to_vec()),
        ]
    );
}

#[test]
fn a_character_cut_between_fragments_is_valid() {
    let s = "a€b".as_bytes(); // € is three bytes
    let mut wire = frame(0x01, &s[..2]);
    wire.extend(frame(0x00, &s[2..3]));
    wire.extend(frame(0x80, &s[3..]));
    for chunk in [1, 100] {
        let (got, err) = run(Role::Server, 100, &wire, chunk);
        assert_eq!(err, None);
        assert_eq!(got, vec![Got::Data(Opcode::Text, s.to_vec())]);
    }
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_byte() {
    // Autobahn 6.4.3: valid text, then a code point beyond U+10FFFF, then
    // more valid text in the same frame. Fed a byte at a time, the reader
    // must fail before the frame is complete.
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(b"edited");
    let wire = frame(0x81, &payload);
    let mut r = FrameReader::new(Role::Server, 1000);
    let mut fed = 0;
    let mut failed_at = None;
    let mut buf = Vec::new();
    while fed < wire.len() {
        buf.push(wire[fed]);
        fed += 1;
        match r.next(&mut buf) {
            Ok(Some((used, _))) => {
                buf.drain(..used);
            }
            Ok(None) => {}
            Err(f) => {
                assert_eq!(f.code, 1007);
                failed_at = Some(fed);
                break;
            }
        }
    }
    let header = wire.len() - payload.len();
    assert_eq!(failed_at, Some(header + "κόσμε".len() + 2));
}

#[test]
fn a_message_ending_inside_a_character_is_invalid() {
    let wire = frame(0x81, &[b'a', 0xe2, 0x82]);
    let (_, err) = run(Role::Server, 100, &wire, 100);
    assert_eq!(err.map(|f| f.code), Some(1007));
}

#[test]
fn protocol_errors_are_1002() {
    let unmasked = vec![0x81, 0x01, b'a'];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", unmasked),
        ("rsv1", frame(0xc1, b"a")),
        ("reserved data opcode", frame(0x83, b"a")),
        ("reserved control opcode", frame(0x8b, b"")),
        ("fragmented ping", frame(0x09, b"")),
        ("long ping", frame(0x89, &[0; 126])),
        ("continuation first", frame(0x80, b"a")),
        ("one-byte close", frame(0x88, b"a")),
        ("close code 1005", frame(0x88, &1005u16.to_be_bytes())),
        ("close code 1006", frame(0x88, &1006u16.to_be_bytes())),
        ("close code 1015", frame(0x88, &1015u16.to_be_bytes())),
        ("close code 999", frame(0x88, &999u16.to_be_bytes())),
        ("close code 2999", frame(0x88, &2999u16.to_be_bytes())),
        ("close code 5000", frame(0x88, &5000u16.to_be_bytes())),
    ];
    for (what, wire) in cases {
        let (_, err) = run(Role::Server, 100, &wire, 100);
        assert_eq!(err.map(|f| f.code), Some(1002), "{what}");
    }
    let mut nested = frame(0x01, b"a");
    nested.extend(frame(0x81, b"b"));
    let (_, err) = run(Role::Server, 100, &nested, 100);
    assert_eq!(
        err.map(|f| f.code),
        Some(1002),
        "new message inside a fragmented one"
    );
}

#[test]
fn a_length_with_the_top_bit_set_is_a_protocol_error() {
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    let (_, err) = run(Role::Server, usize::MAX, &wire, 100);
    assert_eq!(err.map(|f| f.code), Some(1002));
}

#[test]
fn registered_close_codes_are_accepted() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let (got, err) = run(Role::Server, 100, &frame(0x88, &code.to_be_bytes()), 100);
        assert_eq!(err, None, "{code}");
        assert_eq!(got, vec![Got::Close(Some(code), vec![])]);
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xff, 0xfe]);
    let (_, err) = run(Role::Server, 100, &frame(0x88, &bad_reason), 100);
    assert_eq!(err.map(|f| f.code), Some(1007));
}

#[test]
fn too_big_fails_on_the_header_before_the_payload() {
    // Only the header of a 1 MiB frame: the limit is 64 KiB.
    let wire = frame(0x82, &vec![0; 1 << 20]);
    let (_, err) = run(Role::Server, 65536, &wire[..14], 14);
    assert_eq!(err.map(|f| f.code), Some(1009));
    // Fragments add up.
    let mut wire = frame(0x02, &[0; 60]);
    wire.extend(frame(0x80, &[0; 60]));
    let (_, err) = run(Role::Server, 100, &wire, 1000);
    assert_eq!(err.map(|f| f.code), Some(1009));
}

#[test]
fn a_client_rejects_masked_frames_and_reads_unmasked_ones() {
    let (_, err) = run(Role::Client, 100, &frame(0x81, b"a"), 100);
    assert_eq!(err.map(|f| f.code), Some(1002));
    let (got, err) = run(Role::Client, 100, &[0x82, 0x02, 7, 8], 1);
    assert_eq!(err, None);
    assert_eq!(got, vec![Got::Data(Opcode::Binary, vec![7, 8])]);
}

#[test]
fn unmask_continues_the_mask_at_any_offset() {
    let mask = [1, 2, 3, 4];
    let data: Vec<u8> = (0..100u8).collect();
    for split in 0..data.len() {
        let mut a = data.clone();
        let (x, y) = a.split_at_mut(split);
        unmask(x, mask, 0);
        unmask(y, mask, split as u64);
        let want: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(a, want, "split at {split}");
    }
}

#[test]
fn heads_match_the_wire_format() {
    assert_eq!(Head::data(Opcode::Text, 5).as_slice(), &[0x81, 5]);
    assert_eq!(
        Head::data(Opcode::Binary, 300).as_slice(),
        &[0x82, 126, 1, 44]
    );
    assert_eq!(Head::data(Opcode::Binary, 70_000).as_slice().len(), 10);
    let masked = Head::new(OpCode::Data(Data::Binary), 1, Some([9, 9, 9, 9]));
    assert_eq!(masked.as_slice(), &[0x82, 0x81, 9, 9, 9, 9]);
    let (p, n) = close_payload(1000, &"é".repeat(100));
    assert_eq!(n, 2 + 122);
    assert!(std::str::from_utf8(&p[2..n]).is_ok());
}
