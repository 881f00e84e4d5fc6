//! `websocksy connect --retry` end to end (issue 8, reconnects): a server
//! that starts late (the backoff waits logged, bounded and kept), a server
//! that drops every connection after a few messages (reconnects, the
//! opening message on each, nothing lost, duplicated or reordered), and
//! `--retry-buffer` (what a local client sends while the server is down is
//! held up to the bound, then the local side is not read, and everything
//! arrives once the server is up). Against Python `websockets` and
//! websocksy's own server mode.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use websocksy_tests::connect::Connect;
use websocksy_tests::pattern::{Check, Pattern};
use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::pyserver::{field, message_data, PyServer};
use websocksy_tests::{temp_dir, wait_stalled, Bridge, WAIT};

use crate::connect_util::{json_text, lines, settle, tcp_queues};

// ---------------------------------------------------------------------------
// A server that starts late

const INTERVAL: f64 = 0.2;
const GROWTH: f64 = 2.0;
const MAX_INTERVAL: f64 = 1.0;
/// Attempt lines checked before the server starts (bounds 0.2, 0.4, 0.8,
/// 1, 1: at most 3.4 s).
const ATTEMPTS: usize = 5;
/// How much later than its logged wait an attempt may come.
const LATE: Duration = Duration::from_millis(150);
/// How much earlier (the log reader may see a line late, which shortens
/// the gap to the next one).
const EARLY: Duration = Duration::from_millis(50);

/// `conn 1 - -> ws://...: cannot connect: ...; retry 3 in 0.512s`: (3, 0.512).
fn retry_of(line: &str) -> (u32, f64) {
    let rest = line
        .rsplit("; retry ")
        .next()
        .unwrap_or_else(|| panic!("no retry in {line}"));
    let (n, wait) = rest
        .split_once(" in ")
        .unwrap_or_else(|| panic!("no wait in {line}"));
    let n = n
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .expect("attempt number");
    let wait = wait
        .trim()
        .strip_suffix('s')
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("bad wait in {line}"));
    (n, wait)
}

/// Start `websocksy connect` on a port where nothing listens yet, check
/// its first [`ATTEMPTS`] retries, then `start` the server on that port
/// and check that data flows, including a line written while it was down.
fn late_start<S>(start: impl FnOnce(u16) -> S) {
    let port = peers::closed_port();
    let url = format!("ws://127.0.0.1:{port}/late");
    let open = open_message_file();
    let mut c = Connect::start(
        &url,
        "-",
        &[
            "--framing",
            "newline",
            "--retry",
            "--retry-interval",
            "0.2",
            "--retry-growth",
            "2",
            "--retry-max-interval",
            "1",
            "--open-message-file",
            &open,
        ],
    );
    c.write_stdin(b"written while the server was down\n");
    let got = c.wait_log_n("; retry ", ATTEMPTS, WAIT);
    let mut waits = Vec::new();
    for (i, (_, line)) in got.iter().enumerate() {
        let (n, wait) = retry_of(line);
        assert_eq!(n as usize, i + 1, "attempts are numbered: {line}");
        assert!(line.contains("cannot connect"), "the reason: {line}");
        let bound = (INTERVAL * GROWTH.powi(i as i32)).min(MAX_INTERVAL);
        assert!(
            wait <= bound + 0.0005,
            "retry {n} waits {wait}s, over its bound {bound}s: {line}"
        );
        waits.push((wait, bound));
    }
    for (i, pair) in got.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let wait = Duration::from_secs_f64(waits[i].0);
        assert!(
            gap + EARLY >= wait && gap <= wait + LATE,
            "retry {} logged a wait of {wait:?} but the next attempt came after {gap:?}:\n{}",
            i + 1,
            c.logs()
        );
    }
    // Full jitter: the waits are drawn below their bounds, not at them.
    assert!(
        waits.iter().any(|(w, b)| *w < 0.9 * b),
        "every wait is at its bound: {waits:?}"
    );
    let _server = start(port);
    c.wait_log(" open");
    // The opening message first, then what was held (both come back).
    let held = format!("{OPEN}written while the server was down\n");
    assert_eq!(String::from_utf8_lossy(&c.wait_stdout(held.len())), held);
    c.write_stdin(b"and after\n");
    let all = format!("{held}and after\n");
    assert_eq!(String::from_utf8_lossy(&c.wait_stdout(all.len())), all);
    c.close_stdin();
    c.expect_exit(WAIT, 0);
}

