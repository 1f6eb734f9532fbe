//! The ops HTTP server: `GET /metrics`, `GET /health`, `GET /ready` on their own listener.
//!
//! * `/metrics`: Prometheus text exposition of the global recorder.
//! * `/health` (liveness): 200 while the main loop has called [`Health::beat`] within the
//!   liveness deadline and its Kafka-side work (commits, recovery) has not kept failing for
//!   longer than the failure deadline, else 503. A stuck loop, or one that cannot commit for
//!   that long while work is pending, gets the pod restarted.
//! * `/ready` (readiness): 200 once [`Health::set_ready`] said so (state restored, broker
//!   reachable), else 503 with a JSON reason. Also 503 once shutdown has begun.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::names;
use super::OpsError;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the recorder's upkeep (histogram draining) runs while the server is up.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Liveness and readiness, shared between the main loop and the ops server. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    started: Instant,
    /// Milliseconds since `started` at the last beat.
    last_beat_ms: AtomicU64,
    liveness_deadline: Duration,
    /// `/health` fails once commits have been failing for longer than this (milliseconds).
    failure_deadline_ms: AtomicU64,
    /// Milliseconds since `started`, plus one, of the first failure in the current run of
    /// failures; 0 while the last attempt succeeded.
    failing_since_ms: AtomicU64,
    ready: Mutex<Readiness>,
}

struct Readiness {
    ready: bool,
    reason: String,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ready, reason) = self.readiness();
        f.debug_struct("Health")
            .field("since_last_beat", &self.since_last_beat())
            .field("liveness_deadline", &self.inner.liveness_deadline)
            .field("ready", &ready)
            .field("reason", &reason)
            .finish()
    }
}

impl Health {
    /// A new health state: alive (creation counts as the first beat), not ready
    /// (`"starting"`). `/health` turns 503 when no beat came for `liveness_deadline`.
    ///
    /// Long phases that are not the main loop (state restore) should beat on progress too.
    pub fn new(liveness_deadline: Duration) -> Health {
        metrics::gauge!(names::READY).set(0.0);
        Health {
            inner: Arc::new(HealthInner {
                started: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                liveness_deadline,
                failure_deadline_ms: AtomicU64::new(millis(liveness_deadline)),
                failing_since_ms: AtomicU64::new(0),
                ready: Mutex::new(Readiness {
                    ready: false,
                    reason: "starting".into(),
                }),
            }),
        }
    }

    /// Sets how long commits may keep failing before `/health` fails (default: the liveness
    /// deadline).
    pub fn with_failure_deadline(self, deadline: Duration) -> Health {
        self.inner
            .failure_deadline_ms
            .store(millis(deadline), Ordering::Relaxed);
        self
    }

    /// Records that the main loop is making progress.
    pub fn beat(&self) {
        let ms = millis(self.inner.started.elapsed());
        self.inner.last_beat_ms.fetch_max(ms, Ordering::Relaxed);
        let failing = self.failing_for().unwrap_or_default();
        metrics::gauge!(names::COMMITS_FAILING_SECONDS).set(failing.as_secs_f64());
    }

    /// A commit (or a recovery from the log) failed; starts the failure clock if it is not
    /// running.
    pub fn commit_failed(&self) {
        let now = millis(self.inner.started.elapsed()).saturating_add(1);
        let _ = self.inner.failing_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A unit of work committed: the failure clock stops.
    pub fn commit_succeeded(&self) {
        self.inner.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// How long commits have been failing without a success in between.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.inner.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.inner
                    .started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }

    fn failure_deadline(&self) -> Duration {
        Duration::from_millis(self.inner.failure_deadline_ms.load(Ordering::Relaxed))
    }

    /// Whether commits have been failing for longer than the failure deadline.
    pub fn is_failing(&self) -> bool {
        self.failing_for()
            .is_some_and(|d| d > self.failure_deadline())
    }

    /// Time since the last beat.
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
        self.inner.started.elapsed().saturating_sub(last)
    }

