//! The session in-process: its two ends over Unix socket pairs, driven by
//! a poll the test turns by hand. These test the pump, backpressure and
//! the close sequences without a listener, a backend or a connect; the
//! end-to-end tests (tests/tests/bridge) run the same code through the
//! real binary.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream as StdUnix;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Events, Poll, Token, Waker};

use super::*;
use crate::backend::{Backend, Decision, Request};
use crate::config::Settings;
use crate::framing::Registry;
use crate::transport::Stream;

struct NoBackend;

impl Backend for NoBackend {
    fn query(&self, _: &Request) -> Decision {
        Decision::Reject {
            status: 404,
            reason: "none".into(),
        }
    }
}

/// A session whose WebSocket end is `client`'s pair and whose raw end is
/// `peer`'s, already open (the way in is skipped).
struct Rig {
    poll: Poll,
    events: Events,
    shared: Arc<Shared>,
    inbox: Inbox,
    pool: Pool,
    hubs: crate::hub::Hubs,
    session: Option<Session>,
    client: StdUnix,
    peer: StdUnix,
    /// The peer, for a rig whose raw end is a datagram socket.
    dgram: Option<std::os::unix::net::UnixDatagram>,
}

impl Rig {
    /// The raw end cuts messages with this framing instead of `binary`.
    fn framing(name: &str, config: Option<&str>) -> Rig {
        let mut r = Rig::new();
        let framing = Registry::with_builtins().get(name).unwrap();
        r.session.as_mut().unwrap().raw.framing = Some(framing.new_state(config).unwrap());
        r
    }

    /// The raw end is a datagram socket pair instead.
    fn datagram() -> Rig {
        let mut r = Rig::new();
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let s = r.session.as_mut().unwrap();
        if let Some(mut old) = s.raw.stream.take() {
            old.deregister(r.poll.registry());
        }
        let mut raw = Stream::UnixDgram(mio::net::UnixDatagram::from_std(ours));
        raw.register(r.poll.registry(), s.raw_token()).unwrap();
        s.raw.stream = Some(raw);
        r.dgram = Some(theirs);
        r
    }

    fn new() -> Rig {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(99)).unwrap());
        let shared = Arc::new(Shared::new(&Settings::default(), Arc::new(NoBackend), 10).unwrap());
        let (ws, client) = pair();
        let (raw, peer) = pair();
        let now = Instant::now();
        let mut s = Session::new(
            1,
            0,
            Stream::Unix(ws),
            "127.0.0.1:1".parse().unwrap(),
            false,
            &shared.limits,
            now,
        );
        s.register(poll.registry()).unwrap();
        let mut raw = Stream::Unix(raw);
        raw.register(poll.registry(), s.raw_token()).unwrap();
        let framing = Registry::with_builtins().get("binary").unwrap();
        s.raw.framing = Some(framing.new_state(None).unwrap());
        s.raw.stream = Some(raw);
        s.raw.state = RawState::Open;
        s.ws.state = WsState::Open;
        s.opened = true;
        Rig {
            poll,
            events: Events::with_capacity(16),
            shared,
            inbox: Inbox::new(waker),
            pool: Pool::default(),
            hubs: crate::hub::Hubs::default(),
            session: Some(s),
            client,
            peer,
            dgram: None,
        }
    }

    fn s(&self) -> &Session {
        self.session.as_ref().expect("session still open")
    }

    /// Turn the loop until nothing happens for 20 ms.
    fn settle(&mut self) {
        loop {
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(20)))
                .unwrap();
            let more = self.session.as_ref().is_some_and(|s| s.more);
            if self.events.is_empty() && !more {
                return;
            }
            let Some(s) = self.session.as_mut() else {
                return;
            };
            for ev in self.events.iter() {
                match Session::token_owner(ev.token()) {
                    (0, true) => s.ws_event(Ready::from_event(ev)),
                    (0, false) => s.raw_event(Ready::from_event(ev)),
                    _ => {}
                }
            }
            let mut cx = Ctx {
                registry: self.poll.registry(),
                shared: &self.shared,
                inbox: &self.inbox,
                now: Instant::now(),
                pool: &mut self.pool,
                hubs: &mut self.hubs,
                loop_id: 0,
                loops: 1,
            };
            if !s.ready(&mut cx) {
                s.close(&mut cx);
                self.session = None;
            }
        }
    }
}