#[test]
fn python_server_that_starts_late() {
    late_start(|port| PyServer::start(&["--port", &port.to_string(), "--echo"]));
}

#[test]
fn websocksy_server_that_starts_late() {
    late_start(|port| {
        Bridge::start(&[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "host=mirror://",
        ])
    });
}

// ---------------------------------------------------------------------------
// A server that drops every connection after a few messages

/// The opening message each connection starts with.
const OPEN: &str = "OPEN\n";
const LINES: usize = 10;

fn open_message_file() -> String {
    let f = temp_dir("connect-open-message").join("open.txt");
    std::fs::write(&f, OPEN).unwrap();
    f.display().to_string()
}

/// `websocksy connect URL --from - --framing newline`, reconnecting fast,
/// with the opening message.
fn reconnecting(url: &str, file: &str) -> Connect {
    Connect::start(
        url,
        "-",
        &[
            "--framing",
            "newline",
            "--retry",
            "--retry-interval",
            "0.05",
            "--retry-max-interval",
            "0.1",
            "--open-message-file",
            file,
        ],
    )
}

/// Each connection gets the opening message first, then two lines, and
/// is then dropped: every line reaches the server once, in order, and the
/// echo of each connection's first line reaches standard output.
#[test]
fn python_server_dropping_every_connection_after_3_messages() {
    let s = PyServer::start(&["--echo", "--drop-after", "3"]);
    let file = open_message_file();
    let mut c = reconnecting(&s.url("/drops"), &file);
    let all = lines(LINES, "drop");
    for (i, line) in all.iter().enumerate() {
        c.write_stdin(line.as_bytes());
        // A slow producer: the next line only once this one arrived.
        let needle = format!("data={}", json_text(line));
        s.wait_line(&needle);
        if i % 2 == 1 {
            // The server dropped this connection after it: the next line
            // is written only once websocksy knows (what is written
            // before may be lost with the old connection, as the README
            // says).
            let k = i / 2 + 1;
            s.wait_line(&format!("drop conn={k} after=3 with=abort"));
            c.wait_log_n("connection ended", k, WAIT);
        }
    }
    let conns = LINES / 2 + 1;
    s.wait_line(&format!("open conn={conns} "));
    s.wait_line(&format!("message conn={conns} "));
    let mut received = Vec::new();
    for k in 1..=conns {
        let msgs: Vec<Vec<u8>> = s
            .lines()
            .iter()
            .filter(|l| l.starts_with(&format!("message conn={k} ")))
            .map(|l| message_data(l).expect("data="))
            .collect();
        assert_eq!(
            msgs.first().map(Vec::as_slice),
            Some(OPEN.as_bytes()),
            "connection {k} did not start with the opening message:\n{}",
            s.output()
        );
        received.extend(
            msgs[1..]
                .iter()
                .map(|m| String::from_utf8_lossy(m).to_string()),
        );
    }
    assert_eq!(received, all, "lines lost, duplicated or reordered");
    assert_eq!(c.count_log("connection ended"), LINES / 2, "{}", c.logs());
    // Each reconnect starts the backoff over: the failures before it were
    // forgotten when the connection opened.
    let lost = c.wait_log_n("connection lost; retry ", LINES / 2, WAIT);
    for (_, l) in &lost {
        assert!(l.contains("connection lost; retry 1 in "), "{l}");
    }
    // Standard output: echoes in order, none twice; the first line of
    // each connection was echoed long before its drop.
    let out = String::from_utf8(c.stdout()).unwrap();
    let echoed: Vec<&str> = out.split_inclusive('\n').filter(|l| *l != OPEN).collect();
    let mut last = None;
    for l in &echoed {
        let at = all
            .iter()
            .position(|a| a == l)
            .unwrap_or_else(|| panic!("unknown echo {l:?}"));
        assert!(last < Some(at), "echo {l:?} out of order or twice: {out:?}");
        last = Some(at);
    }
    for first in all.iter().step_by(2) {
        assert!(
            echoed.contains(&first.as_str()),
            "{first:?} not echoed: {out:?}"
        );
    }
    c.close_stdin();
    c.expect_exit(WAIT, 0);
}

