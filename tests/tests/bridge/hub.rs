//! Fan-out hubs (issue 8): with `hub = on`, every client routed to the
//! same peer address shares one peer connection; each line the peer sends
//! goes to every client, a slow client is cut off (1008) or loses its
//! oldest lines (`hub-overflow = drop-oldest`) without slowing the others,
//! and the peer connection lives from the first client to the last (plus
//! `hub-linger`).

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer, UnansweringPeer};
use websocksy_tests::{binary, temp_dir, ws, Bridge, WAIT};

const MIB: u64 = 1 << 20;

/// A bridge whose `defaultpeer` is a hub on `peer`, cutting lines.
fn hub_bridge(peer: SocketAddr, extra: &[&str]) -> Bridge {
    let host = format!("host=tcp://{peer}");
    let mut args = vec![
        "-k",
        "0",
        "-c",
        &host,
        "-c",
        "hub=on",
        "-c",
        "framing=newline",
    ];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

/// An upgraded client: a member of the hub once this returns.
fn join(b: &Bridge) -> TcpStream {
    let mut c = b.connect();
    ws::upgrade(&mut c, "/", &[]);
    c
}

/// A member with a tiny receive buffer, so what the bridge queues for it
/// cannot hide in the kernel.
fn slow_member(b: &Bridge) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&b.addr.into()).expect("connect to bridge");
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    ws::upgrade(&mut s, "/", &[]);
    s
}

/// Line `i` of a feed: its number, padding up to `len` bytes, a newline.
fn line(i: u64, len: usize) -> Vec<u8> {
    let mut l = format!("{i:010} ").into_bytes();
    l.resize(len - 1, b'x');
    l.push(b'\n');
    l
}

fn number(payload: &[u8]) -> u64 {
    std::str::from_utf8(&payload[..10])
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a feed line: {:?}", String::from_utf8_lossy(payload)))
}

/// What a member read of a feed until the close frame.
struct Got {
    lines: u64,
    last: Option<u64>,
    close: Option<u16>,
}

