//! When the event loop polls without sleeping (`--busy-poll`).
//!
//! On loopback, and more so in a virtual machine, the wake-up from a
//! sleeping `epoll_wait` costs more than the round trip it waits for. A
//! loop that polls a little longer without sleeping after traffic catches
//! the next message on the CPU it already has.
//!
//! A fixed window (`--busy-poll MICROS`) spins that long after every
//! batch of events, whatever the traffic. The adaptive one (`--busy-poll
//! auto`) spins up to [`AUTO_MAX`] only where that pays:
//!
//! - after an event that came while spinning (a hit: the traffic is as
//!   fast as the spin), or after a sleep short enough that a spin would
//!   likely have caught it (the sleep includes the wake-up, so it reads
//!   longer than the gap a spin has to cover);
//! - not after a long sleep: a trickle of messages further apart than a
//!   few windows never makes it spin;
//! - a window that runs out with no event (a miss: spun through empty,
//!   or worked through without looking) backs off: the next 1, 2, 4 ...
//!   up to [`MAX_BACKOFF`] short sleeps do not spin, and a hit ends the
//!   backoff. Traffic whose gaps a spin just misses therefore spins
//!   on one event in [`MAX_BACKOFF`] at most, and a loop left quiet
//!   spends one window before it sleeps.

use std::time::{Duration, Instant};

/// How the loop may spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPoll {
    /// Never: every wait sleeps.
    Off,
    /// This long after every batch of events.
    Fixed(Duration),
    /// Up to this long, where spinning pays.
    Auto(Duration),
}

/// The adaptive window: a loopback round trip through the bridge with
/// both ends awake is well under it, and a loop with nothing to do gives
/// up at most this much CPU before it sleeps again.
pub const AUTO_MAX: Duration = Duration::from_micros(50);

/// A sleep shorter than this many windows counts as fast traffic.
const FAST_WITHIN: u32 = 4;

/// The most short sleeps a run of misses makes the loop skip spinning.
const MAX_BACKOFF: u8 = 64;

pub struct Spin {
    mode: BusyPoll,
    /// Spin until then; at or after it, the next wait may sleep.
    until: Option<Instant>,
    /// Auto: short sleeps to skip after the last miss, doubled by each
    /// miss in a row, and how many of them are left.
    backoff: u8,
    skip: u8,
}

impl Spin {
    pub fn new(mode: BusyPoll) -> Spin {
        Spin {
            mode,
            until: None,
            backoff: 0,
            skip: 0,
        }
    }

    /// Whether the coming wait must not sleep.
    pub fn spinning(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// After a wait that began at `began` and returned at `now`. `slept`:
    /// the wait was allowed to sleep; `events`: it returned some.
    pub fn after_wait(&mut self, began: Instant, now: Instant, slept: bool, events: bool) {
        let window = match self.mode {
            BusyPoll::Off => return,
            BusyPoll::Fixed(w) => {
                if events {
                    self.until = Some(now + w);
                }
                return;
            }
            BusyPoll::Auto(w) => w,
        };
        // A window that ran out before this wait began had no event in
        // it (an event would have renewed it): a miss, whether the loop
        // spun through it or worked through it.
        if self.until.is_some_and(|u| began >= u) {
            self.until = None;
            self.backoff = match self.backoff {
                0 => 1,
                b => b.saturating_mul(2).min(MAX_BACKOFF),
            };
            self.skip = self.backoff;
        }
        let spun = self.until.is_some() && !slept;
        if !events {
            return;
        }
        if spun {
            // A hit: the spin caught the traffic.
            self.backoff = 0;
            self.skip = 0;
            self.until = Some(now + window);
        } else if slept {
            let fast = now.saturating_duration_since(began) < window * FAST_WITHIN;
            self.until = None;
            if fast {
                if self.skip > 0 {
                    self.skip -= 1;
                } else {
                    self.until = Some(now + window);
                }
            }
        }
        // Events from a wait that could not sleep for other reasons (work
        // pending) leave the decision as it was.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn off_never_spins() {
        let t = Instant::now();
        let mut s = Spin::new(BusyPoll::Off);
        s.after_wait(t, t + us(5), true, true);
        assert!(!s.spinning(t + us(6)));
    }

    #[test]
    fn fixed_spins_its_window_after_events_only() {
        let t = Instant::now();
        let mut s = Spin::new(BusyPoll::Fixed(us(30)));
        s.after_wait(t, t + us(1000), true, false);
        assert!(!s.spinning(t + us(1001)));
        s.after_wait(t, t + us(1000), true, true);
        assert!(s.spinning(t + us(1029)));
        assert!(!s.spinning(t + us(1030)));
    }

    /// Events every `gap` µs, each one the loop sleeps for unless it
    /// spins; returns how many of `n` events it spun after.
    fn steady(s: &mut Spin, gap: u64, n: usize) -> usize {
        let mut now = Instant::now();
        let mut spins = 0;
        for _ in 0..n {
            let next = now + us(gap);
            if s.spinning(now) {
                spins += 1;
                let end = s.until.expect("spinning");
                if end >= next {
                    s.after_wait(next, next, false, true);
                    now = next;
                    continue;
                }
                s.after_wait(end, end, false, false);
                now = end;
            }
            s.after_wait(now, next, true, true);
            now = next;
        }
        spins
    }

    #[test]
    fn auto_spins_through_fast_traffic() {
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        // Replies 30 µs apart: after the first, every event is a hit.
        assert_eq!(steady(&mut s, 30, 1000), 999);
    }

    #[test]
    fn auto_backs_off_from_gaps_a_spin_just_misses() {
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        // 100 µs apart: each spin misses; it backs off to one spin in
        // 65 events.
        let spins = steady(&mut s, 100, 1000);
        assert!(spins <= 1000 / 64 + 7, "{spins} spins in 1000 events");
        assert!(spins > 0, "it should still try now and then");
    }

    #[test]
    fn auto_never_spins_for_a_trickle() {
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        assert_eq!(steady(&mut s, 1000, 100), 0);
    }

    #[test]
    fn auto_recovers_when_traffic_gets_fast_again() {
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        steady(&mut s, 100, 200);
        // At most one backoff's worth of short sleeps, then hits again.
        let spins = steady(&mut s, 30, 200);
        assert!(spins >= 200 - usize::from(MAX_BACKOFF), "{spins}");
    }

    #[test]
    fn a_window_that_ran_out_before_the_wait_is_a_miss_not_a_hit() {
        let t = Instant::now();
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        s.after_wait(t, t + us(20), false, true);
        s.after_wait(t, t + us(40), true, true);
        assert!(s.spinning(t + us(41)));
        // A long turn, then a wait that may not sleep (work pending)
        // returns events: the window is over, nothing was caught.
        s.after_wait(t + us(120), t + us(121), false, true);
        assert!(!s.spinning(t + us(121)));
        assert_eq!((s.backoff, s.skip), (1, 1));
        // The next short sleep is skipped, the one after spins again.
        s.after_wait(t + us(121), t + us(150), true, true);
        assert!(!s.spinning(t + us(150)));
        s.after_wait(t + us(150), t + us(180), true, true);
        assert!(s.spinning(t + us(180)));
    }

    #[test]
    fn auto_sleeps_after_one_empty_window() {
        let t = Instant::now();
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        s.after_wait(t, t + us(40), true, true);
        assert!(s.spinning(t + us(89)));
        // A spin still running is not a miss.
        s.after_wait(t + us(40), t + us(60), false, false);
        assert!(s.spinning(t + us(60)));
        s.after_wait(t + us(60), t + us(90), false, false);
        assert!(!s.spinning(t + us(90)));
    }
}
