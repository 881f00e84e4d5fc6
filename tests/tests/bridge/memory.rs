//! Memory is bounded by a constant per connection, not by the largest
//! message (issue 6): it comes back after large messages, stays small
//! while a peer reads slowly, and an idle connection costs a few KiB.
//!
//! Figures are the bridge's VmRSS, so they mean something only with a
//! release binary: run with `cargo test --release -p websocksy-tests
//! --test bridge memory`. Each test prints its figures with `eprintln!`.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use websocksy_tests::pattern::{read_binary, Check, Pattern};
use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::{raise_nofile_limit, ws, Bridge};

const MIB: usize = 1 << 20;
/// One pooled buffer (`core/src/pool.rs`: `CHUNK`), in KiB.
const CHUNK_KIB: u64 = 64;
/// What the buffer pool may keep for each connection that was busy at the
/// same time as the others: the pool gives buffers back to the allocator
/// only beyond 256 of each kind, so after a transfer it still holds what
/// was lent at the peak, at most a client read buffer, a peer read buffer
/// and an output buffer (each about 64 KiB) per busy connection.
const POOL_KIB_PER_BUSY: u64 = 3 * CHUNK_KIB;
/// Memory that appears once whatever the connection count: code pages
/// touched for the first time by a new path (VmRSS counts them),
/// allocator bookkeeping, a worker's stack.
const NOISE_KIB: u64 = 1024;
/// The target for one idle connection, in KiB.
const IDLE_KIB_PER_CONN: u64 = 5;
/// How long memory may take to come back once the last byte is through.
const SETTLE: Duration = Duration::from_secs(2);

/// An upgraded connection to the bridge.
fn upgraded(b: &Bridge, path: &str) -> TcpStream {
    let mut c = b.connect();
    ws::upgrade(&mut c, path, &[]);
    c
}

/// One small message through an echoing peer (`framing=binary`).
fn round_trip(s: &mut TcpStream, msg: &[u8], who: &str) {
    s.write_all(&ws::binary(msg))
        .unwrap_or_else(|e| panic!("{who}: send: {e}"));
    let mut back = Vec::new();
    while back.len() < msg.len() {
        let f = ws::read_frame(s).unwrap_or_else(|e| panic!("{who}: read: {e}"));
        match f.opcode {
            2 => back.extend_from_slice(&f.payload),
            9 | 10 => {}
            op => panic!("{who}: unexpected frame {op} in a round trip"),
        }
    }
    assert_eq!(back, msg, "{who}: round trip came back different");
}

/// VmRSS once it is at most `bound` KiB, or after [`SETTLE`] the last
/// figure read: freeing may trail the last byte by an event or two.
fn settled_rss(b: &Bridge, bound: u64) -> u64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let rss = b.rss_kib();
        if rss <= bound || Instant::now() >= deadline {
            return rss;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until none of `counters` has grown for a while; returns their
/// values then.
fn wait_all_stalled(counters: &[Arc<AtomicU64>], what: &str) -> Vec<u64> {
    websocksy_tests::wait_stalled(what, Duration::from_secs(30), || {
        counters
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect::<Vec<u64>>()
    })
}

/// Per-connection figure for messages: `(after - before) / n` KiB.
fn per_conn(before: u64, after: u64, n: usize) -> f64 {
    (after as f64 - before as f64) / n as f64
}

#[test]
fn memory_comes_back_after_large_messages() {
    // The old reader kept a buffer as large as the largest message it had
    // read: ~16.5 MiB per connection after one 16 MiB message, 132 MiB
    // here against a bound of 2.5 MiB.
    const CLIENTS: usize = 8;
    const MSG: usize = 16 * MIB;
    let echo = peers::tcp_echo();
    let b = Bridge::start(&[
        "-k",
        "0",
        "-c",
        &format!("host=tcp://{echo}"),
        "-c",
        "framing=binary",
    ]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| upgraded(&b, &format!("/c{i}")))
        .collect();
    // Every session has been through a pass with data, both ways.
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(c, b"before", &format!("client {i}"));
    }
    let before = b.rss_kib();

    // All clients at once: each sends one message and reads the echo back,
    // checking every byte, while it is still being sent.
    let frame = Arc::new(ws::frame_zero_key(2, &Pattern::new().bytes(MSG)));
    let t = Instant::now();
    let runs: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let frame = Arc::clone(&frame);
            thread::spawn(move || {
                let mut w = c.try_clone().expect("clone client socket");
                let writer = thread::spawn(move || w.write_all(&frame));
                let who = format!("client {i}");
                read_binary(&mut c, MSG as u64, &mut Check::new(), &who);
                writer
                    .join()
                    .expect("writer thread")
                    .unwrap_or_else(|e| panic!("{who}: sending the message: {e}"));
                c
            })
        })
        .collect();
    let mut clients: Vec<TcpStream> = runs
        .into_iter()
        .map(|r| r.join().expect("a client's transfer failed"))
        .collect();
    let took = t.elapsed();
    // Each session has gone back to small messages after the large one.
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(c, b"after", &format!("client {i}"));
    }

    let bound = before + NOISE_KIB + POOL_KIB_PER_BUSY * CLIENTS as u64;
    let after = settled_rss(&b, bound);
    let per = per_conn(before, after, CLIENTS);
    eprintln!(
        "memory after large messages: {CLIENTS} clients x one {} MiB message echoed in {took:?}; \
         RSS {before} -> {after} KiB ({per:+.1} KiB per connection, bound {bound} KiB)",
        MSG / MIB
    );
    assert!(
        after <= bound,
        "bridge RSS {before} KiB before, {after} KiB after {CLIENTS} idle connections each \
         carried one {} MiB message ({per:+.1} KiB per connection); bound {bound} KiB \
         ({NOISE_KIB} KiB + {POOL_KIB_PER_BUSY} KiB per connection)",
        MSG / MIB
    );
}

