//! Windows whose read was incomplete (see `WindowRead::complete`), waiting to be read again.
//!
//! A window whose committed read was incomplete is queued with a due time: `base` after the
//! read's batch was planned, doubling with every incomplete read of it in a row, at most
//! [`MAX_RETRY_DELAY_SECS`]. Due windows are handed out as [`WindowKind::Retry`] within the
//! re-scan share of a batch; they never hold back the watermark. The queue is part of the
//! checkpoint, so a restart keeps it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::kind::{PlannedWindow, ReadSummary, WindowKind};
use super::window::Window;

/// A window waiting to be read again because its last read was incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryWindow {
    /// The window.
    pub window: Window,
    /// Incomplete reads of it in a row.
    pub attempts: u32,
    /// Not to be read again before this time.
    pub due: DateTime<Utc>,
}

/// Most windows queued; an incomplete window beyond that waits for its next re-scan.
pub(crate) const MAX_RETRIES: usize = 256;

/// Longest wait before an incomplete window is read again.
pub(crate) const MAX_RETRY_DELAY_SECS: i64 = 3600;

/// When a window read incomplete `attempts` times in a row, planned at `at`, is due again.
pub(crate) fn retry_due(at: DateTime<Utc>, base_secs: i64, attempts: u32) -> DateTime<Utc> {
    let factor = 1i64 << attempts.saturating_sub(1).min(20);
    let delay = base_secs
        .max(1)
        .saturating_mul(factor)
        .min(MAX_RETRY_DELAY_SECS);
    at + TimeDelta::seconds(delay)
}

/// The retry queue after `read` of `w` was committed: an incomplete read queues `w` (attempts
/// counted on from a retry or an earlier entry), a complete one drops it. Returns the number of
/// incomplete reads in a row (0 when complete, or when the queue was full).
pub(crate) fn after_read(
    queue: &mut Vec<RetryWindow>,
    w: &PlannedWindow,
    read: &ReadSummary,
    base_secs: i64,
) -> u32 {
    let existing = queue.iter().position(|r| r.window == w.window);
    let before = match (w.kind, existing.and_then(|i| queue.get(i))) {
        (WindowKind::Retry { attempt }, _) => attempt,
        (_, Some(r)) => r.attempts,
        _ => 0,
    };
    if let Some(i) = existing {
        queue.remove(i);
    }
    if read.complete || queue.len() >= MAX_RETRIES {
        return 0;
    }
    let attempts = before.saturating_add(1);
    let entry = RetryWindow {
        window: w.window,
        attempts,
        due: retry_due(w.planned_at, base_secs, attempts),
    };
    let at = queue.partition_point(|r| r.due <= entry.due);
    queue.insert(at, entry);
    attempts
}

/// Takes up to `n` windows due at `now` from the front of `queue` (sorted by due time).
pub(crate) fn take_due(
    queue: &mut Vec<RetryWindow>,
    now: DateTime<Utc>,
    n: usize,
) -> Vec<RetryWindow> {
    let due = queue.iter().take(n).take_while(|r| r.due <= now).count();
    queue.drain(..due).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn planned(since: i64, kind: WindowKind, at: i64) -> PlannedWindow {
        PlannedWindow {
            window: Window::new(t(since), t(since + 1)),
            kind,
            seq: 0,
            planned_at: t(at),
        }
    }

    fn read(complete: bool) -> ReadSummary {
        ReadSummary {
            complete,
            ..ReadSummary::default()
        }
    }

    #[test]
    fn delay_doubles_up_to_an_hour() {
        assert_eq!(retry_due(t(0), 5, 1), t(5));
        assert_eq!(retry_due(t(0), 5, 3), t(20));
        assert_eq!(retry_due(t(0), 5, 40), t(3600));
        assert_eq!(retry_due(t(0), 0, 1), t(1));
    }

    #[test]
    fn incomplete_reads_queue_complete_reads_drop_and_retries_count_on() {
        let mut q = Vec::new();
        assert_eq!(
            after_read(
                &mut q,
                &planned(0, WindowKind::Forward, 100),
                &read(false),
                10
            ),
            1
        );
        assert_eq!(
            after_read(
                &mut q,
                &planned(5, WindowKind::Lookback, 90),
                &read(false),
                10
            ),
            1
        );
        // Sorted by due time.
        assert_eq!(
            q.iter().map(|r| r.due).collect::<Vec<_>>(),
            vec![t(100), t(110)]
        );
        // Nothing due yet at 99; at 105 one.
        assert!(take_due(&mut q, t(99), 4).is_empty());
        let due = take_due(&mut q, t(105), 4);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].window.since, t(5));
        // The retry is incomplete again: its second attempt, due after twice the delay.
        let retry = planned(5, WindowKind::Retry { attempt: 1 }, 200);
        assert_eq!(after_read(&mut q, &retry, &read(false), 10), 2);
        assert!(q.iter().any(|r| r.window.since == t(5) && r.due == t(220)));
        // A complete read of a queued window drops it.
        assert_eq!(
            after_read(
                &mut q,
                &planned(0, WindowKind::Rescan { tier: 0 }, 300),
                &read(true),
                10
            ),
            0
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].window.since, t(5));
    }
}
