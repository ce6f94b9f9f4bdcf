//! A monotonic point in time, as nanoseconds since an arbitrary epoch chosen by the shell.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the shell's monotonic clock (`CLOCK_MONOTONIC`), in nanoseconds.
///
/// The core never reads the clock; the shell reads it once per batch and passes it in.
/// Tests construct instants directly, which makes every timeout deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The epoch of the clock.
    pub const ZERO: Self = Self { nanos: 0 };

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self { nanos }
    }

    /// An instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            nanos: secs.saturating_mul(1_000_000_000),
        }
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Self;

    /// Saturates at the end of time rather than overflowing.
    fn add(self, rhs: Duration) -> Self {
        Self {
            nanos: self.nanos.saturating_add(duration_nanos(rhs)),
        }
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;

    /// Saturates at the epoch rather than underflowing.
    fn sub(self, rhs: Duration) -> Self {
        Self {
            nanos: self.nanos.saturating_sub(duration_nanos(rhs)),
        }
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.nanos / 1_000_000_000,
            self.nanos % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_secs(5);
        assert_eq!(t - Duration::from_secs(10), Instant::ZERO);
        assert_eq!(
            Instant::from_nanos(u64::MAX) + Duration::from_secs(1),
            Instant::from_nanos(u64::MAX)
        );
        assert_eq!((t + Duration::from_millis(1500)).as_nanos(), 6_500_000_000);
        assert_eq!(
            t.saturating_duration_since(Instant::from_secs(7)),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_secs(7).saturating_duration_since(t),
            Duration::from_secs(2)
        );
    }
}
