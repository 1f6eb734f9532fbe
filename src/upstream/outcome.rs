//! One HTTP attempt's answer, classified: the outcome label, and whether to return, retry or
//! stop. Kept apart from the client so the rules read as one table.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderValue, DATE, RETRY_AFTER};

use crate::error::excerpt;
use crate::upstream::api_error::{ApiError, RequestCtx};
use crate::upstream::parse::{ParseError, ParsedResponse};
use crate::upstream::retry::{describe_skew, parse_retry_after};

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

/// What one attempt came to; `P` is the parsed page.
pub(crate) enum Attempt<P> {
    Page(P),
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

impl<P> Attempt<P> {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Attempt::Page(_) => Outcome::Ok,
            Attempt::Transient { outcome, .. } | Attempt::Fatal(outcome, _) => *outcome,
            Attempt::Malformed { .. } => Outcome::Malformed,
            Attempt::ClockSkew { .. } => Outcome::ClockSkew,
        }
    }
}

/// Classifies a complete HTTP answer; `parse` reads the body.
pub(crate) fn interpret<P>(
    app_id: &str,
    fatal_codes: &[i64],
    (status, headers, body): (reqwest::StatusCode, &HeaderMap, &[u8]),
    ctx: &RequestCtx,
    parse: fn(&[u8]) -> Result<ParsedResponse<P>, ParseError>,
) -> Attempt<P> {
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
    let parsed = parse(body);
    // A 1002 / 1003 may come with a 4xx status as well as with 200.
    if let Ok(ParsedResponse::Business { code, message }) = &parsed {
        let message = message.clone().unwrap_or_default();
        if *code == CODE_BAD_SIGNATURE {
            return Attempt::Fatal(
                Outcome::Signature,
                ApiError::SignatureRejected {
                    code: *code,
                    message,
                    app_id: app_id.to_string(),
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
            if fatal_codes.contains(&code) {
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

/// Why a body could not be read.
pub(crate) enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

/// Reads the body chunk by chunk, stopping as soon as it passes `limit` bytes.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
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
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
