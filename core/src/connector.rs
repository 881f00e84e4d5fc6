//! What one client connection (`websocksy connect`, a `[connect]`
//! section) needs at run time, built once at start-up and shared by its
//! sessions: the settings, the limits its sessions run under, the framing,
//! the TLS context for `wss://`, the upgrade request without its key, and,
//! for `--from -`, the threads that carry standard input and output.
//!
//! Standard input and output go through a socket pair and two threads:
//! whatever they are (a terminal, a pipe, a regular file, which epoll
//! cannot watch), the session sees a Unix stream socket like any other
//! local peer, and the loop never blocks on them.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{ConnectSettings, Direction, Local, Settings};
use crate::framing::{Framing, Registry};
use crate::shared::Limits;
use crate::tls_context::ClientTls;
use crate::ws::upgrade_client::Request;

/// How long a `udp-listen` session lives without traffic when
/// `--idle-timeout` is not given: a datagram source never says it is done.
const UDP_IDLE: Duration = Duration::from_secs(60);

pub struct Connector {
    pub settings: ConnectSettings,
    pub limits: Limits,
    pub framing: Arc<dyn Framing>,
    /// For `wss://`.
    pub tls: Option<ClientTls>,
    /// The upgrade request; each attempt adds a fresh key.
    pub request: Request,
    /// The URL as logs show it: no user info.
    pub label: String,
    /// `--from -`: the thread writing standard output, joined at exit so
    /// nothing the server sent is lost.
    stdout: Mutex<Option<JoinHandle<()>>>,
}

impl Connector {
    pub fn new(
        settings: &ConnectSettings,
        process: &Settings,
        framings: &Registry,
    ) -> Result<Connector, String> {
        let s = settings.clone();
        let framing = framings.get(&s.framing).ok_or_else(|| {
            format!(
                "{}: unknown framing '{}' (available: {})",
                s.at,
                s.framing,
                framings.names().join(", ")
            )
        })?;
        // A bad framing-config is a start-up error, as in server mode.
        framing
            .new_state(s.framing_config.as_deref())
            .map_err(|e| format!("{}: invalid framing-config for '{}': {e}", s.at, s.framing))?;
        let tls = ClientTls::load(&s)?;
        let idle = match (&s.from, s.idle_timeout) {
            (Local::UdpListen { .. }, None) => Some(UDP_IDLE),
            (_, t) => t,
        };
        let limits = Limits {
            ping: s.ping,
            pong_timeout: s.pong_timeout,
            idle_timeout: idle,
            handshake_timeout: s.timeout,
            connect_timeout: s.timeout,
            max_message_size: process.max_message_size,
            // The client role's directions are its own (`--write-only`).
            read_only: false,
        };
        let request = Request {
            host: s.url.host_header.clone(),
            target: s.url.target.clone(),
            protocols: s.protocols.clone(),
            origin: s.origin.clone(),
            basic: s.auth.as_ref().map(|(u, p)| format!("{u}:{p}")),
            headers: s.headers.clone(),
        };
        let label = format!(
            "{}://{}{}",
            if s.url.tls { "wss" } else { "ws" },
            s.url.host_header,
            s.url.target
        );
        Ok(Connector {
            settings: s,
            limits,
            framing,
            tls,
            request,
            label,
            stdout: Mutex::new(None),
        })
    }

    /// The local side of `--from -`: one end of a socket pair, the other
    /// carried to and from standard input and output by two threads.
    /// `--read-only` leaves standard input alone (its end, a terminal or
    /// /dev/null, must not close the connection).
    pub fn stdio(&self) -> io::Result<mio::net::UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        if self.settings.direction != Direction::ReadOnly {
            let mut to_us = theirs.try_clone()?;
            std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut stdin = io::stdin().lock();
                    loop {
                        match stdin.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if to_us.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    // The end of input: the session frames what is left
                    // and closes with 1000.
                    let _ = to_us.shutdown(Shutdown::Write);
                })?;
        }
        let mut from_us = theirs;
        let writer = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut stdout = io::stdout().lock();
                loop {
                    match from_us.read(&mut buf) {
                        Ok(0) => {
                            // The session is done with the local side (it
                            // shut its write side only once no connection
                            // will follow): answer with the EOF it lingers
                            // for. Standard input may never end (`tail -f`),
                            // and what it still holds has nowhere to go.
                            let _ = from_us.shutdown(Shutdown::Write);
                            break;
                        }
                        Ok(n) => {
                            if stdout
                                .write_all(&buf[..n])
                                .and_then(|_| stdout.flush())
                                .is_err()
                            {
                                // Nobody reads standard output any more: the
                                // session's next write fails and it closes.
                                let _ = from_us.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = stdout.flush();
            })?;
        if let Ok(mut w) = self.stdout.lock() {
            *w = Some(writer);
        }
        Ok(mio::net::UnixStream::from_std(ours))
    }

    /// Wait until standard output has everything the session wrote to it
    /// (the session's end of the pair is closed by now), for at most
    /// `limit`: a reader of our standard output that stopped reading must
    /// not keep the process from exiting (signals are no longer watched
    /// here). Called after the event loop has ended, never on it.
    pub fn finish(&self, limit: Duration) {
        let writer = self.stdout.lock().ok().and_then(|mut w| w.take());
        let Some(w) = writer else {
            return;
        };
        let until = std::time::Instant::now() + limit;
        while !w.is_finished() {
            if std::time::Instant::now() >= until {
                log::warn!(
                    "standard output still not taken after {:.1}s: exiting without it",
                    limit.as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = w.join();
    }
}
