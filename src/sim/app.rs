//! The HTTP application: the list endpoint and the router.
//!
//! Order of checks for one request: rate limit (business code) → drawn faults: slow delay, HTTP
//! 5xx → `appId` / `sign` (1002) → `timestamp` skew (1003) → body and parameters (1001) →
//! business-error fault → drift → the page (maybe shuffled, maybe with bad rows) → maybe
//! malformed on the way out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::{NaiveDateTime, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::upstream::sign::{sign, signatures_equal};
use crate::upstream::wire::{ApiResponse, ListRequest, Page, Row, LIST_BY_CREATE_TIME_PATH};

use super::content::RowSpec;
use super::faults::Malformed;
use super::state::{Counters, Outcome, Shared};

/// Business code of a bad signature or unknown `appId`.
pub const CODE_BAD_SIGNATURE: i64 = 1002;
/// Business code of a timestamp too far from server time.
pub const CODE_CLOCK_SKEW: i64 = 1003;
/// Business code of a bad parameter.
pub const CODE_BAD_PARAM: i64 = 1001;

/// The router: the API endpoint plus the `/_sim/` control API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(LIST_BY_CREATE_TIME_PATH, post(list))
        .merge(super::control::routes())
        .with_state(shared)
}

async fn list(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (outcome, resp) = answer(&sh, &headers, &body).await;
    sh.counters.count(outcome);
    metrics::histogram!(crate::ops::metrics::names::SIM_REQUEST_DURATION_SECONDS)
        .record(started.elapsed().as_secs_f64());
    resp
}