/// The same against websocksy's own server: its TCP peer reads three
/// lines per connection (the opening message and two lines) and hangs up,
/// so the server closes the connection with 1000.
#[test]
fn websocksy_server_dropping_every_connection_after_3_messages() {
    let peer = TcpPeer::new();
    let server = Bridge::start(&["-c", &peer.host_arg()]);
    let (tx, rx) = channel::<(usize, String)>();
    std::thread::spawn(move || {
        for k in 1.. {
            let s = peer.accept();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                for _ in 0..3 {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    let _ = tx.send((k, l));
                }
                // Hang up: the server closes this connection with 1000.
            });
        }
    });
    let file = open_message_file();
    let mut c = reconnecting(&server.url("/drops"), &file);
    let all = lines(LINES, "tcp drop");
    let mut got = Vec::new();
    let mut next = |want: &str| {
        let (k, l) = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the peer did not get {want:?}:\n{}", server.logs()));
        got.push((k, l.clone()));
        l
    };
    assert_eq!(next(OPEN), OPEN);
    for (i, line) in all.iter().enumerate() {
        c.write_stdin(line.as_bytes());
        assert_eq!(&next(line), line, "lines lost, duplicated or reordered");
        if i % 2 == 1 {
            let k = i / 2 + 1;
            let ended = c.wait_log_n("connection ended", k, WAIT);
            assert!(ended[k - 1].1.contains("code 1000"), "{}", ended[k - 1].1);
            // The next connection starts with the opening message.
            assert_eq!(next(OPEN), OPEN);
        }
    }
    // Connection k (from 1) got the opening message and lines 2k-2, 2k-1.
    for (j, (k, l)) in got.iter().enumerate() {
        assert_eq!(*k, j / 3 + 1, "{l:?} on peer connection {k}");
    }
    c.close_stdin();
    c.expect_exit(WAIT, 0);
}

// ---------------------------------------------------------------------------
// --retry-buffer

const BUFFER: u64 = 256 * 1024;
/// The whole stream the local client sends.
const TOTAL: u64 = 8 * 1024 * 1024;

