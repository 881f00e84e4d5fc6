//! Flow control: a slow side pauses the fast one instead of filling the
//! bridge's memory (spec B52), nothing is dropped when it resumes, and one
//! busy or stuck connection does not hold up the others.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use websocksy_tests::pattern::{Check, Pattern};
use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws;
use websocksy_tests::{Bridge, WAIT};

const MIB: u64 = 1 << 20;
/// How much a stalled connection may add to the bridge's resident memory.
const RSS_SLACK_KIB: u64 = 40 * 1024;
/// How much may be in flight in a stalled direction: kernel socket buffers
/// on both legs plus the bridge's own bounded buffers.
const IN_FLIGHT_MAX: u64 = 32 * MIB;
/// Wait until `counter` has not grown for a while; returns its value then.
fn wait_stalled(counter: &AtomicU64, what: &str) -> u64 {
    websocksy_tests::wait_stalled(what, Duration::from_secs(20), || {
        counter.load(Ordering::SeqCst)
    })
}

/// Wait until the log has `n` lines containing `needle`.
fn wait_count(b: &Bridge, needle: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while b.count_log(needle) < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} log lines with {needle:?}, got {}; log:\n{}",
            b.count_log(needle),
            b.logs()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Write the pattern to `s` as fast as possible, 64 KiB at a time, until
/// `stop` is set or a write fails; then shut down the write side. Returns
/// the number of bytes written (also kept in `written` as it grows).
fn stream_pattern(
    mut s: TcpStream,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let pat = Pattern::new();
        while !stop.load(Ordering::SeqCst) {
            let pos = written.load(Ordering::SeqCst);
            match s.write(pat.at(pos, Pattern::PIECE)) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    written.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
        written.load(Ordering::SeqCst)
    })
}

/// Read data frames until `n` payload bytes have arrived; returns them.
fn read_payload(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    while v.len() < n {
        let f = ws::read_frame(s).expect("read a frame");
        match f.opcode {
            0..=2 => v.extend_from_slice(&f.payload),
            9 | 10 => {}
            op => panic!(
                "unexpected frame {op} with {:?} after {} bytes",
                String::from_utf8_lossy(&f.payload),
                v.len()
            ),
        }
    }
    assert_eq!(v.len(), n, "more bytes than sent came back");
    v
}

/// One text round trip through an echoing peer; returns how long it took.
fn round_trip(s: &mut TcpStream, msg: &str) -> Duration {
    let t = Instant::now();
    s.write_all(&ws::text(msg)).expect("send");
    let back = read_payload(s, msg.len());
    assert_eq!(back, msg.as_bytes());
    t.elapsed()
}

/// A client that has upgraded and then does not read, fed by a peer that
/// writes as fast as it can; returns once the peer's writes have stalled.
struct Stalled {
    client: TcpStream,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    writer: thread::JoinHandle<u64>,
    stalled_at: u64,
}

fn stall_a_client(b: &Bridge, peer: &TcpPeer) -> Stalled {
    let mut client = b.connect();
    ws::upgrade(&mut client, "/", &[]);
    let p = peer.accept();
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = stream_pattern(p, Arc::clone(&written), Arc::clone(&stop));
    let stalled_at = wait_stalled(&written, "the peer writing to a non-reading client");
    Stalled {
        client,
        written,
        stop,
        writer,
        stalled_at,
    }
}

#[test]
fn non_reading_client_pauses_the_peer_and_loses_nothing() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "-c", &peer.host_arg(), "-c", "framing=binary"]);
    let rss0 = b.rss_kib();
    let mut st = stall_a_client(&b, &peer);

    let rss = b.rss_kib();
    eprintln!(
        "non-reading client: peer stalled after {} bytes; RSS {rss0} -> {rss} KiB",
        st.stalled_at
    );
    assert!(
        rss < rss0 + RSS_SLACK_KIB,
        "bridge RSS grew from {rss0} KiB to {rss} KiB while buffering for a non-reading client"
    );
    assert!(
        st.stalled_at < IN_FLIGHT_MAX,
        "the peer wrote {} bytes before stalling: the bridge kept reading it",
        st.stalled_at
    );
    assert!(st.stalled_at > 0, "the peer could not write anything");

    // Resume: the client now reads everything the peer wrote, in order.
    st.stop.store(true, Ordering::SeqCst);
    let mut check = Check::new();
    let close = loop {
        let f = ws::read_frame(&mut st.client).unwrap_or_else(|e| {
            panic!(
                "reading after {} bytes ({} written): {e}",
                check.pos,
                st.written.load(Ordering::SeqCst)
            )
        });
        match f.opcode {
            2 => check.feed(&f.payload),
            9 => {}
            8 => break f,
            op => panic!("unexpected frame opcode {op}"),
        }
    };
    let total = st.writer.join().expect("writer thread");
    assert_eq!(
        check.pos, total,
        "client got {} of the {total} bytes the peer wrote",
        check.pos
    );
    assert_eq!(
        close.close_code(),
        Some(1000),
        "peer EOF should close with 1000: {close:?}"
    );
}

