//! A client that leaves while its data waits for a peer that does not
//! read. The bridge stops reading a client whose data the peer does not
//! take, so it must still notice a reset, a hang-up or a close frame and
//! release the connection, instead of holding two descriptors and a
//! buffer for as long as the peer stalls. Keep-alive pings are off (`-k 0`)
//! and there is no idle timeout: only the close path can end these.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws;
use websocksy_tests::Bridge;

/// The bridge's close deadline is 5 s; allow for a slow machine.
const RELEASED_WITHIN: Duration = Duration::from_secs(12);

/// A bridge to a peer that accepts and never reads, and an open client.
fn stalled() -> (Bridge, TcpStream, TcpStream) {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "-c", &peer.host_arg(), "-c", "framing=binary"]);
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    let p = peer.accept();
    (b, s, p)
}

/// Write 64 KiB messages until the bridge stops taking them (every buffer
/// on the way is full), and return how much was written.
fn fill(s: &mut TcpStream) -> usize {
    let msg = ws::binary(&vec![0x5a; 64 * 1024]);
    s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the bridge never stopped reading"
        );
        match s.write(&msg) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return sent
            }
            Err(e) => panic!("write to the bridge: {e}"),
        }
    }
}

fn assert_released(b: &Bridge, what: &str) {
    let t = Instant::now();
    let line = b.wait_log_for("closed:", RELEASED_WITHIN);
    assert!(
        line.is_some(),
        "{what}: the connection was not released within {RELEASED_WITHIN:?}; log:\n{}",
        b.logs()
    );
    eprintln!("{what}: released after {:?}", t.elapsed());
}

#[test]
fn a_reset_behind_a_stalled_peer_releases_the_connection() {
    let (b, mut s, _p) = stalled();
    let sent = fill(&mut s);
    eprintln!("stalled after {sent} bytes");
    peers::set_linger_zero(&s);
    drop(s);
    assert_released(&b, "reset");
}

#[test]
fn a_close_frame_behind_a_stalled_peer_starts_the_close() {
    let (b, mut s, _p) = stalled();
    // Less than the socket buffers on the way hold, so the close frame
    // reaches the bridge although the peer reads nothing.
    s.write_all(&ws::binary(&vec![0x5a; 200 * 1024])).unwrap();
    s.write_all(&ws::close(1000, "bye")).unwrap();
    assert_released(&b, "close frame");
    assert!(b.logs().contains("closed: code 1000"), "{}", b.logs());
}

#[test]
fn a_hang_up_behind_a_stalled_peer_releases_the_connection() {
    let (b, mut s, _p) = stalled();
    s.write_all(&ws::binary(&vec![0x5a; 200 * 1024])).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_released(&b, "hang-up");
}
