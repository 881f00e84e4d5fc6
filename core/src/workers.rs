//! A small thread pool for the calls that may block: DNS lookups and slow
//! backend queries. One pool serves every event loop of the process: each
//! job carries its loop's [`Reply`], so the result goes back over that
//! loop's channel and wakes that loop's poll; no loop ever waits.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use mio::Waker;

use crate::backend::{Backend, Decision, Request};

pub enum Job {
    Resolve {
        host: String,
        port: u16,
    },
    Query {
        backend: Arc<dyn Backend>,
        request: Box<Request>,
    },
    /// A bcrypt check for HTTP Basic authentication: tens of milliseconds
    /// on purpose, so never on a loop.
    Verify {
        password: String,
        hash: String,
        /// Counts the check until the job is over.
        ticket: crate::admission::auth::Ticket,
        /// Set when the session that asked is gone: a queued check is then
        /// skipped, not run for nobody.
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    },
}

pub enum Outcome {
    Resolved(io::Result<Vec<SocketAddr>>),
    Queried(Decision),
    Verified(bool),
}

/// A finished job for session `key`/`id` (the id guards against a slot
/// reused after the session that asked went away).
pub struct Done {
    pub key: usize,
    pub id: u64,
    pub outcome: Outcome,
}

/// Where a loop's results go: its channel, and the waker of its poll.
#[derive(Clone)]
pub struct Reply {
    tx: Sender<Done>,
    waker: Arc<Waker>,
}

/// A loop's end of the pool: submit jobs, collect what finished.
pub struct Inbox {
    reply: Reply,
    rx: Receiver<Done>,
}

impl Inbox {
    /// `waker` must be registered with the loop's poll.
    pub fn new(waker: Arc<Waker>) -> Inbox {
        let (tx, rx) = channel();
        Inbox {
            reply: Reply { tx, waker },
            rx,
        }
    }

    pub fn try_recv(&self) -> Option<Done> {
        self.rx.try_recv().ok()
    }
}

type Queued = (Reply, usize, u64, Job);

pub struct Workers {
    jobs: Option<Sender<Queued>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Workers {
    pub fn new(count: usize) -> io::Result<Workers> {
        let (job_tx, job_rx) = channel::<Queued>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut threads = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let rx = Arc::clone(&job_rx);
            threads.push(
                thread::Builder::new()
                    .name(format!("websocksy-worker-{i}"))
                    .spawn(move || loop {
                        let next = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok((reply, key, id, job)) = next else {
                            return;
                        };
                        let outcome = run(job);
                        // A loop that is gone no longer wants the answer.
                        if reply.tx.send(Done { key, id, outcome }).is_ok() {
                            // A failed wake only delays the result to the next event.
                            let _ = reply.waker.wake();
                        }
                    })?,
            );
        }
        Ok(Workers {
            jobs: Some(job_tx),
            threads,
        })
    }

    /// Run `job` for session `key`/`id` of the loop that owns `inbox`.
    pub fn submit(&self, inbox: &Inbox, key: usize, id: u64, job: Job) {
        if let Some(tx) = &self.jobs {
            // The workers only stop when `self` drops, so this cannot fail while we run.
            let _ = tx.send((inbox.reply.clone(), key, id, job));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the channel ends the threads once their current job returns;
        // a job stuck in a backend must not hold up exit, so do not join.
        self.jobs = None;
        self.threads.clear();
    }
}

fn run(job: Job) -> Outcome {
    match job {
        Job::Resolve { host, port } => {
            Outcome::Resolved((host.as_str(), port).to_socket_addrs().map(|a| a.collect()))
        }
        Job::Verify {
            password,
            hash,
            ticket,
            cancelled,
        } => {
            let ok = !cancelled.load(std::sync::atomic::Ordering::Acquire)
                && crate::admission::auth::verify(&password, &hash);
            drop(ticket);
            Outcome::Verified(ok)
        }
        Job::Query { backend, request } => {
            let b = Arc::clone(&backend);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.query(&request))) {
                Ok(d) => Outcome::Queried(d),
                Err(_) => Outcome::Queried(Decision::Reject {
                    status: 500,
                    reason: "backend failed".into(),
                }),
            }
        }
    }
}
