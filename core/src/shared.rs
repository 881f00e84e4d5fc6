//! What every event loop of the process shares: the settings sessions
//! need, the backend, the worker pool, and the connection count and id
//! source as atomics. It sits behind an `Arc`; nothing on the per-message
//! path touches it except to read a setting (sozu's shared-nothing
//! workers: configuration and counters are shared, traffic is not).

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Admission;
use crate::backend::Backend;
use crate::config::Settings;
use crate::tls_context::{PeerTls, ServerTls};
use crate::workers::Workers;

/// Threads for blocking calls (DNS, blocking backends), for all loops.
pub(crate) const WORKERS: usize = 4;

/// Threads for bcrypt checks (`--auth`), apart from [`WORKERS`] so that
/// password guesses never queue ahead of a lookup; started only when the
/// users file has bcrypt entries.
pub(crate) const VERIFIERS: usize = 2;

/// [`Shared::stop_level`]: serving.
pub const RUNNING: u8 = 0;
/// Stop accepting, let open connections close (first SIGINT/SIGTERM).
pub const DRAIN: u8 = 1;
/// Close everything now (second signal).
pub const EXIT_NOW: u8 = 2;

/// Per-connection limits and timeouts, from the configuration.
pub struct Limits {
    pub ping: Option<Duration>,
    pub pong_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_message_size: usize,
    /// The listener's `--read-only`: what clients send is read and
    /// dropped (hub members' messages never reach the shared peer).
    pub read_only: bool,
}

pub struct Shared {
    pub limits: Limits,
    pub backend: Arc<dyn Backend>,
    pub workers: Workers,
    /// bcrypt checks: their own threads (see [`VERIFIERS`]).
    pub verifiers: Option<Workers>,
    /// The checks at the door: origins, per-address cap, users, trusted proxies.
    pub admission: Admission,
    /// Open connections in all loops, and the most there may be.
    open: AtomicUsize,
    pub max_connections: usize,
    next_id: AtomicU64,
    /// SIGINT/SIGTERM seen by the loop that handles signals, for all
    /// loops: [`RUNNING`], [`DRAIN`] or [`EXIT_NOW`].
    stop: AtomicU8,
    /// How long open connections get to close after SIGINT/SIGTERM.
    pub drain: Duration,
    pub busy_poll: crate::spin::BusyPoll,
    /// The TLS listeners' context, swapped on SIGHUP; read at accept only.
    pub tls: Option<ServerTls>,
    /// The context of `tls://` peers (always set by the server).
    pub peer_tls: Option<PeerTls>,
}

impl Shared {
    /// Install the door's checks, starting the bcrypt threads if the users
    /// file needs them.
    pub fn set_admission(&mut self, admission: Admission) -> Result<(), String> {
        if admission.users.as_ref().is_some_and(|u| u.has_bcrypt()) {
            self.verifiers = Some(
                Workers::new(VERIFIERS)
                    .map_err(|e| format!("cannot start password check threads: {e}"))?,
            );
        }
        self.admission = admission;
        Ok(())
    }

    pub fn new(
        settings: &Settings,
        backend: Arc<dyn Backend>,
        max_connections: usize,
    ) -> Result<Shared, String> {
        let workers = Workers::new(WORKERS).map_err(|e| format!("cannot start workers: {e}"))?;
        Ok(Shared {
            limits: Limits {
                ping: settings.ping,
                pong_timeout: settings.pong_timeout,
                idle_timeout: settings.idle_timeout,
                handshake_timeout: settings.handshake_timeout,
                connect_timeout: settings.connect_timeout,
                max_message_size: settings.max_message_size,
                read_only: settings.read_only,
            },
            backend,
            workers,
            verifiers: None,
            admission: Admission::default(),
            open: AtomicUsize::new(0),
            max_connections,
            next_id: AtomicU64::new(1),
            stop: AtomicU8::new(RUNNING),
            drain: settings.drain_timeout,
            busy_poll: settings.busy_poll,
            tls: None,
            peer_tls: None,
        })
    }

    /// Count one more connection if the cap allows; false leaves the
    /// client in the kernel's backlog.
    pub fn admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .is_ok()
    }

    /// A connection admitted with [`admit`](Self::admit) is gone; `true`
    /// when that frees the first slot of a full process.
    pub fn release(&self) -> bool {
        self.open.fetch_sub(1, Ordering::AcqRel) >= self.max_connections
    }

    pub fn at_capacity(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.max_connections
    }

    /// Unique across loops, for logs and to tell a reused slot from its
    /// previous owner.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Where the process is in its shutdown; loops compare it with what
    /// they acted on when their waker fires.
    pub fn stop_level(&self) -> u8 {
        self.stop.load(Ordering::Acquire)
    }

    /// Raise the shutdown level (never lowers it); the caller wakes the loops.
    pub fn raise_stop(&self, level: u8) {
        self.stop.fetch_max(level, Ordering::AcqRel);
    }
}
