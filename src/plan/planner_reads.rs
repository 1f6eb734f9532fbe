//! What the planner learns from each read: [`Planner::record_read`] before the checkpoint is
//! taken, and, once committed, dense seconds, incomplete reads (queued for a retry by the
//! checkpoint, counted and logged here) and the cost of re-scan passes.

use tracing::{debug, info, warn};

use super::{PlanError, PlannedWindow, Planner, ReadSummary, WindowKind};
use crate::ops::metrics::names;

impl Planner {
    /// How the read of the outstanding window `w` went; call it for every window before the
    /// checkpoint of its transaction is taken ([`Planner::checkpoint_after`]), so that an
    /// incomplete read is queued for a retry in the same transaction. A window committed without
    /// it counts as complete.
    pub fn record_read(&mut self, w: &PlannedWindow, read: ReadSummary) -> Result<(), PlanError> {
        if !self
            .outstanding
            .iter()
            .any(|o| o.seq == w.seq && o.window == w.window)
        {
            return Err(self.not_outstanding(w));
        }
        self.reads.insert(w.seq, read);
        Ok(())
    }

    /// What the committed read of `w` teaches: a dense second, an incomplete read (counted, and
    /// logged the first time), the cost of a re-scan pass.
    pub(super) fn learn(&mut self, w: &PlannedWindow, read: &ReadSummary) {
        if w.window.secs() == 1 && read.total_count > self.split_threshold {
            self.dense.record_second(w.window);
        }
        if let WindowKind::Rescan { tier } = w.kind {
            if let Some(cost) = self.pass_costs.get_mut(tier) {
                cost.windows += 1;
                cost.requests += u64::from(read.requests);
                cost.reread_requests += u64::from(read.reread_requests);
                cost.pages += u64::from(read.pages);
            }
        }
        let queued = self.retries.iter().find(|r| r.window == w.window);
        metrics::gauge!(names::PLAN_RETRY_WINDOWS).set(self.retries.len() as f64);
        if read.complete {
            if let WindowKind::Retry { attempt } = w.kind {
                info!(window = %w.window, incomplete_reads = attempt, total_count = read.total_count,
                    "Window read complete again.");
            }
            return;
        }
        metrics::counter!(names::PLAN_INCOMPLETE_WINDOWS_TOTAL, "kind" => w.kind.as_str())
            .increment(1);
        match queued {
            Some(r) if r.attempts == 1 => {
                warn!(window = %w.window, kind = w.kind.as_str(), total_count = read.total_count,
                    requests = read.requests, due = %r.due,
                    "Window read incomplete (its pages kept disagreeing): not every row was seen; reading it again soon (logged once per window).");
            }
            Some(_) => {}
            None => {
                debug!(window = %w.window, "Window read incomplete and the retry queue is full; its next re-scan reads it again.");
            }
        }
    }
}

#[cfg(test)]
#[path = "planner_reads_tests.rs"]
mod tests;
