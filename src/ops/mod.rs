//! Operations: metrics, health and readiness, logging, shutdown, progress.
//!
//! ```text
//!  pipeline ──metrics::counter!/histogram!/gauge!──▶ global recorder (metrics.rs)
//!     │                                                   │ render
//!     ├── Health::beat() / set_ready() ──▶ Health ──▶ ops HTTP server (http.rs)
//!     │                                              GET /metrics /health /ready
//!     ├── Progress::update(), record_commit() (progress.rs: backfill bar or caught-up status
//!     │   line on a terminal, log lines otherwise)
//!     └── CancellationToken from on_signals() (shutdown.rs), drain bounded by a grace period
//! ```
//!
//! Everything here is process-wide plumbing; none of it knows about Tanma or Kafka semantics.
//! [`metrics::describe_all`] is the single list of metric names the connector exposes.

pub mod error;
pub mod http;
pub mod logging;
pub mod metric_names;
pub mod metrics;
pub mod progress;
pub mod shutdown;
mod stats;

pub use error::OpsError;
pub use http::{serve, Health, OpsServer};
pub use progress::Progress;
pub use shutdown::{drain_within, on_signals};
