//! The API client against the simulator: every relation of a ~100,000-relation dataset read
//! exactly once while the simulator injects paging drift and every transient fault; the fatal
//! codes stop it cleanly with the documented messages.

use std::collections::{BTreeMap, HashSet};

use chrono::Duration;
use secrecy::SecretString;
use tanma_connector::config::ApiConfig;
use tanma_connector::error::{Classify, ErrorClass};
use tanma_connector::plan::Window;
use tanma_connector::sim::{FaultConfig, SimConfig, SimHandle};
use tanma_connector::upstream::{ApiClient, WindowOutcome, WindowReader};

const KEY: &str = "sim-test-key-0123456789";

fn api_config(base_url: String) -> ApiConfig {
    ApiConfig {
        base_url,
        app_id: "sim-app".into(),
        app_key: Some(SecretString::from(KEY.to_string())),
        request_timeout_ms: 400,
        rate_limit_per_sec: 400.0,
        rate_limit_burst: 20,
        max_attempts: 12,
        backoff_initial_ms: 5,
        backoff_max_ms: 100,
        malformed_attempts: 6,
        max_drift_rereads: 8,
        ..ApiConfig::default()
    }
}

async fn start_sim(customers: u32, faults: FaultConfig) -> SimHandle {
    let mut cfg = SimConfig::for_tests(99, customers);
    cfg.app_id = "sim-app".into();
    cfg.app_key = KEY.into();
    cfg.faults = faults;
    SimHandle::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Reads `[start, end)` in day windows, splitting dense ones, and returns every relation key read
/// with how often it was returned.
async fn read_all(
    reader: &WindowReader,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> (BTreeMap<(String, String), u32>, u32) {
    let mut seen = BTreeMap::new();
    let mut drift_rereads = 0;
    let mut todo = Vec::new();
    let mut t = start;
    while t < end {
        let next = (t + Duration::days(1)).min(end);
        todo.push(Window::new(t, next));
        t = next;
    }
    todo.reverse();
    while let Some(w) = todo.pop() {
        match reader.read(w, 2_000).await.expect("window read") {
            WindowOutcome::Complete(read) => {
                drift_rereads += read.drift_rereads;
                assert!(
                    read.rejected.is_empty(),
                    "rows rejected: {:?}",
                    read.rejected
                );
                for (ext, rel) in read.relations {
                    *seen.entry((ext, rel.qw_user_id)).or_insert(0) += 1;
                }
            }
            WindowOutcome::TooLarge { window, .. } => {
                let (a, b) = window.split().expect("splittable");
                todo.push(b);
                todo.push(a);
            }
        }
    }
    (seen, drift_rereads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_relation_exactly_once_under_drift_and_transient_faults() {
    let faults = FaultConfig {
        http_5xx: 0.05,
        slow: 0.02,
        slow_ms: 1_500,
        malformed: 0.01,
        error_code: 0.02,
        drift: 0.05,
        unstable_order: 0.03,
        rate_limit_qps: 300.0,
        rate_limit_burst: 10,
        ..FaultConfig::default()
    };
    // ~1.65 relations per customer: 61,000 customers ≈ 100,000 relations.
    let sim = start_sim(61_000, faults).await;
    let cfg = api_config(sim.base_url());
    let reader = WindowReader::new(ApiClient::new(&cfg).expect("client"), &cfg);
    let start = chrono::DateTime::from_timestamp(1_704_067_200, 0).unwrap();
    let (seen, drift_rereads) = read_all(&reader, start, start + Duration::days(30)).await;

    // The truth at the end includes the relations the drift fault inserted while we read.
    let truth: HashSet<(String, String)> = sim
        .control()
        .truth()
        .into_iter()
        .map(|t| {
            (
                t.row.external_user_id.unwrap_or_default(),
                t.row.qw_user_id.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        truth.len() >= 100_000,
        "dataset has {} relations",
        truth.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} relations read twice, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    let missing: Vec<_> = truth.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} relations never read, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let extra: Vec<_> = seen.keys().filter(|k| !truth.contains(*k)).collect();
    assert!(
        extra.is_empty(),
        "{} relations not in the truth",
        extra.len()
    );
    let stats = sim.control().stats();
    eprintln!(
        "relations: {}, drift re-reads: {drift_rereads}, simulator stats: {stats:?}",
        truth.len()
    );
    assert!(
        drift_rereads > 0,
        "the drift fault never triggered a re-read"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_app_key_stops_with_a_signature_message() {
    let sim = start_sim(100, FaultConfig::default()).await;
    let mut cfg = api_config(sim.base_url());
    cfg.app_key = Some(SecretString::from("not-the-key".to_string()));
    let reader = WindowReader::new(ApiClient::new(&cfg).expect("client"), &cfg);
    let start = chrono::DateTime::from_timestamp(1_704_067_200, 0).unwrap();
    let err = reader
        .read(Window::new(start, start + Duration::days(1)), 2_000)
        .await
        .expect_err("a wrong key must fail");
    assert_eq!(err.class(), ErrorClass::Fatal);
    let msg = err.to_string();
    assert!(msg.contains("1002") || msg.contains("signature"), "{msg}");
    assert!(
        msg.contains("app_id") || msg.contains("APP_KEY"),
        "message must say what to check: {msg}"
    );
    assert!(!msg.contains("not-the-key"), "the key leaked: {msg}");
    assert_eq!(
        sim.control().stats().requests.values().sum::<u64>(),
        1,
        "a fatal code must not be retried"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn configured_fatal_code_stops_without_retrying() {
    let faults = FaultConfig {
        error_code: 1.0,
        error_code_value: 4001,
        ..FaultConfig::default()
    };
    let sim = start_sim(100, faults).await;
    let mut cfg = api_config(sim.base_url());
    cfg.fatal_codes = vec![4001];
    let reader = WindowReader::new(ApiClient::new(&cfg).expect("client"), &cfg);
    let start = chrono::DateTime::from_timestamp(1_704_067_200, 0).unwrap();
    let err = reader
        .read(Window::new(start, start + Duration::days(1)), 2_000)
        .await
        .expect_err("a fatal code must fail");
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(err.to_string().contains("4001"), "{err}");
    sim.shutdown().await;
}
