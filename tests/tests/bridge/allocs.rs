//! Nothing on the per-message path allocates (issue 9): once a connection
//! is up and the loop's buffer pool has what the traffic needs, small
//! round trips, bursts of large messages both ways and a peer-to-client
//! stream (to a client that keeps up, and to one that does not) cost no
//! heap allocation in the bridge.
//!
//! The real binary runs with `tests/fixtures/alloc_count.c` preloaded,
//! which counts every malloc, calloc, realloc and aligned allocation of
//! the process (the bridge uses the system allocator) and reports the
//! count on SIGUSR2 through a FIFO.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

use websocksy_tests::pattern::{read_binary, Check, Pattern};
use websocksy_tests::peers::{echo_on, TcpPeer};
use websocksy_tests::{compile_plugin, temp_dir, ws, Bridge, WAIT};

/// Small round trips per measured pass.
const ROUND_TRIPS: usize = 10_000;
/// The burst: this many messages of `BURST_MSG` bytes each way.
const BURST: usize = 256;
/// A multiple of the pattern's period (251), just under 64 KiB, so the
/// messages one after the other are one continuous pattern to check.
const BURST_MSG: usize = 251 * 261;
/// The peer-to-client stream, in bytes, written in 64 KiB pieces.
const STREAM: usize = 64 << 20;
/// The stream again, to a client that reads it 1 KiB at a time.
const SLOW_STREAM: usize = 16 << 20;
/// Allocations a measured pass may make in all: far fewer than its
/// ~22,000 messages, so one allocation per message (or per large read)
/// cannot hide, while a few from the allocator's or the pool's own
/// bookkeeping (a queue growing once past its warm-up size) do not fail it.
const MAX_ALLOCS: u64 = 50;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The counting shim, built once per run.
fn shim() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let dir = temp_dir("alloc-count");
        let out = dir.join("alloc_count.so");
        let fixtures = repo_root().join("tests/fixtures");
        // C11 for <stdatomic.h>: the count is bumped from every thread.
        compile_plugin(
            &fixtures.join("alloc_count.c"),
            &fixtures,
            &out,
            &["-std=c11"],
        );
        out
    })
}

/// The bridge's allocation count, read through the shim's FIFO.
struct Counter {
    fifo: PathBuf,
}

impl Counter {
    fn new(dir: &Path) -> Counter {
        let fifo = dir.join("allocs.fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).expect("no NUL in a temp path");
        // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
        let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(r, 0, "mkfifo {}", fifo.display());
        Counter { fifo }
    }

    /// Signal the bridge, then read what its handler writes: opening the
    /// FIFO waits for the handler's open, so no polling is needed.
    fn read(&self, b: &Bridge) -> u64 {
        b.signal(libc::SIGUSR2);
        let (tx, rx) = mpsc::channel();
        let fifo = self.fifo.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let r = std::fs::File::open(&fifo).and_then(|mut f| f.read_to_string(&mut s));
            let _ = tx.send(r.map(|_| s));
        });
        match rx.recv_timeout(WAIT) {
            Ok(Ok(s)) => s
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("count {s:?} from the shim: {e}")),
            Ok(Err(e)) => panic!("reading {}: {e}", self.fifo.display()),
            Err(_) => {
                // Release the reader still waiting in open(), then fail.
                let _ = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&self.fifo);
                panic!(
                    "no allocation count from the bridge (is the shim preloaded?); log:\n{}",
                    b.logs()
                );
            }
        }
    }
}

fn upgraded(b: &Bridge, path: &str) -> TcpStream {
    let mut c = b.connect();
    ws::upgrade(&mut c, path, &[]);
    c
}

