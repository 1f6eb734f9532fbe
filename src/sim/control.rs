//! Truth and control: [`SimControl`] in process, and the same operations over HTTP under
//! `/_sim/`.
//!
//! | route | |
//! | --- | --- |
//! | `GET /_sim/truth` | every visible relation, NDJSON `{"addTime", "row"}` in API order |
//! | `GET /_sim/mutations?after=&limit=` | the mutation log after a sequence number (JSON array) |
//! | `POST /_sim/mutations/pause`, `/resume` | background mutations |
//! | `GET`/`PUT /_sim/faults` | fault rates; `PUT` merges the given keys |
//! | `GET /_sim/stats` | counters |
//! | `POST /_sim/apply` | `{"kind":"changed","count":10}` → the mutation records |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::upstream::wire::Row;

use super::config::SimError;
use super::content::{Renderer, RowSpec};
use super::faults::FaultConfig;
use super::mutations::{ApplyError, ApplyRequest, MutationRecord};
use super::state::{Shared, SimStats};

/// One line of the truth dump: a visible relation exactly as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthRow {
    /// The relation's add time.
    pub add_time: DateTime<Utc>,
    /// The row.
    pub row: Row,
    /// For relations added after the start (new, late): the server time from which they are
    /// served. Absent for the initial dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_from: Option<DateTime<Utc>>,
}

/// In-process control of a running simulator. Cheap to clone.
#[derive(Clone)]
pub struct SimControl {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimControl").finish_non_exhaustive()
    }
}

fn truth_row(r: &Renderer, s: &RowSpec) -> TruthRow {
    TruthRow {
        add_time: DateTime::from_timestamp(s.add_time, 0).unwrap_or_default(),
        row: r.row(s),
        visible_from: (s.visible_from > 0)
            .then(|| DateTime::from_timestamp(s.visible_from, 0))
            .flatten(),
    }
}

impl SimControl {
    /// Pauses background mutations.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes background mutations.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Whether background mutations are paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// The current fault rates.
    pub fn faults(&self) -> FaultConfig {
        self.shared.faults().config().clone()
    }

    /// Replaces the fault rates.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), SimError> {
        let problems = faults.problems();
        if !problems.is_empty() {
            return Err(SimError::InvalidConfig {
                problems: problems.join("; "),
            });
        }
        self.shared.faults().set(faults);
        Ok(())
    }

    /// Every visible relation, in API order (add time, externalUserId, qwUserId), as one
    /// consistent snapshot. Materializes every row (about 2.3 KB each in memory): fine for
    /// test-sized datasets; for a million customers stream `GET /_sim/truth` instead.
    pub fn truth(&self) -> Vec<TruthRow> {
        let specs = self.shared.read().data.snapshot();
        specs
            .iter()
            .map(|s| truth_row(&self.shared.renderer, s))
            .collect()
    }

    /// Applies mutations synchronously; returns their log records.
    pub fn apply(&self, req: &ApplyRequest) -> Result<Vec<MutationRecord>, ApplyError> {
        let lookback = self.shared.rates.late_lookback_secs;
        self.shared.write().apply(req, lookback, Utc::now())
    }

    /// Mutation log entries with `seq > after` (at most 100,000).
    pub fn mutations_after(&self, after: u64) -> Vec<MutationRecord> {
        self.shared.read().log_after(after, 100_000)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// The accepted `appId`.
    pub fn app_id(&self) -> &str {
        &self.shared.api.app_id
    }

    /// The time zone of `since`/`before`.
    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.shared.api.time_zone
    }
}

/// The `/_sim/` routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/truth", get(truth))
        .route("/_sim/mutations", get(mutations))
        .route("/_sim/mutations/pause", post(pause))
        .route("/_sim/mutations/resume", post(resume))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/stats", get(stats))
        .route("/_sim/apply", post(apply))
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn truth(State(sh): State<Arc<Shared>>) -> Response {
    let specs = sh.read().data.snapshot();
    let renderer = sh.renderer.clone();
    let chunks = futures::stream::unfold(0usize, move |at| {
        let chunk = specs.get(at..).unwrap_or_default();
        let chunk = chunk.get(..chunk.len().min(1000)).unwrap_or_default();
        let out = if chunk.is_empty() {
            None
        } else {
            let mut buf = Vec::with_capacity(chunk.len() * 900);
            for s in chunk {
                if serde_json::to_writer(&mut buf, &truth_row(&renderer, s)).is_ok() {
                    buf.push(b'\n');
                }
            }
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(buf)),
                at + chunk.len(),
            ))
        };
        std::future::ready(out)
    });
    let mut r = Response::new(Body::from_stream(chunks));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    10_000
}

async fn mutations(State(sh): State<Arc<Shared>>, Query(q): Query<After>) -> Response {
    Json(sh.read().log_after(q.after, q.limit.min(100_000))).into_response()
}

async fn pause(State(sh): State<Arc<Shared>>) -> Response {
    sh.paused.store(true, Ordering::SeqCst);
    Json(serde_json::json!({ "paused": true })).into_response()
}

async fn resume(State(sh): State<Arc<Shared>>) -> Response {
    sh.paused.store(false, Ordering::SeqCst);
    Json(serde_json::json!({ "paused": false })).into_response()
}

async fn get_faults(State(sh): State<Arc<Shared>>) -> Response {
    Json(sh.faults().config().clone()).into_response()
}

/// Merges the given keys into the current fault configuration.
async fn put_faults(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Object(m)) => serde_json::Value::Object(m),
        _ => return problem(StatusCode::BAD_REQUEST, "expected a JSON object".into()),
    };
    let mut faults = sh.faults();
    let mut current = serde_json::to_value(faults.config()).unwrap_or_default();
    if let (Some(cur), Some(p)) = (current.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            cur.insert(k.clone(), v.clone());
        }
    }
    let merged: FaultConfig = match serde_json::from_value(current) {
        Ok(f) => f,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let problems = merged.problems();
    if !problems.is_empty() {
        return problem(StatusCode::BAD_REQUEST, problems.join("; "));
    }
    faults.set(merged.clone());
    Json(merged).into_response()
}

async fn stats(State(sh): State<Arc<Shared>>) -> Response {
    Json(sh.stats()).into_response()
}

async fn apply(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: ApplyRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let lookback = sh.rates.late_lookback_secs;
    let result = sh.write().apply(&req, lookback, Utc::now());
    match result {
        Ok(records) => Json(records).into_response(),
        Err(e @ (ApplyError::UnknownCustomer(_) | ApplyError::UnknownStaff(_))) => {
            problem(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}
