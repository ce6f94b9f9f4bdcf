//! Adaptive polling before the datapath thread sleeps.
//!
//! On a VM most of a request/response round trip through a user-space forwarder is
//! wake-ups: the guest kernel wakes tapnet's thread when the container's frame is in
//! the TAP and again when the host socket's answer is in, and waking a halted vCPU
//! costs tens of microseconds. If the thread keeps polling for a little while after
//! its last event, the answer that arrives then costs no wake-up (measured: 1-byte
//! ping-pong container → host 10.3 k → 14.5 k round trips/s with a 30-80 µs window).
//! Polling costs a vCPU for the window, so the window adapts, the way the kernel's
//! haltpoll cpuidle governor sizes its own poll: it grows while the thread keeps being
//! woken soon after it went to sleep (polling a little longer would have caught the
//! event), and shrinks to nothing when the gaps are longer than the most it would
//! poll, so that sporadic traffic (and an idle stack) costs no polling at all.

use std::time::Duration;

use tapnet_wire::Instant;

/// The polling window before sleeping; pure bookkeeping, the loop does the polling.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdaptiveSpin {
    /// The longest window; zero turns polling off.
    max: Duration,
    /// The current window.
    limit: Duration,
    /// When the loop last had an event.
    last_event: Instant,
}

impl AdaptiveSpin {
    pub(crate) fn new(max: Duration, now: Instant) -> Self {
        Self {
            max,
            limit: Duration::ZERO,
            last_event: now,
        }
    }

    /// The window from `TAPNET_BUSY_POLL_US` (microseconds; 0 turns polling off),
    /// else 100 µs (see `crate::knobs`).
    pub(crate) fn from_env(now: Instant) -> Self {
        Self::new(crate::knobs::Knobs::get().busy_poll, now)
    }

    /// Whether to poll (wait without sleeping) at `now`.
    pub(crate) fn keep_polling(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_event) < self.limit
    }

    /// The loop had events at `now`; `slept`: it had waited for them asleep.
    pub(crate) fn events_at(&mut self, now: Instant, slept: bool) {
        if slept {
            self.woke_after(now.saturating_duration_since(self.last_event));
        }
        self.last_event = now;
    }

    /// The thread slept and an event woke it `idle` after the last one.
    fn woke_after(&mut self, idle: Duration) {
        if idle <= self.max {
            // Polling up to `idle` would have saved this wake-up.
            self.limit = (self.limit * 2).max(self.max / 4).min(self.max);
        } else {
            self.limit /= 2;
            if self.limit < self.max / 8 {
                self.limit = Duration::ZERO;
            }
        }
    }

    #[cfg(test)]
    fn limit(&self) -> Duration {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(80);

    /// `idle` after the last event of a loop whose last event was at the epoch.
    fn after(idle: Duration) -> Instant {
        Instant::ZERO + idle
    }

    #[test]
    fn starts_without_polling() {
        let spin = AdaptiveSpin::new(MAX, Instant::ZERO);
        assert!(!spin.keep_polling(after(Duration::ZERO)));
    }

    #[test]
    fn short_gaps_grow_the_window_to_the_maximum() {
        let mut spin = AdaptiveSpin::new(MAX, Instant::ZERO);
        spin.woke_after(Duration::from_micros(30));
        assert_eq!(spin.limit(), MAX / 4);
        spin.woke_after(Duration::from_micros(30));
        spin.woke_after(Duration::from_micros(30));
        spin.woke_after(Duration::from_micros(30));
        assert_eq!(spin.limit(), MAX);
        assert!(spin.keep_polling(after(Duration::from_micros(79))));
        assert!(!spin.keep_polling(after(MAX)));
    }

    #[test]
    fn long_gaps_shrink_the_window_to_nothing() {
        let mut spin = AdaptiveSpin::new(MAX, Instant::ZERO);
        for _ in 0..3 {
            spin.woke_after(Duration::from_micros(10));
        }
        assert_eq!(spin.limit(), MAX);
        let mut sleeps = 0;
        while spin.limit() > Duration::ZERO {
            spin.woke_after(Duration::from_millis(5));
            sleeps += 1;
        }
        // 80 -> 40 -> 20 -> 10 (= MAX/8, kept) -> 0.
        assert_eq!(sleeps, 4);
        assert!(!spin.keep_polling(after(Duration::ZERO)));
    }

    #[test]
    fn zero_maximum_never_polls() {
        let mut spin = AdaptiveSpin::new(Duration::ZERO, Instant::ZERO);
        spin.woke_after(Duration::ZERO);
        spin.woke_after(Duration::from_micros(1));
        assert!(!spin.keep_polling(after(Duration::ZERO)));
    }
}
