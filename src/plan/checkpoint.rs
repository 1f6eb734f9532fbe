//! The checkpoint: everything the planner must remember across restarts. It is written as the
//! last record of every Kafka transaction, so it always describes exactly what that transaction
//! (and the ones before it) committed.
//!
//! JSON, with a `version` field read first: a checkpoint written by a newer connector is refused
//! ([`CheckpointError::UnsupportedVersion`], fatal) rather than misread. Version 2 added
//! `retries` (and the `retry` window kind); a version 1 checkpoint is read as one with no
//! retries queued. This build writes version 2.
//!
//! What it holds:
//! * `watermark`: the end of the last committed forward window (every add time before it has
//!   been read at least once);
//! * `lookback`: the latest lookback pass and how far it has been handed out;
//! * `rescans`: per re-scan tier, the current or last pass (its range, start time, cursor and,
//!   once every window of it is committed, its completion time);
//! * `in_flight`: windows the planner had already moved its cursors past but whose results were
//!   not in this transaction. On restart they are read first, in this order, and nothing else
//!   is read twice;
//! * `retries`: windows whose committed read was incomplete, with when to read them again.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::kind::WindowKind;
use super::retry::RetryWindow;
use super::window::Window;
use crate::error::{excerpt, Classify, ErrorClass};

/// The checkpoint format this build writes; it reads every version from 1 up to this one.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The oldest checkpoint format this build reads.
pub const OLDEST_CHECKPOINT_VERSION: u32 = 1;

/// The planner's durable progress, committed with every window's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version; see [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// End of the last committed forward window.
    pub watermark: DateTime<Utc>,
    /// The latest lookback pass (`until` is the watermark it looked back from), if any ran.
    pub lookback: Option<Sweep>,
    /// One cursor per configured re-scan tier, in configuration order.
    pub rescans: Vec<RescanCursor>,
    /// Planned but uncommitted windows, in the order they must be read again after a restart.
    pub in_flight: Vec<InFlight>,
    /// Windows whose committed read was incomplete, by due time (absent before version 2).
    #[serde(default)]
    pub retries: Vec<RetryWindow>,
}

/// A range swept window by window: `[from, until)`, handed out up to `cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub until: DateTime<Utc>,
    /// Next add time to hand out; `until` once every window of the range was handed out.
    pub cursor: DateTime<Utc>,
}

impl Sweep {
    /// A sweep of `[from, until)` with nothing handed out yet (empty when `until <= from`).
    pub fn new(from: DateTime<Utc>, until: DateTime<Utc>) -> Sweep {
        Sweep {
            from,
            until: until.max(from),
            cursor: from,
        }
    }

    /// True once every window of the range has been handed out.
    pub fn handed_out(&self) -> bool {
        self.cursor >= self.until
    }

    /// Hands out the next window of at most `width_secs` (at least one second), or `None` at the end.
    pub(crate) fn take(&mut self, width_secs: i64) -> Option<Window> {
        if self.handed_out() {
            return None;
        }
        let end = (self.cursor + chrono::TimeDelta::seconds(width_secs.max(1))).min(self.until);
        let w = Window::new(self.cursor, end);
        self.cursor = w.before;
        Some(w)
    }

    /// Width of the range in seconds.
    pub fn secs(&self) -> i64 {
        (self.until - self.from).num_seconds().max(0)
    }
}

/// One re-scan tier's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RescanCursor {
    /// The tier's `max_age_secs` when this cursor was written (a changed tier starts afresh).
    pub max_age_secs: u64,
    /// The tier's `every_secs` when this cursor was written.
    pub every_secs: u64,
    /// The current pass, or the last one if it completed; `None` before the first pass.
    pub pass: Option<RescanPass>,
}

/// One full re-read of a tier's range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RescanPass {
    /// When the pass started; the next pass is due `every_secs` after this.
    pub started_at: DateTime<Utc>,
    /// The range `[max(start, started_at - max_age), watermark at start)` and its cursor.
    pub sweep: Sweep,
    /// When the pass completed (all its windows committed); `None` while it runs. Recorded as
    /// the hand-out time of the window whose commit completed it.
    pub completed_at: Option<DateTime<Utc>>,
}