/// A connected pair: the session's non-blocking end, and the test's
/// blocking one.
fn pair() -> (UnixStream, StdUnix) {
    let (ours, theirs) = StdUnix::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (UnixStream::from_std(ours), theirs)
}

/// A final masked frame, as a client sends it.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    crate::ws::frame::testing::client_frame(0x80 | opcode, payload)
}

/// One unmasked frame from the bridge: (opcode, payload).
fn read_frame(s: &mut StdUnix) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    assert_eq!(h[1] & 0x80, 0, "a server's frames are not masked");
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[0] & 0x0f, p)
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

/// Write without blocking until the socket takes no more; returns bytes written.
fn write_until_full(s: &mut StdUnix, chunk: &[u8], limit: usize) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut n = 0;
    while n < limit {
        match s.write(chunk) {
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    n
}

#[test]
fn bytes_flow_both_ways() {
    let mut r = Rig::new();
    r.client.write_all(&masked(2, b"hello")).unwrap();
    r.settle();
    let mut got = [0u8; 5];
    r.peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    r.peer.write_all(b"world").unwrap();
    r.settle();
    assert_eq!(read_frame(&mut r.client), (2, b"world".to_vec()));
}

#[test]
fn small_messages_reach_a_stream_peer_in_one_write() {
    let mut r = Rig::new();
    let mut wire = Vec::new();
    for i in 0..100u8 {
        wire.extend(masked(2, &[i; 10]));
    }
    r.client.write_all(&wire).unwrap();
    r.settle();
    let mut got = vec![0u8; 1000];
    r.peer.read_exact(&mut got).unwrap();
    let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 10]).collect();
    assert_eq!(got, want);
    assert_eq!(r.s().bytes_in, 1000);
}