/// Everything one pass does over the echo connection `echo` and the
/// stream connection `stream` (whose peer side is `feed`).
fn traffic(echo: &mut TcpStream, stream: &mut TcpStream, feed: &mut TcpStream, burst: &[u8]) {
    // Small round trips, one at a time: each leaves the bridge idle.
    let msg = *b"0123456789abcdef0123456789abcdef";
    let frame = ws::binary(&msg);
    let mut back = [0u8; 34];
    for i in 0..ROUND_TRIPS {
        echo.write_all(&frame)
            .unwrap_or_else(|e| panic!("round trip {i}: send: {e}"));
        echo.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("round trip {i}: read: {e}"));
        assert_eq!(back[..2], [0x82, 32], "round trip {i}: frame header");
        assert_eq!(back[2..], msg, "round trip {i}: payload");
    }

    // The burst: large messages up while their echo comes down.
    let mut w = echo.try_clone().expect("clone the echo connection");
    let burst = burst.to_vec();
    let writer = thread::spawn(move || {
        for _ in 0..BURST {
            w.write_all(&burst)?;
        }
        Ok::<_, std::io::Error>(())
    });
    read_binary(echo, (BURST * BURST_MSG) as u64, &mut Check::new(), "burst");
    writer
        .join()
        .expect("burst writer")
        .unwrap_or_else(|e| panic!("burst: send: {e}"));

    // The peer streams to the client as fast as both go.
    let feeder = stream_pattern(feed, STREAM);
    read_binary(stream, STREAM as u64, &mut Check::new(), "stream");
    feeder
        .join()
        .expect("stream feeder")
        .unwrap_or_else(|e| panic!("stream: peer write: {e}"));

    // The same to a client that reads 1 KiB at a time: the bridge's
    // writes are cut short and the rest waits in its queue.
    let feeder = stream_pattern(feed, SLOW_STREAM);
    read_binary(
        &mut Slow(stream),
        SLOW_STREAM as u64,
        &mut Check::new(),
        "slow stream",
    );
    feeder
        .join()
        .expect("slow stream feeder")
        .unwrap_or_else(|e| panic!("slow stream: peer write: {e}"));
}

/// The peer's side writes `len` bytes of the pattern on a thread of its own.
fn stream_pattern(feed: &TcpStream, len: usize) -> thread::JoinHandle<std::io::Result<()>> {
    let mut f = feed.try_clone().expect("clone the peer connection");
    thread::spawn(move || {
        let p = Pattern::new();
        let mut sent = 0u64;
        while sent < len as u64 {
            let n = (len as u64 - sent).min(Pattern::PIECE as u64) as usize;
            f.write_all(p.at(sent, n))?;
            sent += n as u64;
        }
        Ok(())
    })
}

/// A client that reads at most 1 KiB per call.
struct Slow<'a>(&'a mut TcpStream);

impl Read for Slow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1024);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn no_allocation_per_message_in_steady_state() {
    let dir = temp_dir("allocs");
    let counter = Counter::new(&dir);
    let shim = shim().to_string_lossy().into_owned();
    let fifo = counter.fifo.to_string_lossy().into_owned();
    let peer = TcpPeer::new();
    let b = Bridge::spawn_env(
        &[
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-k",
            "0",
            "-c",
            &peer.host_arg(),
            "-c",
            "framing=binary",
        ],
        &[
            ("LD_PRELOAD", shim.as_str()),
            ("ALLOC_COUNT_FIFO", fifo.as_str()),
        ],
    );
    let mut echo = upgraded(&b, "/echo");
    let _echo_peer = echo_on(peer.accept());
    let mut stream = upgraded(&b, "/stream");
    let mut feed = peer.accept();
    // Burst frames masked with a zero key: the payload is the pattern as sent.
    let burst = ws::frame_zero_key(2, &Pattern::new().bytes(BURST_MSG));

    // Warm-up: the same traffic once, so the pool holds what it needs.
    traffic(&mut echo, &mut stream, &mut feed, &burst);
    let before = counter.read(&b);
    traffic(&mut echo, &mut stream, &mut feed, &burst);
    let after = counter.read(&b);
    let allocs = after - before;
    let messages = ROUND_TRIPS * 2 + BURST * 2 + (STREAM + SLOW_STREAM) / Pattern::PIECE;
    eprintln!(
        "allocations: {allocs} for {ROUND_TRIPS} round trips of 32 bytes, {BURST} messages of \
         {} KiB each way, a {} MiB peer-to-client stream and a {} MiB one to a slow \
         reader (about {messages} messages)",
        BURST_MSG / 1024,
        STREAM >> 20,
        SLOW_STREAM >> 20
    );
    assert!(
        allocs < MAX_ALLOCS,
        "the bridge allocated {allocs} times for about {messages} messages in steady state \
         (bound {MAX_ALLOCS}): something on the per-message path allocates again"
    );
}
