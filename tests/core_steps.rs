//! The exactly-once core, step by step, in-process: every step of a unit of work (before
//! produce, during produce, commit failing, commit outcome unknown, after commit, a state store
//! failing half way through applying, the planner failing) meets a failure, a crash and a
//! shutdown, over the in-memory source and log. After each, the stream must be exact (see
//! `core_support`). `core_steps_kafka.rs` runs the same scenarios against the real broker.

mod core_support;

use std::time::Duration;

use core_support::{scenario, Rec, World};
use tanma_connector::config::Config;
use tanma_connector::encode::{Codec, Framing};
use tanma_connector::ops::Health;
use tanma_connector::pipeline::faults::{Action, FaultPlan, Step};
use tanma_connector::pipeline::memory::MemoryLog;
use tanma_connector::pipeline::{Connector, Exit, RunOptions};
use tokio_util::sync::CancellationToken;

const ACTIONS: [Action; 3] = [Action::Fail, Action::Crash, Action::Shutdown];

/// The committed records of `topic`, as the checker takes them.
fn records(log: &MemoryLog, topic: &str) -> Vec<Rec> {
    log.records(topic)
        .into_iter()
        .map(|r| Rec {
            key: r.key,
            value: r.value,
            headers: r.headers,
        })
        .collect()
}

async fn each_action(step: Step) {
    for action in ACTIONS {
        let mut world = World::new(Config::default());
        let log = MemoryLog::new(&world.cfg);
        let handles = log.clone();
        let reader = log.clone();
        scenario(
            &mut world,
            (step, action),
            move || handles.reopen(),
            move |topic| {
                let log = reader.clone();
                async move { records(&log, &topic) }
            },
        )
        .await;
        let (commits, aborted) = log.transactions();
        assert!(commits > 0, "{step:?}/{action:?}: nothing committed");
        if matches!(step, Step::DuringProduce | Step::Commit) && action != Action::Shutdown {
            assert!(
                aborted >= 2,
                "{step:?}/{action:?}: the failing unit was not aborted"
            );
        }
    }
}

#[tokio::test]
async fn before_produce() {
    each_action(Step::BeforeProduce).await;
}

#[tokio::test]
async fn during_produce() {
    each_action(Step::DuringProduce).await;
}

#[tokio::test]
async fn commit_failing() {
    each_action(Step::Commit).await;
}

#[tokio::test]
async fn commit_outcome_unknown() {
    each_action(Step::CommitUnknown).await;
}

#[tokio::test]
async fn after_commit_before_apply() {
    each_action(Step::AfterCommit).await;
}

/// The state volume fills up while a committed unit is applied: the store is half applied.
/// The connector must recover from the topics, never rewind against that store.
#[tokio::test]
async fn apply_failing_half_way() {
    each_action(Step::Apply).await;
}

#[tokio::test]
async fn planner_failing_after_apply() {
    each_action(Step::OnCommitted).await;
}

/// A fenced writer's commits fail: a second connector over the same log takes over, and the
/// first one stops with a fatal error instead of committing.
#[tokio::test]
async fn a_zombie_is_fenced() {
    let world = World::new(Config::default());
    let log = MemoryLog::new(&world.cfg);
    let codec = Codec::new(Framing::SingleObject).expect("codec");
    let zombie = Connector::start(
        world.cfg.clone(),
        world.source.clone(),
        log.reopen(),
        codec.clone(),
        Health::new(Duration::from_secs(60)),
    )
    .await
    .expect("first start");
    let _newer = Connector::start(
        world.cfg.clone(),
        world.source.clone(),
        log.reopen(),
        codec,
        Health::new(Duration::from_secs(60)),
    )
    .await
    .expect("second start");
    let opts = RunOptions {
        stop_when_caught_up: true,
    };
    let err = zombie
        .run(CancellationToken::new(), opts)
        .await
        .expect_err("a fenced connector must not run");
    assert!(err.to_string().to_lowercase().contains("fenced"), "{err}");
    assert_eq!(log.transactions().0, 0, "the zombie committed");
}

/// `/health` turns red while commits keep failing past the deadline, and green again once
/// they succeed; the run then completes exactly.
#[tokio::test]
async fn health_fails_while_commits_keep_failing() {
    let world = World::new(Config::default());
    let log = MemoryLog::new(&world.cfg);
    let plan = FaultPlan::new();
    for _ in 0..12 {
        plan.arm(Step::Commit, Action::Fail, 1);
    }
    let health =
        Health::new(Duration::from_secs(60)).with_failure_deadline(Duration::from_millis(150));
    let connector = Connector::start(
        world.cfg.clone(),
        world.source.clone(),
        log.reopen(),
        Codec::new(Framing::SingleObject).expect("codec"),
        health.clone(),
    )
    .await
    .expect("start")
    .with_faults(plan.clone());
    let opts = RunOptions {
        stop_when_caught_up: true,
    };
    let run = tokio::spawn(connector.run(CancellationToken::new(), opts));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut saw_red = false;
    while !run.is_finished() {
        saw_red |= !health.is_alive();
        assert!(tokio::time::Instant::now() < deadline, "run did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(run.await.expect("join").expect("run"), Exit::CaughtUp);
    assert!(saw_red, "/health never failed while commits failed");
    assert!(
        health.is_alive(),
        "/health still failing after commits succeeded"
    );
    assert!(plan.exhausted());
    core_support::check(
        &world,
        &records(&log, &world.cfg.topics.events),
        &records(&log, &world.cfg.topics.state),
    );
}
