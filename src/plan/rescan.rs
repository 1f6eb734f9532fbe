//! Re-scan scheduling pieces: when a tier's pass is due, the per-batch budget, and the memory of
//! dense ranges (ranges that needed splitting start split when read again).

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use super::checkpoint::{RescanCursor, RescanPass, Sweep};
use super::window::Window;
use crate::config::RescanTier;

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

/// Ranges that turned out too dense for a window of their width, with the widest window that
/// may be tried inside them next time. Bounded: the oldest entries are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct DenseRanges {
    entries: VecDeque<(Window, i64)>,
}

/// Most dense ranges remembered.
const DENSE_CAPACITY: usize = 4096;

impl DenseRanges {
    /// `w` needed splitting: windows inside it should be at most half its width.
    pub(crate) fn record(&mut self, w: Window) {
        let width = (w.secs() / 2).max(1);
        if let Some(e) = self.entries.iter_mut().find(|(x, _)| *x == w) {
            e.1 = e.1.min(width);
            return;
        }
        if self.entries.len() >= DENSE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((w, width));
    }

    /// The width to use for a window starting at `since` that would like `preferred` seconds:
    /// shrunk until it fits every dense range it overlaps.
    pub(crate) fn width_at(&self, since: DateTime<Utc>, preferred: i64) -> i64 {
        let mut width = preferred.max(1);
        loop {
            let end = since + TimeDelta::seconds(width);
            let narrower = self
                .entries
                .iter()
                .filter(|(w, _)| w.since < end && w.before > since)
                .map(|(_, max)| *max)
                .filter(|max| *max < width)
                .min();
            match narrower {
                Some(n) => width = n.max(1),
                None => return width,
            }
        }
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

    #[test]
    fn dense_ranges_shrink_windows_that_overlap_them() {
        let mut d = DenseRanges::default();
        d.record(Window::new(t(100), t(200)));
        d.record(Window::new(t(100), t(150)));
        assert_eq!(d.width_at(t(0), 50), 50);
        assert_eq!(d.width_at(t(0), 120), 25);
        assert_eq!(d.width_at(t(160), 1000), 50);
        assert_eq!(d.width_at(t(200), 1000), 1000);
    }
}
