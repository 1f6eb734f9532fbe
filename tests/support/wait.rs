//! The one "condition with a deadline" helper of the integration tests: tests never sleep to
//! synchronise; they poll a condition until it holds or a deadline passes.
//!
//! Test binaries that use [`crate::support`] get it as `support::wait`; the others include this
//! file with `#[path]` (e.g. `tests/sim_support/mod.rs`), so there is still one implementation.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// Pause between two probes.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Calls `probe` every [`POLL_EVERY`] until it returns `Some`, and returns that value; `None`
/// once `deadline` has passed without one. The probe always runs at least once.
pub async fn poll_until<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `probe` until it returns `Some` and returns the value; panics naming `what` if
/// `deadline` passes first.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(deadline, probe).await {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// Polls `cond` until it returns true; panics naming `what` if `deadline` passes first.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, deadline, || {
        let fut = cond();
        async move { fut.await.then_some(()) }
    })
    .await
}