/// Read feed lines until the close frame. `gaps`: lines may be missing
/// (never reordered or repeated); otherwise each must be the next one.
/// `progress` counts the lines read so far.
fn read_feed(s: TcpStream, gaps: bool, progress: Arc<AtomicU64>, who: &str) -> Got {
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut got = Got {
        lines: 0,
        last: None,
        close: None,
    };
    loop {
        let f = ws::read_frame(&mut r)
            .unwrap_or_else(|e| panic!("{who}: reading after {} lines: {e}", got.lines));
        match f.opcode {
            1 | 2 => {
                let n = number(&f.payload);
                match got.last {
                    Some(l) if gaps => assert!(n > l, "{who}: line {n} after {l}"),
                    Some(l) => assert_eq!(n, l + 1, "{who}: line {n} after {l}"),
                    None if !gaps => assert_eq!(n, 0, "{who}: first line {n}"),
                    None => {}
                }
                got.last = Some(n);
                got.lines += 1;
                progress.store(got.lines, Ordering::SeqCst);
            }
            8 => {
                got.close = f.close_code();
                return got;
            }
            _ => {}
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Write `lines` feed lines of `len` bytes to the peer, 16 at a time,
/// never more than `window` lines ahead of the slowest of `paced`, so
/// that only the members meant to be slow fall behind. Returns the
/// largest VmRSS of `pid` seen meanwhile.
fn feed(
    p: &mut TcpStream,
    lines: u64,
    len: usize,
    window: u64,
    paced: &[Arc<AtomicU64>],
    pid: u32,
) -> u64 {
    let mut peak = 0;
    let mut batch = Vec::with_capacity(16 * len);
    let mut i = 0;
    while i < lines {
        let deadline = Instant::now() + WAIT;
        loop {
            let slowest = paced.iter().map(|c| c.load(Ordering::SeqCst)).min();
            if slowest.is_none_or(|s| s + window >= i + 16) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members stalled at {slowest:?} lines of {i}"
            );
            thread::sleep(Duration::from_millis(1));
        }
        batch.clear();
        for _ in 0..16.min(lines - i) {
            batch.extend_from_slice(&line(i, len));
            i += 1;
        }
        p.write_all(&batch).expect("peer write");
        peak = peak.max(rss_kib(pid));
    }
    peak
}

#[test]
fn fifty_members_one_never_reads_it_gets_1008_the_others_every_line_in_order() {
    // 32 MiB of lines: far more than 1 MiB (hub-queue) and the socket
    // buffers of the member that does not read.
    const LINES: u64 = 8192;
    const LEN: usize = 4096;
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &[]);
    // The slow member comes first: it is also the one that dials the peer.
    let slow = slow_member(&b);
    let mut p = peer.accept();
    b.wait_log(&format!("hub tcp://{} open", peer.addr));
    let progress: Vec<Arc<AtomicU64>> = (0..49).map(|_| Arc::default()).collect();
    let readers: Vec<_> = progress
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let s = join(&b);
            let c = Arc::clone(c);
            thread::spawn(move || read_feed(s, false, c, &format!("member {i}")))
        })
        .collect();
    assert!(
        peer.accept_within(Duration::from_millis(200)).is_none(),
        "a second peer connection"
    );
    let before = b.rss_kib();
    let pid = b.pid();
    let paced = progress.clone();
    let writer = thread::spawn(move || {
        let peak = feed(&mut p, LINES, LEN, 64, &paced, pid);
        p.shutdown(Shutdown::Write).unwrap();
        (p, peak)
    });
    // Cut off while the feed runs; it still gets what was already its
    // own, in order, then the close.
    let line = b.wait_log("closing with 1008");
    assert!(line.contains("hub-queue"), "{line}");
    let got = read_feed(slow, false, Arc::default(), "the slow member");
    assert_eq!(got.close, Some(1008));
    assert!(got.lines < LINES / 2, "{} lines", got.lines);
    let (_p, peak) = writer.join().expect("writer");
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.join().expect("reader");
        assert_eq!(got.lines, LINES, "member {i}");
        assert_eq!(got.close, Some(1000), "member {i}");
    }
    let grew = peak.saturating_sub(before);
    eprintln!("VmRSS {before} KiB before the feed, {peak} KiB at most during it");
    assert!(
        grew < 16 * MIB / 1024,
        "the bridge grew by {grew} KiB for a {} KiB feed",
        LINES * LEN as u64 / 1024
    );
    assert_eq!(
        b.count_log("(hub-queue), closing with 1008"),
        1,
        "{}",
        b.logs()
    );
}

#[test]
fn drop_oldest_a_slow_member_loses_old_lines_and_nobody_is_closed() {
    drop_oldest_keeps_the_newest("hub-queue=256K", 4096, 4096, 32);
}

/// A queue smaller than what the output queue may hold ahead: the frames
/// there are never dropped, so only a small part of the queue may wait
/// there, or the newest messages would be the ones lost.
#[test]
fn drop_oldest_with_a_small_queue_still_keeps_the_newest_lines() {
    drop_oldest_keeps_the_newest("hub-queue=32K", 32_768, 512, 16);
}

/// `lines` lines of `len` bytes (more than the slow member's socket
/// buffers hold); `ahead`: how many the peer may write before every fast
/// member has them, kept well within `queue`.
fn drop_oldest_keeps_the_newest(queue: &str, lines: u64, len: usize, ahead: u64) {
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &["-c", "hub-overflow=drop-oldest", "-c", queue]);
    let mut p_conn = None;
    let progress: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::default()).collect();
    let readers: Vec<_> = progress
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let s = join(&b);
            if p_conn.is_none() {
                p_conn = Some(peer.accept());
            }
            let c = Arc::clone(c);
            thread::spawn(move || read_feed(s, false, c, &format!("member {i}")))
        })
        .collect();
    let mut p = p_conn.expect("peer connection");
    let mut slow = slow_member(&b);
    let paced = progress.clone();
    let pid = b.pid();
    let writer = thread::spawn(move || {
        feed(&mut p, lines, len, ahead, &paced, pid);
        p.shutdown(Shutdown::Write).unwrap();
        p
    });
    b.wait_log("hub queue full, dropping the oldest messages");
    let _p = writer.join().expect("writer");
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.join().expect("reader");
        assert_eq!((got.lines, got.close), (lines, Some(1000)), "member {i}");
    }
    let got = read_feed(
        slow.try_clone().unwrap(),
        true,
        Arc::default(),
        "the slow member",
    );
    assert_eq!(got.close, Some(1000));
    assert!(got.lines < lines, "nothing dropped");
    assert_eq!(got.last, Some(lines - 1), "the newest lines are kept");
    slow.write_all(&ws::close(1000, "")).unwrap();
    let line = b.wait_log("hub messages dropped");
    let dropped: u64 = line
        .split(": ")
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert_eq!(dropped + got.lines, lines, "{line}");
    assert_eq!(b.count_log("closing with 1008"), 0, "{}", b.logs());
    assert_eq!(b.count_log("hub messages dropped"), 1, "{}", b.logs());
}

