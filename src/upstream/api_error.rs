//! Errors of the Tanma API client and window reader, each classified for the main loop.
//!
//! No variant carries the app key: messages name the key's *setting*, never its value.

use crate::error::{Classify, ErrorClass};
use crate::upstream::wire::ListRequest;

/// Which request an error is about: the window as sent on the wire and the page number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCtx {
    /// `since` as sent (inclusive).
    pub since: String,
    /// `before` as sent (exclusive).
    pub before: String,
    /// 1-based page number.
    pub page_no: u32,
}

impl From<&ListRequest> for RequestCtx {
    fn from(r: &ListRequest) -> Self {
        RequestCtx {
            since: r.since.clone(),
            before: r.before.clone(),
            page_no: r.page_no,
        }
    }
}

impl std::fmt::Display for RequestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "page {} of window [{}, {})",
            self.page_no, self.since, self.before
        )
    }
}

/// An error of the Tanma API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client cannot be built from its configuration.
    #[error("api client configuration: {key}: {problem}")]
    Config {
        /// The configuration key at fault, e.g. `api.ca_file`.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The request body could not be serialized.
    #[error("cannot serialize the request for {request}: {detail}")]
    Encode {
        /// The request.
        request: RequestCtx,
        /// The serializer's message.
        detail: String,
    },
    /// Code 1002: the server rejected the signature. A configuration error; retrying cannot help.
    #[error(
        "the Tanma API rejected the request signature (code {code}, message {message:?}) for {request}: \
         check api.app_id (currently {app_id:?}) and the app key (TANMA_API__APP_KEY or api.app_key_file)"
    )]
    SignatureRejected {
        /// The business code (1002).
        code: i64,
        /// The server's message.
        message: String,
        /// The configured app id (not secret).
        app_id: String,
        /// The request.
        request: RequestCtx,
    },
    /// Code 1003 kept coming back with fresh timestamps: the local clock is wrong.
    #[error(
        "the Tanma API rejected the request time {attempts} times (code 1003, message {message:?}) for {request}: \
         the local clock is off{skew}; fix the system clock (e.g. NTP)"
    )]
    ClockSkew {
        /// Requests answered with 1003.
        attempts: u32,
        /// The server's last message.
        message: String,
        /// How far off the clock is, when the response told (e.g. " by about 312 s (local clock
        /// behind the server's Date header)"), else empty.
        skew: String,
        /// The request.
        request: RequestCtx,
    },
    /// An HTTP status that retrying cannot fix (4xx other than 429, or an unexpected status).
    #[error("HTTP {status} from the Tanma API for {request}; body: {body}")]
    HttpStatus {
        /// The HTTP status code.
        status: u16,
        /// A short excerpt of the body.
        body: String,
        /// The request.
        request: RequestCtx,
    },
    /// A business code listed in `api.fatal_codes`.
    #[error(
        "the Tanma API returned code {code} (message {message:?}) for {request}; it is listed in api.fatal_codes"
    )]
    FatalCode {
        /// The business code.
        code: i64,
        /// The server's message.
        message: String,
        /// The request.
        request: RequestCtx,
    },
    /// The response body was larger than `api.max_response_bytes`.
    #[error(
        "the response for {request} exceeds api.max_response_bytes ({limit} bytes); \
         raise api.max_response_bytes or lower api.page_size"
    )]
    ResponseTooLarge {
        /// The configured limit.
        limit: usize,
        /// The request.
        request: RequestCtx,
    },
    /// The body stayed malformed (not JSON, wrong shape, `code 0` without data) for every attempt.
    #[error("malformed response for {request} after {attempts} attempts: {detail}; body: {body}")]
    Malformed {
        /// Attempts made.
        attempts: u32,
        /// What was wrong.
        detail: String,
        /// A short excerpt of the last body.
        body: String,
        /// The request.
        request: RequestCtx,
    },
    /// Transient failures (timeouts, transport errors, 5xx, 429, unknown business codes) used up
    /// `api.max_attempts`. Still [`ErrorClass::Retry`]: the window can be retried later.
    #[error("{request} failed after {attempts} attempts; last failure ({reason}): {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure's kind, as in `tanma_api_requests_total{outcome}`.
        reason: &'static str,
        /// The last failure's description.
        last: String,
        /// The request.
        request: RequestCtx,
    },
}

impl Classify for ApiError {
    fn class(&self) -> ErrorClass {
        match self {
            ApiError::Malformed { .. } | ApiError::Exhausted { .. } => ErrorClass::Retry,
            ApiError::Config { .. }
            | ApiError::Encode { .. }
            | ApiError::SignatureRejected { .. }
            | ApiError::ClockSkew { .. }
            | ApiError::HttpStatus { .. }
            | ApiError::FatalCode { .. }
            | ApiError::ResponseTooLarge { .. } => ErrorClass::Fatal,
        }
    }
}
