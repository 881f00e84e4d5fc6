//! SIGINT/SIGTERM (spec A34): stop accepting, send what the peer left,
//! close every open connection with 1001, drain, exit 0. Plus the
//! connection log lines.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use websocksy_tests::peers::{self, TcpPeer};
use websocksy_tests::ws;
use websocksy_tests::{Bridge, WAIT};

fn echo_bridge(extra: &[&str]) -> Bridge {
    let echo = peers::tcp_echo();
    let host = format!("host=tcp://{echo}");
    let mut args = vec!["-k", "0", "-c", host.as_str()];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

fn open(b: &Bridge) -> TcpStream {
    let mut s = b.connect();
    ws::upgrade(&mut s, "/", &[]);
    s
}

fn round_trip(s: &mut TcpStream, msg: &str) {
    s.write_all(&ws::text(msg)).unwrap();
    let f = ws::read_frame(s).expect("echo");
    assert_eq!((f.opcode, f.payload.as_slice()), (1, msg.as_bytes()));
}

/// Read up to the bridge's close frame; it must say 1001.
fn expect_close_1001(s: &mut TcpStream) -> Vec<ws::Frame> {
    let (data, close) = ws::read_until_close(s).expect("a close frame on shutdown");
    assert_eq!(close.close_code(), Some(1001), "{close:?}");
    data
}

/// The first field of /proc/PID/stat after the command: the process state.
fn proc_state(b: &Bridge) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", b.pid())).expect("read stat");
    stat.rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

/// Wait until the bridge's main thread sleeps in epoll_wait (all work done).
fn wait_idle(b: &Bridge) {
    let deadline = Instant::now() + WAIT;
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", b.pid())).unwrap_or_default();
        let syscall =
            std::fs::read_to_string(format!("/proc/{}/syscall", b.pid())).unwrap_or_default();
        // x86_64 numbers of epoll_wait, epoll_pwait, epoll_pwait2.
        let nr = syscall.split_whitespace().next().unwrap_or_default();
        if proc_state(b) == "S" && (wchan.contains("epoll") || ["232", "281", "441"].contains(&nr))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bridge never idle: wchan {wchan:?}, syscall {syscall:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait until the bridge process is really stopped.
fn wait_stopped(b: &Bridge) {
    let deadline = Instant::now() + WAIT;
    while proc_state(b) != "T" {
        assert!(
            Instant::now() < deadline,
            "bridge not stopped: state {}",
            proc_state(b)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Send `sig` to the bridge's main thread (the event loop), not to any thread.
fn signal_main_thread(b: &Bridge, sig: i32) {
    let pid = libc::pid_t::try_from(b.pid()).expect("pid fits in pid_t");
    // SAFETY: tgkill(2) on the thread group leader of a process we spawned.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, pid, sig) };
    assert_eq!(r, 0, "tgkill failed");
}

fn signal_closes_every_connection(sig: i32) {
    let mut b = echo_bridge(&["--drain-timeout", "5"]);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| open(&b)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        round_trip(s, &format!("client {i}"));
    }
    let t = Instant::now();
    b.signal(sig);
    for s in &mut clients {
        assert!(expect_close_1001(s).is_empty());
        s.write_all(&ws::close(1001, "")).unwrap();
    }
    for s in &mut clients {
        assert!(ws::at_eof(s), "no EOF after the close handshake");
    }
    // Close the sockets like a real client: the bridge waits for that.
    drop(clients);
    let status = b.wait_exit(Duration::from_secs(5));
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        b.logs()
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "exit took {:?}, longer than the drain time",
        t.elapsed()
    );
    b.wait_log("shutting down");
    assert_eq!(b.count_log("closed: code 1001"), 3, "log:\n{}", b.logs());
}

#[test]
fn sigint_closes_every_connection_with_1001_and_exits_0() {
    signal_closes_every_connection(libc::SIGINT);
}

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    signal_closes_every_connection(libc::SIGTERM);
}

#[test]
fn unframed_peer_bytes_reach_the_client_before_the_close() {
    let peer = TcpPeer::new();
    let mut b = Bridge::start(&["-k", "0", "-c", &peer.host_arg(), "-c", "framing=newline"]);
    let mut s = open(&b);
    let mut p = peer.accept();
    // One write, so the bridge reads both parts together: once the line has
    // arrived, the partial line is in the bridge's buffer.
    p.write_all(b"line\npartial-no-newline").unwrap();
    let f = ws::read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"line\n"[..]));
    b.signal(libc::SIGTERM);
    let data = expect_close_1001(&mut s);
    let got: Vec<_> = data
        .iter()
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    assert_eq!(
        got,
        ["partial-no-newline"],
        "peer bytes left unframed at shutdown"
    );
    s.write_all(&ws::close(1001, "")).unwrap();
    assert!(ws::at_eof(&mut s));
    drop(s);
    assert!(peers::read_to_eof(&mut p).is_empty());
    drop(p);
    assert!(b.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn client_bytes_sent_just_before_sigterm_reach_the_peer() {
    let peer = TcpPeer::new();
    let mut b = Bridge::start(&["-k", "0", "-c", &peer.host_arg()]);
    let mut s = open(&b);
    let mut p = peer.accept();
    s.write_all(&ws::binary(b"first")).unwrap();
    assert_eq!(peers::read_n(&mut p, 5), b"first");
    // "Just before": the bridge finds the message and the signal in the
    // same wake-up, as a busy bridge would. Made certain by freezing it
    // while it waits for events, letting both arrive, then thawing it.
    wait_idle(&b);
    b.signal(libc::SIGSTOP);
    wait_stopped(&b);
    let sent = s.write_all(&ws::binary(b"last words"));
    signal_main_thread(&b, libc::SIGTERM);
    b.signal(libc::SIGCONT);
    sent.unwrap();
    expect_close_1001(&mut s);
    s.write_all(&ws::close(1001, "")).unwrap();
    assert!(ws::at_eof(&mut s));
    drop(s);
    let got = peers::read_to_eof(&mut p);
    drop(p);
    let line = b.wait_log("closed: ");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "last words",
        "what the peer got after 'first' and before EOF; the bridge logged: {line}"
    );
    assert!(b.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn listener_is_closed_after_sigint() {
    let mut b = echo_bridge(&["--drain-timeout", "5"]);
    let mut s = open(&b);
    b.signal(libc::SIGINT);
    b.wait_log("shutting down");
    // The close frame is sent after the listener is let go.
    expect_close_1001(&mut s);
    match TcpStream::connect(b.addr) {
        Err(_) => {}
        Ok(mut late) => {
            late.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = late.write_all(ws::request("/", &[]).as_bytes());
            let answer = ws::read_response(&mut late);
            panic!("connected to {} after SIGINT; answer: {answer:?}", b.addr);
        }
    }
    s.write_all(&ws::close(1001, "")).unwrap();
    assert!(ws::at_eof(&mut s));
    drop(s);
    assert!(b.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn second_signal_exits_at_once() {
    let mut b = echo_bridge(&["--drain-timeout", "30"]);
    // This client never answers the close.
    let mut s = open(&b);
    b.signal(libc::SIGINT);
    expect_close_1001(&mut s);
    let t = Instant::now();
    b.signal(libc::SIGINT);
    let status = b.wait_exit(Duration::from_secs(5));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "exit took {:?} after the second signal",
        t.elapsed()
    );
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn drain_timeout_bounds_the_exit() {
    let mut b = echo_bridge(&["--drain-timeout", "1"]);
    // This client never answers the close.
    let mut s = open(&b);
    let t = Instant::now();
    b.signal(libc::SIGINT);
    expect_close_1001(&mut s);
    let status = b.wait_exit(Duration::from_secs(5));
    let took = t.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exit after {took:?}: the drain time was not waited for"
    );
    assert!(
        took < Duration::from_secs(3),
        "exit after {took:?} with --drain-timeout 1"
    );
}

#[test]
fn log_lines_name_addresses_code_and_byte_counts() {
    let peer = TcpPeer::new();
    let b = Bridge::start(&["-k", "0", "-c", &peer.host_arg()]);
    let mut s = b.connect();
    let client = s.local_addr().unwrap().to_string();
    let peer_label = format!("tcp://{}", peer.addr);
    ws::upgrade(&mut s, "/", &[]);
    let mut p = peer.accept();

    let open_line = b.wait_log(&format!(" {client} -> {peer_label} open"));
    let id = open_line
        .split("conn ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection id in {open_line:?}"))
        .to_string();

    // 5 + 1000 bytes in; 300 bytes out.
    s.write_all(&ws::text("hello")).unwrap();
    s.write_all(&ws::binary(&[7u8; 1000])).unwrap();
    assert_eq!(peers::read_n(&mut p, 1005).len(), 1005);
    p.write_all(&[b'x'; 300]).unwrap();
    let mut out = 0;
    while out < 300 {
        out += ws::read_frame(&mut s).unwrap().payload.len();
    }
    assert_eq!(out, 300);
    s.write_all(&ws::close(1000, "bye")).unwrap();
    let (_, close) = ws::read_until_close(&mut s).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    assert!(peers::read_to_eof(&mut p).is_empty());
    drop(p);

    let closed = b.wait_log(&format!("conn {id} {client} -> {peer_label} closed: "));
    assert!(closed.contains("closed: code 1000"), "{closed}");
    assert!(
        closed.contains(", 1005 bytes in, 300 bytes out"),
        "{closed}"
    );
}
