//! What the planner hands out: a window, why it is read, and its place in the apply order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::window::Window;

/// Why a window is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// First read of new add times, advancing the watermark.
    Forward,
    /// Re-read behind the watermark, for relations that appeared late.
    Lookback,
    /// Re-read of a re-scan tier's range (index into `windows.rescan`).
    Rescan {
        /// Index of the tier in the configuration.
        tier: usize,
    },
    /// Re-read of a window whose last read was incomplete (not every row seen).
    Retry {
        /// Incomplete reads of the window in a row before this one.
        attempt: u32,
    },
}

impl WindowKind {
    /// A short lowercase label, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Forward => "forward",
            WindowKind::Lookback => "lookback",
            WindowKind::Rescan { .. } => "rescan",
            WindowKind::Retry { .. } => "retry",
        }
    }
}

/// A window handed out by [`Planner::next_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedWindow {
    /// The add-time range to read.
    pub window: Window,
    /// Why it is read.
    pub kind: WindowKind,
    /// Hand-out order; results are applied in increasing `seq`.
    pub seq: u64,
    /// The `now` of the batch that handed it out.
    pub planned_at: DateTime<Utc>,
}

/// What reading a window came to, as far as the planner cares: whether the read was complete
/// (every row of the window seen; see `WindowRead::complete`) and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadSummary {
    /// `totalCount` the read ended with.
    pub total_count: u64,
    /// Every row of the window was seen.
    pub complete: bool,
    /// Page requests made.
    pub requests: u32,
    /// Of those, requests after the first pass (drift, unstable order).
    pub reread_requests: u32,
    /// Pages the rows fill: `ceil(total_count / page_size)` (0 when empty).
    pub pages: u32,
}
