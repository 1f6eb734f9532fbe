//! The planner's errors.

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::checkpoint::CheckpointError;
use super::window::Window;
use crate::error::{Classify, ErrorClass};

/// A misuse of the planner by its caller, or an unusable starting point.
#[derive(Debug, Error)]
pub enum PlanError {
    /// `windows.start_time` is not RFC 3339.
    #[error("windows.start_time {value:?} is not an RFC 3339 time")]
    StartTime {
        /// The configured value.
        value: String,
    },
    /// The checkpoint to resume from cannot be used.
    #[error("cannot resume from checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The window is not handed out and uncommitted (committed already, taken back, or unknown).
    #[error("window {window} (seq {seq}, {kind}) is not outstanding")]
    NotOutstanding {
        /// The window.
        window: Window,
        /// Its sequence number.
        seq: u64,
        /// Its kind.
        kind: &'static str,
    },
    /// Windows must be committed in hand-out order.
    #[error("window {window} (seq {got}) committed before seq {expected}; results must be applied in hand-out order")]
    OutOfOrder {
        /// The window committed.
        window: Window,
        /// Its sequence number.
        got: u64,
        /// The oldest outstanding sequence number.
        expected: u64,
    },
    /// A one-second window cannot be split; it must be read in full.
    #[error("window {window} is one second wide and cannot be split; read all its pages")]
    Unsplittable {
        /// The window.
        window: Window,
    },
    /// Committing would move the watermark backwards: a planner bug.
    #[error("watermark would move backwards from {from} to {to} committing {window}")]
    WatermarkBackwards {
        /// The committed watermark.
        from: DateTime<Utc>,
        /// The watermark the commit would record.
        to: DateTime<Utc>,
        /// The window being committed.
        window: Window,
    },
}

impl Classify for PlanError {
    fn class(&self) -> ErrorClass {
        match self {
            PlanError::Checkpoint(e) => e.class(),
            // Everything else is a bug or a misconfiguration: going on would risk gaps.
            _ => ErrorClass::Fatal,
        }
    }
}
