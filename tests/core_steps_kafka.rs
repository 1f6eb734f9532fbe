//! The fault scenarios of `core_steps.rs` once more, against the real broker: the same
//! in-memory API source, but the Kafka log (transactional producer, checkpoint and state
//! topics read `read_committed`). After each, the committed topics read back by an independent
//! `read_committed` consumer must hold an exact stream.

mod core_support;
mod support;

use std::time::Duration;

use core_support::{scenario, Rec, World};
use tanma_connector::config::Config;
use tanma_connector::pipeline::faults::{Action, Step};
use tanma_connector::pipeline::KafkaLog;
use tanma_connector::publish::ensure_topics;

async fn each_action(step: Step) {
    let infra = support::infra().await;
    for action in [Action::Fail, Action::Crash, Action::Shutdown] {
        let prefix = support::unique("core");
        let mut cfg = Config {
            kafka: support::kafka_config(infra, &format!("{prefix}-txn")),
            topics: support::topics_config(&prefix, 3),
            ..Config::default()
        };
        cfg.state.restore_timeout_ms = 30_000;
        let mut world = World::new(cfg);
        ensure_topics(&world.cfg.kafka, &world.cfg.topics)
            .await
            .expect("topics");
        let log_cfg = world.cfg.clone();
        let bootstrap = infra.bootstrap.clone();
        scenario(
            &mut world,
            (step, action),
            move || KafkaLog::new(&log_cfg),
            move |topic| {
                let bootstrap = bootstrap.clone();
                async move {
                    support::read_all(
                        &bootstrap,
                        &topic,
                        "read_committed",
                        Duration::from_secs(30),
                    )
                    .await
                    .into_iter()
                    .map(|r| Rec {
                        key: r.key.unwrap_or_default(),
                        value: r.value,
                        headers: r.headers,
                    })
                    .collect()
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_and_during_produce() {
    each_action(Step::BeforeProduce).await;
    each_action(Step::DuringProduce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_failing_or_unknown() {
    each_action(Step::Commit).await;
    each_action(Step::CommitUnknown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_commit() {
    each_action(Step::AfterCommit).await;
    each_action(Step::Apply).await;
    each_action(Step::OnCommitted).await;
}