#[test]
fn a_peer_that_does_not_read_pauses_the_client_with_one_buffer_held() {
    let mut r = Rig::new();
    // A message far larger than every buffer on the way.
    let total = 8 << 20;
    let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let wire = masked(2, &payload);
    // Write while the bridge takes it, until every buffer on the way is full.
    let mut sent = 0;
    loop {
        let n = write_until_full(&mut r.client, &wire[sent..], wire.len() - sent);
        sent += n;
        r.settle();
        if n == 0 || sent == wire.len() {
            break;
        }
    }
    let s = r.s();
    assert!(sent < wire.len(), "the client was never paused");
    assert!(
        s.ws.input.is_some(),
        "the payload the peer did not take is held"
    );
    assert!(
        s.peer_queued() <= crate::pool::CHUNK,
        "{} bytes held for the peer",
        s.peer_queued()
    );
    // The peer reads: everything arrives, in order.
    let mut rest = sent;
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < total {
        if rest < wire.len() {
            let n = write_until_full(&mut r.client, &wire[rest..], wire.len() - rest);
            rest += n;
        }
        r.settle();
        r.peer.set_nonblocking(true).unwrap();
        loop {
            match r.peer.read(&mut buf) {
                Ok(0) => panic!("peer EOF"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        r.peer.set_nonblocking(false).unwrap();
    }
    assert!(got == payload, "the payload arrived changed");
    r.settle();
    assert!(
        r.s().ws.input.is_none(),
        "an idle connection holds no input buffer"
    );
}

#[test]
fn a_client_that_does_not_read_pauses_the_peer() {
    let mut r = Rig::new();
    let chunk = vec![7u8; 1 << 16];
    let sent = write_until_full(&mut r.peer, &chunk, 64 << 20);
    r.settle();
    let more = write_until_full(&mut r.peer, &chunk, 64 << 20);
    r.settle();
    let s = r.s();
    assert!(
        s.pending_out() <= OUT_HIGH + crate::pool::CHUNK + 16,
        "{} bytes queued for the client",
        s.pending_out()
    );
    // The peer was paused: the bridge stopped reading it.
    assert!(more < 64 << 20, "the peer was never paused");
    let total = sent + more;
    let mut got = 0;
    while got < total {
        let (op, p) = read_frame(&mut r.client);
        assert_eq!(op, 2);
        assert!(p.iter().all(|b| *b == 7));
        got += p.len();
        r.settle();
    }
    assert_eq!(got, total);
}

#[test]
fn a_client_close_is_echoed_and_the_peer_gets_eof() {
    let mut r = Rig::new();
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"done");
    r.client.write_all(&masked(2, b"last")).unwrap();
    r.client.write_all(&masked(8, &close)).unwrap();
    r.settle();
    let (op, p) = read_frame(&mut r.client);
    assert_eq!((op, close_code(&p)), (8, 4001));
    let mut got = Vec::new();
    r.peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last");
    drop(r.client.shutdown(std::net::Shutdown::Both));
    drop(r.peer.shutdown(std::net::Shutdown::Both));
    r.settle();
    assert!(r.session.is_none(), "the session did not finish");
}

#[test]
fn peer_eof_sends_what_is_left_then_closes_1000() {
    let mut r = Rig::new();
    r.peer.write_all(b"tail").unwrap();
    r.peer.shutdown(std::net::Shutdown::Write).unwrap();
    r.settle();
    assert_eq!(read_frame(&mut r.client), (2, b"tail".to_vec()));
    let (op, p) = read_frame(&mut r.client);
    assert_eq!((op, close_code(&p)), (8, 1000));
    r.client
        .write_all(&masked(8, &1000u16.to_be_bytes()))
        .unwrap();
    r.settle();
    let mut rest = Vec::new();
    r.client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the close: {rest:?}");
    assert_eq!(r.s().close_code, Some(1000));
}

#[test]
fn a_protocol_error_closes_1002_and_the_peer_gets_eof() {
    let mut r = Rig::new();
    r.client.write_all(&masked(2, b"ok")).unwrap();
    r.client.write_all(&[0x82, 0x01, b'x']).unwrap(); // unmasked
    r.settle();
    let (op, p) = read_frame(&mut r.client);
    assert_eq!((op, close_code(&p)), (8, 1002));
    let mut got = Vec::new();
    r.peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ok");
}

#[test]
fn close_code_1014_from_a_client_is_echoed() {
    let mut r = Rig::new();
    r.client
        .write_all(&masked(8, &1014u16.to_be_bytes()))
        .unwrap();
    r.settle();
    let (op, p) = read_frame(&mut r.client);
    assert_eq!((op, close_code(&p)), (8, 1014));
}

#[test]
fn a_client_gone_behind_a_stalled_peer_starts_the_close_deadline() {
    let mut r = Rig::new();
    let wire = masked(2, &vec![1u8; 8 << 20]);
    write_until_full(&mut r.client, &wire, wire.len());
    r.settle();
    assert!(r.s().close_deadline.is_none());
    // Unix sockets have no reset: closing with unread input is a hang-up.
    let Rig { client, .. } = &mut r;
    client.shutdown(std::net::Shutdown::Both).unwrap();
    r.settle();
    let s = r.s();
    assert!(
        s.close_deadline.is_some() || s.ws.state == WsState::Gone,
        "a client that left is not noticed while the peer stalls"
    );
}

#[test]
fn a_client_that_pings_and_never_reads_cannot_grow_the_queue() {
    let mut r = Rig::new();
    // Distinct pings, so the answer to the latest can be told apart.
    let mut wire = Vec::new();
    for i in 0..40_000u32 {
        wire.extend(masked(9, format!("ping {i:08}").as_bytes()));
    }
    let mut sent = 0;
    while sent < wire.len() {
        let n = write_until_full(&mut r.client, &wire[sent..], wire.len() - sent);
        sent += n;
        r.settle();
        assert!(
            n > 0 || sent == wire.len(),
            "the bridge stopped reading the client"
        );
    }
    // How far below OUT_HIGH the queue ends depends on how much the
    // kernel took (queued pongs leave in one write, not one per pong).
    let queued = r.s().pending_out();
    assert!(
        queued <= OUT_HIGH + 20,
        "{queued} bytes of pongs queued for a client that does not read"
    );
    assert!(queued >= OUT_HIGH - 20 || r.s().ws.deferred_pong.is_none());
    // The client reads: the pongs come, and the last answers the last ping.
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    r.client.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bytes.ends_with(b"ping 00039999") {
        assert!(
            Instant::now() < deadline,
            "the answer to the last ping never came"
        );
        match r.client.read(&mut buf) {
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => r.settle(),
            Err(e) => panic!("{e}"),
        }
    }
    // Every frame is a pong (opcode 10) of a ping's payload.
    let mut at = 0;
    while at < bytes.len() {
        assert_eq!((bytes[at], bytes[at + 1]), (0x8a, 13), "frame at {at}");
        at += 15;
    }
    // While the queue was full only the latest ping was answered.
    assert!(
        bytes.len() / 15 < 40_000,
        "every ping was answered: the queue was never bounded"
    );
}

#[test]
fn a_client_that_does_not_read_can_still_upload() {
    // A client that writes before it reads, against a peer that writes
    // while it reads (a shell, a log tail): the upload must go on while
    // the download waits.
    let mut r = Rig::new();
    let chunk = vec![7u8; 1 << 16];
    loop {
        let n = write_until_full(&mut r.peer, &chunk, 64 << 20);
        r.settle();
        if n == 0 {
            break;
        }
    }
    assert!(
        r.s().pending_out() >= OUT_HIGH,
        "the download never backed up"
    );
    let payload = vec![3u8; 1 << 20];
    let wire = masked(2, &payload);
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < payload.len() {
        assert!(
            Instant::now() < deadline,
            "the upload stalled after {got} bytes"
        );
        sent += write_until_full(&mut r.client, &wire[sent..], wire.len() - sent);
        r.settle();
        r.peer.set_nonblocking(true).unwrap();
        while let Ok(n) = r.peer.read(&mut buf) {
            assert!(buf[..n].iter().all(|b| *b == 3));
            got += n;
        }
        r.peer.set_nonblocking(false).unwrap();
    }
    assert_eq!(got, payload.len());
}

#[test]
fn queued_datagrams_are_never_cut_short() {
    // Frames the client does not take are queued as slices of the peer's
    // buffer, which leaves it short; a datagram must still be read whole.
    let mut r = Rig::datagram();
    let peer = r.dgram.take().unwrap();
    peer.set_nonblocking(true).unwrap();
    let sizes = [30_000usize, 40_000];
    let mut sent = 0usize;
    let mut checked = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while checked < 40 {
        assert!(Instant::now() < deadline, "stuck after {checked} datagrams");
        // Send until the peer's socket is full, while the client reads
        // nothing, so frames queue up behind a short buffer.
        while sent < 40 {
            match peer.send(&vec![sent as u8; sizes[sent % 2]]) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            r.settle();
        }
        let (op, p) = read_frame(&mut r.client);
        assert_eq!(op, 2);
        assert_eq!(
            p.len(),
            sizes[checked % 2],
            "datagram {checked} arrived cut"
        );
        assert!(p.iter().all(|b| *b == checked as u8));
        checked += 1;
        r.settle();
    }
}

#[test]
fn a_buffer_grown_for_one_large_message_is_given_back() {
    let mut r = Rig::framing("newline", Some("lf"));
    let mut big = vec![b'x'; 300 * 1024];
    big.extend_from_slice(b"\npartial");
    let mut sent = 0;
    while sent < big.len() {
        sent += write_until_full(&mut r.peer, &big[sent..], big.len() - sent);
        r.settle();
    }
    // The 300 KiB line went out (or waits for the client), the partial
    // one is held, and not in the buffer that grew for the long one.
    let s = r.s();
    assert!(s.bytes_out >= 300 * 1024);
    let input = s.raw.input.as_ref().expect("the partial line is held");
    assert_eq!(input.data(), b"partial");
    assert_eq!(
        input.raw().len(),
        crate::pool::CHUNK,
        "a grown buffer is kept"
    );
}

#[test]
fn the_hang_up_deadline_moves_on_while_the_peer_takes_bytes() {
    let mut r = Rig::new();
    let wire = masked(2, &vec![1u8; 8 << 20]);
    let mut sent = 0;
    loop {
        let n = write_until_full(&mut r.client, &wire[sent..], wire.len() - sent);
        sent += n;
        r.settle();
        if n == 0 {
            break;
        }
    }
    r.client.shutdown(std::net::Shutdown::Write).unwrap();
    r.settle();
    let first = r
        .s()
        .close_deadline
        .expect("a hang-up starts the close deadline");
    std::thread::sleep(Duration::from_millis(50));
    // The peer reads everything it is given; the bridge writes more as it
    // can, and each write moves the deadline on.
    let mut buf = vec![0u8; 1 << 16];
    r.peer.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut later = first;
    while later == first && Instant::now() < deadline {
        match r.peer.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                r.settle();
                later = r.s().close_deadline.expect("still closing");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        later > first,
        "the deadline did not move on with the peer's progress"
    );
}

#[test]
fn an_empty_message_to_a_full_datagram_peer_goes_out_when_it_drains() {
    let mut r = Rig::datagram();
    // Fill the peer's queue with empty messages until the socket refuses
    // one: the one left waiting is empty, zero bytes queued.
    let mut sent = 0;
    loop {
        r.client.write_all(&masked(2, b"")).unwrap();
        r.settle();
        sent += 1;
        if r.s().raw.msg_done || sent > 100_000 {
            break;
        }
    }
    assert!(r.s().raw.msg_done, "the datagram peer never filled");
    assert_eq!(r.s().peer_queued(), 0);
    r.client.write_all(&masked(2, b"after")).unwrap();
    r.settle();
    // The peer reads everything: the waiting datagram, the empty one and
    // the one after it all arrive, in order.
    let peer = r.dgram.take().unwrap();
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    peer.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.last().map(Vec::as_slice) != Some(&b"after"[..]) {
        assert!(
            Instant::now() < deadline,
            "stalled after {} datagrams",
            got.len()
        );
        match peer.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => r.settle(),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len(), sent + 1);
    assert!(
        got[..sent].iter().all(Vec::is_empty),
        "empty messages are empty datagrams"
    );
}

/// A `tls://` peer whose first address fails its handshake: the next
/// address still gets the whole PROXY header before its ClientHello.
#[test]
fn every_connect_attempt_to_a_tls_peer_starts_with_the_proxy_header() {
    use std::net::TcpListener;
    use std::sync::mpsc;

    use crate::peer::PeerAddress;
    use crate::proxy_protocol::{self, Version};
    use crate::tls_context::PeerTls;
    use crate::workers::Outcome;

    let settings = Settings {
        peer_insecure: true,
        ..Settings::default()
    };
    let mut shared = Shared::new(&settings, Arc::new(NoBackend), 10).unwrap();
    shared.peer_tls = Some(PeerTls::load(&settings, None).unwrap());
    let mut r = Rig::new();
    r.shared = Arc::new(shared);

    // Each peer reports what came before the ClientHello; the first
    // (whichever address is tried first) then hangs up, failing the
    // handshake, so the session moves on to the other.
    let (tx, rx) = mpsc::channel();
    let mut addrs = Vec::new();
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    for _ in 0..2 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap());
        let (tx, first) = (tx.clone(), first.clone());
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b"\r\n") && got.first() != Some(&0x16) && got.len() < 108 {
                match s.read(&mut b) {
                    Ok(1) => got.push(b[0]),
                    _ => break,
                }
            }
            let hang_up = first.swap(false, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(got);
            if !hang_up {
                // Keep the handshake pending until the test is done.
                let _ = s.read_to_end(&mut Vec::new());
            }
        });
    }

    let s = r.session.as_mut().unwrap();
    if let Some(mut p) = s.raw.stream.take() {
        p.deregister(r.poll.registry());
    }
    s.raw.state = RawState::Resolving;
    s.ws.state = WsState::Waiting;
    s.opened = false;
    let address = PeerAddress::parse("tls://localhost:443", None).unwrap();
    let client = "192.0.2.7:4711".parse().unwrap();
    let header = proxy_protocol::encode(Version::V1, client, Some(addrs[0]));
    s.choice = Some(Box::new(Chosen {
        address,
        protocol: None,
        headers: Vec::new(),
        preface: header.clone(),
        hub: false,
    }));
    let mut cx = Ctx {
        registry: r.poll.registry(),
        shared: &r.shared,
        inbox: &r.inbox,
        now: Instant::now(),
        pool: &mut r.pool,
        hubs: &mut r.hubs,
        loop_id: 0,
        loops: 1,
    };
    s.on_outcome(Outcome::Resolved(Ok(addrs)), &mut cx);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && Instant::now() < deadline {
        r.settle();
        seen.extend(rx.try_iter());
    }
    assert_eq!(seen.len(), 2, "both addresses tried: {seen:?}");
    for got in seen {
        assert_eq!(got, header, "got {:?}", String::from_utf8_lossy(&got));
    }
}
