//! State shared by the HTTP handlers, the mutation task and [`super::SimControl`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::content::Renderer;
use super::faults::Faults;
use super::mutations::World;
use super::MutationRates;

/// How one API request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    BadSignature,
    ClockSkew,
    BadParam,
    RateLimited,
    ErrorCode,
    Http5xx,
    Malformed,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::BadSignature,
        Outcome::ClockSkew,
        Outcome::BadParam,
        Outcome::RateLimited,
        Outcome::ErrorCode,
        Outcome::Http5xx,
        Outcome::Malformed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadSignature => "bad_signature",
            Outcome::ClockSkew => "clock_skew",
            Outcome::BadParam => "bad_param",
            Outcome::RateLimited => "rate_limited",
            Outcome::ErrorCode => "error_code",
            Outcome::Http5xx => "http_5xx",
            Outcome::Malformed => "malformed",
        }
    }

    fn slot(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Request counters.
#[derive(Default)]
pub(crate) struct Counters {
    by_outcome: [AtomicU64; 8],
    pub(crate) slow: AtomicU64,
    pub(crate) unstable: AtomicU64,
    pub(crate) drift: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) bad_rows: AtomicU64,
}

impl Counters {
    pub(crate) fn count(&self, o: Outcome) {
        if let Some(c) = self.by_outcome.get(o.slot()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!(crate::ops::metrics::names::SIM_REQUESTS_TOTAL, "outcome" => o.as_str())
            .increment(1);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn by_outcome(&self) -> BTreeMap<String, u64> {
        Outcome::ALL
            .iter()
            .map(|o| {
                let n = self
                    .by_outcome
                    .get(o.slot())
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                (o.as_str().to_string(), n)
            })
            .collect()
    }
}

/// What `GET /_sim/stats` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimStats {
    /// API requests by outcome: `ok`, `bad_signature`, `clock_skew`, `bad_param`,
    /// `rate_limited`, `error_code`, `http_5xx`, `malformed`.
    pub requests: BTreeMap<String, u64>,
    /// Requests delayed by the slow fault.
    pub slow_requests: u64,
    /// Requests served in shuffled order.
    pub unstable_orders: u64,
    /// Late relations inserted by the drift fault.
    pub drift_inserts: u64,
    /// Rows served in successful pages.
    pub rows_served: u64,
    /// Of those, rows broken by the `badRow` fault.
    #[serde(default)]
    pub bad_rows_served: u64,
    /// Visible relations now.
    pub relations: u64,
    /// Relations ever created, removed ones included.
    pub relations_total: u64,
    /// Customers ever created.
    pub customers: u64,
    /// Sequence number of the last mutation (0 if none).
    pub last_mutation_seq: u64,
    /// Whether background mutations are paused.
    pub paused: bool,
}

/// Settings of the API endpoint.
pub(crate) struct ApiSettings {
    pub app_id: String,
    pub app_key: secrecy::SecretString,
    pub time_zone: Tz,
    pub max_page_size: u32,
    pub max_clock_skew_secs: u64,
}

/// Everything shared.
pub(crate) struct Shared {
    pub world: RwLock<World>,
    pub renderer: Renderer,
    pub faults: Mutex<Faults>,
    pub api: ApiSettings,
    pub rates: MutationRates,
    pub paused: AtomicBool,
    pub counters: Counters,
    pub cancel: CancellationToken,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> SimStats {
        let (relations, relations_total, customers, next) = {
            let w = self.read();
            (
                w.data.visible() as u64,
                w.data.relations_total() as u64,
                w.data.customers() as u64,
                w.next_seq(),
            )
        };
        let c = &self.counters;
        SimStats {
            requests: c.by_outcome(),
            slow_requests: c.slow.load(Ordering::Relaxed),
            unstable_orders: c.unstable.load(Ordering::Relaxed),
            drift_inserts: c.drift.load(Ordering::Relaxed),
            rows_served: c.rows.load(Ordering::Relaxed),
            bad_rows_served: c.bad_rows.load(Ordering::Relaxed),
            relations,
            relations_total,
            customers,
            last_mutation_seq: next.saturating_sub(1),
            paused: self.paused.load(Ordering::Relaxed),
        }
    }
}
