//! The planner: owns time. From the checkpoint and the clock it decides which windows to read
//! next, hands them out in batches, and turns each committed window into the next checkpoint.
//!
//! Three kinds of work, in this priority:
//! 1. **Forward**: windows of `window_secs` from the watermark up to `now - settle_lag` (the last
//!    one shorter). Never past `now - settle_lag`.
//! 2. **Lookback**: once forward has reached `now - settle_lag`, and whenever it has moved since
//!    the last lookback, `[max(start, F - lookback), F)` is read again (`F` = where forward
//!    reached), in windows of at most `window_secs`. During a backfill there is no lookback:
//!    relations arrive late only near the live edge.
//! 3. **Re-scans**: each tier re-reads `[max(start, now - max_age), watermark)` once every
//!    `every_secs`, measured from the START of the previous pass. While forward work remains, a
//!    batch holds at most `rescan_budget_fraction` re-scan windows (at least one, and never the
//!    whole batch); once caught up they may fill it. Tiers with work share slots round-robin.
//!
//! 4. **Retries**: a window whose committed read was incomplete (not every row seen; see
//!    [`ReadSummary::complete`]) is read again soon, after a delay that doubles while it stays
//!    incomplete ([`super::retry`]). Retries share the re-scan slots of a batch, ahead of new
//!    re-scan windows, and never hold back the watermark.
//!
//! Windows that held more rows than `split_threshold` are remembered as dense
//! ([`super::dense`]): re-reads of them start at the width that worked, and windows end at the
//! edge of a dense range instead of shrinking to its narrowest part.
//!
//! Ordering contract with the pipeline: [`Planner::record_read`] tells the planner how each read
//! went before its checkpoint is taken; results are applied, and [`Planner::on_committed`]
//! called, in hand-out order (`seq`). [`Planner::split`] replaces a window by its halves AND
//! takes back every window handed out after it: the pipeline must drop those results too; they
//! come again, after the halves, in the next batch. [`Planner::rewind`] takes back everything
//! not committed. Taken-back windows are handed out again unchanged, so a failed transaction
//! re-plans exactly the same windows.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{debug, info};

use super::checkpoint::{Checkpoint, InFlight, RescanCursor, Sweep, CHECKPOINT_VERSION};
use super::dense::DenseRanges;
pub use super::error::PlanError;
pub use super::kind::{PlannedWindow, ReadSummary, WindowKind};
use super::rescan::{fresh_cursor, rescan_cap, secs, start_if_due, PassCost};
use super::retry::{self, RetryWindow};
use super::window::Window;
use crate::config::{RescanTier, WindowsConfig};
use crate::ops::metrics::names;

/// Decides the windows to read; see the module docs.
#[derive(Debug)]
pub struct Planner {
    start: DateTime<Utc>,
    window_secs: i64,
    settle: TimeDelta,
    lookback_secs: u64,
    tiers: Vec<RescanTier>,
    budget: f64,
    /// Forward windows are planned up to here.
    frontier: DateTime<Utc>,
    committed_watermark: DateTime<Utc>,
    lookback: Option<Sweep>,
    rescans: Vec<RescanCursor>,
    /// Planned, not handed out (halves of splits, taken-back windows), in order.
    pending: VecDeque<InFlight>,
    /// Handed out, not committed, in `seq` order.
    outstanding: VecDeque<PlannedWindow>,
    next_seq: u64,
    next_tier: usize,
    credit: f64,
    dense: DenseRanges,
    split_threshold: u64,
    /// First delay before an incomplete window is read again, seconds.
    retry_base_secs: i64,
    /// Windows whose committed read was incomplete, by due time.
    retries: Vec<RetryWindow>,
    /// How the reads of outstanding windows went, by `seq` ([`Planner::record_read`]).
    reads: HashMap<u64, ReadSummary>,
    /// Per tier, what its current pass has cost so far.
    pass_costs: Vec<PassCost>,
}

fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl Planner {
    /// A planner resuming from `checkpoint`, or starting at `windows.start_time` without one.
    /// Tiers whose configuration changed since the checkpoint start afresh.
    pub fn new(cfg: &WindowsConfig, checkpoint: Option<Checkpoint>) -> Result<Planner, PlanError> {
        let start = DateTime::parse_from_rfc3339(&cfg.start_time)
            .map(|t| whole(t.to_utc()))
            .map_err(|_| PlanError::StartTime {
                value: cfg.start_time.clone(),
            })?;
        let mut p = Planner {
            start,
            window_secs: secs(cfg.window_secs.max(1)).num_seconds(),
            settle: secs(cfg.settle_lag_secs),
            lookback_secs: cfg.lookback_secs,
            tiers: cfg.rescan.clone(),
            budget: cfg.rescan_budget_fraction.clamp(0.0, 1.0),
            frontier: start,
            committed_watermark: start,
            lookback: None,
            rescans: cfg.rescan.iter().map(fresh_cursor).collect(),
            pending: VecDeque::new(),
            outstanding: VecDeque::new(),
            next_seq: 0,
            next_tier: 0,
            credit: 0.0,
            dense: DenseRanges::default(),
            split_threshold: cfg.split_threshold,
            retry_base_secs: i64::try_from(cfg.poll_interval_ms / 1000)
                .unwrap_or(retry::MAX_RETRY_DELAY_SECS)
                .max(1),
            retries: Vec::new(),
            reads: HashMap::new(),
            pass_costs: vec![PassCost::default(); cfg.rescan.len()],
        };
        if let Some(cp) = checkpoint {
            cp.validate()?;
            p.committed_watermark = cp.watermark;
            p.frontier = cp
                .in_flight
                .iter()
                .filter(|f| f.kind == WindowKind::Forward)
                .map(|f| f.window.before)
                .fold(cp.watermark, DateTime::max);
            p.lookback = cp.lookback;
            p.retries = cp.retries;
            p.retries.sort_by_key(|r| r.due);
            let mut reset = vec![false; p.tiers.len()];
            for (i, tier) in p.tiers.iter().enumerate() {
                match cp.rescans.get(i) {
                    Some(c)
                        if c.max_age_secs == tier.max_age_secs
                            && c.every_secs == tier.every_secs =>
                    {
                        p.rescans[i] = c.clone();
                    }
                    _ => reset[i] = true,
                }
            }
            // Re-reads for tiers that no longer exist or changed are dropped with their cursor.
            p.pending = cp
                .in_flight
                .into_iter()
                .filter(|f| match f.kind {
                    WindowKind::Rescan { tier } => !reset.get(tier).copied().unwrap_or(true),
                    _ => true,
                })
                .collect();
            info!(watermark = %p.committed_watermark, in_flight = p.pending.len(), "Resuming from checkpoint.");
        }
        Ok(p)
    }

    /// The next batch, at most `max` windows, in the order results must be applied. Empty when
    /// nothing is due (caught up, no lookback or re-scan due): then sleep `poll_interval`.
    pub fn next_batch(&mut self, now: DateTime<Utc>, max: usize) -> Vec<PlannedWindow> {
        let now = whole(now);
        if max == 0 {
            return Vec::new();
        }
        let limit = now - self.settle;
        let watermark = self.watermark();
        for (i, (c, cost)) in self
            .rescans
            .iter_mut()
            .zip(&mut self.pass_costs)
            .enumerate()
        {
            if start_if_due(c, now, self.start, watermark) {
                *cost = PassCost::default();
                if let Some(p) = &c.pass {
                    info!(tier = i, from = %p.sweep.from, until = %p.sweep.until, "Re-scan pass started.");
                }
            }
        }
        let forward_left = self.frontier < limit || self.pending_has(|k| k == WindowKind::Forward);
        let retry_due = self.retries.first().is_some_and(|r| r.due <= now);
        let rescan_left = self.rescan_left() || self.pending_has(is_reread) || retry_due;
        let cap = if !forward_left {
            max
        } else if rescan_left {
            rescan_cap(self.budget, max, &mut self.credit)
        } else {
            0
        };

        // 1. Taken-back windows and split halves, in order; re-scans and retries among them
        // within the cap. Then retries that are due, within the cap.
        let mut batch: Vec<InFlight> = Vec::new();
        let mut rescans = 0usize;
        let mut kept = VecDeque::new();
        let mut blocked = false;
        while let Some(p) = self.pending.pop_front() {
            let is_rescan = is_reread(p.kind);
            if batch.len() >= max || (is_rescan && (blocked || rescans >= cap)) {
                blocked |= is_rescan;
                kept.push_back(p);
                continue;
            }
            rescans += usize::from(is_rescan);
            batch.push(p);
        }
        self.pending = kept;
        if !blocked {
            let room = cap.saturating_sub(rescans).min(max - batch.len());
            for r in retry::take_due(&mut self.retries, now, room) {
                rescans += 1;
                batch.push(InFlight {
                    window: r.window,
                    kind: WindowKind::Retry {
                        attempt: r.attempts,
                    },
                });
            }
        }

        // 2. Forward, keeping the re-scan share free; 3. lookback once caught up; 4. re-scans;
        // 5. forward again into slots re-scans did not use.
        let room = max - batch.len();
        let reserve = if forward_left && self.rescan_left() {
            cap.saturating_sub(rescans).min(room)
        } else {
            0
        };
        let mut fwd = self.plan_forward(limit, room - reserve);
        let lb = if self.frontier >= limit {
            self.plan_lookback(room - fwd.len())
        } else {
            Vec::new()
        };
        let mut free = room - fwd.len() - lb.len();
        if blocked {
            // Older re-scan windows wait in `pending`; newer ones must not overtake them.
            free = 0;
        } else if self.frontier < limit || self.pending_has(|k| k == WindowKind::Forward) {
            free = free.min(cap.saturating_sub(rescans));
        }
        let rs = self.plan_rescans(free);
        if max == 1 && forward_left && (rescans > 0 || !rs.is_empty()) {
            self.credit -= 1.0;
        }
        let used = fwd.len() + lb.len() + rs.len();
        fwd.extend(self.plan_forward(limit, room - used));
        batch.extend(fwd);
        batch.extend(lb);
        batch.extend(rs);
        batch.into_iter().map(|f| self.hand_out(f, now)).collect()
    }

    fn hand_out(&mut self, f: InFlight, now: DateTime<Utc>) -> PlannedWindow {
        let w = PlannedWindow {
            window: f.window,
            kind: f.kind,
            seq: self.next_seq,
            planned_at: now,
        };
        self.next_seq += 1;
        self.outstanding.push_back(w);
        metrics::counter!(names::PLAN_WINDOWS_TOTAL, "kind" => f.kind.as_str()).increment(1);
        w
    }

    fn pending_has(&self, f: impl Fn(WindowKind) -> bool) -> bool {
        self.pending.iter().any(|p| f(p.kind))
    }

    fn rescan_left(&self) -> bool {
        self.rescans.iter().any(|c| {
            c.pass
                .as_ref()
                .is_some_and(|p| p.running() && !p.sweep.handed_out())
        })
    }

    fn plan_forward(&mut self, limit: DateTime<Utc>, n: usize) -> Vec<InFlight> {
        let mut out = Vec::new();
        while out.len() < n && self.frontier < limit {
            let end = (self.frontier + TimeDelta::seconds(self.window_secs)).min(limit);
            let window = Window::new(self.frontier, end);
            self.frontier = window.before;
            out.push(InFlight {
                window,
                kind: WindowKind::Forward,
            });
        }
        out
    }

    fn plan_lookback(&mut self, n: usize) -> Vec<InFlight> {
        if self.lookback_secs == 0 || n == 0 {
            return Vec::new();
        }
        let due = match &self.lookback {
            None => true,
            Some(s) => s.handed_out() && self.frontier > s.until,
        };
        if due {
            let from = self.start.max(self.frontier - secs(self.lookback_secs));
            self.lookback = Some(Sweep::new(from, self.frontier));
        }
        let mut out = Vec::new();
        while out.len() < n {
            let Some(s) = self.lookback.as_mut() else {
                break;
            };
            let width = self.dense.width_at(s.cursor, self.window_secs);
            let Some(window) = s.take(width) else { break };
            out.push(InFlight {
                window,
                kind: WindowKind::Lookback,
            });
        }
        out
    }

    fn plan_rescans(&mut self, n: usize) -> Vec<InFlight> {
        let k = self.rescans.len();
        let mut out = Vec::new();
        let mut idle = 0;
        while out.len() < n && idle < k {
            let tier = self.next_tier % k;
            self.next_tier = (tier + 1) % k;
            let next = match self.rescans.get_mut(tier).and_then(|c| c.pass.as_mut()) {
                Some(p) if p.running() => {
                    let width = self.dense.width_at(p.sweep.cursor, self.window_secs);
                    p.sweep.take(width)
                }
                _ => None,
            };
            match next {
                Some(window) => {
                    idle = 0;
                    out.push(InFlight {
                        window,
                        kind: WindowKind::Rescan { tier },
                    });
                }
                None => idle += 1,
            }
        }
        out
    }

    /// The window turned out too large: it is replaced by its halves, which come next, and every
    /// window handed out after it is taken back (drop their results; they come again after the
    /// halves). The range is remembered as dense, so re-reads of it start narrower.
    pub fn split(&mut self, w: &PlannedWindow) -> Result<(), PlanError> {
        let Some(pos) = self
            .outstanding
            .iter()
            .position(|o| o.seq == w.seq && o.window == w.window)
        else {
            return Err(self.not_outstanding(w));
        };
        let Some((a, b)) = w.window.split() else {
            return Err(PlanError::Unsplittable { window: w.window });
        };
        let taken: Vec<PlannedWindow> = self.outstanding.drain(pos..).collect();
        self.reads.retain(|seq, _| *seq < w.seq);
        if let WindowKind::Rescan { tier } = w.kind {
            // The first page that found the window too large.
            if let Some(cost) = self.pass_costs.get_mut(tier) {
                cost.requests += 1;
            }
        }
        let halves = [a, b].map(|window| InFlight {
            window,
            kind: w.kind,
        });
        for f in taken
            .iter()
            .skip(1)
            .rev()
            .map(to_in_flight)
            .chain(halves.into_iter().rev())
        {
            self.pending.push_front(f);
        }
        self.dense.record(w.window);
        metrics::counter!(names::WINDOWS_SPLIT_TOTAL, "kind" => w.kind.as_str()).increment(1);
        debug!(window = %w.window, kind = w.kind.as_str(), taken_back = taken.len() - 1, "Window split.");
        Ok(())
    }

    /// The checkpoint to commit in the same transaction as `w`'s result (and every outstanding
    /// window handed out before it). Call [`Planner::on_committed`] once the transaction commits,
    /// or [`Planner::rewind`] if it fails.
    pub fn checkpoint_after(&self, w: &PlannedWindow) -> Checkpoint {
        let remaining: Vec<InFlight> = self
            .outstanding
            .iter()
            .filter(|o| o.seq > w.seq)
            .map(to_in_flight)
            .chain(self.pending.iter().copied())
            .collect();
        let watermark = remaining
            .iter()
            .filter(|f| f.kind == WindowKind::Forward)
            .map(|f| f.window.since)
            .min()
            .unwrap_or(self.frontier);
        let mut rescans = self.rescans.clone();
        for (i, c) in rescans.iter_mut().enumerate() {
            if let Some(p) = c.pass.as_mut() {
                let open = remaining
                    .iter()
                    .any(|f| f.kind == WindowKind::Rescan { tier: i });
                if p.running() && p.sweep.handed_out() && !open {
                    p.completed_at = Some(w.planned_at.max(p.started_at));
                }
            }
        }
        let mut retries = self.retries.clone();
        for o in self.outstanding.iter().filter(|o| o.seq <= w.seq) {
            if let Some(read) = self.reads.get(&o.seq) {
                retry::after_read(&mut retries, o, read, self.retry_base_secs);
            }
        }
        Checkpoint {
            version: CHECKPOINT_VERSION,
            watermark,
            lookback: self.lookback,
            rescans,
            in_flight: remaining,
            retries,
        }
    }

    /// The checkpoint of everything committed so far (what a restart now would resume from).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            watermark: self.committed_watermark,
            lookback: self.lookback,
            rescans: self.rescans.clone(),
            in_flight: self
                .outstanding
                .iter()
                .map(to_in_flight)
                .chain(self.pending.iter().copied())
                .collect(),
            retries: self.retries.clone(),
        }
    }

    /// `w`'s transaction committed. Windows must be committed in hand-out order.
    pub fn on_committed(&mut self, w: &PlannedWindow) -> Result<(), PlanError> {
        let Some(front) = self.outstanding.front() else {
            return Err(self.not_outstanding(w));
        };
        if front.seq != w.seq || front.window != w.window {
            if self.outstanding.iter().any(|o| o.seq == w.seq) {
                return Err(PlanError::OutOfOrder {
                    window: w.window,
                    got: w.seq,
                    expected: front.seq,
                });
            }
            return Err(self.not_outstanding(w));
        }
        let cp = self.checkpoint_after(w);
        if cp.watermark < self.committed_watermark {
            return Err(PlanError::WatermarkBackwards {
                from: self.committed_watermark,
                to: cp.watermark,
                window: w.window,
            });
        }
        self.outstanding.pop_front();
        self.committed_watermark = cp.watermark;
        self.retries = cp.retries;
        if let Some(read) = self.reads.remove(&w.seq) {
            self.learn(w, &read);
        }
        for (i, (old, new)) in self.rescans.iter_mut().zip(cp.rescans).enumerate() {
            let was_running = old.pass.as_ref().is_some_and(|p| p.running());
            if was_running && new.pass.as_ref().is_some_and(|p| !p.running()) {
                let cost = self.pass_costs.get(i).copied().unwrap_or_default();
                cost.export(i);
                info!(
                    tier = i,
                    windows = cost.windows,
                    requests = cost.requests,
                    reread_requests = cost.reread_requests,
                    pages = cost.pages,
                    "Re-scan pass completed."
                );
                metrics::counter!(names::PLAN_RESCAN_PASSES_TOTAL, "tier" => i.to_string())
                    .increment(1);
            }
            *old = new;
        }
        Ok(())
    }

    pub(super) fn not_outstanding(&self, w: &PlannedWindow) -> PlanError {
        PlanError::NotOutstanding {
            window: w.window,
            seq: w.seq,
            kind: w.kind.as_str(),
        }
    }

    /// A transaction failed: everything handed out but not committed is taken back and handed
    /// out again, in the same order, by the next [`Planner::next_batch`].
    pub fn rewind(&mut self) {
        let taken = self.outstanding.len();
        self.reads.clear();
        while let Some(o) = self.outstanding.pop_back() {
            self.pending.push_front(to_in_flight(&o));
        }
        metrics::counter!(names::PLAN_REWINDS_TOTAL).increment(1);
        debug!(taken_back = taken, "Planner rewound to the last commit.");
    }

    /// End of the last committed forward window.
    pub fn watermark(&self) -> DateTime<Utc> {
        self.committed_watermark
    }

    /// True when the watermark is less than one forward window behind `now - settle_lag`: the
    /// backfill is over and forward reads are the small per-poll windows.
    pub fn caught_up(&self, now: DateTime<Utc>) -> bool {
        (whole(now) - self.settle - self.committed_watermark).num_seconds() < self.window_secs
    }

    /// Backfill progress: seconds from the start time to the watermark, out of seconds from
    /// the start time to `now - settle_lag`.
    pub fn backfill_progress(&self, now: DateTime<Utc>) -> (i64, i64) {
        let total = (whole(now) - self.settle - self.start).num_seconds().max(0);
        let done = (self.committed_watermark - self.start)
            .num_seconds()
            .clamp(0, total);
        (done, total)
    }

    /// Per tier, the committed share of its current pass (1.0 when no pass is running, 0.0
    /// before the first).
    pub fn rescan_progress(&self) -> Vec<f64> {
        self.rescans
            .iter()
            .enumerate()
            .map(|(i, c)| match &c.pass {
                None => 0.0,
                Some(p) if !p.running() || p.sweep.secs() == 0 => 1.0,
                Some(p) => {
                    let kind = WindowKind::Rescan { tier: i };
                    let done_until = self
                        .outstanding
                        .iter()
                        .map(to_in_flight)
                        .chain(self.pending.iter().copied())
                        .filter(|f| f.kind == kind)
                        .map(|f| f.window.since)
                        .min()
                        .unwrap_or(p.sweep.cursor);
                    let done = (done_until - p.sweep.from).num_seconds() as f64;
                    (done / p.sweep.secs() as f64).clamp(0.0, 1.0)
                }
            })
            .collect()
    }
}

/// Re-scan and retry windows: re-reads that share a batch's re-scan slots.
fn is_reread(k: WindowKind) -> bool {
    matches!(k, WindowKind::Rescan { .. } | WindowKind::Retry { .. })
}

fn to_in_flight(o: &PlannedWindow) -> InFlight {
    InFlight {
        window: o.window,
        kind: o.kind,
    }
}

#[path = "planner_reads.rs"]
mod reads;

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