#[test]
fn the_peer_ending_closes_every_member_with_1000() {
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &[]);
    let mut members = vec![join(&b)];
    let mut p = peer.accept();
    members.push(join(&b));
    members.push(join(&b));
    for m in &members {
        // Each member's own line: its address, and the hub it is in.
        b.wait_log(&format!(
            "{} -> hub tcp://{} open",
            m.local_addr().unwrap(),
            peer.addr
        ));
    }
    // An unfinished last line still goes out.
    p.write_all(b"one\ntwo\nthree").unwrap();
    drop(p);
    for (i, m) in members.iter_mut().enumerate() {
        let (frames, close) = ws::read_until_close(m).unwrap();
        let lines: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
        assert_eq!(lines, [&b"one\n"[..], b"two\n", b"three"], "member {i}");
        assert_eq!(close.close_code(), Some(1000), "member {i}");
    }
    drop(members);
    b.wait_log(&format!(
        "hub tcp://{} closed: peer closed the connection; 3 messages",
        peer.addr
    ));
}

#[test]
fn a_member_leaving_disturbs_no_one_and_messages_reach_the_peer_whole() {
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &[]);
    let mut a = join(&b);
    let mut p = peer.accept();
    let gone = join(&b);
    let mut polite = join(&b);
    let mut e = join(&b);
    // One leaves without a word, one with a close handshake.
    drop(gone);
    polite.write_all(&ws::close(1000, "bye")).unwrap();
    let (_, close) = ws::read_until_close(&mut polite).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    drop(polite);
    p.write_all(b"still here\n").unwrap();
    for m in [&mut a, &mut e] {
        assert_eq!(ws::read_frame(m).unwrap().payload, b"still here\n");
    }
    // Two members' messages, sent in pieces at the same time, reach the
    // peer one after the other, each whole.
    let piece = |c: u8| vec![c; 50_000];
    for (m, c) in [(&mut a, b'a'), (&mut e, b'e')] {
        m.write_all(&ws::frame(false, 2, &piece(c))).unwrap();
    }
    for (m, c) in [(&mut a, b'a'), (&mut e, b'e')] {
        m.write_all(&ws::frame(false, 0, &piece(c))).unwrap();
    }
    p.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b1 = [0u8; 1];
    match p.read(&mut b1) {
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the peer got part of an unfinished message: {other:?}"),
    }
    p.set_read_timeout(Some(WAIT)).unwrap();
    e.write_all(&ws::frame(true, 0, &piece(b'e'))).unwrap();
    assert_eq!(peers::read_n(&mut p, 150_000), vec![b'e'; 150_000]);
    a.write_all(&ws::frame(true, 0, &piece(b'a'))).unwrap();
    assert_eq!(peers::read_n(&mut p, 150_000), vec![b'a'; 150_000]);
    // The peer never saw the members that left: its connection is the same.
    p.write_all(b"after\n").unwrap();
    assert_eq!(ws::read_frame(&mut a).unwrap().payload, b"after\n");
}

#[test]
fn a_read_only_listener_sends_nothing_of_its_members_to_the_peer() {
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &["--read-only"]);
    let mut a = join(&b);
    let mut p = peer.accept();
    a.write_all(&ws::text("ignored\n")).unwrap();
    p.write_all(b"news\n").unwrap();
    assert_eq!(ws::read_frame(&mut a).unwrap().payload, b"news\n");
    // The last member leaves (no linger): the peer's connection ends, and
    // what the member sent before its close would be here before the EOF.
    a.write_all(&ws::close(1000, "")).unwrap();
    assert_eq!(ws::read_frame(&mut a).unwrap().close_code(), Some(1000));
    drop(a);
    assert!(
        peers::read_to_eof(&mut p).is_empty(),
        "a read-only member reached the peer"
    );
}

