//! Bad input from the API, end to end against the real broker and registry:
//! * bad rows (null `externalUserId`, null `qwUserId`, a field with a null `id`) go to the
//!   dead-letter topic with their raw JSON and the error, and the connector goes on; with
//!   `topics.on_bad_record = "stop"` the connector stops and commits nothing past them;
//! * pages that stay malformed are retried, never skipped: the checkpoint does not move, and
//!   once the fault stops the data is read.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use support::harness::{sim_config, TestEnv};
use support::{read_all, unique, wait_until};
use tanma_connector::config::BadRecordPolicy;
use tanma_connector::pipeline::{startup, Exit, RunOptions};
use tanma_connector::plan::Checkpoint;
use tanma_connector::publish::read_latest;
use tanma_connector::sim::{bad_row_kind, FaultConfig};
use tokio_util::sync::CancellationToken;

const BAD_RATE: f64 = 0.04;

/// The relations the simulator serves broken: `(externalUserId, qwUserId) → add time`.
fn bad_relations(env: &TestEnv) -> BTreeMap<(String, String), DateTime<Utc>> {
    env.sim
        .control()
        .truth()
        .into_iter()
        .filter_map(|t| {
            let ext = t.row.external_user_id.clone()?;
            let qw = t.row.qw_user_id.clone()?;
            bad_row_kind(BAD_RATE, &ext, &qw).map(|_| ((ext, qw), t.add_time))
        })
        .collect()
}

async fn checkpoint(env: &TestEnv) -> Option<Checkpoint> {
    read_latest(
        &env.cfg.kafka,
        &env.cfg.topics.checkpoint,
        &env.cfg.kafka.transactional_id,
        Duration::from_secs(30),
    )
    .await
    .expect("checkpoint readable")
    .map(|b| Checkpoint::from_bytes(&b).expect("checkpoint parses"))
}

async fn dead_letters(env: &TestEnv) -> Vec<Value> {
    read_all(
        &env.infra.bootstrap,
        &env.cfg.topics.dead_letter,
        "read_committed",
        Duration::from_secs(30),
    )
    .await
    .into_iter()
    .map(|r| {
        let v = r.value.expect("dead letter has a value");
        serde_json::from_slice(&v).expect("dead letter is JSON")
    })
    .collect()
}

/// Every bad row lands in the dead-letter topic with its raw JSON, the error naming the field
/// and the window; every other customer is exact; nothing is duplicated or spurious.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_go_to_the_dead_letter_topic_and_the_connector_goes_on() {
    let mut sim = sim_config(31, 1_500);
    sim.faults = FaultConfig {
        bad_row: BAD_RATE,
        ..FaultConfig::default()
    };
    let mut env = TestEnv::new(sim, |_| {}).await;
    let bad = bad_relations(&env);
    assert!(bad.len() >= 20, "too few bad rows to test: {}", bad.len());

    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);

    let letters = dead_letters(&env).await;
    let mut raws = BTreeSet::new();
    for l in &letters {
        let error = l["error"].as_str().expect("error is a string");
        assert!(
            error.contains("externalUserId") || error.contains("qwUserId") || error.contains(".id"),
            "error does not name the field: {error}"
        );
        assert!(
            error.contains("page "),
            "error does not name the page: {error}"
        );
        assert!(l["window"]["since"].is_string() && l["window"]["before"].is_string());
        let raw: Value = serde_json::from_str(l["raw"].as_str().expect("raw is a string"))
            .expect("raw is the row's JSON");
        raws.insert(raw.to_string());
    }
    // Each bad relation exactly once, although the lookback re-reads some windows, and
    // nothing else.
    assert_eq!(
        raws.len(),
        bad.len(),
        "distinct dead letters vs bad relations served"
    );
    assert_eq!(
        letters.len(),
        bad.len(),
        "a bad row was dead-lettered twice"
    );
    assert!(env.sim.control().stats().bad_rows_served >= bad.len() as u64);

    let bad_customers: BTreeSet<&String> = bad.keys().map(|(e, _)| e).collect();
    let audit = env.audit().await;
    assert_eq!(audit.duplicated, 0, "{audit:#?}");
    assert_eq!(audit.spurious, 0, "{audit:#?}");
    // Exactly the customers with a bad relation differ from the truth (missing or without it).
    assert_eq!(audit.lost as usize, bad_customers.len(), "{audit:#?}");

    // The checkpoint went past every bad row.
    let cp = checkpoint(&env).await.expect("a checkpoint was committed");
    let last_bad = bad.values().max().copied().expect("bad rows");
    assert!(
        cp.watermark > last_bad,
        "watermark {} <= {last_bad}",
        cp.watermark
    );

    // Another connector over the same topics, under another transactional id (so without a
    // checkpoint: it reads every window again): it restores every customer from the state
    // topic and reads the dead letters back at start, so it sends no event and no dead letter.
    let events_before = env.events().await.len();
    env.cfg.kafka.transactional_id = unique("badinput-again-txn");
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    assert_eq!(
        dead_letters(&env).await.len(),
        bad.len(),
        "a restarted connector dead-lettered a bad row again"
    );
    assert_eq!(
        env.events().await.len(),
        events_before,
        "events after re-reading everything"
    );
}

