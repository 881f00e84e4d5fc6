//! Keep-alive pings (spec A33, B51), the pong timeout, the idle timeout and
//! the handshake timeout. These tests let real time pass on purpose: the
//! timeouts under test are set to a second or less.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws::{self, Frame};
use websocksy_tests::{Bridge, WAIT};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A bridge in front of a TCP echo peer, with extra options.
fn echo_bridge(extra: &[&str]) -> Bridge {
    let echo = peers::tcp_echo();
    let host = format!("host=tcp://{echo}");
    let mut args = vec!["-c", host.as_str()];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

fn open(b: &Bridge) -> TcpStream {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    s
}

/// The next frame within `wait`, or None.
fn next_frame(s: &mut TcpStream, wait: Duration) -> Option<Frame> {
    ws::read_frame_within(s, wait).expect("read from bridge")
}

/// The next ping within `wait`, skipping data frames; panics on a close.
fn next_ping(s: &mut TcpStream, wait: Duration) -> Option<Frame> {
    let deadline = Instant::now() + wait;
    loop {
        let f = next_frame(s, deadline.saturating_duration_since(Instant::now()))?;
        match f.opcode {
            9 => return Some(f),
            8 => panic!("connection closed while waiting for a ping: {f:?}"),
            _ => {}
        }
    }
}

/// One text round trip through the echo peer, answering pings on the way.
fn round_trip(s: &mut TcpStream, msg: &str) {
    s.write_all(&ws::text(msg)).unwrap();
    loop {
        let f = ws::read_frame(s).expect("echo");
        match f.opcode {
            9 => s.write_all(&ws::frame(true, 10, &f.payload)).unwrap(),
            1 => {
                assert_eq!(f.payload, msg.as_bytes());
                return;
            }
            _ => panic!("unexpected frame {f:?}"),
        }
    }
}

/// Read everything until EOF (or a reset) within `wait`; panics if the
/// connection is still open then.
fn read_until_eof(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let deadline = Instant::now() + wait;
    let mut v = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "still open after {wait:?}; got {:?}",
            String::from_utf8_lossy(&v)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match ws::read_some(s, &mut buf) {
            Ok(0) => return v,
            Ok(n) => v.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset also ends the connection.
            Err(_) => return v,
        }
    }
}

#[test]
fn idle_client_gets_a_ping_and_traffic_resets_the_timer() {
    let b = echo_bridge(&["-k", "1"]);
    let mut s = open(&b);
    let t = Instant::now();
    let ping = next_ping(&mut s, secs(2.5)).expect("no ping within 2.5 s of silence with -k 1");
    assert!(
        t.elapsed() >= secs(0.9),
        "ping after only {:?} of silence",
        t.elapsed()
    );

    // A pong resets the timer: the next ping comes a full second later.
    s.write_all(&ws::frame(true, 10, &ping.payload)).unwrap();
    let t = Instant::now();
    next_ping(&mut s, secs(2.5)).expect("no ping within 2.5 s after the pong");
    assert!(
        t.elapsed() >= secs(0.9),
        "ping {:?} after the pong: the pong did not reset the timer",
        t.elapsed()
    );

    // So does any other frame (the echoed text is skipped by next_ping).
    s.write_all(&ws::text("still here")).unwrap();
    let t = Instant::now();
    next_ping(&mut s, secs(2.5)).expect("no ping within 2.5 s after a text frame");
    assert!(
        t.elapsed() >= secs(0.9),
        "ping {:?} after a text frame: it did not reset the timer",
        t.elapsed()
    );
}

#[test]
fn no_ping_with_k_0() {
    let b = echo_bridge(&["-k", "0"]);
    let mut s = open(&b);
    if let Some(f) = next_frame(&mut s, secs(2.5)) {
        panic!("-k 0 should send nothing, got {f:?}");
    }
    round_trip(&mut s, "still open");
}

