//! Every fault kind is observable, and faults can be changed at run time.

mod sim_support;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use sim_support::start;
use tanma_connector::sim::{BulkImports, FaultConfig, MutationCause, MutationKind, SimConfig};
use tanma_connector::upstream::wire::Row;

fn with_faults(f: FaultConfig) -> SimConfig {
    SimConfig {
        faults: f,
        ..SimConfig::for_tests(11, 300)
    }
}

#[tokio::test]
async fn http_5xx_is_served_with_html() {
    let cfg = with_faults(FaultConfig {
        http_5xx: 1.0,
        ..FaultConfig::default()
    });
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let mut statuses = HashSet::new();
    for _ in 0..30 {
        let r = c
            .request(
                &sim_support::local(s, c.tz),
                &sim_support::local(e, c.tz),
                10,
                1,
            )
            .await;
        assert!(r.content_type.starts_with("text/html"));
        statuses.insert(r.status);
    }
    assert!(
        statuses.iter().all(|s| [500, 502, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.len() >= 2, "several 5xx codes: {statuses:?}");
    assert_eq!(sim.control().stats().requests["http_5xx"], 30);
}

#[tokio::test]
async fn slow_answers_wait_slow_ms() {
    let cfg = with_faults(FaultConfig {
        slow: 1.0,
        slow_ms: 400,
        ..FaultConfig::default()
    });
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let r = c
        .request(
            &sim_support::local(s, c.tz),
            &sim_support::local(e, c.tz),
            10,
            1,
        )
        .await;
    assert_eq!(r.api().code, 0, "a slow answer is still a correct one");
    assert!(
        r.elapsed >= Duration::from_millis(400),
        "took {:?}",
        r.elapsed
    );
    assert_eq!(sim.control().stats().slow_requests, 1);

    // A client with a shorter timeout gives up.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let body = sim_support::Client::body(
        &sim_support::local(s, c.tz),
        &sim_support::local(e, c.tz),
        10,
        1,
    );
    let ts = sim_support::now_ms().to_string();
    let sig = tanma_connector::upstream::sign::sign(&c.app_id, &ts, &body, &c.key);
    let err = quick
        .post(format!("{}/api/v2/customer/qw-list-by-create-time", c.base))
        .header("appId", &c.app_id)
        .header("timestamp", ts)
        .header("sign", sig)
        .body(body)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test]
async fn malformed_bodies_do_not_parse() {
    let cfg = with_faults(FaultConfig {
        malformed: 1.0,
        ..FaultConfig::default()
    });
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let mut kinds = HashSet::new();
    for _ in 0..20 {
        let r = c
            .request(
                &sim_support::local(s, c.tz),
                &sim_support::local(e, c.tz),
                100,
                1,
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
        kinds.insert(r.content_type.split(';').next().unwrap_or("").to_string());
    }
    assert_eq!(kinds.len(), 2, "both truncated JSON and HTML: {kinds:?}");
    assert_eq!(sim.control().stats().requests["malformed"], 20);
    assert_eq!(sim.control().stats().rows_served, 0);
}

#[tokio::test]
async fn business_error_code_and_run_time_fault_changes() {
    let cfg = SimConfig::for_tests(11, 100);
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let (ls, le) = (sim_support::local(s, c.tz), sim_support::local(e, c.tz));
    assert_eq!(c.request(&ls, &le, 10, 1).await.api().code, 0);

    // PUT merges the given keys.
    let (status, body) = c
        .send_json(Method::PUT, "/_sim/faults", r#"{"errorCode":1.0}"#)
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let api = c.request(&ls, &le, 10, 1).await.api();
    assert_eq!(api.code, 1500);
    assert_eq!(api.message.as_deref(), Some("系统繁忙"));
    assert!(api.data.is_none());
    let now: FaultConfig = serde_json::from_slice(&c.get("/_sim/faults").await).unwrap();
    assert_eq!(now.error_code, 1.0);
    assert_eq!(now.slow_ms, 15_000, "other keys kept");

    // Invalid values and unknown keys are refused and change nothing.
    let (status, _) = c
        .send_json(Method::PUT, "/_sim/faults", r#"{"errorCode":2.0}"#)
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .send_json(Method::PUT, "/_sim/faults", r#"{"nonsense":1}"#)
        .await;
    assert_eq!(status, 400);
    assert_eq!(sim.control().faults().error_code, 1.0);

    sim.control().set_faults(FaultConfig::default()).unwrap();
    assert_eq!(c.request(&ls, &le, 10, 1).await.api().code, 0);
    assert!(sim
        .control()
        .set_faults(FaultConfig {
            drift: -1.0,
            ..FaultConfig::default()
        })
        .is_err());
}

#[tokio::test]
async fn rate_limit_answers_its_code() {
    let cfg = with_faults(FaultConfig {
        rate_limit_qps: 1.0,
        rate_limit_burst: 2,
        ..FaultConfig::default()
    });
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let (ls, le) = (sim_support::local(s, c.tz), sim_support::local(e, c.tz));
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = c.request(&ls, &le, 10, 1).await;
        assert_eq!(r.status, 200);
        codes.push(r.api().code);
    }
    assert_eq!(&codes[..2], &[0, 0], "the burst passes: {codes:?}");
    assert!(
        codes.iter().filter(|c| **c == 1006).count() >= 3,
        "{codes:?}"
    );
    assert!(codes.iter().all(|c| *c == 0 || *c == 1006));
    assert!(sim.control().stats().requests["rate_limited"] >= 3);
}

#[tokio::test]
async fn drift_inserts_a_late_relation_into_the_window() {
    let cfg = SimConfig::for_tests(11, 300);
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let first = c.page(s, e, 50, 1).await;
    let total = first.total_count.unwrap();
    sim.control()
        .set_faults(FaultConfig {
            drift: 1.0,
            ..FaultConfig::default()
        })
        .unwrap();
    let again = c.page(s, e, 50, 1).await;
    assert_eq!(again.total_count, Some(total), "no drift on page 1");
    let second = c.page(s, e, 50, 2).await;
    assert_eq!(second.total_count, Some(total + 1));
    let log = sim.control().mutations_after(0);
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].kind, log[0].cause),
        (MutationKind::Late, MutationCause::Drift)
    );
    assert!(log[0].add_time >= s && log[0].add_time < e);
    assert_eq!(sim.control().stats().drift_inserts, 1);
    let truth = sim.control().truth();
    assert_eq!(truth.len() as u64, total + 1);
    assert!(truth.iter().any(|t| t.row.external_user_id.as_deref()
        == Some(&log[0].external_user_id)
        && t.row.qw_user_id.as_deref() == Some(&log[0].qw_user_id)
        && t.visible_from.is_some()));
}

/// Unstable order is faithful to SQL paging with ties: rows of different add times keep their
/// order, rows sharing a second come in a new order on every request.
#[tokio::test]
async fn unstable_order_shuffles_ties_per_request() {
    let mut cfg = with_faults(FaultConfig {
        unstable_order: 1.0,
        ..FaultConfig::default()
    });
    cfg.bulk = BulkImports {
        seconds: 2,
        rows: 450,
    };
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let truth = sim.control().truth();
    let add_time = |r: &Row| {
        truth
            .iter()
            .find(|t| {
                t.row.external_user_id == r.external_user_id && t.row.qw_user_id == r.qw_user_id
            })
            .map(|t| t.add_time)
            .expect("a row of the truth")
    };
    // Across the whole span, every page is in add-time order.
    let page = c.page(s, e, 100, 3).await.result.unwrap();
    assert!(page.windows(2).all(|w| add_time(&w[0]) <= add_time(&w[1])));
    // A bulk second: 450 rows at one add time.
    let mut counts = std::collections::BTreeMap::new();
    for t in &truth {
        *counts.entry(t.add_time).or_insert(0usize) += 1;
    }
    let (bulk, n) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(*n >= 450, "a bulk second holds {n} rows");
    let (a, b) = (*bulk, *bulk + chrono::Duration::seconds(1));
    let p1 = c.page(a, b, 100, 1).await.result.unwrap();
    let p1_again = c.page(a, b, 100, 1).await.result.unwrap();
    assert_eq!(p1.len(), 100);
    assert_ne!(p1, p1_again, "two requests, two orders");
    // Paging the second, one request per page, repeats some rows and skips others.
    let all = c.window(a, b, 100).await;
    assert_eq!(all.len(), *n);
    let distinct: HashSet<_> = all
        .iter()
        .map(|r| (r.external_user_id.clone(), r.qw_user_id.clone()))
        .collect();
    assert!(distinct.len() < *n, "{} distinct of {n}", distinct.len());
    assert!(sim.control().stats().unstable_orders >= 8);
}
