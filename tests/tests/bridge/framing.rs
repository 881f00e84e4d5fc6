//! Framing of the peer's byte stream into WebSocket messages (`auto`,
//! `binary`, `newline`, `separator`), framing configuration errors, the
//! maximum message size, and the client-to-peer direction, which framing
//! must leave untouched.

use std::io::Write;
use std::net::TcpStream;

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{run_cli, Bridge};

/// A bridge to a fresh [`TcpPeer`] with these extra `-c` options, and an
/// upgraded client plus the peer's end of the connection.
fn setup(options: &[&str]) -> (Bridge, TcpStream, TcpStream) {
    let peer = TcpPeer::new();
    let mut args = vec!["-c".to_string(), peer.host_arg()];
    for o in options {
        args.push("-c".into());
        args.push(o.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Bridge::start(&args);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let p = peer.accept();
    p.set_nodelay(true).unwrap();
    (b, s, p)
}

fn op_payload(f: &Frame) -> (u8, Vec<u8>) {
    (f.opcode, f.payload.clone())
}

fn data(op: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    (op, payload.to_vec())
}

fn read_n_frames(s: &mut TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|_| op_payload(&ws::read_frame(s).unwrap()))
        .collect()
}

/// Read data frames until their payloads add up to `len` bytes.
fn read_bytes(s: &mut TcpStream, len: usize) -> Vec<Frame> {
    let mut got = 0;
    let mut frames = Vec::new();
    while got < len {
        let f = ws::read_frame(s).unwrap();
        assert!(f.opcode == 1 || f.opcode == 2, "unexpected frame {f:?}");
        got += f.payload.len();
        frames.push(f);
    }
    assert_eq!(got, len, "more bytes than the peer sent: {frames:?}");
    frames
}

fn startup_error(options: &[&str]) -> (i32, String) {
    let mut args = vec!["-p", "0", "-l", "127.0.0.1", "-c", "host=tcp://127.0.0.1:9"];
    for o in options {
        args.push("-c");
        args.push(o);
    }
    let (code, _out, err) = run_cli(&args);
    (code, err)
}

#[test]
fn auto_invalid_utf8_is_binary_and_utf8_is_text() {
    // A22
    let (_b, mut s, mut p) = setup(&[]);
    p.write_all(b"\xff\x00").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(2, b"\xff\x00")]);
    p.write_all("héllo €".as_bytes()).unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(1, "héllo €".as_bytes())]);
}

#[test]
fn auto_character_split_across_reads_stays_text() {
    // The original sent both halves of a split `é` as binary frames.
    let (_b, mut s, mut p) = setup(&["framing=auto"]);
    p.write_all(b"caf\xc3").unwrap();
    // The valid prefix goes out at once; the lone lead byte waits.
    let first = read_bytes(&mut s, 3);
    p.write_all(b"\xa9 ok").unwrap();
    let rest = read_bytes(&mut s, 5);
    let mut text = Vec::new();
    for f in first.iter().chain(&rest) {
        assert_eq!(f.opcode, 1, "every frame must be text: {f:?}");
        assert!(
            std::str::from_utf8(&f.payload).is_ok(),
            "frame is not UTF-8: {f:?}"
        );
        text.extend_from_slice(&f.payload);
    }
    assert_eq!(text, "café ok".as_bytes());
}

#[test]
fn binary_framing_burst_concatenates_to_input() {
    // A23
    const LEN: usize = 200 * 1024;
    let input: Vec<u8> = (0..LEN).map(|i| (i * 7 % 256) as u8).collect();
    let (_b, mut s, mut p) = setup(&["framing=binary"]);
    let sent = input.clone();
    let writer = std::thread::spawn(move || {
        p.write_all(&sent).unwrap();
        p
    });
    let frames = read_bytes(&mut s, LEN);
    let mut got = Vec::with_capacity(LEN);
    for f in &frames {
        assert_eq!(f.opcode, 2, "binary framing sends binary frames");
        assert!(f.fin);
        assert!(!f.payload.is_empty(), "no empty frames");
        got.extend_from_slice(&f.payload);
    }
    assert!(got == input, "the frames do not add up to the peer's bytes");
    drop(writer.join().unwrap());
    let (rest, close) = ws::read_until_close(&mut s).unwrap();
    assert!(rest.is_empty());
    assert_eq!(close.close_code(), Some(1000));
}

#[test]
fn binary_framing_text_bytes_stay_binary() {
    let (_b, mut s, mut p) = setup(&["framing=binary"]);
    p.write_all(b"plain text").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(2, b"plain text")]);
}

#[test]
fn newline_lf_lines_across_reads() {
    // A24
    let (_b, mut s, mut p) = setup(&["framing=newline", "framing-config=lf"]);
    p.write_all(b"line1\nline2\npart").unwrap();
    assert_eq!(
        read_n_frames(&mut s, 2),
        [data(1, b"line1\n"), data(1, b"line2\n")]
    );
    p.write_all(b"ial\n").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(1, b"partial\n")]);
}

#[test]
fn newline_crlf_split_between_reads() {
    // B48: the original produced one frame `abc\r\ndef\r\n`.
    let (_b, mut s, mut p) = setup(&["framing=newline", "framing-config=crlf"]);
    // The `x\r\n` frame shows the bridge has read this write, `abc\r` included.
    p.write_all(b"x\r\nabc\r").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(1, b"x\r\n")]);
    p.write_all(b"\ndef\r\n").unwrap();
    assert_eq!(
        read_n_frames(&mut s, 2),
        [data(1, b"abc\r\n"), data(1, b"def\r\n")]
    );
}

