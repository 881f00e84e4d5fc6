//! What one event loop hands to another (`--threads`): a connection the
//! acceptor took for a loop with less to do, or a session moving to the
//! loop that owns its hub. Each loop has a [`Door`]: a channel and the
//! waker of its poll, the same waker the worker pool uses, so a handoff
//! costs one channel send and one eventfd write per connection and
//! nothing per message.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use mio::{Poll, Token, Waker};

use crate::session::Session;
use crate::transport::Stream;

pub enum Arrival {
    /// An accepted connection: a server-role session starts here.
    Conn {
        stream: Stream,
        addr: SocketAddr,
        proxy_protocol: bool,
        /// The listener, for the log line.
        listener: String,
    },
    /// A session whose backend chose a hub another loop owns: it carries
    /// on there (the hub's peer and its members stay on one loop).
    Session(Box<Session>),
}

/// A loop's door: what other loops need to hand it work.
pub struct Door {
    /// `None` once the loop stopped: a late handoff comes back to its
    /// sender instead of waiting in a channel nobody reads. Locked once
    /// per handoff, never per message.
    tx: Mutex<Option<Sender<Arrival>>>,
    waker: Arc<Waker>,
    /// Sessions the loop runs, as it stored them at the end of its last
    /// turn, to send new connections where there are fewest.
    load: AtomicUsize,
    /// Connections sent to the loop that it has not taken yet.
    in_transit: AtomicUsize,
    /// The loop returned. In a drain, loop 0 (which handles the signals)
    /// waits for this on every other loop before it returns itself, until
    /// the drain deadline or a second signal.
    done: AtomicBool,
}

/// The receiving side of a loop's door, and the parts built with it.
pub struct Parts {
    pub poll: Poll,
    pub waker: Arc<Waker>,
    pub arrivals: Receiver<Arrival>,
}

impl Door {
    /// A poll, its waker (registered under `token`) and the door to it.
    pub fn open(token: Token) -> std::io::Result<(Door, Parts)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), token)?);
        let (tx, arrivals) = channel();
        let door = Door {
            tx: Mutex::new(Some(tx)),
            waker: Arc::clone(&waker),
            load: AtomicUsize::new(0),
            in_transit: AtomicUsize::new(0),
            done: AtomicBool::new(false),
        };
        Ok((
            door,
            Parts {
                poll,
                waker,
                arrivals,
            },
        ))
    }

    /// Give `a` to this door's loop; `Err` gives it back (the loop is gone).
    pub fn send(&self, a: Arrival) -> Result<(), Arrival> {
        {
            let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
            match tx.as_ref() {
                Some(tx) => tx.send(a).map_err(|e| e.0)?,
                None => return Err(a),
            }
        }
        // A failed wake leaves the arrival queued until the loop's next
        // event; nothing is lost.
        if let Err(e) = self.waker.wake() {
            log::debug!("cannot wake a loop: {e}");
        }
        Ok(())
    }

    /// Wake the loop to look at the shared stop level.
    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::debug!("cannot wake a loop: {e}");
        }
    }

    /// The loop stopped: what is sent from now on comes back to the
    /// sender; what came before waits in the channel for a last look.
    pub fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    pub fn set_done(&self) {
        self.done.store(true, Ordering::Release);
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Sessions the loop runs, and connections on their way to it.
    pub fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed) + self.in_transit.load(Ordering::Relaxed)
    }

    /// A connection is on its way to this loop (so a burst accepted in
    /// one turn spreads); [`arrived`](Self::arrived) when the loop takes it.
    pub fn add_load(&self) {
        self.in_transit.fetch_add(1, Ordering::Relaxed);
    }

    pub fn arrived(&self) {
        let _ = self
            .in_transit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The loop's session count, stored by the loop itself. Only when it
    /// changed: the doors share cache lines, and a store every turn would
    /// bounce them between cores.
    pub fn set_load(&self, n: usize) {
        if self.load.load(Ordering::Relaxed) != n {
            self.load.store(n, Ordering::Relaxed);
        }
    }
}

/// The loop with the fewest sessions, starting the search after `after`
/// so that ties go round.
pub fn least_loaded(doors: &[Door], after: usize) -> usize {
    let n = doors.len();
    let mut best = after % n.max(1);
    let mut best_load = usize::MAX;
    for i in 1..=n {
        let k = (after + i) % n;
        let l = doors[k].load();
        if l < best_load {
            best = k;
            best_load = l;
        }
    }
    best
}

/// The loop that owns the hub of `label` (its peer address): the same on
/// every loop, with no shared table to consult.
pub fn hub_home(label: &str, loops: usize) -> usize {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % loops.max(1) as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubs_have_one_home_and_spread() {
        assert_eq!(hub_home("tcp://127.0.0.1:5000", 1), 0);
        let a = hub_home("tcp://127.0.0.1:5000", 4);
        assert_eq!(a, hub_home("tcp://127.0.0.1:5000", 4));
        let homes: std::collections::BTreeSet<usize> = (0..64)
            .map(|p| hub_home(&format!("tcp://127.0.0.1:{p}"), 4))
            .collect();
        assert_eq!(homes.len(), 4);
    }

    #[test]
    fn new_connections_go_where_there_are_fewest_and_ties_go_round() {
        let doors: Vec<Door> = (0..3)
            .map(|_| Door::open(Token(0)).map(|(d, _)| d))
            .collect::<Result<_, _>>()
            .expect("poll");
        assert_eq!(least_loaded(&doors, 0), 1);
        assert_eq!(least_loaded(&doors, 1), 2);
        assert_eq!(least_loaded(&doors, 2), 0);
        doors[1].set_load(2);
        doors[2].set_load(1);
        assert_eq!(least_loaded(&doors, 0), 0);
        doors[0].set_load(5);
        assert_eq!(least_loaded(&doors, 0), 2);
    }
}
