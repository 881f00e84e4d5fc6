//! A small thread pool for the calls that may block: DNS lookups and slow
//! backend queries. Results come back over a channel and wake the loop
//! through a mio `Waker`, so the loop itself never waits.

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
}

pub enum Outcome {
    Resolved(io::Result<Vec<SocketAddr>>),
    Queried(Decision),
}

/// A finished job for session `key`/`id` (the id guards against a slot
/// reused after the session that asked went away).
pub struct Done {
    pub key: usize,
    pub id: u64,
    pub outcome: Outcome,
}

pub struct Workers {
    jobs: Option<Sender<(usize, u64, Job)>>,
    done: Receiver<Done>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Workers {
    pub fn new(count: usize, waker: Arc<Waker>) -> io::Result<Workers> {
        let (job_tx, job_rx) = channel::<(usize, u64, Job)>();
        let (done_tx, done_rx) = channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut threads = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let waker = Arc::clone(&waker);
            threads.push(
                thread::Builder::new()
                    .name(format!("websocksy-worker-{i}"))
                    .spawn(move || loop {
                        let next = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok((key, id, job)) = next else { return };
                        let outcome = run(job);
                        if tx.send(Done { key, id, outcome }).is_err() {
                            return;
                        }
                        // A failed wake only delays the result to the next event.
                        let _ = waker.wake();
                    })?,
            );
        }
        Ok(Workers {
            jobs: Some(job_tx),
            done: done_rx,
            threads,
        })
    }

    pub fn submit(&self, key: usize, id: u64, job: Job) {
        if let Some(tx) = &self.jobs {
            // The workers only stop when `self` drops, so this cannot fail while we run.
            let _ = tx.send((key, id, job));
        }
    }

    pub fn try_recv(&self) -> Option<Done> {
        self.done.try_recv().ok()
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
