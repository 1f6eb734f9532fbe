//! The HTTP client of the list endpoint: signing, retries, the client-side rate limit, the
//! response size cap.
//!
//! # Retries
//! Every attempt is signed anew (fresh millisecond timestamp) over the same body bytes, which are
//! serialized once per [`ApiClient::list_page`] call. What happens to each answer:
//!
//! | answer | outcome label | what the client does |
//! | --- | --- | --- |
//! | `code 0` with data | `ok` | returns the page |
//! | timeout, transport error | `timeout`, `transport` | retry with backoff, up to `api.max_attempts` |
//! | HTTP 5xx, 429 | `http_5xx`, `http_429` | same, waiting at least `Retry-After` seconds |
//! | unknown non-zero code | `business_error` | same |
//! | malformed body (not JSON, wrong shape, `code 0` without data) | `malformed` | retry up to `api.malformed_attempts` |
//! | body over `api.max_response_bytes` | `malformed` | fatal: raise the limit or lower `api.page_size` |
//! | code 1003 | `clock_skew` | retry at once with a fresh timestamp, up to `api.clock_skew_attempts` times, then fatal |
//! | code 1002 | `signature` | fatal: check `api.app_id` and the app key |
//! | code in `api.fatal_codes` | `business_error` | fatal |
//! | other HTTP status (4xx, and 3xx: redirects are not followed) | `http_4xx` | fatal |
//!
//! A 1002 or 1003 is recognised whatever the HTTP status. `Retry-After` is read in seconds and
//! capped at 300 s. Backoff is exponential with full jitter, bounded by `api.backoff_max_ms`. Transient failures
//! that use up their attempts return [`ApiError::Exhausted`] (class `Retry`), so the pipeline can
//! back off and read the window again later.
//!
//! # Metrics
//! `tanma_api_requests_total{outcome}`, `tanma_api_request_duration_seconds`,
//! `tanma_api_retries_total{reason}`, `tanma_api_rate_limit_wait_seconds`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, error, warn};

use crate::backoff::Backoff;
use crate::config::ApiConfig;
use crate::ops::metrics::names;
use crate::upstream::api_error::{ApiError, RequestCtx};
use crate::upstream::outcome::{error_chain, interpret, read_capped, Attempt, Outcome, ReadError};
use crate::upstream::parse::{
    parse_relations, parse_response, ParseError, ParsedResponse, RelationPage,
};
use crate::upstream::sign::sign;
use crate::upstream::wire::{ListRequest, Page, LIST_BY_CREATE_TIME_PATH};