    /// Whether the last beat is within the liveness deadline and commits have not been
    /// failing for longer than the failure deadline.
    pub fn is_alive(&self) -> bool {
        self.since_last_beat() <= self.inner.liveness_deadline && !self.is_failing()
    }

    /// Sets readiness, with a reason shown by `/ready` (e.g. `"restoring state"`,
    /// `"broker unreachable"`, `"shutting down"`), and the `tanma_ready` gauge.
    pub fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        let reason = reason.into();
        let mut r = self.inner.ready.lock().unwrap_or_else(|p| p.into_inner());
        if r.ready != ready {
            tracing::info!(ready, reason = %reason, "Readiness changed.");
        }
        r.ready = ready;
        r.reason = reason;
        metrics::gauge!(names::READY).set(if ready { 1.0 } else { 0.0 });
    }

    /// Current readiness and its reason.
    pub fn readiness(&self) -> (bool, String) {
        let r = self.inner.ready.lock().unwrap_or_else(|p| p.into_inner());
        (r.ready, r.reason.clone())
    }
}

/// A running ops server.
#[derive(Debug)]
pub struct OpsServer {
    /// The bound address (the real port when `:0` was asked for).
    pub local_addr: SocketAddr,
    /// The server task; ends after the shutdown token is cancelled and open requests finish.
    pub task: JoinHandle<Result<(), OpsError>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    health: Health,
    shutdown: CancellationToken,
}

/// The ops routes, without a listener (for tests and embedding).
pub fn router(handle: PrometheusHandle, health: Health, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .route("/ready", get(ready_handler))
        .with_state(AppState {
            handle,
            health,
            shutdown,
        })
}

/// Binds `addr` and serves `/metrics`, `/health` and `/ready` until `shutdown` is cancelled.
///
/// Returns once the listener is bound, with the bound address (port 0 picks a free port). Also
/// runs the recorder's upkeep every few seconds. Cancel a token that outlives the pipeline's drain
/// (or a child of it cancelled last) if metrics should stay scrapeable while draining; `/ready`
/// turns 503 as soon as `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    health: Health,
    shutdown: CancellationToken,
) -> Result<OpsServer, OpsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| OpsError::Bind { addr, source })?;
    tracing::info!(%local_addr, "Ops server listening (/metrics, /health, /ready).");
    let app = router(handle.clone(), health, shutdown.clone());
    let task = tokio::spawn(async move {
        let upkeep_stop = shutdown.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = upkeep_stop.cancelled() => break,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        });
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| OpsError::Serve {
                addr: local_addr,
                source,
            });
        upkeep.abort();
        tracing::debug!(%local_addr, "Ops server stopped.");
        result
    });
    Ok(OpsServer { local_addr, task })
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        s.handle.render(),
    )
        .into_response()
}

async fn health_handler(State(s): State<AppState>) -> Response {
    let h = &s.health;
    let since = h.since_last_beat();
    let failing = h.failing_for().unwrap_or_default();
    let (status, word) = if since > h.inner.liveness_deadline {
        (StatusCode::SERVICE_UNAVAILABLE, "stalled")
    } else if h.is_failing() {
        (StatusCode::SERVICE_UNAVAILABLE, "commits failing")
    } else {
        (StatusCode::OK, "ok")
    };
    metrics::gauge!(names::LIVE).set(if status == StatusCode::OK { 1.0 } else { 0.0 });
    let body = json!({
        "status": word,
        "seconds_since_last_beat": since.as_secs_f64(),
        "liveness_deadline_seconds": h.inner.liveness_deadline.as_secs_f64(),
        "commits_failing_seconds": failing.as_secs_f64(),
        "commit_failure_deadline_seconds": h.failure_deadline().as_secs_f64(),
    });
    (status, Json(body)).into_response()
}

async fn ready_handler(State(s): State<AppState>) -> Response {
    let (ready, reason) = if s.shutdown.is_cancelled() {
        (false, "shutting down".to_string())
    } else {
        s.health.readiness()
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "reason": reason }))).into_response()
}
