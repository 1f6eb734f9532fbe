//! Exponential backoff with jitter: the one implementation every retry loop of the crate uses
//! (the API client's request retries, the pipeline's batch retries).
//!
//! The delay before retry number `attempt` (0-based) is drawn from
//! `[0, c]` ([`Jitter::Full`]) or `[c / 2, c]` ([`Jitter::Equal`]), where
//! `c = min(max, initial · 2^attempt)`. Full jitter spreads many clients best; equal jitter
//! keeps a floor, for a loop that must not retry at once.

use std::time::Duration;

use rand::Rng;

/// How much of the exponential ceiling is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]`.
    #[default]
    Full,
    /// Uniform in `[ceiling / 2, ceiling]`.
    Equal,
}

/// Exponential backoff with jitter, with an optional attempt counter for loops that keep one.
///
/// Stateless use: [`Backoff::delay`]`(attempt)`. Stateful use: [`Backoff::next_delay`] after each
/// failure, [`Backoff::reset`] after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Jitter,
    attempt: u32,
}

impl Backoff {
    /// Full-jitter backoff from `initial`, doubling up to `max` (a `max` below `initial` is
    /// raised to it).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            jitter: Jitter::Full,
            attempt: 0,
        }
    }

    /// [`Backoff::new`] from milliseconds (configuration values).
    pub fn from_millis(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff::new(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
        )
    }

    /// The same backoff with another jitter.
    pub fn with_jitter(self, jitter: Jitter) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// The upper bound of the delay before retry number `attempt` (0-based):
    /// `min(max, initial · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A random delay before retry number `attempt` (0-based), within the jitter's range.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let floor = match self.jitter {
            Jitter::Full => Duration::ZERO,
            Jitter::Equal => ceiling / 2,
        };
        let span = (ceiling - floor).as_nanos().min(u128::from(u64::MAX)) as u64;
        floor + Duration::from_nanos(rand::rng().random_range(0..=span))
    }

    /// The delay before the next retry; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Failures counted since the last [`Backoff::reset`].
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success. Returns true when there had been failures (a recovery).
    pub fn reset(&mut self) -> bool {
        std::mem::replace(&mut self.attempt, 0) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_within_ceiling() {
        let b = Backoff::from_millis(10, 100);
        for attempt in 0..70 {
            let d = b.delay(attempt);
            let ceiling = (10u64 << attempt.min(20)).min(100);
            assert!(
                d <= Duration::from_millis(ceiling),
                "attempt {attempt}: {d:?}"
            );
        }
        assert_eq!(Backoff::from_millis(0, 0).delay(5), Duration::ZERO);
    }

    #[test]
    fn equal_jitter_keeps_half_the_ceiling() {
        let b = Backoff::from_millis(100, 1_000).with_jitter(Jitter::Equal);
        for attempt in 0..40 {
            let c = b.ceiling(attempt);
            let d = b.delay(attempt);
            assert!(d >= c / 2 && d <= c, "attempt {attempt}: {d:?} vs {c:?}");
        }
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_millis(1_000));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn counter_grows_and_resets() {
        let mut b = Backoff::from_millis(1, 8).with_jitter(Jitter::Equal);
        assert!(!b.reset(), "no failure yet");
        for expected in 1..=5 {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(8));
            assert_eq!(b.attempt(), expected);
        }
        assert!(b.reset(), "recovered after failures");
        assert_eq!(b.attempt(), 0);
    }

    #[test]
    fn max_below_initial_is_raised() {
        let b = Backoff::from_millis(500, 100);
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
        assert_eq!(b.ceiling(9), Duration::from_millis(500));
    }
}