#[test]
fn the_peer_connection_outlives_the_last_member_by_hub_linger() {
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &["-c", "hub-linger=1"]);
    let a = join(&b);
    let mut p = peer.accept();
    drop(a);
    // A member arriving within the linger finds the same connection.
    let mut c = join(&b);
    assert!(
        peer.accept_within(Duration::from_millis(100)).is_none(),
        "a new peer connection within the linger"
    );
    p.write_all(b"hi\n").unwrap();
    assert_eq!(ws::read_frame(&mut c).unwrap().payload, b"hi\n");
    drop(c);
    let left = Instant::now();
    assert!(peers::read_to_eof(&mut p).is_empty());
    let after = left.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "peer closed {after:?} after the last member left"
    );
    b.wait_log(&format!("hub tcp://{} closed: no clients left", peer.addr));
}

#[test]
fn without_hub_linger_the_peer_connection_ends_with_the_last_member() {
    let peer = TcpPeer::new();
    let b = hub_bridge(peer.addr, &[]);
    let a = join(&b);
    let mut p = peer.accept();
    drop(a);
    assert!(peers::read_to_eof(&mut p).is_empty());
    // The next member starts a new connection.
    let mut c = join(&b);
    let mut p = peer.accept();
    p.write_all(b"again\n").unwrap();
    assert_eq!(ws::read_frame(&mut c).unwrap().payload, b"again\n");
}

/// A TCP peer whose accept queue is full until [`Held::release`], so a
/// connect to it hangs (the kernel drops the SYNs) and then completes with
/// the first SYN retransmitted after it.
struct Held {
    listener: TcpListener,
    queued: Vec<TcpStream>,
}

impl Held {
    fn new() -> Held {
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) on a bound socket we own.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == ErrorKind::TimedOut => return Held { listener, queued },
                Err(e) => panic!("filling the accept queue: {e}"),
            }
        }
        panic!("the accept queue never filled");
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Free the queue; the next connection accepted (within [`WAIT`]).
    fn release(self) -> TcpStream {
        let Held { listener, queued } = self;
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            // Accepting the queued connections makes room for the bridge's.
            let next = listener.incoming().nth(queued.len());
            drop(queued);
            let _ = tx.send(next);
        });
        let s = rx
            .recv_timeout(WAIT)
            .expect("the bridge never connected")
            .expect("the listener stopped")
            .expect("accept");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }
}

#[test]
fn members_arriving_while_the_peer_connects_wait_and_open_with_it() {
    let held = Held::new();
    let b = hub_bridge(held.addr(), &[]);
    let mut members: Vec<TcpStream> = (0..3).map(|_| b.connect()).collect();
    for m in &mut members {
        m.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    }
    // Nobody is answered while the connect hangs.
    members[0]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b1 = [0u8; 1];
    assert!(
        members[0].peek(&mut b1).is_err(),
        "answered before the peer was up"
    );
    members[0].set_read_timeout(Some(WAIT)).unwrap();
    let mut p = held.release();
    for m in &mut members {
        let r = ws::read_response(m).unwrap();
        assert_eq!(r.status, 101, "{}", r.head);
    }
    p.write_all(b"up\n").unwrap();
    for m in &mut members {
        assert_eq!(ws::read_frame(m).unwrap().payload, b"up\n");
    }
}