#[test]
fn retry_buffer_holds_then_backpressures_then_delivers_everything() {
    let port = peers::closed_port();
    let url = format!("ws://127.0.0.1:{port}/buffered");
    let c = Connect::start(
        &url,
        "tcp-listen://127.0.0.1:0",
        &[
            "--retry",
            "--retry-interval",
            "0.05",
            "--retry-max-interval",
            "0.1",
            "--retry-buffer",
            "256K",
        ],
    );
    let at = c.listener("tcp-listen://");
    let mut local = TcpStream::connect(at).unwrap();
    let me = local.local_addr().unwrap();
    c.wait_log("; retry 1 in ");
    let rss_before = c.rss_kib();

    // A non-blocking writer: it writes until the kernel says no more, and
    // stalls once websocksy stops reading.
    local.set_nonblocking(true).unwrap();
    let pattern = Pattern::new();
    let mut written = 0u64;
    let stalled_at = wait_stalled("the local client's writes", WAIT, || {
        loop {
            let n = (TOTAL - written).min(Pattern::PIECE as u64) as usize;
            match local.write(pattern.at(written, n)) {
                Ok(k) => written += k as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("local write: {e}"),
            }
        }
        written
    });
    assert!(
        stalled_at < TOTAL,
        "never stalled: {stalled_at} bytes taken"
    );
    let (client_unsent, _) = tcp_queues(me, at).expect("the local client's socket");
    let (_, bridge_unread) = tcp_queues(at, me).expect("websocksy's socket");
    let held = stalled_at - client_unsent - bridge_unread;
    assert!(
        held <= BUFFER + 64 * 1024,
        "websocksy read {held} bytes while disconnected (bound {BUFFER}); \
         {stalled_at} written, {client_unsent} in the client's send queue, \
         {bridge_unread} unread in websocksy's"
    );
    assert!(
        held >= BUFFER / 2,
        "websocksy held only {held} bytes of a {BUFFER}-byte buffer"
    );
    let grew = c.rss_kib().saturating_sub(rss_before);
    assert!(
        grew <= 2 * BUFFER / 1024 + 1024,
        "websocksy grew by {grew} KiB holding {held} bytes"
    );
    assert_eq!(c.count_log(" open"), 0, "{}", c.logs());

    // The server comes up: everything written so far and the rest arrive,
    // in order (the echo comes back to the local client).
    local.set_nonblocking(false).unwrap();
    local.set_read_timeout(Some(WAIT)).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let mut r = local.try_clone().unwrap();
    let g2 = Arc::clone(&got);
    let reader = std::thread::spawn(move || {
        let mut check = Check::new();
        let mut buf = vec![0u8; 65536];
        while check.pos < TOTAL {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => panic!("reading the echo at {}: {e}", check.pos),
            };
            check.feed(&buf[..n]);
            g2.store(check.pos, Ordering::Relaxed);
        }
        check.pos
    });
    let s = PyServer::start(&["--port", &port.to_string(), "--echo", "--quiet"]);
    c.wait_log(" open");
    while written < TOTAL {
        let n = (TOTAL - written).min(Pattern::PIECE as u64) as usize;
        local.write_all(pattern.at(written, n)).unwrap();
        written += n as u64;
    }
    let deadline = Instant::now() + 3 * WAIT;
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{} of {TOTAL} bytes came back",
            got.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reader.join().unwrap(), TOTAL, "stream cut short");
    local.shutdown(std::net::Shutdown::Write).unwrap();
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(
        field(&closed, "bytes_in"),
        Some(TOTAL.to_string()),
        "{closed}"
    );
    assert_eq!(s.count("open conn="), 1, "{}", s.output());
    let _ = local.write(b"");
}

// ---------------------------------------------------------------------------
// The ends of reconnecting

#[test]
fn end_of_input_while_down_is_sent_once_the_server_comes() {
    let port = peers::closed_port();
    let mut c = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "-",
        &[
            "--framing",
            "newline",
            "--retry",
            "--retry-interval",
            "0.05",
            "--retry-max-interval",
            "0.1",
        ],
    );
    c.write_stdin(b"one\ntwo\n");
    c.close_stdin();
    c.wait_log_n("; retry ", 2, WAIT);
    assert!(
        c.try_exit().is_none(),
        "gave up with input held:\n{}",
        c.logs()
    );
    let s = PyServer::start(&["--port", &port.to_string(), "--sink"]);
    c.expect_exit(WAIT, 0);
    let m = s.wait_lines("message conn=1 ", 2, WAIT);
    assert_eq!(message_data(&m[0].1), Some(b"one\n".to_vec()));
    assert_eq!(message_data(&m[1].1), Some(b"two\n".to_vec()));
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
}

#[test]
fn retries_exhausted_after_a_drop_exit_1() {
    let mut s = PyServer::start(&["--echo"]);
    let mut c = Connect::start(
        &s.url("/"),
        "mirror://",
        &["--retry", "--retry-interval", "0.02", "--retry-max", "2"],
    );
    c.wait_log(" open");
    s.wait_line("open conn=1 ");
    s.stop();
    c.expect_exit(WAIT, 1);
    c.wait_log("connection ended");
    c.wait_log("connection lost; retry 1 of 2 in ");
    c.wait_log("retry 2 of 2 in ");
    c.wait_log("giving up after 2 retries");
}

#[test]
fn udp_listen_datagrams_from_before_the_server_came_arrive_in_order() {
    let port = peers::closed_port();
    let c = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "udp-listen://127.0.0.1:0",
        &[
            "--retry",
            "--retry-interval",
            "0.05",
            "--retry-max-interval",
            "0.1",
        ],
    );
    let at = c.listener("udp-listen://");
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    for i in 0..3 {
        u.send_to(format!("held {i}").as_bytes(), at).unwrap();
    }
    c.wait_log_n("; retry ", 2, WAIT);
    let s = PyServer::start(&["--port", &port.to_string(), "--echo"]);
    u.send_to(b"after", at).unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    for _ in 0..4 {
        let (n, from) = u.recv_from(&mut buf).expect("an echo");
        assert_eq!(from, at);
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert_eq!(got, ["held 0", "held 1", "held 2", "after"]);
    s.wait_lines("message conn=1 ", 4, WAIT);
    assert_eq!(s.count("open conn="), 1, "{}", s.output());
}

