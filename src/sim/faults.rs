//! Fault injection: per-request probabilities, drawn independently, plus a token-bucket rate
//! limit answered with a business code, plus bad rows: a fixed share of the relations served
//! with a null `externalUserId`, a null `qwUserId` or a field with a null `id`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::upstream::wire::{Field, Row};

/// Fault rates. Probabilities are per API request in `[0, 1]`; all 0 by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Answer HTTP 500, 502 or 503 with an HTML body.
    pub http_5xx: f64,
    /// Delay the answer by `slow_ms`.
    pub slow: f64,
    /// The delay of a slow answer, ms (longer than a client timeout by default).
    pub slow_ms: u64,
    /// Answer HTTP 200 with a body that is not valid JSON (truncated JSON or an HTML page).
    pub malformed: f64,
    /// Answer the business code `error_code_value` with HTTP 200.
    pub error_code: f64,
    /// The business code of the `error_code` fault.
    pub error_code_value: i64,
    /// Its message.
    pub error_code_message: String,
    /// Before answering a page ≥ 2, insert a new late relation into the queried window.
    pub drift: f64,
    /// Order the rows that share an add time at random, a new order for every request that
    /// draws this fault, as SQL `ORDER BY addTime LIMIT/OFFSET` may with ties: page N of one
    /// request and page N+1 of the next overlap or leave gaps. Rows of different add times stay
    /// in add-time order.
    pub unstable_order: f64,
    /// Requests per second allowed before `rate_limit_code` is answered; 0 = no limit.
    pub rate_limit_qps: f64,
    /// Token-bucket size (burst); 0 = one second's worth (at least 1).
    pub rate_limit_burst: u32,
    /// Business code of a rate-limited request.
    pub rate_limit_code: i64,
    /// Share of relations, in `[0, 1]`, served as bad rows (see [`bad_row_kind`]). Which
    /// relations are bad depends only on their ids, so a bad row stays bad on every read.
    pub bad_row: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            http_5xx: 0.0,
            slow: 0.0,
            slow_ms: 15_000,
            malformed: 0.0,
            error_code: 0.0,
            error_code_value: 1500,
            error_code_message: "系统繁忙".into(),
            drift: 0.0,
            unstable_order: 0.0,
            rate_limit_qps: 0.0,
            rate_limit_burst: 0,
            rate_limit_code: 1006,
            bad_row: 0.0,
        }
    }
}

impl FaultConfig {
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            ("http5xx", self.http_5xx),
            ("slow", self.slow),
            ("malformed", self.malformed),
            ("errorCode", self.error_code),
            ("drift", self.drift),
            ("unstableOrder", self.unstable_order),
            ("badRow", self.bad_row),
        ]
        .iter()
        .filter(|(_, p)| !(0.0..=1.0).contains(p))
        .map(|(k, p)| format!("faults.{k} must be a probability in [0, 1], got {p}"))
        .collect();
        if !(self.rate_limit_qps.is_finite() && self.rate_limit_qps >= 0.0) {
            out.push(format!(
                "faults.rateLimitQps must be >= 0, got {}",
                self.rate_limit_qps
            ));
        }
        if self.error_code_value == 0 || self.rate_limit_code == 0 {
            out.push("faults.errorCodeValue and faults.rateLimitCode must be non-zero".into());
        }
        out
    }
}

/// How a bad row is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRowKind {
    /// `externalUserId` is null.
    NullExternalUserId,
    /// `qwUserId` is null.
    NullQwUserId,
    /// The first profile field has a null `id` (one is added if the row has none).
    NullFieldId,
}

/// Whether the relation `(external_user_id, qw_user_id)` is served as a bad row when the
/// `badRow` fault is `rate`, and how. Deterministic: the same relation is bad on every read.
pub fn bad_row_kind(rate: f64, external_user_id: &str, qw_user_id: &str) -> Option<BadRowKind> {
    if rate <= 0.0 {
        return None;
    }
    let mut key = Vec::with_capacity(external_user_id.len() + qw_user_id.len() + 8);
    key.extend_from_slice(b"bad-row\0");
    key.extend_from_slice(external_user_id.as_bytes());
    key.push(0);
    key.extend_from_slice(qw_user_id.as_bytes());
    let h = xxh3_64(&key);
    // Top 53 bits → uniform in [0, 1).
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u >= rate {
        return None;
    }
    Some(match h % 3 {
        0 => BadRowKind::NullExternalUserId,
        1 => BadRowKind::NullQwUserId,
        _ => BadRowKind::NullFieldId,
    })
}

/// Breaks `row` if [`bad_row_kind`] says so; returns whether it did.
pub(crate) fn corrupt_row(row: &mut Row, rate: f64) -> bool {
    let (Some(ext), Some(qw)) = (row.external_user_id.as_deref(), row.qw_user_id.as_deref()) else {
        return false;
    };
    let Some(kind) = bad_row_kind(rate, ext, qw) else {
        return false;
    };
    match kind {
        BadRowKind::NullExternalUserId => row.external_user_id = None,
        BadRowKind::NullQwUserId => row.qw_user_id = None,
        BadRowKind::NullFieldId => {
            let fields = row.fields.get_or_insert_with(Vec::new);
            match fields.first_mut() {
                Some(f) => f.id = None,
                None => fields.push(Field {
                    name: Some("broken".into()),
                    value: Some("x".into()),
                    ..Field::default()
                }),
            }
        }
    }
    true
}

/// How a malformed answer looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The real JSON answer cut in half.
    Truncated,
    /// An HTML error page with HTTP 200.
    Html,
}

