//! The memory of dense ranges: add-time ranges that held more rows than `split_threshold` for a
//! window of their width, so that re-reads of them (lookback, re-scans) start at the width that
//! worked instead of being split again.
//!
//! Windows planned with it never cross the edge of a dense range: a window that would run into
//! one ends at its start, and a window inside one is at most as wide as the narrowest range
//! around it allows and ends at its end. Outside dense ranges windows keep their full width, so
//! the requests a re-read costs follow the rows it holds, not its seconds.
//!
//! A single second above the threshold cannot be split; once it has been read whole it is
//! remembered as a dense second, and the wider ranges around it that were split only on the way
//! down to it are forgotten: the windows next to it end at its edge instead of shrinking. If
//! their own rows are still too many they are split again and remembered in their own right.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use super::window::Window;

/// Dense ranges with the widest window that may be tried inside each. Bounded: the oldest
/// entries are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct DenseRanges {
    entries: VecDeque<(Window, i64)>,
}

/// Most dense ranges remembered.
const DENSE_CAPACITY: usize = 4096;

impl DenseRanges {
    /// `w` needed splitting: windows inside it should be at most half its width.
    pub(crate) fn record(&mut self, w: Window) {
        self.insert(w, (w.secs() / 2).max(1));
    }

    /// The one-second window `w` held more rows than the split threshold and was read whole:
    /// it is read as a window of its own, and the wider ranges containing it are forgotten.
    pub(crate) fn record_second(&mut self, w: Window) {
        self.entries
            .retain(|(x, _)| !(x.since <= w.since && w.before <= x.before && x.secs() > w.secs()));
        self.insert(w, 1);
    }

    fn insert(&mut self, w: Window, width: i64) {
        if let Some(e) = self.entries.iter_mut().find(|(x, _)| *x == w) {
            e.1 = e.1.min(width);
            return;
        }
        if self.entries.len() >= DENSE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((w, width));
    }

    /// The width of the window starting at `since` that would like `preferred` seconds: at most
    /// the width of the narrowest dense range containing `since`, never past the end of a dense
    /// range containing it, and never past the start of a dense range that begins after it.
    pub(crate) fn width_at(&self, since: DateTime<Utc>, preferred: i64) -> i64 {
        let mut width = preferred.max(1);
        for (w, max) in self.entries.iter() {
            if w.since <= since && since < w.before {
                width = width.min(*max).min((w.before - since).num_seconds());
            }
        }
        let end = since + TimeDelta::seconds(width);
        if let Some(next) = self
            .entries
            .iter()
            .map(|(w, _)| w.since)
            .filter(|s| *s > since && *s < end)
            .min()
        {
            width = (next - since).num_seconds();
        }
        width.max(1)
    }

    /// Dense ranges remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn windows_end_at_dense_edges_and_shrink_only_inside() {
        let mut d = DenseRanges::default();
        d.record(Window::new(t(100), t(200)));
        d.record(Window::new(t(100), t(150)));
        assert_eq!(d.width_at(t(0), 50), 50);
        // Ends where the dense range starts instead of shrinking to its narrowest part.
        assert_eq!(d.width_at(t(0), 120), 100);
        // Inside: the narrowest range decides, and the window ends at its end.
        assert_eq!(d.width_at(t(100), 1000), 25);
        assert_eq!(d.width_at(t(140), 1000), 10);
        assert_eq!(d.width_at(t(160), 1000), 40);
        assert_eq!(d.width_at(t(200), 1000), 1000);
    }

    /// A day split down to one bulk second: before, a window overlapping the chain of splits
    /// shrank to one second (a re-read of the day crawled it second by second); now the day is
    /// read as the window before the bulk second, the second, and the window after it.
    #[test]
    fn a_dense_second_costs_three_windows_not_a_crawl() {
        let mut d = DenseRanges::default();
        let mut w = Window::new(t(0), t(86_400));
        let bulk = t(50_000);
        while let Some((a, b)) = w.split() {
            d.record(w);
            w = if bulk < a.before { a } else { b };
        }
        assert_eq!(w, Window::new(bulk, bulk + TimeDelta::seconds(1)));
        d.record_second(w);
        assert_eq!(
            d.len(),
            1,
            "the ranges above the dense second are forgotten"
        );
        let mut at = t(0);
        let mut windows = Vec::new();
        while at < t(86_400) {
            let width = d.width_at(at, 86_400).min((t(86_400) - at).num_seconds());
            windows.push((at, width));
            at += TimeDelta::seconds(width);
        }
        assert_eq!(
            windows,
            vec![(t(0), 50_000), (bulk, 1), (t(50_001), 86_400 - 50_001)]
        );
    }
}