#[test]
fn newline_opcode_is_per_frame() {
    // B49: the original sent both as text.
    let (_b, mut s, mut p) = setup(&["framing=newline", "framing-config=lf"]);
    p.write_all(b"txt\n\xff\xfe\nok\n").unwrap();
    assert_eq!(
        read_n_frames(&mut s, 3),
        [data(1, b"txt\n"), data(2, b"\xff\xfe\n"), data(1, b"ok\n")]
    );
}

#[test]
fn separator_frames_and_leftover_on_peer_eof() {
    // A25, plus the leftover `c`, which the original lost.
    let (_b, mut s, mut p) = setup(&["framing=separator", "framing-config=;;"]);
    p.write_all(b"a;;b;;c").unwrap();
    assert_eq!(read_n_frames(&mut s, 2), [data(2, b"a;;"), data(2, b"b;;")]);
    drop(p);
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    let payloads: Vec<_> = frames.iter().map(|f| f.payload.clone()).collect();
    assert_eq!(
        payloads,
        [b"c".to_vec()],
        "the unframed rest is the last message: {frames:?}"
    );
    assert!(frames[0].opcode == 1 || frames[0].opcode == 2);
    assert_eq!(close.close_code(), Some(1000));
}

#[test]
fn separator_hex_escape_uses_both_digits() {
    // B47: the original read `\x41` as 0x01.
    let (_b, mut s, mut p) = setup(&["framing=separator", r"framing-config=\x41"]);
    p.write_all(b"p\x01qAr").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(2, b"p\x01qA")]);
    p.write_all(b"sA").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(2, b"rsA")]);
}

#[test]
fn separator_split_across_reads_is_found() {
    let (_b, mut s, mut p) = setup(&["framing=separator", r"framing-config=\r\n"]);
    p.write_all(b"x\r\nabc\r").unwrap();
    assert_eq!(read_n_frames(&mut s, 1), [data(2, b"x\r\n")]);
    p.write_all(b"\ndef\r\n").unwrap();
    assert_eq!(
        read_n_frames(&mut s, 2),
        [data(2, b"abc\r\n"), data(2, b"def\r\n")]
    );
}

#[test]
fn newline_without_config_defaults_to_lf() {
    // B46: the original crashed on the first peer data.
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg(), "-c", "framing=newline"]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"a\r\nb\nc").unwrap();
    assert_eq!(
        read_n_frames(&mut s, 2),
        [data(1, b"a\r\n"), data(1, b"b\n")]
    );
    // Still serving: a second connection works.
    let mut s2 = b.connect();
    ws::upgrade(&mut s2, "/", &[]);
    let mut p2 = peer.accept();
    p2.write_all(b"second\n").unwrap();
    assert_eq!(read_n_frames(&mut s2, 1), [data(1, b"second\n")]);
}

#[test]
fn separator_without_config_passes_through() {
    // B46: the original crashed (strdup(NULL)).
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-c", &peer.host_arg(), "-c", "framing=separator"]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    p.write_all(b"abc").unwrap();
    let frames = read_bytes(&mut s, 3);
    let got: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(got, b"abc");
    assert!(frames.iter().all(|f| f.opcode == 2), "{frames:?}");
    let mut s2 = b.connect();
    ws::upgrade(&mut s2, "/", &[]);
    drop(peer.accept());
}

#[test]
fn bad_separator_escape_is_a_startup_error() {
    // B46: the original hung on `\x4`.
    let (code, err) = startup_error(&["framing=separator", r"framing-config=\x4"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("framing-config"),
        "should name the option: {err}"
    );
    assert!(err.contains(r"\x4"), "should quote the bad escape: {err}");
}

#[test]
fn bad_newline_config_is_a_startup_error() {
    // The original silently fell back to crlf.
    let (code, err) = startup_error(&["framing=newline", "framing-config=bogus"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("framing-config"),
        "should name the option: {err}"
    );
    assert!(err.contains("bogus"), "should quote the value: {err}");
}

#[test]
fn unknown_framing_is_a_startup_error() {
    let (code, err) = startup_error(&["framing=nosuchframing"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("nosuchframing"),
        "should name the framing: {err}"
    );
}

#[test]
fn unframed_peer_data_over_max_message_size_closes_1009() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&[
        "-c",
        &peer.host_arg(),
        "-c",
        "framing=newline",
        "--max-message-size",
        "64K",
    ]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();
    let writer = std::thread::spawn(move || {
        // The bridge stops reading at the limit; the write may fail then.
        let _ = p.write_all(&vec![b'a'; 100 * 1024]);
        p
    });
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    assert!(
        frames.is_empty(),
        "no line was complete: {} frames",
        frames.len()
    );
    assert_eq!(
        close.close_code(),
        Some(1009),
        "{:?}",
        String::from_utf8_lossy(&close.payload)
    );
    drop(writer.join().unwrap());
}

#[test]
fn client_to_peer_is_not_framed() {
    let (_b, mut s, mut p) = setup(&["framing=separator", "framing-config=;"]);
    let msgs: [&[u8]; 4] = [b"a;b", b"\xff\x00;\n", b"", b"\r\n;;tail"];
    let mut burst = Vec::new();
    let mut expected = Vec::new();
    for m in msgs {
        burst.extend(ws::binary(m));
        expected.extend_from_slice(m);
    }
    burst.extend(ws::text("text;line\n"));
    expected.extend_from_slice(b"text;line\n");
    burst.extend(ws::close(1000, ""));
    s.write_all(&burst).unwrap();
    assert_eq!(peers::read_to_eof(&mut p), expected);
    let (frames, close) = ws::read_until_close(&mut s).unwrap();
    assert!(frames.is_empty());
    assert_eq!(close.close_code(), Some(1000));
}
