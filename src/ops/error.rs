//! Errors of the ops module.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Classify, ErrorClass};

/// What went wrong in metrics, the ops server, logging or shutdown handling.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The Prometheus recorder could not be built or installed (usually: another global
    /// `metrics` recorder was installed first).
    #[error("cannot install the Prometheus metrics recorder: {source}")]
    MetricsInstall {
        /// The exporter's error.
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
    /// Another global `metrics` recorder was installed first.
    #[error("cannot install the Prometheus metrics recorder: {reason}")]
    MetricsRecorderTaken {
        /// The `metrics` crate's message.
        reason: String,
    },
    /// The ops listener could not be bound.
    #[error("cannot bind the ops HTTP server (/metrics, /health, /ready) to {addr}: {source}")]
    Bind {
        /// The address asked for (`ops.listen`).
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The ops server failed while serving.
    #[error("ops HTTP server on {addr} stopped with an error: {source}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log filter (`ops.log_level` or `RUST_LOG`) does not parse.
    #[error("invalid log filter {filter:?} (from {origin}): {reason}")]
    LogFilter {
        /// The filter text.
        filter: String,
        /// Where it came from: `RUST_LOG` or `ops.log_level`.
        origin: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// `ops.log_format` is not one of `auto`, `json`, `text`.
    #[error("invalid log format {format:?} (ops.log_format): expected auto, json or text")]
    LogFormat {
        /// The rejected value.
        format: String,
    },
    /// A global tracing subscriber was already installed.
    #[error("cannot install the log subscriber: {reason}")]
    LogInit {
        /// Why.
        reason: String,
    },
    /// A Unix signal handler could not be registered.
    #[error("cannot listen for {signal}: {source}")]
    Signal {
        /// `SIGTERM` or `SIGINT`.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A librdkafka statistics document did not parse.
    #[error("cannot parse librdkafka statistics ({excerpt}): {source}")]
    Stats {
        /// The start of the document.
        excerpt: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A drain did not finish within its grace period.
    #[error("{what} did not finish within the shutdown grace period of {grace:?}")]
    DrainTimeout {
        /// What was being drained.
        what: String,
        /// The grace period (`ops.shutdown_grace_secs`).
        grace: Duration,
    },
}

impl Classify for OpsError {
    fn class(&self) -> ErrorClass {
        match self {
            OpsError::MetricsInstall { .. }
            | OpsError::MetricsRecorderTaken { .. }
            | OpsError::Bind { .. }
            | OpsError::Serve { .. }
            | OpsError::LogFilter { .. }
            | OpsError::LogFormat { .. }
            | OpsError::LogInit { .. }
            | OpsError::Signal { .. } => ErrorClass::Fatal,
            // Statistics are best effort: the next document may parse.
            OpsError::Stats { .. } => ErrorClass::Retry,
            // The unit of work in flight was not finished: it must be aborted and redone.
            OpsError::DrainTimeout { .. } => ErrorClass::Abort,
        }
    }
}