#[test]
fn memory_stays_bounded_while_a_peer_reads_slowly() {
    // The old reader held a whole message before the peer saw a byte of
    // it: +192 MiB for these four clients.
    const CLIENTS: usize = 4;
    const MSG: usize = 48 * MIB;
    /// The target: held per connection while the peer stalls.
    const STALLED_KIB_PER_CONN: u64 = 1024;
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "-c", &peer.host_arg()]);
    let mut pairs: Vec<(TcpStream, TcpStream)> = (0..CLIENTS)
        .map(|i| {
            let c = upgraded(&b, &format!("/c{i}"));
            (c, peer.accept())
        })
        .collect();
    let before = b.rss_kib();

    // The peers accept and do not read: every client writes until the
    // kernel buffers on both legs and the bridge's own are full.
    let frame = Arc::new(ws::frame_zero_key(2, &Pattern::new().bytes(MSG)));
    let counters: Vec<Arc<AtomicU64>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let writers: Vec<_> = pairs
        .iter()
        .zip(&counters)
        .map(|((c, _), written)| {
            let mut w = c.try_clone().expect("clone client socket");
            let frame = Arc::clone(&frame);
            let written = Arc::clone(written);
            thread::spawn(move || -> std::io::Result<()> {
                let mut off = 0;
                while off < frame.len() {
                    // In pieces: a blocking write of the rest would return
                    // only once all of it was sent, and the counter would
                    // say nothing about where the writer stalled.
                    let end = frame.len().min(off + Pattern::PIECE);
                    let n = w.write(&frame[off..end])?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    off += n;
                    written.fetch_add(n as u64, Ordering::SeqCst);
                }
                Ok(())
            })
        })
        .collect();
    let stalled = wait_all_stalled(&counters, "the clients writing to non-reading peers");
    let during = b.rss_kib();
    let per = per_conn(before, during, CLIENTS);
    let bound = before + STALLED_KIB_PER_CONN * CLIENTS as u64;
    eprintln!(
        "memory while peers stall: {CLIENTS} clients x one {} MiB message, stalled after \
         {stalled:?} bytes; RSS {before} -> {during} KiB ({per:+.1} KiB per connection, \
         bound {bound} KiB)",
        MSG / MIB
    );
    assert!(
        during <= bound,
        "bridge RSS grew from {before} KiB to {during} KiB ({per:+.1} KiB per connection) \
         while {CLIENTS} peers did not read; bound {bound} KiB \
         ({STALLED_KIB_PER_CONN} KiB per connection)"
    );
    for (i, s) in stalled.iter().enumerate() {
        assert!(
            *s > 0 && *s < frame.len() as u64,
            "client {i} stalled after {s} of {} bytes: the RSS figure means \
             something only if the client wrote some and not all of its message",
            frame.len()
        );
    }

    // The peers now read everything: every byte, in order, nothing more.
    let readers: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let mut p = p.try_clone().expect("clone peer socket");
            thread::spawn(move || {
                let mut check = Check::new();
                let mut buf = vec![0u8; 256 * 1024];
                while check.pos < MSG as u64 {
                    let want = buf.len().min(MSG - check.pos as usize);
                    let n = ws::read_some(&mut p, &mut buf[..want]).unwrap_or_else(|e| {
                        panic!("peer {i}: read after {} bytes: {e}", check.pos)
                    });
                    assert!(n > 0, "peer {i}: EOF after {} of {MSG} bytes", check.pos);
                    check.feed(&buf[..n]);
                }
            })
        })
        .collect();
    for r in readers {
        r.join().expect("a peer did not get the whole message");
    }
    for (i, w) in writers.into_iter().enumerate() {
        w.join()
            .expect("writer thread")
            .unwrap_or_else(|e| panic!("client {i}: sending the message: {e}"));
    }
    // The clients saw no error: nothing came back, and the close is clean.
    for (i, (c, p)) in pairs.iter_mut().enumerate() {
        c.write_all(&ws::close(1000, "")).expect("send close");
        let (frames, close) = ws::read_until_close(c)
            .unwrap_or_else(|e| panic!("client {i}: reading the close reply: {e}"));
        assert!(frames.is_empty(), "client {i} got frames: {frames:?}");
        assert_eq!(
            close.close_code(),
            Some(1000),
            "client {i}: close reply {close:?}; log:\n{}",
            b.logs()
        );
        let rest = peers::read_to_eof(p);
        assert!(
            rest.is_empty(),
            "peer {i} got {} bytes more than the client sent",
            rest.len()
        );
    }

    let bound = before + NOISE_KIB + POOL_KIB_PER_BUSY * CLIENTS as u64;
    let after = settled_rss(&b, bound);
    eprintln!("memory after the peers caught up: RSS {before} -> {after} KiB (bound {bound} KiB)");
    assert!(
        after <= bound,
        "bridge RSS {before} KiB before, {after} KiB after the stalled messages went \
         through; bound {bound} KiB"
    );
}