#[test]
fn members_waiting_for_a_peer_that_never_answers_get_the_first_ones_502() {
    let peer = UnansweringPeer::new();
    let b = hub_bridge(peer.addr, &["--connect-timeout", "1"]);
    let mut members: Vec<TcpStream> = (0..3).map(|_| b.connect()).collect();
    for m in &mut members {
        m.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    }
    for m in &mut members {
        let r = ws::read_response(m).unwrap();
        assert_eq!(r.status, 502, "{}", r.head);
        let body = String::from_utf8(ws::read_body(m, &r).unwrap()).unwrap();
        assert!(body.contains("timed out"), "{body}");
    }
    // The next client tries again: a new hub.
    let mut again = b.connect();
    again.write_all(ws::request("/", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut again).unwrap();
    assert_eq!(r.status, 502, "{}", r.head);
}

#[test]
fn a_datagram_peer_hub_echoes_to_every_member() {
    let udp = peers::udp_echo();
    let host = format!("host=udp://{udp}");
    let b = Bridge::start(&["-k", "0", "-c", &host, "-c", "hub=on"]);
    let mut a = join(&b);
    let mut c = join(&b);
    a.write_all(&ws::text("ping")).unwrap();
    for m in [&mut a, &mut c] {
        let f = ws::read_frame(m).unwrap();
        assert_eq!((f.opcode, &f.payload[..]), (1, &b"ping"[..]));
    }
}

#[test]
fn hub_options_are_checked_at_start() {
    for (args, want) in [
        (
            vec!["-c", "host=mirror://", "-c", "hub=on"],
            "hub needs a peer to share",
        ),
        (
            vec![
                "-c",
                "host=tcp://127.0.0.1:1?proxy-protocol=v1",
                "-c",
                "hub=on",
            ],
            "hub cannot be used with proxy-protocol",
        ),
        (
            vec!["-c", "hub-queue=lots"],
            "invalid value 'lots' for hub-queue",
        ),
        (
            vec!["-c", "hub-overflow=maybe"],
            "expected close or drop-oldest",
        ),
        (vec!["-c", "hub=perhaps"], "invalid value 'perhaps' for hub"),
    ] {
        let (status, _, err) = websocksy_tests::run_cli(&args);
        assert_eq!(status, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// A directory holding a symlink to the file backend plugin just built.
fn plugin_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = binary().parent().expect("target dir").to_path_buf();
        let dir = temp_dir("hub-plugins");
        let lib = "libbackend_file.so";
        std::os::unix::fs::symlink(target.join(lib), dir.join(lib)).expect("symlink plugin");
        dir.display().to_string()
    })
}

#[test]
fn a_file_backend_asks_for_hubs_one_per_peer_address() {
    let (one, two) = (TcpPeer::new(), TcpPeer::new());
    let dir = temp_dir("hub-files");
    // `?hub` after the peer: that answer is a hub (ABI 2.2's answer_hub).
    for (name, peer) in [("one", &one), ("two", &two)] {
        let text = format!("tcp://{}?hub - newline\n", peer.addr);
        std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
    }
    std::fs::write(dir.join("own.txt"), format!("tcp://{}\n", one.addr)).unwrap();
    let path = format!("path={}", dir.display());
    let b = Bridge::start(&[
        "-k",
        "0",
        "--plugin-dir",
        plugin_dir(),
        "-b",
        "file",
        "-c",
        &path,
        "-c",
        "expression=%endpoint%.txt",
    ]);
    let member = |path: &str| {
        let mut c = b.connect();
        ws::upgrade(&mut c, path, &[]);
        c
    };
    let mut a1 = member("/one");
    let mut p1 = one.accept();
    let mut b1 = member("/two");
    let mut p2 = two.accept();
    let mut a2 = member("/one");
    let mut b2 = member("/two");
    assert!(one.accept_within(Duration::from_millis(100)).is_none());
    assert!(two.accept_within(Duration::from_millis(100)).is_none());
    // Not a hub: its own connection, even to the same address.
    let mut own = member("/own");
    let mut p3 = one.accept();
    p1.write_all(b"for one\n").unwrap();
    p2.write_all(b"for two\n").unwrap();
    p3.write_all(b"for own").unwrap();
    for m in [&mut a1, &mut a2] {
        assert_eq!(ws::read_frame(m).unwrap().payload, b"for one\n");
    }
    for m in [&mut b1, &mut b2] {
        assert_eq!(ws::read_frame(m).unwrap().payload, b"for two\n");
    }
    assert_eq!(ws::read_frame(&mut own).unwrap().payload, b"for own");
    // Each member's path went to the backend and is in its log line.
    b.wait_log(&format!(
        "{} -> hub tcp://{} open",
        b2.local_addr().unwrap(),
        two.addr
    ));
}
