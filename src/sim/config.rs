//! Simulator configuration and its errors.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

use super::faults::FaultConfig;

/// Everything the simulator needs. `Default` gives demo values: 10,000 customers over the last
/// 30 days, live mutations on, no faults. For tests use [`SimConfig::for_tests`] (fixed time
/// span, no live mutations), which is deterministic.
#[derive(Clone)]
pub struct SimConfig {
    /// Seed of the dataset and of mutation choices: same seed + config → same dataset.
    pub seed: u64,
    /// Customers in the initial dataset (each with 1–3 follow relations).
    pub customers: u32,
    /// Staff members (`qwUserId` pool size).
    pub staff: u16,
    /// Initial add times are spread over `[start, end)`.
    pub start: DateTime<Utc>,
    /// See `start`.
    pub end: DateTime<Utc>,
    /// The accepted `appId`.
    pub app_id: String,
    /// The shared secret requests are signed with. Never logged.
    pub app_key: String,
    /// Time zone of `since`/`before`.
    pub time_zone: Tz,
    /// Largest accepted `pageSize`.
    pub max_page_size: u32,
    /// Largest accepted `|timestamp - now|`, seconds.
    pub max_clock_skew_secs: u64,
    /// Background mutation rates.
    pub mutations: MutationRates,
    /// Start with background mutations paused.
    pub start_paused: bool,
    /// Mutation log entries kept (oldest dropped first).
    pub mutation_log_capacity: usize,
    /// Fault rates (changeable at run time).
    pub faults: FaultConfig,
    /// Bulk imports: seconds that hold many relations at once.
    pub bulk: BulkImports,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("customers", &self.customers)
            .field("staff", &self.staff)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("app_id", &self.app_id)
            .field("app_key", &"[redacted]")
            .field("time_zone", &self.time_zone)
            .field("max_page_size", &self.max_page_size)
            .field("max_clock_skew_secs", &self.max_clock_skew_secs)
            .field("mutations", &self.mutations)
            .field("start_paused", &self.start_paused)
            .field("mutation_log_capacity", &self.mutation_log_capacity)
            .field("faults", &self.faults)
            .field("bulk", &self.bulk)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let end = Utc::now();
        let end = DateTime::from_timestamp(end.timestamp(), 0).unwrap_or(end);
        SimConfig {
            seed: 42,
            customers: 10_000,
            staff: 200,
            start: end - Duration::days(30),
            end,
            app_id: "sim-app".into(),
            app_key: "sim-secret".into(),
            time_zone: chrono_tz::Asia::Shanghai,
            max_page_size: 100,
            max_clock_skew_secs: 300,
            mutations: MutationRates::demo(),
            start_paused: false,
            mutation_log_capacity: 1_000_000,
            faults: FaultConfig::default(),
            bulk: BulkImports::NONE,
        }
    }
}

impl SimConfig {
    /// A deterministic configuration for tests: `customers` customers over the fixed span
    /// `[2024-01-01, 2024-01-31)` UTC, no live mutations, no faults.
    pub fn for_tests(seed: u64, customers: u32) -> SimConfig {
        let start = DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default();
        SimConfig {
            seed,
            customers,
            start,
            end: start + Duration::days(30),
            mutations: MutationRates::NONE,
            ..SimConfig::default()
        }
    }

    /// Checks the values; lists every problem.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut problems = Vec::new();
        if self.end <= self.start {
            problems.push("end must be after start".to_string());
        }
        if self.app_id.is_empty() {
            problems.push("app_id must not be empty".into());
        }
        if self.max_page_size == 0 {
            problems.push("max_page_size must be at least 1".into());
        }
        if self.staff < 3 {
            problems.push("staff must be at least 3".into());
        }
        problems.extend(self.mutations.problems());
        problems.extend(self.faults.problems());
        problems.extend(self.bulk.problems());
        let span = (self.end - self.start).num_seconds();
        if span > 0 && i64::from(self.bulk.seconds) > span {
            problems.push(format!(
                "bulk: {} seconds do not fit in the {span} seconds from start to end",
                self.bulk.seconds
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::InvalidConfig {
                problems: problems.join("; "),
            })
        }
    }
}

