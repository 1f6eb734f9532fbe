//! A time window `[since, before)` over the relations' add time, in whole seconds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A half-open window `[since, before)` of add times, whole seconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive start.
    pub since: DateTime<Utc>,
    /// Exclusive end.
    pub before: DateTime<Utc>,
}

impl Window {
    /// A window; both ends are truncated to whole seconds.
    pub fn new(since: DateTime<Utc>, before: DateTime<Utc>) -> Self {
        let trunc = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
        Window {
            since: trunc(since),
            before: trunc(before),
        }
    }

    /// Width in whole seconds (0 for an empty or inverted window).
    pub fn secs(&self) -> i64 {
        (self.before - self.since).num_seconds().max(0)
    }

    /// Splits the window in two halves at a whole second; `None` when it is one second or less.
    pub fn split(&self) -> Option<(Window, Window)> {
        let secs = self.secs();
        if secs <= 1 {
            return None;
        }
        let mid = self.since + chrono::Duration::seconds(secs / 2);
        Some((Window::new(self.since, mid), Window::new(mid, self.before)))
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.since.format("%Y-%m-%dT%H:%M:%SZ"),
            self.before.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_halves_down_to_one_second() {
        let s = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let w = Window::new(s, s + chrono::Duration::seconds(3));
        let (a, b) = w.split().unwrap();
        assert_eq!((a.secs(), b.secs()), (1, 2));
        assert_eq!(a.before, b.since);
        assert!(a.split().is_none());
    }
}
