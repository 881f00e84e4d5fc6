//! The TCP peers the bridges connect to: an echo server, a source that
//! streams a pattern as fast as the socket takes it, and a sink that reads
//! what it is told to expect and answers one byte. One thread per
//! connection, blocking I/O, TCP_NODELAY: the peer never waits on anything
//! but its socket, so it is not the bottleneck.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use crate::scenarios::SINK_ACK;

/// Stack of a connection thread: the idle scenario runs thousands.
const STACK: usize = 128 * 1024;
/// Most bytes one source connection sends before closing (a bound, never
/// reached by the scenarios).
const SOURCE_LIMIT: u64 = 64 << 30;

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

fn source(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    // Like a real server, stop when the other side is done: on EOF (the
    // bridge's shutdown after its client left) or an error, shut the
    // socket down so the write loop ends too.
    if let Ok(mut r) = s.try_clone() {
        let _ = thread::Builder::new().stack_size(STACK).spawn(move || {
            let mut b = [0u8; 4096];
            while matches!(r.read(&mut b), Ok(n) if n > 0) {}
            let _ = r.shutdown(Shutdown::Both);
        });
    }
    let chunk: Vec<u8> = (0..256 * 1024).map(|i: usize| (i * 7 + 13) as u8).collect();
    let mut sent = 0u64;
    while sent < SOURCE_LIMIT {
        match s.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n as u64,
        }
    }
}

/// Reads an 8-byte big-endian count, then that many bytes (never past
/// them: the next count may follow), then answers [`SINK_ACK`]; again
/// until the bridge closes.
fn sink(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = [0u8; 8];
    while s.read_exact(&mut head).is_ok() {
        let mut left = u64::from_be_bytes(head);
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n as u64,
            }
        }
        if s.write_all(&[SINK_ACK]).is_err() {
            return;
        }
    }
}

/// A thread of `stack` bytes per accepted connection, running `handler`;
/// `what` names the subcommand in messages.
pub(crate) fn accept_loop(
    l: TcpListener,
    what: &'static str,
    stack: usize,
    handler: impl Fn(TcpStream) + Send + Sync + Copy + 'static,
) {
    for conn in l.incoming() {
        match conn {
            Ok(s) => {
                let spawned = thread::Builder::new()
                    .stack_size(stack)
                    .spawn(move || handler(s));
                if let Err(e) = spawned {
                    eprintln!("wsbench {what}: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("wsbench {what}: accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A loopback listener on an ephemeral port with a backlog for a thousand
/// connections at once (std's 128 overflows when the many/upgrades
/// scenarios make the bridge connect a peer for each of 1,000 clients at
/// the same moment, and each dropped SYN costs a one-second retransmit).
pub fn listen_loopback() -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Binds the peers on ephemeral loopback ports, prints
/// `echo=PORT source=PORT sink=PORT` on stdout, serves until killed or
/// `max_secs`.
pub fn serve(max_secs: u64) -> io::Result<()> {
    let echo_l = listen_loopback()?;
    let source_l = listen_loopback()?;
    let sink_l = listen_loopback()?;
    println!(
        "echo={} source={} sink={}",
        echo_l.local_addr()?.port(),
        source_l.local_addr()?.port(),
        sink_l.local_addr()?.port()
    );
    io::stdout().flush()?;
    thread::spawn(move || accept_loop(echo_l, "serve", STACK, echo));
    thread::spawn(move || accept_loop(source_l, "serve", STACK, source));
    thread::spawn(move || accept_loop(sink_l, "serve", STACK, sink));
    thread::sleep(Duration::from_secs(max_secs));
    eprintln!("wsbench serve: {max_secs} s elapsed, exiting");
    Ok(())
}