impl RescanPass {
    /// True until every window of the pass has been committed.
    pub fn running(&self) -> bool {
        self.completed_at.is_none()
    }
}

/// A window planned but not committed, with what it was planned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The window.
    pub window: Window,
    /// Why it is read.
    pub kind: WindowKind,
}

/// A checkpoint that cannot be used.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The bytes are not a checkpoint.
    #[error("checkpoint is not valid JSON of the expected shape: {source}; record: {excerpt}")]
    Malformed {
        /// The parse error.
        source: serde_json::Error,
        /// The start of the record.
        excerpt: String,
    },
    /// Written by a connector with a newer (or unknown) format.
    #[error("checkpoint version {found} is not supported by this build (it reads versions 1 to {supported}); upgrade the connector")]
    UnsupportedVersion {
        /// Version in the record.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Parsed, but its contents contradict each other.
    #[error("checkpoint is inconsistent: {what}")]
    Invalid {
        /// What is wrong, naming the field.
        what: String,
    },
}

impl Classify for CheckpointError {
    fn class(&self) -> ErrorClass {
        // A committed checkpoint does not change by reading it again.
        ErrorClass::Fatal
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl Checkpoint {
    /// Serialises to JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs of timestamps and integers to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a checkpoint; the version is checked before anything else.
    pub fn from_bytes(b: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let malformed = |source| CheckpointError::Malformed {
            source,
            excerpt: excerpt(&String::from_utf8_lossy(b), 200),
        };
        let v: VersionOnly = serde_json::from_slice(b).map_err(malformed)?;
        check_version(v.version)?;
        let cp: Checkpoint = serde_json::from_slice(b).map_err(malformed)?;
        cp.validate()?;
        Ok(cp)
    }

    /// Checks the version and that every range is well formed and every time is plausible
    /// (years 1970..=9999, whole seconds), so planning arithmetic cannot overflow.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_version(self.version)?;
        let invalid = |what: String| Err(CheckpointError::Invalid { what });
        let sane = |t: &DateTime<Utc>| {
            (1970..=9999).contains(&t.year()) && t.timestamp_subsec_nanos() == 0
        };
        let sweep_ok = |s: &Sweep| {
            sane(&s.from) && sane(&s.until) && s.from <= s.cursor && s.cursor <= s.until
        };
        if !sane(&self.watermark) {
            return invalid(format!("watermark {} out of range", self.watermark));
        }
        if let Some(s) = &self.lookback {
            if !sweep_ok(s) {
                return invalid(format!("lookback {s:?} is not from <= cursor <= until"));
            }
        }
        for (i, r) in self.rescans.iter().enumerate() {
            if let Some(p) = &r.pass {
                if !sweep_ok(&p.sweep) || !sane(&p.started_at) {
                    return invalid(format!("rescans[{i}].pass {p:?} is malformed"));
                }
            }
        }
        let window_ok = |w: &Window| sane(&w.since) && sane(&w.before) && w.since < w.before;
        for (i, f) in self.in_flight.iter().enumerate() {
            if !window_ok(&f.window) {
                let w = f.window;
                return invalid(format!(
                    "in_flight[{i}] window {w} is empty or out of range"
                ));
            }
        }
        for (i, r) in self.retries.iter().enumerate() {
            if !window_ok(&r.window) || !sane(&r.due) {
                return invalid(format!("retries[{i}] {r:?} is empty or out of range"));
            }
        }
        Ok(())
    }
}

fn check_version(found: u32) -> Result<(), CheckpointError> {
    if (OLDEST_CHECKPOINT_VERSION..=CHECKPOINT_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(CheckpointError::UnsupportedVersion {
            found,
            supported: CHECKPOINT_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            watermark: t(3600),
            lookback: Some(Sweep {
                from: t(0),
                until: t(3600),
                cursor: t(1800),
            }),
            rescans: vec![RescanCursor {
                max_age_secs: 86_400,
                every_secs: 3600,
                pass: Some(RescanPass {
                    started_at: t(4000),
                    sweep: Sweep::new(t(0), t(3600)),
                    completed_at: None,
                }),
            }],
            in_flight: vec![
                InFlight {
                    window: Window::new(t(3600), t(7200)),
                    kind: WindowKind::Forward,
                },
                InFlight {
                    window: Window::new(t(0), t(60)),
                    kind: WindowKind::Rescan { tier: 0 },
                },
                InFlight {
                    window: Window::new(t(70), t(71)),
                    kind: WindowKind::Retry { attempt: 2 },
                },
            ],
            retries: vec![RetryWindow {
                window: Window::new(t(100), t(101)),
                attempts: 1,
                due: t(4005),
            }],
        }
    }

    #[test]
    fn json_round_trip() {
        let cp = sample();
        let bytes = cp.to_bytes();
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), cp);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\"version\":2,"), "{text}");
        assert!(text.contains(r#""kind":{"retry":{"attempt":2}}"#), "{text}");
    }

    /// A checkpoint written by the previous format (version 1, no retries) still resumes.
    #[test]
    fn version_1_checkpoints_are_read_with_no_retries() {
        let v1 = r#"{"version":1,"watermark":"2023-11-14T22:13:20Z","lookback":null,
            "rescans":[{"max_age_secs":0,"every_secs":86400,"pass":null}],
            "in_flight":[{"window":{"since":"2023-11-14T22:13:20Z","before":"2023-11-14T23:13:20Z"},
            "kind":"forward"},{"window":{"since":"2023-11-14T20:00:00Z","before":"2023-11-14T21:00:00Z"},
            "kind":{"rescan":{"tier":0}}}]}"#;
        let cp = Checkpoint::from_bytes(v1.as_bytes()).unwrap();
        assert_eq!(cp.version, 1);
        assert_eq!(cp.watermark, t(0));
        assert_eq!(cp.in_flight.len(), 2);
        assert!(cp.retries.is_empty());
    }

    #[test]
    fn future_version_is_fatal_even_if_shape_changed() {
        let e = Checkpoint::from_bytes(br#"{"version":3,"something":"else"}"#).unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::UnsupportedVersion {
                found: 3,
                supported: 2
            }
        ));
        assert!(matches!(
            Checkpoint::from_bytes(br#"{"version":0}"#),
            Err(CheckpointError::UnsupportedVersion { found: 0, .. })
        ));
        assert_eq!(e.class(), ErrorClass::Fatal);
    }

    #[test]
    fn garbage_and_inconsistent_records_are_refused() {
        assert!(matches!(
            Checkpoint::from_bytes(b"not json"),
            Err(CheckpointError::Malformed { .. })
        ));
        assert!(matches!(
            Checkpoint::from_bytes(br#"{"version":1}"#),
            Err(CheckpointError::Malformed { .. })
        ));
        let mut cp = sample();
        cp.in_flight[0].window = Window::new(t(10), t(10));
        assert!(matches!(
            Checkpoint::from_bytes(&cp.to_bytes()),
            Err(CheckpointError::Invalid { .. })
        ));
        let mut cp = sample();
        cp.retries[0].window = Window::new(t(5), t(5));
        assert!(matches!(
            Checkpoint::from_bytes(&cp.to_bytes()),
            Err(CheckpointError::Invalid { .. })
        ));
        let mut cp = sample();
        if let Some(s) = cp.lookback.as_mut() {
            s.cursor = t(99_999);
        }
        assert!(matches!(
            Checkpoint::from_bytes(&cp.to_bytes()),
            Err(CheckpointError::Invalid { .. })
        ));
    }

    #[test]
    fn sweep_hands_out_the_range_in_order() {
        let mut s = Sweep::new(t(0), t(25));
        let mut got = vec![];
        while let Some(w) = s.take(10) {
            got.push((w.since, w.before));
        }
        assert_eq!(got, vec![(t(0), t(10)), (t(10), t(20)), (t(20), t(25))]);
        assert!(s.handed_out());
        assert!(Sweep::new(t(5), t(1)).take(10).is_none());
    }
}