#[test]
fn no_ping_before_the_upgrade() {
    // B51: the original pinged sockets still in the HTTP phase.
    let b = echo_bridge(&["-k", "1", "--handshake-timeout", "2.5"]);
    let mut s = b.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let t = Instant::now();
    let got = read_until_eof(&mut s, secs(6.0));
    assert!(
        !got.contains(&0x89),
        "a ping frame reached a client still in the HTTP phase: {got:?}"
    );
    assert!(
        t.elapsed() >= secs(2.0),
        "closed after {:?}, before the handshake timeout",
        t.elapsed()
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "expected a 408 or nothing, got {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn unanswered_ping_closes_with_1001() {
    let b = echo_bridge(&["-k", "1", "--pong-timeout", "1"]);
    let mut s = open(&b);
    let t = Instant::now();
    let mut pings = 0;
    let close = loop {
        let left = secs(4.0).saturating_sub(t.elapsed());
        let f = next_frame(&mut s, left)
            .unwrap_or_else(|| panic!("not closed within 4 s ({pings} pings)"));
        match f.opcode {
            9 => pings += 1,
            8 => break f,
            _ => panic!("unexpected frame {f:?}"),
        }
    };
    assert!(pings >= 1, "closed without a ping first");
    assert!(
        t.elapsed() >= secs(1.8),
        "closed after {:?}: ping at 1 s plus 1 s pong timeout",
        t.elapsed()
    );
    assert_eq!(close.close_code(), Some(1001), "{close:?}");
    // The client never answers; the bridge gives up on it and logs the code.
    let line = b.wait_log("closed: code 1001");
    assert!(
        line.contains(&s.local_addr().unwrap().to_string()),
        "{line}"
    );
}

#[test]
fn answered_pings_keep_the_connection_open() {
    let b = echo_bridge(&["-k", "1", "--pong-timeout", "1"]);
    let mut s = open(&b);
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < secs(3.5) {
        let Some(f) = next_frame(&mut s, secs(3.5).saturating_sub(t.elapsed())) else {
            break;
        };
        match f.opcode {
            9 => {
                pings += 1;
                s.write_all(&ws::frame(true, 10, &f.payload)).unwrap();
            }
            _ => panic!("unexpected frame while answering pings: {f:?}"),
        }
    }
    assert!(pings >= 2, "only {pings} pings in 3.5 s with -k 1");
    round_trip(&mut s, "alive");
}

#[test]
fn idle_timeout_closes_a_silent_connection() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "--idle-timeout", "1", "-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    let t = Instant::now();
    let f = next_frame(&mut s, secs(3.0)).expect("no close within 3 s with --idle-timeout 1");
    assert_eq!(f.opcode, 8, "expected a close frame, got {f:?}");
    assert!(
        f.close_code().is_some(),
        "close frame without a code: {f:?}"
    );
    assert!(
        t.elapsed() >= secs(0.9),
        "closed after only {:?}",
        t.elapsed()
    );
    // The peer is let go too.
    assert!(peers::read_to_eof(&mut p).is_empty());
    s.write_all(&ws::close(f.close_code().unwrap(), ""))
        .unwrap();
    assert!(ws::at_eof(&mut s));
    b.wait_log("closed: code");
}

#[test]
fn traffic_keeps_the_idle_timeout_away() {
    let b = echo_bridge(&["-k", "0", "--idle-timeout", "1"]);
    let mut s = open(&b);
    let t = Instant::now();
    let mut i = 0;
    while t.elapsed() < secs(2.1) {
        round_trip(&mut s, &format!("tick {i}"));
        i += 1;
        // Nothing else may arrive between ticks (a close would).
        if let Some(f) = next_frame(&mut s, Duration::from_millis(300)) {
            panic!(
                "unexpected frame after {:?} of regular traffic: {f:?}",
                t.elapsed()
            );
        }
    }
    round_trip(&mut s, "still open");
}

#[test]
fn handshake_timeout_drops_a_silent_client() {
    let b = echo_bridge(&["--handshake-timeout", "0.5"]);
    let mut s = b.connect();
    let t = Instant::now();
    let got = read_until_eof(&mut s, secs(3.0));
    assert!(
        t.elapsed() >= secs(0.4),
        "dropped after only {:?}",
        t.elapsed()
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "expected a 408 or nothing, got {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn handshake_timeout_counts_from_accept_not_from_the_last_byte() {
    // Slowloris: a byte every 100 ms must not keep the connection alive.
    let b = echo_bridge(&["--handshake-timeout", "0.5"]);
    let mut s = b.connect();
    let req = ws::request("/", &[]);
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    // 30 bytes, 3 s: still a partial request when the loop runs out.
    'outer: for byte in req.as_bytes().iter().take(30) {
        if s.write_all(std::slice::from_ref(byte)).is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        loop {
            match ws::read_some(&mut s, &mut buf) {
                Ok(0) => {
                    closed = true;
                    break 'outer;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => {
                    closed = true;
                    break 'outer;
                }
            }
        }
    }
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert!(
        closed,
        "a client sending a byte every 100 ms was kept for {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < secs(2.5),
        "a trickling client was kept for {:?}",
        t.elapsed()
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "expected a 408 or nothing, got {:?}",
        String::from_utf8_lossy(&got)
    );
}