/// The faults drawn for one request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Draw {
    pub status_5xx: Option<u16>,
    pub slow_ms: Option<u64>,
    pub malformed: Option<Malformed>,
    pub error_code: Option<i64>,
    pub drift: bool,
    pub unstable_seed: Option<u64>,
    /// The `badRow` rate in force for this request.
    pub bad_row: f64,
}

/// Fault state: the configuration, the draw generator and the token bucket.
pub(crate) struct Faults {
    cfg: FaultConfig,
    rng: ChaCha8Rng,
    tokens: f64,
    last: Instant,
}

impl Faults {
    pub(crate) fn new(cfg: FaultConfig, seed: u64) -> Faults {
        let mut f = Faults {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6661_756c_7473),
            tokens: 0.0,
            last: Instant::now(),
        };
        f.tokens = f.capacity();
        f
    }

    pub(crate) fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    /// Replaces the configuration and refills the bucket.
    pub(crate) fn set(&mut self, cfg: FaultConfig) {
        self.cfg = cfg;
        self.tokens = self.capacity();
        self.last = Instant::now();
    }

    fn capacity(&self) -> f64 {
        if self.cfg.rate_limit_burst > 0 {
            f64::from(self.cfg.rate_limit_burst)
        } else {
            self.cfg.rate_limit_qps.max(1.0)
        }
    }

    /// Takes a token; `Some(code)` when the request is over the limit.
    pub(crate) fn rate_limited(&mut self) -> Option<i64> {
        if self.cfg.rate_limit_qps <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.cfg.rate_limit_qps).min(self.capacity());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(self.cfg.rate_limit_code)
        }
    }

    /// Draws this request's faults.
    pub(crate) fn draw(&mut self) -> Draw {
        let cfg = &self.cfg;
        let rng = &mut self.rng;
        let mut hit = |p: f64| p > 0.0 && rng.random::<f64>() < p;
        let status_5xx = hit(cfg.http_5xx).then_some(());
        let slow = hit(cfg.slow);
        let malformed = hit(cfg.malformed);
        let error_code = hit(cfg.error_code);
        let drift = hit(cfg.drift);
        let unstable = hit(cfg.unstable_order);
        Draw {
            status_5xx: status_5xx.map(|()| [500, 502, 503][self.rng.random_range(0..3usize)]),
            slow_ms: slow.then_some(cfg.slow_ms),
            malformed: malformed.then(|| {
                if self.rng.random::<bool>() {
                    Malformed::Truncated
                } else {
                    Malformed::Html
                }
            }),
            error_code: error_code.then_some(cfg.error_code_value),
            drift,
            unstable_seed: unstable.then(|| self.rng.random()),
            bad_row: self.cfg.bad_row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_limits_a_burst() {
        let mut f = Faults::new(
            FaultConfig {
                rate_limit_qps: 2.0,
                rate_limit_burst: 3,
                ..FaultConfig::default()
            },
            1,
        );
        let limited = (0..10).filter(|_| f.rate_limited().is_some()).count();
        // 3 from the bucket, at most one refilled during the loop.
        assert!((6..=7).contains(&limited), "limited {limited}");
    }

    #[test]
    fn zero_rates_draw_nothing() {
        let mut f = Faults::new(FaultConfig::default(), 1);
        for _ in 0..1000 {
            let d = f.draw();
            assert!(d.status_5xx.is_none() && d.slow_ms.is_none() && d.malformed.is_none());
            assert!(d.error_code.is_none() && !d.drift && d.unstable_seed.is_none());
        }
        assert!(f.rate_limited().is_none());
    }

    #[test]
    fn bad_rows_are_a_stable_share_of_every_kind() {
        let rate = 0.1;
        let mut kinds = [0usize; 3];
        let n = 20_000;
        for i in 0..n {
            let (e, q) = (format!("wm{i}"), format!("staff{}", i % 7));
            let k = bad_row_kind(rate, &e, &q);
            assert_eq!(k, bad_row_kind(rate, &e, &q), "deterministic");
            match k {
                Some(BadRowKind::NullExternalUserId) => kinds[0] += 1,
                Some(BadRowKind::NullQwUserId) => kinds[1] += 1,
                Some(BadRowKind::NullFieldId) => kinds[2] += 1,
                None => {}
            }
        }
        let bad: usize = kinds.iter().sum();
        assert!((1600..2400).contains(&bad), "bad {bad} of {n}");
        assert!(kinds.iter().all(|k| *k > 400), "kinds {kinds:?}");
        assert_eq!(bad_row_kind(0.0, "a", "b"), None);
        assert!(bad_row_kind(1.0, "a", "b").is_some());
    }

    #[test]
    fn corrupted_rows_fail_relation_parsing_naming_the_field() {
        let mut broken = 0;
        for i in 0..200 {
            let mut row = Row {
                external_user_id: Some(format!("wm{i}")),
                qw_user_id: Some("staff".into()),
                ..Row::default()
            };
            if corrupt_row(&mut row, 0.5) {
                broken += 1;
                let e = crate::customer::Relation::from_row(&row, 0).unwrap_err();
                let text = e.to_string();
                assert!(
                    text.contains("externalUserId")
                        || text.contains("qwUserId")
                        || text.contains("fields[0].id"),
                    "{text}"
                );
            } else {
                assert!(crate::customer::Relation::from_row(&row, 0).is_ok());
            }
        }
        assert!(broken > 50, "broken {broken}");
    }
}
