//! Fault injection: per-request probabilities, drawn independently, plus a token-bucket rate
//! limit answered with a business code.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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
    /// Serve the window's rows in a per-request shuffled order.
    pub unstable_order: f64,
    /// Requests per second allowed before `rate_limit_code` is answered; 0 = no limit.
    pub rate_limit_qps: f64,
    /// Token-bucket size (burst); 0 = one second's worth (at least 1).
    pub rate_limit_burst: u32,
    /// Business code of a rate-limited request.
    pub rate_limit_code: i64,
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
}