/// The Tanma API client. Cheap to clone; all clones share one connection pool and one rate
/// limiter.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    app_id: String,
    app_key: SecretString,
    /// `appId`, `Content-Type` and, if configured, `appKey` (marked sensitive). Header names go
    /// out in lowercase (HTTP header names are case-insensitive).
    base_headers: HeaderMap,
    time_zone: chrono_tz::Tz,
    timeout: Duration,
    max_response_bytes: usize,
    limiter: DefaultDirectRateLimiter,
    max_attempts: u32,
    malformed_attempts: u32,
    clock_skew_attempts: u32,
    backoff: Backoff,
    fatal_codes: Vec<i64>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("url", &self.inner.url)
            .field("app_id", &self.inner.app_id)
            .field("app_key", &"[redacted]")
            .field("time_zone", &self.inner.time_zone)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// Builds the client: HTTPS with rustls (plus `api.ca_file` if set), the request timeout,
    /// and the shared rate limiter.
    pub fn new(cfg: &ApiConfig) -> Result<ApiClient, ApiError> {
        let config = |key, problem: String| ApiError::Config { key, problem };
        let app_key = match &cfg.app_key {
            Some(k) if !k.expose_secret().is_empty() => k.clone(),
            _ => {
                return Err(config(
                    "api.app_key",
                    "required; set TANMA_API__APP_KEY or api.app_key_file".into(),
                ))
            }
        };
        let base = cfg.base_url.trim_end_matches('/');
        let url = format!("{base}{LIST_BY_CREATE_TIME_PATH}");
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| config("api.base_url", format!("{:?}: {e}", cfg.base_url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(config(
                "api.base_url",
                format!(
                    "must start with http:// or https://, got {:?}",
                    cfg.base_url
                ),
            ));
        }
        let time_zone: chrono_tz::Tz = cfg.time_zone.parse().map_err(|_| {
            config(
                "api.time_zone",
                format!("unknown IANA time zone {:?}", cfg.time_zone),
            )
        })?;
        if cfg.request_timeout_ms == 0 {
            return Err(config("api.request_timeout_ms", "must be > 0".into()));
        }
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tanma-connector/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                config(
                    "api.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config("api.ca_file", format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(config(
                    "api.ca_file",
                    format!("no PEM certificate in {}", path.display()),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| config("api", format!("cannot build the HTTP client: {e}")))?;
        let limiter = RateLimiter::direct(rate_quota(cfg)?);
        let mut base_headers = HeaderMap::new();
        base_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let app_id = HeaderValue::from_str(&cfg.app_id)
            .map_err(|_| config("api.app_id", "not a valid HTTP header value".into()))?;
        base_headers.insert("appid", app_id);
        if cfg.send_app_key_header {
            let mut v = HeaderValue::from_str(app_key.expose_secret()).map_err(|_| {
                config(
                    "api.app_key",
                    "not a valid HTTP header value (needed with api.send_app_key_header)".into(),
                )
            })?;
            v.set_sensitive(true);
            base_headers.insert("appkey", v);
        }
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                url,
                app_id: cfg.app_id.clone(),
                app_key,
                base_headers,
                time_zone,
                timeout,
                max_response_bytes: cfg.max_response_bytes,
                limiter,
                max_attempts: cfg.max_attempts.max(1),
                malformed_attempts: cfg.malformed_attempts.max(1),
                clock_skew_attempts: cfg.clock_skew_attempts,
                backoff: Backoff::from_millis(cfg.backoff_initial_ms, cfg.backoff_max_ms),
                fatal_codes: cfg.fatal_codes.clone(),
            }),
        })
    }

    /// The time zone `since` / `before` are written in.
    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.inner.time_zone
    }

    /// Fetches one page, retrying as described in the module documentation.
    pub async fn list_page(&self, req: &ListRequest) -> Result<Page, ApiError> {
        self.fetch(req, parse_response).await
    }

    /// [`ApiClient::list_page`], with the rows turned into relations as the body is parsed
    /// ([`parse_relations`]): what the window reader uses.
    pub async fn list_relations(&self, req: &ListRequest) -> Result<RelationPage, ApiError> {
        self.fetch(req, parse_relations).await
    }

    async fn fetch<P>(
        &self,
        req: &ListRequest,
        parse: fn(&[u8]) -> Result<ParsedResponse<P>, ParseError>,
    ) -> Result<P, ApiError> {
        let ctx = RequestCtx::from(req);
        let body = serde_json::to_vec(req).map_err(|e| ApiError::Encode {
            request: ctx.clone(),
            detail: e.to_string(),
        })?;
        let inner = &*self.inner;
        let (mut transient, mut malformed, mut skewed) = (0u32, 0u32, 0u32);
        let mut step = 0u32;
        loop {
            let waited = Instant::now();
            inner.limiter.until_ready().await;
            metrics::histogram!(names::API_RATE_LIMIT_WAIT_SECONDS).record(waited.elapsed());

            let started = Instant::now();
            let attempt = self.attempt(&body, &ctx, parse).await;
            let outcome = attempt.outcome();
            metrics::histogram!(names::API_REQUEST_DURATION_SECONDS).record(started.elapsed());
            metrics::counter!(names::API_REQUESTS_TOTAL, "outcome" => outcome.as_str())
                .increment(1);

            let delay = match attempt {
                Attempt::Page(page) => {
                    debug!(request = %ctx, attempts = transient + malformed + skewed + 1, "Page fetched.");
                    return Ok(page);
                }
                Attempt::Fatal(_, e) => {
                    error!(request = %ctx, outcome = outcome.as_str(), error = %e, "Tanma API request failed permanently.");
                    return Err(e);
                }
                Attempt::Transient {
                    detail,
                    retry_after,
                    ..
                } => {
                    transient += 1;
                    if transient >= inner.max_attempts {
                        return Err(ApiError::Exhausted {
                            attempts: transient,
                            reason: outcome.as_str(),
                            last: detail,
                            request: ctx,
                        });
                    }
                    let jitter = inner.backoff.delay(step);
                    step += 1;
                    warn!(request = %ctx, reason = outcome.as_str(), attempt = transient, detail = %detail, "Tanma API request failed; retrying.");
                    jitter.max(retry_after.unwrap_or_default())
                }
                Attempt::Malformed { detail, body } => {
                    malformed += 1;
                    if malformed >= inner.malformed_attempts {
                        return Err(ApiError::Malformed {
                            attempts: malformed,
                            detail,
                            body,
                            request: ctx,
                        });
                    }
                    let jitter = inner.backoff.delay(step);
                    step += 1;
                    warn!(request = %ctx, attempt = malformed, detail = %detail, body = %body, "Malformed Tanma API response; retrying.");
                    jitter
                }
                Attempt::ClockSkew { message, skew } => {
                    skewed += 1;
                    error!(request = %ctx, attempt = skewed, message = %message, skew = %skew, "Tanma API says the request time is too far from its clock (code 1003); check the local clock.");
                    if skewed > inner.clock_skew_attempts {
                        return Err(ApiError::ClockSkew {
                            attempts: skewed,
                            message,
                            skew,
                            request: ctx,
                        });
                    }
                    // A fresh timestamp is the fix; no backoff.
                    Duration::ZERO
                }
            };
            metrics::counter!(names::API_RETRIES_TOTAL, "reason" => outcome.as_str()).increment(1);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One signed HTTP attempt, classified.
    async fn attempt<P>(
        &self,
        body: &[u8],
        ctx: &RequestCtx,
        parse: fn(&[u8]) -> Result<ParsedResponse<P>, ParseError>,
    ) -> Attempt<P> {
        let inner = &*self.inner;
        let timestamp_ms = Utc::now().timestamp_millis();
        let signature = sign(
            &inner.app_id,
            &timestamp_ms.to_string(),
            body,
            &inner.app_key,
        );
        let mut headers = inner.base_headers.clone();
        headers.insert("timestamp", HeaderValue::from(timestamp_ms));
        match HeaderValue::from_str(&signature) {
            Ok(v) => headers.insert("sign", v),
            // Unreachable: a lowercase hex digest is always a valid header value.
            Err(_) => None,
        };
        let send = async {
            let resp = inner
                .http
                .post(&inner.url)
                .headers(headers)
                .body(body.to_vec())
                .send()
                .await
                .map_err(ReadError::Http)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = read_capped(resp, inner.max_response_bytes).await?;
            Ok::<_, ReadError>((status, headers, bytes))
        };
        match tokio::time::timeout(inner.timeout, send).await {
            Err(_) => Attempt::Transient {
                outcome: Outcome::Timeout,
                detail: format!("no complete response within {:?}", inner.timeout),
                retry_after: None,
            },
            Ok(Err(ReadError::TooLarge)) => Attempt::Fatal(
                Outcome::Malformed,
                ApiError::ResponseTooLarge {
                    limit: inner.max_response_bytes,
                    request: ctx.clone(),
                },
            ),
            Ok(Err(ReadError::Http(e))) => Attempt::Transient {
                outcome: if e.is_timeout() {
                    Outcome::Timeout
                } else {
                    Outcome::Transport
                },
                detail: error_chain(&e),
                retry_after: None,
            },
            Ok(Ok((status, headers, bytes))) => interpret(
                &inner.app_id,
                &inner.fatal_codes,
                (status, &headers, &bytes),
                ctx,
                parse,
            ),
        }
    }
}

/// The client-side rate limit: `rate_limit_per_sec` with bursts of `rate_limit_burst`.
fn rate_quota(cfg: &ApiConfig) -> Result<Quota, ApiError> {
    let rate = cfg.rate_limit_per_sec;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(ApiError::Config {
            key: "api.rate_limit_per_sec",
            problem: format!("must be > 0, got {rate}"),
        });
    }
    let period = Duration::from_secs_f64((1.0 / rate).min(86_400.0));
    let burst = NonZeroU32::new(cfg.rate_limit_burst).ok_or(ApiError::Config {
        key: "api.rate_limit_burst",
        problem: "must be >= 1".into(),
    })?;
    Quota::with_period(period)
        .map(|q| q.allow_burst(burst))
        .ok_or(ApiError::Config {
            key: "api.rate_limit_per_sec",
            problem: format!("too large: {rate}"),
        })
}
