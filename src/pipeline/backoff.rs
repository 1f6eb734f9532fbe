//! The loop's backoff between failed batches.

use std::time::Duration;

use tracing::info;

/// Exponential backoff with full jitter.
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    pub(super) fn next(&mut self) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter: f64 = rand::random::<f64>();
        exp.mul_f64(0.5 + jitter / 2.0)
    }

    pub(super) fn reset(&mut self) {
        if self.attempt > 0 {
            info!("Recovered; resuming normal operation.");
        }
        self.attempt = 0;
    }
}