/// Idle connections to `host` (with `descriptors_each` descriptors per
/// connection in this process) stay within the 5 KiB each, before
/// and after each has carried one 1 MiB message through an echo.
///
/// The target is measured at 10,000 connections by the benchmark;
/// 2,000 keep these tests short, and a fixed cost spread over fewer
/// connections only makes the figure harder to meet.
fn idle_connections_stay_small(host: &str, descriptors_each: usize) {
    const CONNS: usize = 2000;
    const MSG: usize = MIB;
    /// Clients sending their message at the same time.
    const AT_ONCE: usize = 4;
    let need = CONNS * descriptors_each + 256;
    let limit = raise_nofile_limit();
    assert!(
        limit >= need as libc::rlim_t,
        "this test needs {need} descriptors, the limit is {limit}"
    );
    let b = Bridge::start(&["-k", "0", "-c", host, "-c", "framing=binary"]);
    let before = b.rss_kib();

    let t = Instant::now();
    let mut clients: Vec<TcpStream> = (0..CONNS).map(|_| upgraded(&b, "/")).collect();
    let opened = t.elapsed();
    let idle = b.rss_kib();
    let per_idle = per_conn(before, idle, CONNS);
    let bound = before + IDLE_KIB_PER_CONN * CONNS as u64;
    eprintln!(
        "idle connections to {host}: {CONNS} opened in {opened:?}; RSS {before} -> {idle} KiB \
         ({per_idle:.2} KiB per connection, bound {bound} KiB)"
    );
    assert!(
        idle <= bound,
        "bridge RSS {before} KiB before, {idle} KiB with {CONNS} idle connections to {host}: \
         {per_idle:.2} KiB per connection, target {IDLE_KIB_PER_CONN} KiB"
    );

    // Each connection carries one message, a few at a time, and reads the
    // echo back whole before the next one starts.
    let frame = ws::frame_zero_key(2, &Pattern::new().bytes(MSG));
    let t = Instant::now();
    let per_thread = CONNS.div_ceil(AT_ONCE);
    thread::scope(|s| {
        for (k, chunk) in clients.chunks_mut(per_thread).enumerate() {
            let frame = &frame;
            s.spawn(move || {
                for (j, c) in chunk.iter_mut().enumerate() {
                    let who = format!("client {}", k * per_thread + j);
                    c.write_all(frame)
                        .unwrap_or_else(|e| panic!("{who}: send: {e}"));
                    read_binary(c, MSG as u64, &mut Check::new(), &who);
                }
            });
        }
    });
    let carried = t.elapsed();

    let bound =
        before + IDLE_KIB_PER_CONN * CONNS as u64 + NOISE_KIB + POOL_KIB_PER_BUSY * AT_ONCE as u64;
    let after = settled_rss(&b, bound);
    let per_after = per_conn(before, after, CONNS);
    eprintln!(
        "idle connections to {host} after one {} MiB message each ({carried:?}): RSS \
         {before} -> {after} KiB ({per_after:.2} KiB per connection, bound {bound} KiB)",
        MSG / MIB
    );
    assert!(
        after <= bound,
        "bridge RSS {before} KiB before, {idle} KiB idle, {after} KiB after each of {CONNS} \
         connections to {host} carried one {} MiB message: {per_after:.2} KiB per \
         connection; bound {bound} KiB ({IDLE_KIB_PER_CONN} KiB per connection + \
         {NOISE_KIB} KiB + {POOL_KIB_PER_BUSY} KiB for each of {AT_ONCE} busy at once)",
        MSG / MIB
    );
    drop(clients);
}

#[test]
fn idle_mirror_connections_stay_small_before_and_after_a_message() {
    // The mirror holds each whole message before it sends it back.
    idle_connections_stay_small("host=mirror://", 1);
}

#[test]
fn idle_tcp_connections_stay_small_before_and_after_a_message() {
    // As the benchmark measures it: one TCP connection to an echo peer per
    // client; the message streams through.
    let echo = peers::tcp_echo();
    idle_connections_stay_small(&format!("host=tcp://{echo}"), 2);
}
