//! Log setup: `tracing` to stderr, JSON for machines, human text on a terminal; log lines are
//! written above the backfill progress bar, not over it ([`super::progress::LogWriter`]).

use std::io::IsTerminal;

use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use super::OpsError;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    Auto,
    /// One JSON object per line (fields flattened, with the current span).
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// Parses `auto`, `json` or `text` (`ops.log_format`).
    pub fn parse(s: &str) -> Result<LogFormat, OpsError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err(OpsError::LogFormat {
                format: s.to_string(),
            }),
        }
    }

    /// `Auto` decided: `Json` or `Text`, given whether stderr is a terminal.
    pub fn resolve(self, stderr_is_terminal: bool) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_terminal => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// Builds the filter: `RUST_LOG` when set and non-empty wins over `level` (`ops.log_level`, same
/// syntax, e.g. `info,rdkafka=warn`).
pub fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, OpsError> {
    let (text, origin) = match rust_log {
        Some(v) if !v.trim().is_empty() => (v, "RUST_LOG"),
        _ => (level, "ops.log_level"),
    };
    EnvFilter::builder()
        .parse(text)
        .map_err(|e| OpsError::LogFilter {
            filter: text.to_string(),
            origin,
            reason: e.to_string(),
        })
}

/// Installs the global log subscriber writing to stderr. `format` is `auto`, `json` or `text`.
///
/// Also routes `log` records (librdkafka's, through rdkafka) into `tracing`. Fails if a
/// subscriber is already installed; call it once, first thing in `main`.
pub fn init(level: &str, format: &str) -> Result<(), OpsError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(level, rust_log.as_deref())?;
    let terminal = std::io::stderr().is_terminal();
    let format = LogFormat::parse(format)?.resolve(terminal);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(|| super::progress::LogWriter),
            )
            .try_init(),
        LogFormat::Text | LogFormat::Auto => registry
            .with(
                fmt::layer()
                    .with_ansi(terminal)
                    .with_writer(|| super::progress::LogWriter),
            )
            .try_init(),
    };
    result.map_err(|e| OpsError::LogInit {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parses_and_resolves() {
        assert_eq!(
            LogFormat::parse("auto").map(|f| f.resolve(true)).ok(),
            Some(LogFormat::Text)
        );
        assert_eq!(
            LogFormat::parse("auto").map(|f| f.resolve(false)).ok(),
            Some(LogFormat::Json)
        );
        assert_eq!(
            LogFormat::parse("JSON").map(|f| f.resolve(true)).ok(),
            Some(LogFormat::Json)
        );
        assert!(matches!(
            LogFormat::parse("yaml"),
            Err(OpsError::LogFormat { .. })
        ));
    }

    #[test]
    fn rust_log_wins_over_level() {
        let f = filter("info", Some("debug,rdkafka=warn")).map(|f| f.to_string());
        assert_eq!(f.ok().as_deref(), Some("rdkafka=warn,debug"));
        let f = filter("info,rdkafka=error", None).map(|f| f.to_string());
        assert_eq!(f.ok().as_deref(), Some("rdkafka=error,info"));
        let f = filter("warn", Some("  ")).map(|f| f.to_string());
        assert_eq!(f.ok().as_deref(), Some("warn"));
        let e = filter("info", Some("x=notalevel")).err();
        assert!(matches!(
            e,
            Some(OpsError::LogFilter {
                origin: "RUST_LOG",
                ..
            })
        ));
    }
}
