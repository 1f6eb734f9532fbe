//! Re-scan scheduling pieces: when a tier's pass is due, the per-batch budget, and what a pass
//! costs.

use chrono::{DateTime, TimeDelta, Utc};

use super::checkpoint::{RescanCursor, RescanPass, Sweep};
use crate::config::RescanTier;
use crate::ops::metrics::names;

/// Longest duration the planner works with (100 years); larger configured values are clamped so
/// time arithmetic cannot overflow.
pub(crate) const MAX_SECS: i64 = 100 * 366 * 86_400;

/// Seconds as a `TimeDelta`, clamped to `0..=MAX_SECS`.
pub(crate) fn secs(n: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(n).unwrap_or(MAX_SECS).min(MAX_SECS))
}

/// A fresh cursor for `tier` (no pass yet).
pub(crate) fn fresh_cursor(tier: &RescanTier) -> RescanCursor {
    RescanCursor {
        max_age_secs: tier.max_age_secs,
        every_secs: tier.every_secs,
        pass: None,
    }
}

/// Starts a pass of `cursor` if one is due at `now`: never started, or the previous pass has
/// completed and started at least `every_secs` ago. A running pass is never started twice; if
/// it overruns its period the next pass starts as soon as it completes.
///
/// The range is `[max(start, now - max_age), watermark)` (`max_age` 0: from `start`). An empty
/// range completes at once. Returns true when a pass was started.
pub(crate) fn start_if_due(
    cursor: &mut RescanCursor,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    watermark: DateTime<Utc>,
) -> bool {
    let due = match &cursor.pass {
        None => true,
        Some(p) => !p.running() && now >= p.started_at + secs(cursor.every_secs.max(1)),
    };
    if !due {
        return false;
    }
    let from = if cursor.max_age_secs == 0 {
        start
    } else {
        start.max(now - secs(cursor.max_age_secs))
    };
    let sweep = Sweep::new(from, watermark);
    let empty = sweep.handed_out();
    cursor.pass = Some(RescanPass {
        started_at: now,
        sweep,
        completed_at: empty.then_some(now),
    });
    true
}

/// How many re-scan windows a batch of `max` may hold while forward work remains:
/// `floor(fraction * max)`, at least 1, and at most `max - 1` so every batch keeps a forward
/// window. A batch of one cannot share, so there the fraction is honoured across batches with a
/// credit: each batch earns `fraction`, a re-scan window costs 1.
pub(crate) fn rescan_cap(fraction: f64, max: usize, credit: &mut f64) -> usize {
    if fraction <= 0.0 || max == 0 {
        return 0;
    }
    if max == 1 {
        *credit = (*credit + fraction).min(1.0 + fraction);
        return usize::from(*credit >= 1.0);
    }
    // `max` is a batch size (small), so the float round trip is exact.
    let share = (fraction * max as f64).floor() as usize;
    share.max(1).min(max - 1)
}

/// What the current pass of one re-scan tier has cost so far (in this process: a restart
/// starts counting again). Exported when the pass completes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassCost {
    /// Windows committed.
    pub windows: u64,
    /// Page requests, split probes and re-reads included.
    pub requests: u64,
    /// Of those, requests after each window's first pass (drift, unstable order).
    pub reread_requests: u64,
    /// Pages the windows' rows fill: `Σ ceil(totalCount / page_size)` (an empty window adds 0,
    /// though reading it costs a request).
    pub pages: u64,
}

impl PassCost {
    /// Sets the `tanma_rescan_pass_*` gauges of `tier` to this (completed) pass.
    pub(crate) fn export(&self, tier: usize) {
        let t = tier.to_string();
        metrics::gauge!(names::RESCAN_PASS_WINDOWS, "tier" => t.clone()).set(self.windows as f64);
        metrics::gauge!(names::RESCAN_PASS_REQUESTS, "tier" => t.clone()).set(self.requests as f64);
        metrics::gauge!(names::RESCAN_PASS_REREAD_REQUESTS, "tier" => t.clone())
            .set(self.reread_requests as f64);
        metrics::gauge!(names::RESCAN_PASS_PAGES, "tier" => t).set(self.pages as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn cap_is_a_share_with_at_least_one_and_a_forward_slot() {
        let mut c = 0.0;
        assert_eq!(rescan_cap(0.3, 4, &mut c), 1);
        assert_eq!(rescan_cap(0.5, 10, &mut c), 5);
        assert_eq!(rescan_cap(1.0, 4, &mut c), 3);
        assert_eq!(rescan_cap(0.01, 2, &mut c), 1);
        assert_eq!(rescan_cap(0.0, 8, &mut c), 0);
    }

    #[test]
    fn batch_of_one_uses_credit() {
        let mut c = 0.0;
        let mut granted = 0;
        for _ in 0..100 {
            if rescan_cap(0.25, 1, &mut c) == 1 {
                granted += 1;
                c -= 1.0;
            }
        }
        assert_eq!(granted, 25);
    }

    #[test]
    fn pass_due_only_after_completion_and_period() {
        let mut cur = fresh_cursor(&RescanTier {
            max_age_secs: 100,
            every_secs: 50,
        });
        assert!(start_if_due(&mut cur, t(1000), t(0), t(990)));
        let p = cur.pass.clone().unwrap();
        assert_eq!((p.sweep.from, p.sweep.until), (t(900), t(990)));
        assert!(p.running());
        // Still running: never started twice, even long after the period.
        assert!(!start_if_due(&mut cur, t(5000), t(0), t(990)));
        cur.pass.as_mut().unwrap().completed_at = Some(t(1010));
        assert!(!start_if_due(&mut cur, t(1049), t(0), t(990)));
        assert!(start_if_due(&mut cur, t(1050), t(0), t(1040)));
    }

    #[test]
    fn empty_range_completes_at_once() {
        let mut cur = fresh_cursor(&RescanTier {
            max_age_secs: 0,
            every_secs: 50,
        });
        assert!(start_if_due(&mut cur, t(1000), t(0), t(0)));
        assert!(!cur.pass.unwrap().running());
    }
}
