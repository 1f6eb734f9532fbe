//! A broker that rejects the connector's writes: a clear fatal error and a clean stop, never a
//! silent skip — and nothing of the rejected unit of work is committed.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use support::harness::{sim_config, TestEnv};
use tanma_connector::error::{Classify, ErrorClass};

/// The events topic accepts at most 1,000 bytes per record; every event is larger. The connector
/// must stop with a fatal error naming the topic, and must not commit a checkpoint or any state
/// past the rejected unit of work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_too_large_stops_cleanly_and_commits_nothing() {
    let env = TestEnv::new(sim_config(23, 200), |_| {}).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.infra.bootstrap)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(&env.cfg.topics.events, 1, TopicReplication::Fixed(1))
        .set("max.message.bytes", "1000");
    let created = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create_topics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    let (_stop, handle) = env.spawn();
    let result = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("the connector must stop, not retry forever")
        .expect("join");
    let err = result.expect_err("a rejected write must stop the connector");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&env.cfg.topics.events),
        "the error names the topic: {msg}"
    );

    for topic in [
        &env.cfg.topics.checkpoint,
        &env.cfg.topics.state,
        &env.cfg.topics.events,
    ] {
        let records = support::read_all(
            &env.infra.bootstrap,
            topic,
            "read_committed",
            Duration::from_secs(20),
        )
        .await;
        assert!(
            records.is_empty(),
            "{} committed records in {topic}",
            records.len()
        );
    }
}
