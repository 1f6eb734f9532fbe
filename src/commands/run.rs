//! `tanma-connector run`: the connector, with its ops server, until SIGTERM/SIGINT.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::ops::{self, Health};
use crate::pipeline::{startup, Exit, RunOptions};

use super::{exit_code, exit_code_for};

/// Runs the connector until `shutdown` is cancelled; returns the process exit code.
///
/// On shutdown the open transaction is finished (or, past `ops.shutdown_grace_secs`, abandoned:
/// the broker aborts it and the next start re-reads those windows), then it returns 0.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> i32 {
    let handle = match ops::metrics::install() {
        Ok(h) => h,
        Err(e) => {
            error!(error = %e, "Cannot install the metrics recorder.");
            return exit_code::INTERNAL;
        }
    };
    let health = Health::new(Duration::from_secs(cfg.ops.liveness_timeout_secs))
        .with_failure_deadline(Duration::from_secs(cfg.ops.commit_failure_timeout_secs));
    if !cfg.ops.listen.is_empty() {
        match cfg.ops.listen.parse() {
            Ok(addr) => {
                if let Err(e) =
                    ops::http::serve(addr, handle, health.clone(), shutdown.clone()).await
                {
                    error!(error = %e, listen = %cfg.ops.listen, "Cannot start the ops server.");
                    return exit_code::INTERNAL;
                }
            }
            Err(_) => return exit_code::CONFIG,
        }
    }
    let grace = Duration::from_secs(cfg.ops.shutdown_grace_secs);
    let work = async {
        let connector = startup::build(cfg, health.clone()).await?;
        connector.run(shutdown.clone(), RunOptions::default()).await
    };
    tokio::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        _ = shutdown.cancelled() => {
            info!(grace_secs = grace.as_secs(), "Shutdown requested; finishing the open transaction.");
            match tokio::time::timeout(grace, &mut work).await {
                Ok(r) => r,
                Err(_) => {
                    warn!("Grace period over; exiting with the transaction open (the broker aborts it; its windows are re-read on the next start).");
                    return exit_code::OK;
                }
            }
        }
    };
    match result {
        Ok(Exit::Shutdown) | Ok(Exit::CaughtUp) => {
            info!("Stopped cleanly.");
            exit_code::OK
        }
        Err(e) => {
            error!(error = %e, "Stopping: fatal error.");
            exit_code_for(&e)
        }
    }
}