fn json(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn html(status: StatusCode, text: String) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

/// HTTP 200 with a non-zero business code and `data: null`.
fn business(code: i64, message: &str) -> Response {
    let body: ApiResponse<Page> = ApiResponse {
        code,
        message: Some(message.to_string()),
        data: None,
    };
    json(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn reject(outcome: Outcome, code: i64, message: &str) -> (Outcome, Response) {
    (outcome, business(code, message))
}

fn bad_param(message: &str) -> (Outcome, Response) {
    reject(Outcome::BadParam, CODE_BAD_PARAM, message)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Parses `yyyy-MM-dd HH:mm:ss` in `tz` to epoch seconds.
pub(crate) fn parse_local(s: &str, tz: chrono_tz::Tz) -> Option<i64> {
    if s.len() != 19 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
}

async fn answer(sh: &Shared, headers: &HeaderMap, body: &[u8]) -> (Outcome, Response) {
    let draw = {
        let mut f = sh.faults();
        if let Some(code) = f.rate_limited() {
            return reject(Outcome::RateLimited, code, "请求过于频繁");
        }
        f.draw()
    };
    if let Some(ms) = draw.slow_ms {
        Counters::add(&sh.counters.slow, 1);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {}
            () = sh.cancel.cancelled() => {}
        }
    }
    if let Some(status) = draw.status_5xx {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = code.canonical_reason().unwrap_or("Error");
        let page = format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        return (Outcome::Http5xx, html(code, page));
    }

    // Signature.
    let api = &sh.api;
    let (Some(app_id), Some(ts), Some(sig)) = (
        header_str(headers, "appid"),
        header_str(headers, "timestamp"),
        header_str(headers, "sign"),
    ) else {
        return reject(Outcome::BadSignature, CODE_BAD_SIGNATURE, "签名错误");
    };
    if app_id != api.app_id
        || !signatures_equal(
            &sig.to_ascii_lowercase(),
            &sign(app_id, ts, body, &api.app_key),
        )
    {
        return reject(Outcome::BadSignature, CODE_BAD_SIGNATURE, "签名错误");
    }
    let Ok(ts_ms) = ts.trim().parse::<i64>() else {
        return reject(Outcome::BadSignature, CODE_BAD_SIGNATURE, "签名错误");
    };
    let now = Utc::now();
    let skew_ms = i128::from(now.timestamp_millis()) - i128::from(ts_ms);
    if skew_ms.unsigned_abs() > u128::from(api.max_clock_skew_secs) * 1000 {
        return reject(
            Outcome::ClockSkew,
            CODE_CLOCK_SKEW,
            "请求时间戳超出允许范围",
        );
    }

    // Parameters.
    let Ok(req) = serde_json::from_slice::<ListRequest>(body) else {
        return bad_param("参数错误: 请求体不是合法的 JSON 或缺少字段");
    };
    if req.page_size < 1 || req.page_size > api.max_page_size {
        return bad_param(&format!(
            "参数错误: pageSize 必须在 1 到 {} 之间",
            api.max_page_size
        ));
    }
    if req.page_no < 1 {
        return bad_param("参数错误: pageNo 必须大于等于 1");
    }
    let (Some(since), Some(before)) = (
        parse_local(&req.since, api.time_zone),
        parse_local(&req.before, api.time_zone),
    ) else {
        return bad_param("参数错误: 时间格式应为 yyyy-MM-dd HH:mm:ss");
    };
    if since > before {
        return bad_param("参数错误: since 不能晚于 before");
    }
    if let Some(code) = draw.error_code {
        let msg = sh.faults().config().error_code_message.clone();
        return reject(Outcome::ErrorCode, code, &msg);
    }

    if draw.drift && req.page_no >= 2 {
        let hi = before.min(now.timestamp());
        if sh.write().late_in(since, hi, now).is_some() {
            Counters::add(&sh.counters.drift, 1);
        }
    }

    let page_size = u64::from(req.page_size);
    let offset = u64::from(req.page_no - 1).saturating_mul(page_size);
    let (total, specs) = page_specs(sh, since, before, offset, page_size, draw.unstable_seed);
    let mut rows: Vec<Row> = specs.iter().map(|s| sh.renderer.row(s)).collect();
    let bad_rows = if draw.bad_row > 0.0 {
        rows.iter_mut()
            .map(|r| u64::from(super::faults::corrupt_row(r, draw.bad_row)))
            .sum()
    } else {
        0
    };
    let served = rows.len() as u64;
    let total_page = u32::try_from(total.div_ceil(page_size)).unwrap_or(u32::MAX);
    let resp = ApiResponse {
        code: 0,
        message: Some("success".into()),
        data: Some(Page {
            page_size: Some(req.page_size),
            page_no: Some(req.page_no),
            total_count: Some(total),
            total_page: Some(total_page),
            result: Some(rows),
        }),
    };
    let bytes = serde_json::to_vec(&resp).unwrap_or_default();
    match draw.malformed {
        Some(Malformed::Truncated) => {
            let cut = bytes.get(..bytes.len() / 2).unwrap_or_default().to_vec();
            (Outcome::Malformed, json(StatusCode::OK, cut))
        }
        Some(Malformed::Html) => (
            Outcome::Malformed,
            html(
                StatusCode::OK,
                "<!DOCTYPE html><html><head><title>系统维护中</title></head><body><h1>系统维护中，请稍后再试</h1></body></html>".into(),
            ),
        ),
        None => {
            Counters::add(&sh.counters.rows, served);
            Counters::add(&sh.counters.bad_rows, bad_rows);
            metrics::counter!(crate::ops::metrics::names::SIM_ROWS_SERVED_TOTAL).increment(served);
            (Outcome::Ok, json(StatusCode::OK, bytes))
        }
    }
}

/// The window's total and the row specs of one page, read under the lock. With an
/// `unstable_seed`, rows sharing an add time come in an order drawn from the seed (see
/// [`tie_shuffled_page`]).
fn page_specs(
    sh: &Shared,
    since: i64,
    before: i64,
    offset: u64,
    page_size: u64,
    unstable_seed: Option<u64>,
) -> (u64, Vec<RowSpec>) {
    let w = sh.read();
    let (lo, hi) = w.data.window(since, before);
    let total = (hi - lo) as u64;
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(page_size).unwrap_or(0);
    let spec = |i: &u32| w.data.rel(*i).map(|r| r.spec());
    let ids = w.data.index_slice(lo, hi);
    let specs = match unstable_seed {
        Some(seed) => {
            Counters::add(&sh.counters.unstable, 1);
            let at = |i: &u32| w.data.rel(*i).map_or(i64::MAX, |r| r.add_time);
            tie_shuffled_page(ids, at, start, take, seed)
                .iter()
                .filter_map(spec)
                .collect()
        }
        None => ids.iter().skip(start).take(take).filter_map(spec).collect(),
    };
    (total, specs)
}

/// Positions `[start, start + take)` of `ids` (sorted by add time, `at`) after the rows of
/// every add time have been put in a random order drawn from `seed`: what one execution of
/// `ORDER BY addTime LIMIT take OFFSET start` may return when add times tie. Only the runs of
/// equal add time that overlap the page are shuffled.
fn tie_shuffled_page(
    ids: &[u32],
    at: impl Fn(&u32) -> i64,
    start: usize,
    take: usize,
    seed: u64,
) -> Vec<u32> {
    let end = start.saturating_add(take).min(ids.len());
    let (Some(first), Some(last)) = (ids.get(start), end.checked_sub(1).and_then(|e| ids.get(e)))
    else {
        return Vec::new();
    };
    let (t_first, t_last) = (at(first), at(last));
    let run_lo = ids.partition_point(|i| at(i) < t_first);
    let run_hi = ids.partition_point(|i| at(i) <= t_last);
    let mut runs = ids.get(run_lo..run_hi).unwrap_or_default().to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for run in runs.chunk_by_mut(|a, b| at(a) == at(b)) {
        run.shuffle(&mut rng);
    }
    runs.get(start - run_lo..end - run_lo)
        .unwrap_or_default()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tie_shuffle_keeps_add_time_order_and_reorders_ties_per_seed() {
        // Add times: 10 rows at t=1, 30 at t=2, 10 at t=3.
        let times: Vec<i64> = (0..50)
            .map(|i| match i {
                0..10 => 1,
                10..40 => 2,
                _ => 3,
            })
            .collect();
        let ids: Vec<u32> = (0..50).collect();
        let at = |i: &u32| times[*i as usize];
        let page = |seed, start| tie_shuffled_page(&ids, at, start, 10, seed);
        // Pages never mix add times out of order, and the first and last runs of whole
        // distinct times stay whole.
        for seed in 0..20 {
            let all: Vec<u32> = (0..5).flat_map(|p| page(seed, p * 10)).collect();
            assert!(all.windows(2).all(|w| at(&w[0]) <= at(&w[1])));
            let mut first: Vec<u32> = page(seed, 0);
            first.sort_unstable();
            assert_eq!(first, (0..10).collect::<Vec<_>>());
        }
        // The tied rows of t=2 come in a different order for different seeds: paging them with
        // a new seed per request repeats some rows and skips others.
        assert_ne!(page(1, 10), page(2, 10));
        let mut seen: Vec<u32> = (1..=3).flat_map(|p| page(100 + p as u64, p * 10)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert!(
            seen.len() < 30,
            "three pages of new orders covered every tied row"
        );
        // Past the end: nothing.
        assert!(page(1, 50).is_empty());
        assert_eq!(tie_shuffled_page(&ids, at, 45, 10, 1).len(), 5);
    }
}
