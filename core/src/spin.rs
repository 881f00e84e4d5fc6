//! When the event loop polls without sleeping (`--busy-poll`).
//!
//! On loopback, and more so in a virtual machine, the wake-up from a
//! sleeping `epoll_wait` costs more than the round trip it waits for. A
//! loop that polls a little longer without sleeping after traffic catches
//! the next message on the CPU it already has.
//!
//! A fixed window (`--busy-poll MICROS`) spins that long after every
//! batch of events, whatever the traffic. The adaptive window
//! (`--busy-poll auto`) learns, like the kernel's haltpoll governor, from
//! what the last waits would have needed: a sleep shorter than the
//! largest window means spinning would have caught that event, so the
//! window grows to cover it; a spin that ends with nothing to do means
//! the traffic paused, so the window halves, down to not spinning at
//! all. A quiet loop therefore sleeps after a few empty spins, and a
//! trickle of messages further apart than the largest window never makes
//! it spin.

use std::time::{Duration, Instant};

/// How the loop may spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPoll {
    /// Never: every wait sleeps.
    Off,
    /// This long after every batch of events.
    Fixed(Duration),
    /// A window that follows the traffic, at most this long.
    Auto(Duration),
}

/// The largest adaptive window: a loopback round trip through the bridge
/// with both ends awake is well under it, and a loop with nothing to do
/// gives up at most this much CPU before it sleeps again.
pub const AUTO_MAX: Duration = Duration::from_micros(50);

/// A sleep shorter than this many largest windows makes the window the
/// largest again.
const GROW_WITHIN: u32 = 4;

/// The smallest adaptive window worth spinning: below it the window
/// drops to zero.
const MIN_WINDOW: Duration = Duration::from_micros(2);

pub struct Spin {
    mode: BusyPoll,
    /// The current window (fixed mode: the option).
    window: Duration,
    /// Spin until then; at or after it, the next wait may sleep.
    until: Option<Instant>,
}

impl Spin {
    pub fn new(mode: BusyPoll) -> Spin {
        let window = match mode {
            BusyPoll::Fixed(d) => d,
            BusyPoll::Off | BusyPoll::Auto(_) => Duration::ZERO,
        };
        Spin {
            mode,
            window,
            until: None,
        }
    }

    /// Whether the coming wait must not sleep.
    pub fn spinning(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// After a wait that began at `began` and returned at `now`. `slept`:
    /// the wait was allowed to sleep; `events`: it returned some.
    pub fn after_wait(&mut self, began: Instant, now: Instant, slept: bool, events: bool) {
        let max = match self.mode {
            BusyPoll::Off => return,
            BusyPoll::Fixed(_) => {
                if events {
                    self.until = Some(now + self.window);
                }
                return;
            }
            BusyPoll::Auto(max) => max,
        };
        if events {
            // A wait that slept less than a few windows: the traffic is
            // fast enough that spinning catches the next event. The sleep
            // itself includes the wake-up, so it reads longer than the gap
            // a spin would have had to cover.
            if slept && now.saturating_duration_since(began) < max * GROW_WITHIN {
                self.window = max;
            }
            self.until = (!self.window.is_zero()).then(|| now + self.window);
        } else if self.until.is_some_and(|u| now >= u) {
            // A whole window with nothing: the traffic paused.
            self.until = None;
            self.window /= 2;
            if self.window < MIN_WINDOW {
                self.window = Duration::ZERO;
            }
        }
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

    #[test]
    fn auto_spins_after_short_sleeps_and_not_after_long_ones() {
        let t = Instant::now();
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        // A trickle: events 1 ms apart never make it spin.
        s.after_wait(t, t + us(1000), true, true);
        assert!(!s.spinning(t + us(1000)));
        // A reply 120 µs after the request, wake-up included: next time,
        // spin the whole window for it.
        s.after_wait(t, t + us(120), true, true);
        assert!(s.spinning(t + us(169)));
        assert!(!s.spinning(t + us(170)));
        // Events while spinning keep it spinning.
        s.after_wait(t + us(150), t + us(160), false, true);
        assert!(s.spinning(t + us(209)));
    }

    #[test]
    fn auto_halves_on_empty_spins_until_it_sleeps() {
        let t = Instant::now();
        let mut s = Spin::new(BusyPoll::Auto(us(50)));
        s.after_wait(t, t + us(40), true, true);
        assert_eq!(s.window, us(50));
        // Traffic 1 ms apart: each event spins what is left of the window
        // in vain, and the window closes.
        let mut now = t + us(40);
        let mut empties = 0;
        while !s.window.is_zero() {
            now += us(60);
            s.after_wait(now, now, false, false);
            assert!(!s.spinning(now));
            now += us(1000);
            s.after_wait(now - us(1000), now, true, true);
            empties += 1;
            assert!(empties < 10, "the window never closes");
        }
        assert!(!s.spinning(now));
        // A spin still running is not a miss.
        s.after_wait(t, t + us(10), true, true);
        let w = s.window;
        s.after_wait(t + us(10), t + us(11), false, false);
        assert_eq!(s.window, w);
        assert!(s.spinning(t + us(11)));
    }
}
