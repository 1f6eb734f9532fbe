//! Operations acceptance against the real binary, the real broker and registry: `/metrics`
//! moves during a backfill (connector and librdkafka metrics), `/health` and `/ready` answer,
//! a restart restores the state; SIGTERM / SIGINT during a backfill exit 0 within the grace
//! period and the events stay exactly-once across the restart.
//!
//! The backfill is slowed by the client-side rate limit (`api.rate_limit_per_sec`), so that it
//! takes several seconds whatever the machine.

mod ops_support;
mod support;

use std::time::{Duration, Instant};

use ops_support::{
    free_addr, metric_sum, metric_where, signal, spawn_run, tail_of, wait_exit, wait_metrics,
    wait_status,
};
use support::harness::{sim_config, TestEnv};

/// Customers of the slow backfill.
const CUSTOMERS: u32 = 3_000;
/// Grace period given to the binary.
const GRACE_SECS: u64 = 15;

/// A test environment whose backfill takes several seconds: one-day windows, 25 requests/s.
async fn slow_env(seed: u64) -> TestEnv {
    TestEnv::new(sim_config(seed, CUSTOMERS), |c| {
        c.api.rate_limit_per_sec = 25.0;
        c.api.rate_limit_burst = 5;
        c.windows.window_secs = 86_400;
        c.windows.concurrency = 2;
        c.ops.listen = free_addr();
    })
    .await
}

fn extra_env() -> Vec<(&'static str, String)> {
    vec![
        ("TANMA_KAFKA__STATISTICS_INTERVAL_MS", "500".to_string()),
        ("TANMA_OPS__SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string()),
    ]
}

fn value(body: &str, name: &str) -> f64 {
    metric_sum(body, name).unwrap_or(0.0)
}

/// Scrapes `/metrics` twice during the backfill and checks that every family moved; `/health`
/// and `/ready` answer 200; after the backfill a restart restores the state and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_during_a_backfill_and_a_restart_restores_state() {
    let env = slow_env(101).await;
    let addr = env.cfg.ops.listen.clone();
    let (mut child, log) = spawn_run(&env, 1, &extra_env());

    wait_status(&addr, "/health", 200, Duration::from_secs(30), &log).await;
    wait_status(&addr, "/ready", 200, Duration::from_secs(60), &log).await;

    // First scrape: some work committed, librdkafka statistics arrived.
    let first = wait_metrics(
        &addr,
        "first committed events and librdkafka statistics",
        Duration::from_secs(60),
        &log,
        |b| {
            value(b, "tanma_events_total") > 0.0
                && metric_sum(b, "tanma_kafka_tx_requests_total").is_some()
        },
    )
    .await;
    // The backfill is still running: the watermark is far behind now.
    let lag = value(&first, "tanma_watermark_lag_seconds");
    assert!(
        lag > 86_400.0,
        "backfill already over at the first scrape (lag {lag} s)"
    );

    // Second scrape: every counter moved.
    let families = [
        ("tanma_api_requests_total", "outcome=\"ok\""),
        ("tanma_events_total", "type=\"CREATED\""),
        ("tanma_kafka_transactions_total", "outcome=\"committed\""),
        ("tanma_windows_read_total", "kind=\"forward\""),
        ("tanma_relations_read_total", ""),
        ("tanma_customers_tracked", ""),
        ("tanma_kafka_tx_requests_total", ""),
        ("tanma_kafka_tx_messages_total", ""),
    ];
    let before: Vec<f64> = families
        .iter()
        .map(|(n, l)| metric_where(&first, n, l).unwrap_or(0.0))
        .collect();
    let second = wait_metrics(
        &addr,
        "every counter to move",
        Duration::from_secs(60),
        &log,
        |b| {
            families
                .iter()
                .zip(&before)
                .all(|((n, l), v)| metric_where(b, n, l).unwrap_or(0.0) > *v)
                && value(b, "tanma_watermark_lag_seconds") < lag
        },
    )
    .await;
    for name in [
        "tanma_api_request_duration_seconds_count",
        "tanma_kafka_commit_duration_seconds_count",
        "tanma_state_restore_duration_seconds",
        "tanma_kafka_rx_bytes_total",
        "tanma_kafka_msg_queue_messages",
        "tanma_kafka_broker_rtt_avg_seconds",
        "tanma_ready",
    ] {
        assert!(
            metric_sum(&second, name).is_some(),
            "{name} missing from /metrics:\n{second}"
        );
    }
    assert_eq!(value(&second, "tanma_ready"), 1.0);
    assert!(
        metric_where(
            &second,
            "tanma_kafka_topic_tx_messages_total",
            &env.cfg.topics.events
        )
        .is_some_and(|v| v > 0.0),
        "no per-topic message count for the events topic:\n{second}"
    );
    assert!(
        !second.contains(support::harness::APP_KEY),
        "the app key appears in /metrics"
    );

    // Let the backfill finish, then stop and restart: the restart restores every customer.
    let audit = env.wait_clean(Duration::from_secs(180)).await;
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(GRACE_SECS + 5), &log).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", tail_of(&log));

    let (mut child, log) = spawn_run(&env, 2, &extra_env());
    wait_status(&addr, "/ready", 200, Duration::from_secs(60), &log).await;
    let body = wait_metrics(
        &addr,
        "the restore metrics",
        Duration::from_secs(30),
        &log,
        |b| value(b, "tanma_state_restore_records_total") > 0.0,
    )
    .await;
    assert!(
        value(&body, "tanma_state_restore_records_total") >= audit.truth_customers as f64,
        "fewer state records restored than customers:\n{body}"
    );
    assert_eq!(
        value(&body, "tanma_customers_tracked"),
        audit.truth_customers as f64
    );
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(GRACE_SECS + 5), &log).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", tail_of(&log));
}

