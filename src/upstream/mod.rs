//! The Tanma API: request signing, the HTTP client with retries and rate limit, and the window
//! reader that returns every relation of one `[since, before)` window.

pub mod sign;
pub mod wire;