#[test]
fn other_connections_are_served_while_one_client_stalls() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "-c", &peer.host_arg(), "-c", "framing=binary"]);
    // Peer connection #1 streams to a client that does not read.
    let st = stall_a_client(&b, &peer);

    // Connection #2 echoes: it must work normally meanwhile.
    let t = Instant::now();
    let mut c = b.connect();
    ws::upgrade(&mut c, "/other", &[]);
    let _echo = peers::echo_on(peer.accept());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "upgrade took {:?} while another client stalled",
        t.elapsed()
    );
    for i in 0..5 {
        let d = round_trip(&mut c, &format!("round trip {i}"));
        assert!(
            d < Duration::from_secs(1),
            "round trip {i} took {d:?} while another client stalled"
        );
    }
    // The stalled one is still stalled while #2 worked (give or take a
    // window update's worth of kernel buffer).
    let moved = st.written.load(Ordering::SeqCst) - st.stalled_at;
    assert!(
        moved < MIB,
        "the stalled peer wrote {moved} more bytes without a reader"
    );
    st.stop.store(true, Ordering::SeqCst);
}

#[test]
fn slow_peer_pauses_the_client_and_loses_nothing() {
    // ~1 MiB messages, a whole number of pattern periods so one frame serves for all.
    const MSG: usize = 251 * 4177;
    const COUNT: usize = 50;
    let total = (MSG * COUNT) as u64;

    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "-c", &peer.host_arg()]);
    let rss0 = b.rss_kib();
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();

    let frame = ws::frame_zero_key(2, &Pattern::new().bytes(MSG));
    let header = (frame.len() - MSG) as u64;
    let written = Arc::new(AtomicU64::new(0));
    let w2 = Arc::clone(&written);
    let mut wc = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for _ in 0..COUNT {
            let mut off = 0;
            while off < frame.len() {
                let n = wc.write(&frame[off..]).expect("client write");
                off += n;
                w2.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    });

    let stalled_at = wait_stalled(&written, "the client writing to a non-reading peer");
    let rss = b.rss_kib();
    eprintln!("slow peer: client stalled after {stalled_at} bytes; RSS {rss0} -> {rss} KiB");
    assert!(
        rss < rss0 + RSS_SLACK_KIB,
        "bridge RSS grew from {rss0} KiB to {rss} KiB while buffering for a non-reading peer"
    );
    assert!(
        stalled_at < IN_FLIGHT_MAX,
        "the client wrote {stalled_at} bytes before stalling: the bridge kept reading it"
    );

    // Resume: the peer reads everything, in order, nothing more. The bridge
    // must resume on its own readiness events: a short read timeout catches
    // a stall that only a session timer (seconds later) would end.
    p.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut check = Check::new();
    let mut buf = vec![0u8; 256 * 1024];
    while check.pos < total {
        let n = p
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("peer read after {} bytes: {e}", check.pos));
        assert!(n > 0, "peer saw EOF after {} of {total} bytes", check.pos);
        check.feed(&buf[..n]);
    }
    writer.join().expect("client writer");
    assert_eq!(
        written.load(Ordering::SeqCst),
        total + header * COUNT as u64
    );
    c.write_all(&ws::close(1000, "")).unwrap();
    let (_, close) = ws::read_until_close(&mut c).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    let rest = peers::read_to_eof(&mut p);
    assert!(
        rest.is_empty(),
        "peer got {} bytes more than the client sent",
        rest.len()
    );
}

