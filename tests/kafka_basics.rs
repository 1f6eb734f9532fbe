//! Foundation tests against the real broker and schema registry: transactions commit and abort,
//! topics are created and verified, schemas round-trip through the registry, zombies are fenced,
//! and the checkpoint is read back from committed data only.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tanma_connector::error::{Classify, ErrorClass};
use tanma_connector::publish::{
    ensure_topics, partition_count, read_latest, OutRecord, PublishError, TopicError,
    TransactionalProducer,
};

use support::{infra, kafka_config, read_all, topics_config, unique};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn record(topic: &str, key: &str, value: &str) -> OutRecord {
    OutRecord {
        topic: topic.to_string(),
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![("source".into(), b"test".to_vec())],
    }
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn values(records: &[support::ReadRecord]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_batch_is_visible_and_aborted_batch_is_not() {
    let infra = infra().await;
    let topics = topics_config("basics-txn", 3);
    let cfg = kafka_config(infra, &unique("txn"));
    ensure_topics(&cfg, &topics).await.expect("ensure topics");
    let producer = TransactionalProducer::new(&cfg).await.expect("producer");

    let committed: Vec<OutRecord> = (0..5)
        .map(|i| record(&topics.events, &format!("k{i}"), &format!("committed-{i}")))
        .collect();
    let stats = producer.commit(committed).await.expect("commit");
    assert_eq!(stats.records, 5);
    assert_eq!(stats.per_topic.get(&topics.events), Some(&5));

    let aborted: Vec<OutRecord> = (0..3)
        .map(|i| record(&topics.events, &format!("k{i}"), &format!("aborted-{i}")))
        .collect();
    let stats = producer
        .write_aborted(aborted)
        .await
        .expect("write aborted");
    assert_eq!(stats.records, 3);

    // A later committed batch proves the producer is usable after an abort.
    producer
        .commit(vec![record(&topics.events, "k9", "committed-9")])
        .await
        .expect("commit after abort");

    let read_committed = read_all(
        &infra.bootstrap,
        &topics.events,
        "read_committed",
        READ_TIMEOUT,
    )
    .await;
    let mut expected: Vec<String> = (0..5).map(|i| format!("committed-{i}")).collect();
    expected.push("committed-9".into());
    expected.sort();
    assert_eq!(values(&read_committed), expected);
    assert!(read_committed
        .iter()
        .all(|r| r.headers == vec![("source".to_string(), b"test".to_vec())]));

    let read_uncommitted = read_all(
        &infra.bootstrap,
        &topics.events,
        "read_uncommitted",
        READ_TIMEOUT,
    )
    .await;
    assert_eq!(read_uncommitted.len(), 9, "{:?}", values(&read_uncommitted));
    assert_eq!(
        values(&read_uncommitted)
            .iter()
            .filter(|v| v.starts_with("aborted-"))
            .count(),
        3
    );
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topics_creates_compacted_topics_and_rejects_a_non_compacted_state_topic() {
    let infra = infra().await;
    let cfg = kafka_config(infra, &unique("topics"));
    let topics = topics_config("basics-topics", 2);
    ensure_topics(&cfg, &topics).await.expect("ensure topics");

    let admin = admin(&infra.bootstrap);
    let resources = [
        ResourceSpecifier::Topic(&topics.state),
        ResourceSpecifier::Topic(&topics.checkpoint),
        ResourceSpecifier::Topic(&topics.events),
    ];
    let described = admin
        .describe_configs(&resources, &AdminOptions::new())
        .await
        .expect("describe configs");
    let policies: Vec<Option<String>> = described
        .into_iter()
        .map(|r| {
            r.expect("config resource")
                .get("cleanup.policy")
                .and_then(|e| e.value.clone())
        })
        .collect();
    assert_eq!(
        policies,
        vec![
            Some("compact".to_string()),
            Some("compact".to_string()),
            Some("delete".to_string())
        ]
    );
    assert_eq!(
        partition_count(&cfg, &topics.checkpoint)
            .await
            .expect("count"),
        Some(1)
    );
    assert_eq!(
        partition_count(&cfg, &topics.state).await.expect("count"),
        Some(2)
    );
    // Idempotent: a second run finds everything in place.
    ensure_topics(&cfg, &topics).await.expect("second ensure");

    // A pre-existing state topic with cleanup.policy=delete is refused.
    let bad = topics_config("basics-badstate", 1);
    let created = admin
        .create_topics(
            &[NewTopic::new(&bad.state, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "delete")],
            &AdminOptions::new(),
        )
        .await
        .expect("create bad state topic");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let err = ensure_topics(&cfg, &bad)
        .await
        .expect_err("must refuse a delete-policy state topic");
    assert!(matches!(err, TopicError::CleanupPolicy { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Fatal);
    let text = err.to_string();
    assert!(
        text.contains(&bad.state) && text.contains("delete") && text.contains("compact"),
        "{text}"
    );

    // Missing topics with create = false are named.
    let mut absent = topics_config("basics-absent", 1);
    absent.create = false;
    let err = ensure_topics(&cfg, &absent)
        .await
        .expect_err("missing topics");
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(err.to_string().contains(&absent.checkpoint), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_schema_round_trips_through_the_registry() {
    let infra = infra().await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/customer_snapshot.avsc"
    ))
    .expect("read schema");
    let local = apache_avro::Schema::parse_str(&text).expect("parse local schema");

    let client = reqwest::Client::new();
    let subject = format!("{}-value", unique("basics-snapshot"));
    let body = serde_json::json!({ "schema": text }).to_string();
    let response = client
        .post(format!(
            "{}/subjects/{subject}/versions",
            infra.registry_url
        ))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(body)
        .send()
        .await
        .expect("register");
    let status = response.status();
    let answer = response.text().await.expect("register body");
    assert!(status.is_success(), "register: {status} {answer}");
    let id = serde_json::from_str::<serde_json::Value>(&answer).expect("json")["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {answer}"));

    let response = client
        .get(format!("{}/schemas/ids/{id}", infra.registry_url))
        .send()
        .await
        .expect("fetch");
    let status = response.status();
    let answer = response.text().await.expect("fetch body");
    assert!(status.is_success(), "fetch: {status} {answer}");
    let fetched = serde_json::from_str::<serde_json::Value>(&answer).expect("json")["schema"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no schema in {answer}"));
    let remote = apache_avro::Schema::parse_str(&fetched).expect("parse fetched schema");
    assert_eq!(remote.canonical_form(), local.canonical_form());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let infra = infra().await;
    let topics = topics_config("basics-fence", 1);
    let cfg = kafka_config(infra, &unique("fence"));
    ensure_topics(&cfg, &topics).await.expect("ensure topics");

    let first = TransactionalProducer::new(&cfg)
        .await
        .expect("first producer");
    first
        .commit(vec![record(&topics.events, "a", "from-first")])
        .await
        .expect("first commit");
    let second = TransactionalProducer::new(&cfg)
        .await
        .expect("second producer");

    let err: PublishError = first
        .commit(vec![record(&topics.events, "a", "zombie")])
        .await
        .expect_err("the fenced producer must fail");
    eprintln!("fenced producer error: {err}");
    assert!(matches!(err, PublishError::Fenced { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err:?}");
    assert!(err.to_string().contains(&cfg.transactional_id), "{err}");

    second
        .commit(vec![record(&topics.events, "a", "from-second")])
        .await
        .expect("second commit");
    let seen = read_all(
        &infra.bootstrap,
        &topics.events,
        "read_committed",
        READ_TIMEOUT,
    )
    .await;
    assert_eq!(
        values(&seen),
        vec!["from-first".to_string(), "from-second".to_string()]
    );
    first.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_latest_returns_the_last_committed_checkpoint() {
    let infra = infra().await;
    let topics = topics_config("basics-ckpt", 1);
    let cfg = kafka_config(infra, &unique("ckpt"));
    ensure_topics(&cfg, &topics).await.expect("ensure topics");
    let producer = TransactionalProducer::new(&cfg).await.expect("producer");
    let key = cfg.transactional_id.as_str();
    let timeout = Duration::from_secs(20);

    assert_eq!(
        read_latest(&cfg, &topics.checkpoint, key, timeout)
            .await
            .expect("empty"),
        None
    );

    for v in ["v1", "v2"] {
        producer
            .commit(vec![
                record(&topics.events, "c1", &format!("event-{v}")),
                record(
                    &topics.checkpoint,
                    "another-connector",
                    &format!("other-{v}"),
                ),
                record(&topics.checkpoint, key, v),
            ])
            .await
            .expect("commit checkpoint");
    }
    producer
        .write_aborted(vec![record(&topics.checkpoint, key, "v3-aborted")])
        .await
        .expect("aborted checkpoint");
    // Another connector's later checkpoint does not count.
    producer
        .commit(vec![record(
            &topics.checkpoint,
            "another-connector",
            "other-v9",
        )])
        .await
        .expect("other key");

    let latest = read_latest(&cfg, &topics.checkpoint, key, timeout)
        .await
        .expect("read latest");
    assert_eq!(latest.as_deref(), Some(b"v2".as_slice()));

    let err = read_latest(&cfg, &topics.events, key, timeout).await.err();
    // The events topic has one partition here, so it reads fine; a multi-partition topic is refused.
    assert!(err.is_none(), "{err:?}");
    let multi = topics_config("basics-ckpt-multi", 3);
    ensure_topics(&cfg, &multi).await.expect("ensure multi");
    let err = read_latest(&cfg, &multi.state, key, timeout)
        .await
        .expect_err("3 partitions");
    assert!(
        matches!(
            err,
            PublishError::CheckpointPartitions { partitions: 3, .. }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    producer.close().await;
}