#[test]
fn a_tcp_peer_stays_connected_across_reconnects() {
    // The server drops each connection after one message; the peer is
    // the same TCP connection throughout.
    let s = PyServer::start(&["--echo", "--drop-after", "1"]);
    let peer = TcpPeer::new();
    let mut c = Connect::start(
        &s.url("/"),
        &format!("tcp://{}", peer.addr),
        &[
            "--retry",
            "--retry-interval",
            "0.02",
            "--retry-max-interval",
            "0.05",
        ],
    );
    let mut l = peer.accept();
    for k in 1..=3 {
        let msg = format!("message {k}");
        l.write_all(msg.as_bytes()).unwrap();
        let m = s.wait_line(&format!("message conn={k} "));
        assert_eq!(message_data(&m), Some(msg.clone().into_bytes()));
        s.wait_line(&format!("drop conn={k} "));
        c.wait_log_n("connection ended", k, WAIT);
    }
    s.wait_line("open conn=4 ");
    // Still the one peer connection: EOF from it ends everything, exit 0.
    l.shutdown(std::net::Shutdown::Write).unwrap();
    let closed = s.wait_line("close conn=4 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1000"), "{closed}");
    c.expect_exit(WAIT, 0);
}

#[test]
fn sigterm_while_disconnected_stops_at_once_with_exit_0() {
    let port = peers::closed_port();
    let mut c = Connect::start(
        &format!("ws://127.0.0.1:{port}/"),
        "-",
        &[
            "--retry",
            "--retry-interval",
            "30",
            "--retry-max-interval",
            "30",
        ],
    );
    c.write_stdin(b"held\n");
    c.wait_log("; retry 1 in ");
    c.signal(libc::SIGTERM);
    // Standard input is still open; nothing else to wait for.
    c.expect_exit(Duration::from_secs(3), 0);
}

#[test]
fn a_server_that_accepts_and_drops_at_once_exhausts_retry_max() {
    // Each connection closes 1000 at once, before any message: none counts
    // as a success, so --retry-max still ends it.
    let s = PyServer::start(&["--source", "0", "0"]);
    let mut c = Connect::start(
        &s.url("/"),
        "mirror://",
        &["--retry", "--retry-interval", "0.02", "--retry-max", "2"],
    );
    c.expect_exit(WAIT, 1);
    c.wait_log("giving up after 2 retries");
    s.wait_lines("close conn=3 ", 1, WAIT);
    assert_eq!(c.count_log("retry 2 of 2 in "), 1, "{}", c.logs());
    assert_eq!(c.count_log("giving up after 2 retries"), 1, "{}", c.logs());
    assert_eq!(s.count("open conn="), 3, "{}", s.output());
}

#[test]
fn an_idle_timeout_is_not_retried() {
    let s = PyServer::start(&["--echo"]);
    let peer = TcpPeer::new();
    let mut c = Connect::start(
        &s.url("/"),
        &format!("tcp://{}", peer.addr),
        &[
            "--retry",
            "--retry-interval",
            "0.02",
            "--idle-timeout",
            "0.3",
        ],
    );
    let mut l = peer.accept();
    l.write_all(b"then nothing").unwrap();
    let mut got = [0u8; 12];
    l.read_exact(&mut got).unwrap();
    let closed = s.wait_line("close conn=1 ");
    assert_eq!(field(&closed, "code").as_deref(), Some("1001"), "{closed}");
    // The local peer gets EOF and the process ends; no second connection.
    let mut rest = Vec::new();
    l.read_to_end(&mut rest).unwrap();
    drop(l);
    c.wait_exit(WAIT);
    settle(&c);
    assert_eq!(s.count("request conn="), 1, "{}", s.output());
    assert_eq!(c.count_log("; retry "), 0, "{}", c.logs());
}
