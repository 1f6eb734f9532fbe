//! The Tanma API: request signing, the HTTP client with retries and rate limit, and the window
//! reader that returns every relation of one `[since, before)` window.

pub mod api_error;
pub mod client;
pub mod outcome;
pub mod parse;
pub mod relation;
mod retry;
mod seen;
pub mod sign;
pub mod timefmt;
pub mod window_reader;
pub mod wire;

pub use api_error::{ApiError, RequestCtx};
pub use client::ApiClient;
pub use outcome::Outcome;
pub use parse::{
    parse_relations, parse_response, ParseError, ParsedResponse, RelationPage, RowResult,
};
pub use window_reader::{RejectedRow, WindowOutcome, WindowRead, WindowReader};