/// Background mutation rates, per second. Fractional rates accumulate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MutationRates {
    /// New relations with add time = now (for an existing or a new customer).
    pub new_per_sec: f64,
    /// Late relations: add time in the past, visible only from now on.
    pub late_per_sec: f64,
    /// Profile changes on existing relations.
    pub changed_per_sec: f64,
    /// Relations removed.
    pub removed_per_sec: f64,
    /// How far back a late relation's add time may lie, seconds; 0 = anywhere since `start`.
    pub late_lookback_secs: u64,
}

impl Default for MutationRates {
    fn default() -> Self {
        MutationRates::demo()
    }
}

impl MutationRates {
    /// No background mutations.
    pub const NONE: MutationRates = MutationRates {
        new_per_sec: 0.0,
        late_per_sec: 0.0,
        changed_per_sec: 0.0,
        removed_per_sec: 0.0,
        late_lookback_secs: 3600,
    };

    /// Demo rates: a lively but readable stream.
    pub fn demo() -> MutationRates {
        MutationRates {
            new_per_sec: 1.0,
            late_per_sec: 0.2,
            changed_per_sec: 2.0,
            removed_per_sec: 0.05,
            late_lookback_secs: 3600,
        }
    }

    fn problems(&self) -> Vec<String> {
        [
            ("new_per_sec", self.new_per_sec),
            ("late_per_sec", self.late_per_sec),
            ("changed_per_sec", self.changed_per_sec),
            ("removed_per_sec", self.removed_per_sec),
        ]
        .iter()
        .filter(|(_, v)| !(v.is_finite() && *v >= 0.0 && *v <= 100_000.0))
        .map(|(k, v)| format!("mutations.{k} must be within [0, 100000], got {v}"))
        .collect()
    }
}

/// Bulk imports: `seconds` add-time seconds, chosen from the seed within `[start, end)`, each
/// holding `rows` relations of new customers (a customer imported with two staff members has
/// both relations in that second). Rows sharing a second are what page-number paging with ties
/// gets wrong (see [`FaultConfig::unstable_order`]), and a second with more rows than the
/// connector's `windows.split_threshold` cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BulkImports {
    /// How many bulk seconds.
    pub seconds: u32,
    /// Relations in each bulk second.
    pub rows: u32,
}

impl Default for BulkImports {
    fn default() -> Self {
        BulkImports::NONE
    }
}

impl BulkImports {
    /// No bulk imports.
    pub const NONE: BulkImports = BulkImports {
        seconds: 0,
        rows: 0,
    };

    /// Largest `seconds × rows`.
    pub const MAX_RELATIONS: u64 = 10_000_000;

    fn problems(&self) -> Vec<String> {
        let total = u64::from(self.seconds) * u64::from(self.rows);
        if total > Self::MAX_RELATIONS {
            return vec![format!(
                "bulk: seconds × rows must be at most {}, got {} × {}",
                Self::MAX_RELATIONS,
                self.seconds,
                self.rows
            )];
        }
        if (self.seconds == 0) != (self.rows == 0) {
            return vec![format!(
                "bulk: seconds and rows must both be 0 or both be positive, got {} and {}",
                self.seconds, self.rows
            )];
        }
        Vec::new()
    }
}

/// Simulator errors.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is unusable.
    #[error("invalid simulator configuration: {problems}")]
    InvalidConfig {
        /// Every problem found, `; `-separated.
        problems: String,
    },
    /// The listen address could not be bound.
    #[error("simulator cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The dataset could not be built.
    #[error("simulator dataset generation failed: {reason}")]
    Generate {
        /// What happened.
        reason: String,
    },
}

impl Classify for SimError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Fatal
    }
}
