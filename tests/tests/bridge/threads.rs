//! `--threads N` (issue 9): the key end-to-end cases with one loop and
//! with two. Connections go to the loop with the fewest sessions, so with
//! two loops and several clients both loops serve; what is process-wide
//! (the connection caps, SIGTERM's drain, a hub's one peer connection)
//! must hold across them. The rest of the suite runs with the default (one
//! loop per CPU); `WEBSOCKSY_TEST_THREADS=1 cargo test` runs all of it on
//! one loop.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::{ws, Bridge, WAIT};

fn bridge(threads: usize, host: &str, extra: &[&str]) -> Bridge {
    let n = threads.to_string();
    let mut args = vec!["--threads", n.as_str(), "-k", "0", "-c", host];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

fn echo_bridge(threads: usize, extra: &[&str]) -> Bridge {
    let host = format!("host=tcp://{}", peers::tcp_echo());
    bridge(threads, &host, extra)
}

fn open(b: &Bridge) -> TcpStream {
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, "/", &[]);
    assert_eq!(r.status, 101, "{r:?}");
    s
}

fn round_trip(s: &mut TcpStream, msg: &str) {
    s.write_all(&ws::text(msg)).unwrap();
    let f = ws::read_frame(s).expect("echo");
    assert_eq!((f.opcode, f.payload.as_slice()), (1, msg.as_bytes()));
}

/// The loops named by the log lines that contain `needle`.
fn loops_of(b: &Bridge, needle: &str) -> BTreeSet<String> {
    b.logs()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split(" loop ").nth(1))
        .filter_map(|r| r.split(']').next())
        .map(str::to_string)
        .collect()
}

fn every_client_echoes_on_every_loop(threads: usize) {
    let b = echo_bridge(threads, &[]);
    let mut clients: Vec<TcpStream> = (0..8).map(|_| open(&b)).collect();
    for round in 0..20 {
        for (i, c) in clients.iter_mut().enumerate() {
            round_trip(c, &format!("client {i} round {round}"));
        }
    }
    let loops = loops_of(&b, "open");
    let want: BTreeSet<String> = (0..threads).map(|i| i.to_string()).collect();
    assert_eq!(loops, want, "{}", b.logs());
}

#[test]
fn every_client_echoes_with_one_loop() {
    every_client_echoes_on_every_loop(1);
}

#[test]
fn every_client_echoes_with_two_loops_and_both_serve() {
    every_client_echoes_on_every_loop(2);
}

/// `--max-connections 3`: the fourth client waits in the backlog until a
/// connection on any loop closes.
fn the_connection_cap_counts_every_loop(threads: usize) {
    let b = echo_bridge(threads, &["--max-connections", "3"]);
    let mut open3: Vec<TcpStream> = (0..3).map(|_| open(&b)).collect();
    let mut fourth = b.connect();
    fourth.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = std::io::Read::read(&mut fourth, &mut byte);
    assert!(
        waited.is_err(),
        "the fourth client was served at the cap: {waited:?}"
    );
    // Close one on the last loop (with two, not the accepting loop: its
    // close must wake loop 0, whose backlog holds the fourth): the fourth
    // gets its 101 at once.
    let last = (threads - 1).to_string();
    let at = open3
        .iter()
        .position(|c| {
            let me = format!(" {} -> ", c.local_addr().expect("local address"));
            loops_of(&b, &me).contains(&last)
        })
        .expect("a connection on the last loop");
    let mut first = open3.remove(at);
    first.write_all(&ws::close(1000, "")).unwrap();
    let _ = ws::read_until_close(&mut first);
    drop(first);
    fourth
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let r = ws::read_response(&mut fourth).expect("the fourth client's answer within 2 s");
    assert_eq!(r.status, 101, "{r:?}");
    round_trip(&mut fourth, "fourth");
    for c in &mut open3 {
        round_trip(c, "still here");
    }
}

#[test]
fn the_connection_cap_counts_one_loop() {
    the_connection_cap_counts_every_loop(1);
}

#[test]
fn the_connection_cap_counts_both_loops() {
    the_connection_cap_counts_every_loop(2);
}

