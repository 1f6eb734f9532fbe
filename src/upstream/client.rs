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
//! | malformed body | `malformed` | retry up to `api.malformed_attempts` |
//! | code 1003 | `clock_skew` | retry at once with a fresh timestamp, up to `api.clock_skew_attempts` times, then fatal |
//! | code 1002 | `signature` | fatal: check `api.app_id` and the app key |
//! | code in `api.fatal_codes` | `business_error` | fatal |
//! | other HTTP status | `http_4xx` | fatal |
//!
//! Backoff is exponential with full jitter, bounded by `api.backoff_max_ms`. Transient failures
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
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, DATE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, error, warn};

use crate::config::ApiConfig;
use crate::error::excerpt;
use crate::upstream::api_error::{ApiError, RequestCtx};
use crate::upstream::parse::{parse_response, ParsedResponse};
use crate::upstream::retry::{describe_skew, parse_retry_after, Backoff};
use crate::upstream::sign::sign;
use crate::upstream::wire::{ListRequest, Page, LIST_BY_CREATE_TIME_PATH};

/// Business code: the signature check failed.
pub const CODE_BAD_SIGNATURE: i64 = 1002;
/// Business code: the request timestamp is too far from the server's clock.
pub const CODE_CLOCK_SKEW: i64 = 1003;
/// Longest quote of a response body in an error message or log line.
const BODY_EXCERPT: usize = 300;

/// The outcome of one HTTP attempt, as labelled in `tanma_api_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A page was returned.
    Ok,
    /// HTTP 5xx.
    Http5xx,
    /// HTTP 429.
    Http429,
    /// Another non-2xx HTTP status.
    Http4xx,
    /// The request did not complete within `api.request_timeout_ms`.
    Timeout,
    /// Connection or protocol error.
    Transport,
    /// The body was not valid JSON of the expected shape.
    Malformed,
    /// A non-zero business code other than 1002 / 1003.
    BusinessError,
    /// Code 1002.
    Signature,
    /// Code 1003.
    ClockSkew,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Http5xx => "http_5xx",
            Outcome::Http429 => "http_429",
            Outcome::Http4xx => "http_4xx",
            Outcome::Timeout => "timeout",
            Outcome::Transport => "transport",
            Outcome::Malformed => "malformed",
            Outcome::BusinessError => "business_error",
            Outcome::Signature => "signature",
            Outcome::ClockSkew => "clock_skew",
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Page(Page),
    Transient {
        outcome: Outcome,
        detail: String,
        retry_after: Option<Duration>,
    },
    Malformed {
        detail: String,
        body: String,
    },
    ClockSkew {
        message: String,
        skew: String,
    },
    Fatal(Outcome, ApiError),
}

impl Attempt {
    fn outcome(&self) -> Outcome {
        match self {
            Attempt::Page(_) => Outcome::Ok,
            Attempt::Transient { outcome, .. } | Attempt::Fatal(outcome, _) => *outcome,
            Attempt::Malformed { .. } => Outcome::Malformed,
            Attempt::ClockSkew { .. } => Outcome::ClockSkew,
        }
    }
}

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
                backoff: Backoff {
                    initial_ms: cfg.backoff_initial_ms,
                    max_ms: cfg.backoff_max_ms.max(cfg.backoff_initial_ms),
                },
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
            metrics::histogram!("tanma_api_rate_limit_wait_seconds").record(waited.elapsed());

            let started = Instant::now();
            let attempt = self.attempt(&body, &ctx).await;
            let outcome = attempt.outcome();
            metrics::histogram!("tanma_api_request_duration_seconds").record(started.elapsed());
            metrics::counter!("tanma_api_requests_total", "outcome" => outcome.as_str())
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
            metrics::counter!("tanma_api_retries_total", "reason" => outcome.as_str()).increment(1);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One signed HTTP attempt, classified.
    async fn attempt(&self, body: &[u8], ctx: &RequestCtx) -> Attempt {
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
            Ok(Ok((status, headers, bytes))) => self.interpret(status, &headers, &bytes, ctx),
        }
    }

    /// Classifies a complete HTTP answer.
    fn interpret(
        &self,
        status: reqwest::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        ctx: &RequestCtx,
    ) -> Attempt {
        let inner = &*self.inner;
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let quote = || excerpt(&String::from_utf8_lossy(body), BODY_EXCERPT);
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Transient {
                outcome: if status.is_server_error() {
                    Outcome::Http5xx
                } else {
                    Outcome::Http429
                },
                detail: format!("HTTP {status}; body: {}", quote()),
                retry_after: parse_retry_after(header(RETRY_AFTER)),
            };
        }
        let parsed = parse_response(body);
        // A 1002 / 1003 may come with a 4xx status as well as with 200.
        if let Ok(ParsedResponse::Business { code, message }) = &parsed {
            let message = message.clone().unwrap_or_default();
            if *code == CODE_BAD_SIGNATURE {
                return Attempt::Fatal(
                    Outcome::Signature,
                    ApiError::SignatureRejected {
                        code: *code,
                        message,
                        app_id: inner.app_id.clone(),
                        request: ctx.clone(),
                    },
                );
            }
            if *code == CODE_CLOCK_SKEW {
                return Attempt::ClockSkew {
                    message,
                    skew: describe_skew(header(DATE), Utc::now()),
                };
            }
        }
        if !status.is_success() {
            return Attempt::Fatal(
                Outcome::Http4xx,
                ApiError::HttpStatus {
                    status: status.as_u16(),
                    body: quote(),
                    request: ctx.clone(),
                },
            );
        }
        match parsed {
            Ok(ParsedResponse::Page(page)) => Attempt::Page(page),
            Ok(ParsedResponse::Business { code, message }) => {
                let message = message.unwrap_or_default();
                if inner.fatal_codes.contains(&code) {
                    Attempt::Fatal(
                        Outcome::BusinessError,
                        ApiError::FatalCode {
                            code,
                            message,
                            request: ctx.clone(),
                        },
                    )
                } else {
                    Attempt::Transient {
                        outcome: Outcome::BusinessError,
                        detail: format!("business code {code}: {}", excerpt(&message, 200)),
                        retry_after: None,
                    }
                }
            }
            Err(e) => Attempt::Malformed {
                detail: e.to_string(),
                body: quote(),
            },
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

enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

/// Reads the body chunk by chunk, stopping as soon as it passes `limit` bytes.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(ReadError::TooLarge);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// An error and its sources on one line (reqwest hides the useful part in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
