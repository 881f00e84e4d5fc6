//! Deadlines for all sessions in one min-heap.
//!
//! Sessions do not move their heap entry when a deadline shifts (that
//! would cost work per message); an entry that fires early is checked
//! against the session's real deadline and re-armed. Each session keeps
//! the earliest instant it has armed so at most a few entries exist per
//! session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub fn arm(&mut self, at: Instant, key: usize, id: u64) {
        self.heap.push(Reverse((at, key, id)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pop one entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((t, _, _))) if *t <= now => {
                self.heap.pop().map(|Reverse((_, k, id))| (k, id))
            }
            _ => None,
        }
    }
}
