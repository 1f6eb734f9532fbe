//! Shutdown: one cancellation token for the whole process, cancelled by SIGTERM or SIGINT, and
//! a bounded drain.
//!
//! The first signal cancels the token: the pipeline finishes (or aborts) its open transaction
//! and stops, within `ops.shutdown_grace_secs` (see [`drain_within`]). A second signal exits at
//! once with status 130: an operator pressing Ctrl-C twice means it. Nothing is lost by that: an
//! unfinished transaction is aborted by the broker and redone from the checkpoint.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::OpsError;

/// Registers SIGTERM and SIGINT handlers and returns a token cancelled by the first of them.
///
/// Must be called inside a Tokio runtime. The handlers are registered before this returns, so a
/// signal sent right after is not missed.
pub fn on_signals() -> Result<CancellationToken, OpsError> {
    let mut term = signal(SignalKind::terminate()).map_err(|source| OpsError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| OpsError::Signal {
        signal: "SIGINT",
        source,
    })?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut received = 0u32;
        loop {
            let name = tokio::select! {
                s = term.recv() => if s.is_some() { "SIGTERM" } else { break },
                s = int.recv() => if s.is_some() { "SIGINT" } else { break },
            };
            received += 1;
            if received == 1 {
                tracing::info!(signal = name, "Shutdown requested; draining.");
                cancel.cancel();
            } else {
                tracing::warn!(signal = name, "Second shutdown signal; exiting now.");
                std::process::exit(130);
            }
        }
    });
    Ok(token)
}

/// Runs `fut` (the drain: finish or abort the open transaction, flush) for at most `grace`.
///
/// Returns its output, or [`OpsError::DrainTimeout`] naming `what` when the grace period ran out
/// (the future is dropped; the caller should exit non-zero).
pub async fn drain_within<F: Future>(
    grace: Duration,
    what: &str,
    fut: F,
) -> Result<F::Output, OpsError> {
    match tokio::time::timeout(grace, fut).await {
        Ok(out) => Ok(out),
        Err(_) => {
            tracing::error!(what, grace_secs = grace.as_secs_f64(), "Drain timed out.");
            Err(OpsError::DrainTimeout {
                what: what.to_string(),
                grace,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_returns_output_in_time() {
        let out = drain_within(Duration::from_secs(5), "noop", async { 7 }).await;
        assert_eq!(out.ok(), Some(7));
    }

    #[tokio::test]
    async fn drain_times_out() {
        let out = drain_within(
            Duration::from_millis(50),
            "transaction",
            std::future::pending::<()>(),
        )
        .await;
        match out {
            Err(OpsError::DrainTimeout { what, grace }) => {
                assert_eq!(what, "transaction");
                assert_eq!(grace, Duration::from_millis(50));
            }
            other => panic!("expected a drain timeout, got {other:?}"),
        }
    }
}