/// With `on_bad_record = "stop"`: the connector stops with an error naming the policy, writes
/// no dead letter, and its checkpoint does not pass the first bad row. Switching the policy to
/// `dead_letter` then reads everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_policy_stops_before_the_bad_row_and_commits_nothing_past_it() {
    let mut sim = sim_config(32, 1_000);
    sim.faults = FaultConfig {
        bad_row: BAD_RATE,
        ..FaultConfig::default()
    };
    let mut env = TestEnv::new(sim, |c| {
        c.topics.on_bad_record = BadRecordPolicy::Stop;
        // Small windows, so that some commit before the first bad row.
        c.windows.window_secs = 86_400;
    })
    .await;
    let bad = bad_relations(&env);
    let first_bad = bad.values().min().copied().expect("bad rows");

    let connector = startup::build(
        env.cfg.clone(),
        tanma_connector::ops::Health::new(Duration::from_secs(600)),
    )
    .await
    .expect("connector starts");
    let err = connector
        .run(
            CancellationToken::new(),
            RunOptions {
                stop_when_caught_up: true,
            },
        )
        .await
        .expect_err("the stop policy must stop the connector");
    let text = err.to_string();
    assert!(text.contains("on_bad_record = stop"), "{text}");
    assert!(
        text.contains("externalUserId") || text.contains("qwUserId") || text.contains(".id"),
        "error does not name the field: {text}"
    );
    assert_eq!(
        tanma_connector::commands::exit_code_for(&err),
        tanma_connector::commands::exit_code::KAFKA_FATAL,
        "fatal stop maps to a non-zero, non-config exit code"
    );

    if let Some(cp) = checkpoint(&env).await {
        assert!(
            cp.watermark <= first_bad,
            "checkpoint {} passed the first bad row at {first_bad}",
            cp.watermark
        );
    }
    assert!(
        dead_letters(&env).await.is_empty(),
        "stop policy wrote dead letters"
    );

    // Operator switches to dead-lettering: the run resumes and reads everything.
    env.cfg.topics.on_bad_record = BadRecordPolicy::DeadLetter;
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let raws: BTreeSet<String> = dead_letters(&env)
        .await
        .iter()
        .map(|l| l["raw"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(raws.len(), bad.len());
    let audit = env.audit().await;
    assert_eq!(audit.duplicated + audit.spurious, 0, "{audit:#?}");
}

/// Every page malformed (truncated JSON or an HTML page with HTTP 200): the connector keeps
/// retrying, does not panic, commits no checkpoint and no event; when the fault stops, it
/// reads everything exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pages_never_move_the_checkpoint_and_are_read_once_the_fault_stops() {
    let mut sim = sim_config(33, 600);
    sim.faults = FaultConfig {
        malformed: 1.0,
        ..FaultConfig::default()
    };
    let env = TestEnv::new(sim, |c| {
        c.api.malformed_attempts = 2;
    })
    .await;
    let (token, handle) = env.spawn();

    let control = env.sim.control().clone();
    wait_until(
        "the connector to retry malformed pages in several batches",
        Duration::from_secs(60),
        || {
            let n = control
                .stats()
                .requests
                .get("malformed")
                .copied()
                .unwrap_or(0);
            async move { n >= 12 }
        },
    )
    .await;
    assert!(
        !handle.is_finished(),
        "the connector gave up on malformed pages"
    );
    assert!(
        checkpoint(&env).await.is_none(),
        "checkpoint moved over unread data"
    );
    assert!(
        env.events().await.is_empty(),
        "events committed from malformed pages"
    );

    control
        .set_faults(FaultConfig::default())
        .expect("faults cleared");
    let audit = env.wait_clean(Duration::from_secs(90)).await;
    assert_eq!(audit.created as usize, audit.truth_customers);
    token.cancel();
    let exit = handle.await.expect("join").expect("clean shutdown");
    assert_eq!(exit, Exit::Shutdown);
}