/// `signal` during a backfill: exit 0 within the grace period with the backfill unfinished and
/// nothing duplicated or spurious; a restart finishes it and the audit is exact.
async fn signal_during_backfill_is_graceful(seed: u64, sig: &str) {
    let env = slow_env(seed).await;
    let addr = env.cfg.ops.listen.clone();
    let (mut child, log) = spawn_run(&env, 1, &extra_env());
    wait_metrics(
        &addr,
        "a few committed transactions",
        Duration::from_secs(90),
        &log,
        |b| metric_where(b, "tanma_kafka_transactions_total", "committed").unwrap_or(0.0) >= 3.0,
    )
    .await;

    let sent = Instant::now();
    signal(&child, sig);
    let status = wait_exit(&mut child, Duration::from_secs(GRACE_SECS + 5), &log).await;
    let took = sent.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "SIG{sig} did not exit 0; log:\n{}",
        tail_of(&log)
    );
    assert!(
        took <= Duration::from_secs(GRACE_SECS),
        "SIG{sig} took {took:?}, grace is {GRACE_SECS} s"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("Stopped cleanly"),
        "no clean stop logged:\n{}",
        tail_of(&log)
    );

    let partial = env.audit().await;
    assert!(
        partial.lost > 0,
        "the backfill was already complete when SIG{sig} arrived: {partial:#?}"
    );
    assert_eq!(partial.duplicated, 0, "{partial:#?}");
    assert_eq!(partial.spurious, 0, "{partial:#?}");

    let (mut child, log) = spawn_run(&env, 2, &extra_env());
    let audit = env.wait_clean(Duration::from_secs(180)).await;
    assert_eq!(audit.created as usize, audit.truth_customers, "{audit:#?}");
    signal(&child, sig);
    let status = wait_exit(&mut child, Duration::from_secs(GRACE_SECS + 5), &log).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", tail_of(&log));
    // Nothing more was written while stopping.
    let after = env.audit().await;
    assert!(after.clean(), "{after:#?}");
    assert_eq!(after.events, audit.events, "events written after the audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backfill_exits_0_and_stays_exactly_once() {
    signal_during_backfill_is_graceful(202, "TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_backfill_exits_0_and_stays_exactly_once() {
    signal_during_backfill_is_graceful(303, "INT").await;
}