#[test]
fn two_hundred_concurrent_connections() {
    const N: usize = 200;
    let echo = peers::tcp_echo();
    let b = Bridge::start(&["-k", "0", "-c", &format!("host=tcp://{echo}")]);
    // All clients are open at the same time before any starts its round trips.
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let addr = b.addr;
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(WAIT)).unwrap();
                s.set_nodelay(true).unwrap();
                ws::upgrade(&mut s, &format!("/c{i}"), &[]);
                let (count, cv) = &*gate;
                let mut open = count.lock().unwrap();
                *open += 1;
                cv.notify_all();
                let (open, timeout) = cv.wait_timeout_while(open, WAIT, |open| *open < N).unwrap();
                assert!(
                    !timeout.timed_out(),
                    "only {} of {N} clients got open",
                    *open
                );
                drop(open);
                for j in 0..10 {
                    round_trip(&mut s, &format!("client {i} message {j}"));
                }
                s.write_all(&ws::close(1000, "done")).unwrap();
                let (_, close) = ws::read_until_close(&mut s).expect("close reply");
                assert_eq!(close.close_code(), Some(1000));
                assert!(
                    ws::at_eof(&mut s),
                    "client {i}: no EOF after the close handshake"
                );
            })
        })
        .collect();
    let failed = clients
        .into_iter()
        .map(|t| t.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(failed, 0, "{failed} of {N} clients failed");
    wait_count(&b, "closed: code 1000", N);
    assert_eq!(b.count_log("closed:"), N, "log:\n{}", b.logs());
}

#[test]
fn bulk_transfer_does_not_delay_small_round_trips() {
    // ~256 KiB messages (whole pattern periods), ~100 MiB in all.
    const MSG: usize = 251 * 1024;
    const COUNT: usize = 408;
    let total = (MSG * COUNT) as u64;
    let echo = peers::tcp_echo();
    let b = Bridge::start(&[
        "-k",
        "0",
        "-c",
        &format!("host=tcp://{echo}"),
        "-c",
        "framing=binary",
    ]);

    let mut small = b.connect();
    ws::upgrade(&mut small, "/small", &[]);
    round_trip(&mut small, "warm-up");

    let mut bulk = b.connect();
    ws::upgrade(&mut bulk, "/bulk", &[]);
    let frame = ws::frame_zero_key(2, &Pattern::new().bytes(MSG));
    let mut bw = bulk.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for _ in 0..COUNT {
            bw.write_all(&frame).expect("bulk write");
        }
    });
    let done = Arc::new(AtomicBool::new(false));
    let done2 = Arc::clone(&done);
    let mut br = bulk.try_clone().unwrap();
    let reader = thread::spawn(move || -> io::Result<u64> {
        let mut check = Check::new();
        while check.pos < total {
            let f = ws::read_frame(&mut br)?;
            assert_eq!(
                f.opcode, 2,
                "unexpected frame in the bulk stream after {} bytes",
                check.pos
            );
            check.feed(&f.payload);
        }
        done2.store(true, Ordering::SeqCst);
        Ok(check.pos)
    });

    let mut trips = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let i = trips.len();
        trips.push(round_trip(&mut small, &format!("small {i}")));
    }
    let got = reader.join().expect("bulk reader").expect("bulk read");
    writer.join().expect("bulk writer");
    assert_eq!(got, total);
    let slowest = trips.iter().max().copied().unwrap_or_default();
    eprintln!(
        "bulk: {total} bytes, {} small round trips, slowest {slowest:?}",
        trips.len()
    );
    assert!(
        trips.len() >= 10,
        "only {} round trips happened during the bulk transfer",
        trips.len()
    );
    assert!(
        slowest <= Duration::from_millis(50),
        "a round trip took {slowest:?} during the bulk transfer ({} trips)",
        trips.len()
    );
    bulk.write_all(&ws::close(1000, "")).unwrap();
    let (rest, close) = ws::read_until_close(&mut bulk).unwrap();
    assert!(rest.is_empty());
    assert_eq!(close.close_code(), Some(1000));
}

/// `--read-only`: clients only listen. What a client sends is read (its
/// close still completes) and dropped; the peer sees none of it, only the
/// EOF when the client leaves, while its own bytes reach the client.
#[test]
fn a_read_only_listener_passes_nothing_from_clients_to_the_peer() {
    let peer = TcpPeer::new();
    let host = format!("host=tcp://{}", peer.addr);
    let b = Bridge::start(&["-k", "0", "--read-only", "-c", &host]);
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    let mut p = peer.accept();
    c.write_all(&ws::frame(true, 2, b"dropped")).unwrap();
    p.write_all(b"news").unwrap();
    assert_eq!(ws::read_frame(&mut c).unwrap().payload, b"news");
    c.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(ws::read_frame(&mut c).unwrap().close_code(), Some(1000));
    // Everything the client sent came before its close: had any of it been
    // passed on, it would be here before the EOF.
    assert!(peers::read_to_eof(&mut p).is_empty());
}