/// `--max-connections-per-ip 2`: a third connection from 127.0.0.1 gets
/// 429 whichever loop it lands on, and a freed slot is usable again.
fn the_per_address_cap_counts_every_loop(threads: usize) {
    let b = echo_bridge(threads, &["--max-connections-per-ip", "2"]);
    let mut a = open(&b);
    let mut c = open(&b);
    for _ in 0..3 {
        let mut s = b.connect();
        s.write_all(ws::request("/", &[]).as_bytes()).unwrap();
        let r = ws::read_response(&mut s).expect("an answer");
        assert_eq!(r.status, 429, "{r:?}");
    }
    a.write_all(&ws::close(1000, "")).unwrap();
    let _ = ws::read_until_close(&mut a);
    drop(a);
    b.wait_log("closed: code 1000");
    let mut d = open(&b);
    round_trip(&mut d, "d");
    round_trip(&mut c, "c");
}

#[test]
fn the_per_address_cap_counts_one_loop() {
    the_per_address_cap_counts_every_loop(1);
}

#[test]
fn the_per_address_cap_counts_both_loops() {
    the_per_address_cap_counts_every_loop(2);
}

/// SIGTERM: every loop closes its clients with 1001 and the process exits
/// 0 once all of them are done; a second signal ends a stalled drain.
fn sigterm_drains_every_loop(threads: usize) {
    let mut b = echo_bridge(threads, &["--drain-timeout", "30"]);
    let mut clients: Vec<TcpStream> = (0..6).map(|_| open(&b)).collect();
    for c in &mut clients {
        round_trip(c, "before");
    }
    b.signal(libc::SIGTERM);
    // All but the last answer the close; the last never does.
    let last = clients.len() - 1;
    for (i, c) in clients.iter_mut().enumerate() {
        let (_, close) = ws::read_until_close(c).expect("a close frame on shutdown");
        assert_eq!(close.close_code(), Some(1001), "{close:?}");
        if i != last {
            c.write_all(&ws::close(1001, "")).unwrap();
        }
    }
    b.wait_log_n("closed: code 1001", last, WAIT);
    let t = Instant::now();
    b.signal(libc::SIGTERM);
    let status = b.wait_exit(WAIT);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(status.success(), "{status:?}\n{}", b.logs());
    let loops = loops_of(&b, "shutting down");
    assert_eq!(loops.len(), threads, "{}", b.logs());
}

#[test]
fn sigterm_drains_one_loop() {
    sigterm_drains_every_loop(1);
}

#[test]
fn sigterm_drains_both_loops() {
    sigterm_drains_every_loop(2);
}

/// A hub keeps one peer connection for all its members, whichever loop
/// accepted them: members accepted elsewhere move to the hub's loop.
fn a_hub_has_one_peer_connection(threads: usize) {
    let peer = TcpPeer::new();
    let host = format!("host=tcp://{}", peer.addr);
    let b = bridge(threads, &host, &["-c", "hub=on", "-c", "framing=newline"]);
    let mut members: Vec<TcpStream> = Vec::new();
    members.push(open(&b));
    let mut p = peer.accept();
    for _ in 1..6 {
        members.push(open(&b));
    }
    b.wait_log_n(" open", members.len(), WAIT);
    for i in 0..50 {
        p.write_all(format!("line {i}\n").as_bytes()).unwrap();
    }
    for m in &mut members {
        for i in 0..50 {
            let f = ws::read_frame(m).expect("a hub line");
            assert_eq!(f.payload, format!("line {i}\n").into_bytes());
        }
    }
    assert!(
        peer.accept_within(Duration::from_millis(200)).is_none(),
        "a second peer connection for one hub"
    );
    // Every member's `open` line comes from one loop, the hub's; with two
    // loops, some members were accepted on the other and moved.
    assert_eq!(loops_of(&b, " open").len(), 1, "{}", b.logs());
    if threads > 1 {
        assert!(b.count_log("moved to loop") > 0, "{}", b.logs());
    }
    // And what members send reaches the peer through that one connection.
    members[3].write_all(&ws::text("from a member")).unwrap();
    let got = peers::read_n(&mut p, "from a member".len());
    assert_eq!(got, b"from a member");
}

#[test]
fn a_hub_has_one_peer_connection_with_one_loop() {
    a_hub_has_one_peer_connection(1);
}

#[test]
fn a_hub_has_one_peer_connection_with_two_loops() {
    a_hub_has_one_peer_connection(2);
}
