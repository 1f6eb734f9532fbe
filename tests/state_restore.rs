//! Restore of the state store from a real broker (`KAFKA_BOOTSTRAP_SERVERS`).
//!
//! Every test uses its own random topic and transactional id. The tests fail, not skip, when
//! the environment variable is missing.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use tanma_connector::error::{Classify, ErrorClass};
use tanma_connector::ops::metrics::{self, names};
use tanma_connector::state::{
    encode_headers, restore, RelationMeta, StateError, StateStore, HEADER_RELATIONS,
};

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .expect("KAFKA_BOOTSTRAP_SERVERS must be set (source /work/main/.infra/env)")
}

fn base_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

/// The connector's process-wide Prometheus recorder, installed once per test binary.
fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| metrics::install().expect("install recorder"))
}

/// The value of an unlabelled series in a Prometheus text rendering.
fn metric_value(rendered: &str, name: &str) -> Option<f64> {
    rendered
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn suffix() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

async fn create_topic(partitions: i32) -> String {
    let name = format!("state-test-{}", suffix());
    let admin: AdminClient<DefaultClientContext> = base_config().create().expect("admin client");
    let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
    name
}

/// One record to produce: key, value (None = tombstone), relations, partition.
struct Rec {
    key: String,
    value: Option<Vec<u8>>,
    relations: Vec<RelationMeta>,
    partition: i32,
}

fn rec(key: &str, value: &str, rels: &[(u64, u64)], partition: i32) -> Rec {
    Rec {
        key: key.into(),
        value: Some(value.as_bytes().to_vec()),
        relations: rels
            .iter()
            .map(|&(key_hash, fingerprint)| RelationMeta {
                key_hash,
                fingerprint,
                window: None,
            })
            .collect(),
        partition,
    }
}

fn tombstone(key: &str, partition: i32) -> Rec {
    Rec {
        key: key.into(),
        value: None,
        relations: Vec::new(),
        partition,
    }
}

fn headers_of(r: &Rec) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    if r.value.is_some() {
        for (k, v) in encode_headers(xxhash_rust::xxh3::xxh3_64(r.key.as_bytes()), &r.relations) {
            h = h.insert(Header {
                key: &k,
                value: Some(&v),
            });
        }
    }
    h
}

/// Produces `batches` in transactions; a batch with `commit == false` is aborted.
async fn produce_transactions(topic: &str, batches: Vec<(bool, Vec<Rec>)>) {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = base_config()
            .set("transactional.id", format!("state-test-txn-{}", suffix()))
            .set("transaction.timeout.ms", "10000")
            .create()
            .expect("producer");
        let t = Duration::from_secs(30);
        producer.init_transactions(t).expect("init_transactions");
        for (commit, recs) in batches {
            producer.begin_transaction().expect("begin");
            for r in &recs {
                let mut record = BaseRecord::<str, [u8]>::to(&topic)
                    .key(r.key.as_str())
                    .partition(r.partition)
                    .headers(headers_of(r));
                if let Some(v) = &r.value {
                    record = record.payload(v.as_slice());
                }
                producer.send(record).map_err(|(e, _)| e).expect("send");
                producer.poll(Duration::ZERO);
            }
            if commit {
                producer.commit_transaction(t).expect("commit");
            } else {
                producer.flush(t).expect("flush");
                producer.abort_transaction(t).expect("abort");
            }
        }
    })
    .await
    .expect("producer thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_latest_committed_state_across_partitions() {
    let topic = create_topic(3).await;
    let batches = vec![
        (
            true,
            vec![
                rec("wmA", "a1", &[(101, 1), (102, 2)], 0),
                rec("wmB", "b1", &[(201, 1)], 1),
                rec("wmC", "c1", &[(301, 1)], 2),
                rec("wmD", "d1", &[(401, 1)], 0),
            ],
        ),
        // Aborted: none of this may reach the store.
        (
            false,
            vec![
                rec("wmA", "a-aborted", &[(101, 666)], 0),
                rec("wmE", "e-aborted", &[(501, 666)], 1),
                tombstone("wmB", 1),
            ],
        ),
        (
            true,
            vec![
                // Latest wins; relation 102 dropped, 103 added.
                rec("wmA", "a2", &[(101, 7), (103, 3)], 0),
                tombstone("wmC", 2),
                rec("wmB", "b2", &[(201, 5)], 1),
            ],
        ),
        // Trailing aborted transaction: each partition ends with an abort marker.
        (
            false,
            vec![
                rec("wmF", "f-aborted", &[], 0),
                rec("wmF", "f-aborted", &[], 1),
                rec("wmF", "f-aborted", &[], 2),
            ],
        ),
    ];
    produce_transactions(&topic, batches).await;

    let handle = metrics_handle();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    // Stale content must be wiped by the restore.
    store.apply("stale", b"x", &[]).expect("apply");
    let mut calls = Vec::new();
    let stats = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(30),
        |r, t| calls.push((r, t)),
    )
    .await
    .expect("restore");

    assert_eq!(stats.records, 7, "committed records only: {stats:?}");
    assert_eq!(stats.customers, 3);
    assert_eq!(store.customers(), 3);
    assert!(!store.contains("stale"));
    assert_eq!(store.load("wmA").unwrap().as_deref(), Some(&b"a2"[..]));
    assert_eq!(store.load("wmB").unwrap().as_deref(), Some(&b"b2"[..]));
    assert_eq!(store.load("wmD").unwrap().as_deref(), Some(&b"d1"[..]));
    assert!(!store.contains("wmC"), "tombstoned");
    assert!(!store.contains("wmE"), "aborted");
    assert!(!store.contains("wmF"), "aborted");
    assert_eq!(store.relation_fingerprint(101), Some(7));
    assert_eq!(store.relation_fingerprint(102), None);
    assert_eq!(store.relation_fingerprint(103), Some(3));
    assert_eq!(store.relation_fingerprint(201), Some(5));
    assert_eq!(
        store.relation_fingerprint(301),
        None,
        "tombstone drops relations"
    );
    assert_eq!(store.relation_fingerprint(501), None);
    let last = calls.last().copied().expect("progress reported");
    assert_eq!(last.0, 7);
    // The estimate counts raw offsets, markers and aborted records included.
    assert!(last.1 >= 7, "{last:?}");

    // Other tests of this binary restore concurrently: the counter is at least ours.
    let rendered = handle.render();
    let restored = metric_value(&rendered, names::STATE_RESTORE_RECORDS_TOTAL);
    assert!(restored.is_some_and(|v| v >= 7.0), "{rendered}");
    assert!(
        metric_value(&rendered, names::CUSTOMERS_TRACKED).is_some(),
        "{rendered}"
    );
    assert!(
        metric_value(&rendered, names::STATE_RESTORE_DURATION_SECONDS).is_some(),
        "{rendered}"
    );
    assert_eq!(
        metrics::undeclared(),
        Vec::<String>::new(),
        "every name the restore writes is declared"
    );

    // A second restore of the same topic gives the same state (the store is reset first).
    let again = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(30),
        |_, _| {},
    )
    .await
    .expect("second restore");
    assert_eq!(again.records, 7);
    assert_eq!(store.customers(), 3);
    assert_eq!(store.load("wmA").unwrap().as_deref(), Some(&b"a2"[..]));
}

#[tokio::test]
async fn empty_topic_restores_instantly() {
    let topic = create_topic(4).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let started = Instant::now();
    let stats = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(30),
        |_, _| {},
    )
    .await
    .expect("restore");
    assert_eq!(stats.records, 0);
    assert_eq!(store.customers(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn missing_topic_is_a_clear_fatal_error() {
    let topic = format!("state-test-missing-{}", suffix());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let err = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(10),
        |_, _| {},
    )
    .await
    .expect_err("missing topic");
    assert!(matches!(err, StateError::TopicMissing { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(err.to_string().contains(&topic), "{err}");
}

#[tokio::test]
async fn record_without_relation_header_is_rejected_with_its_position() {
    let topic = create_topic(1).await;
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = base_config().create().expect("producer");
        producer
            .send(
                BaseRecord::<str, [u8]>::to(&t)
                    .key("wmX")
                    .payload(&b"v"[..])
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(Duration::from_secs(30)).expect("flush");
    })
    .await
    .expect("producer thread");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let err = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(30),
        |_, _| {},
    )
    .await
    .expect_err("invalid record");
    match &err {
        StateError::InvalidRecord {
            partition,
            offset,
            reason,
            ..
        } => {
            assert_eq!((*partition, *offset), (0, 0));
            assert!(reason.contains(HEADER_RELATIONS), "{reason}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Fatal);
}

#[tokio::test]
async fn unreachable_broker_stalls_into_a_retry_error() {
    let mut config = ClientConfig::new();
    // Nothing listens on port 1 of loopback.
    config.set("bootstrap.servers", "127.0.0.1:1");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let err = restore(
        config,
        "state-test-nowhere",
        &mut store,
        Duration::from_secs(2),
        |_, _| {},
    )
    .await
    .expect_err("no broker");
    assert_eq!(err.class(), ErrorClass::Retry, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_stalls_the_restore_until_it_commits() {
    let topic = create_topic(1).await;
    produce_transactions(
        &topic,
        vec![(
            true,
            vec![
                rec("wmA", "a1", &[(1, 1)], 0),
                rec("wmB", "b1", &[(2, 1)], 0),
            ],
        )],
    )
    .await;
    // A transaction left open: the last stable offset stays below the high watermark.
    let t = topic.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = base_config()
            .set("transactional.id", format!("state-test-open-{}", suffix()))
            .set("transaction.timeout.ms", "60000")
            .create()
            .expect("producer");
        let timeout = Duration::from_secs(30);
        producer.init_transactions(timeout).expect("init");
        producer.begin_transaction().expect("begin");
        let r = rec("wmC", "c1", &[(3, 1)], 0);
        producer
            .send(
                BaseRecord::<str, [u8]>::to(&t)
                    .key("wmC")
                    .partition(0)
                    .headers(headers_of(&r))
                    .payload(&b"c1"[..]),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(timeout).expect("flush");
        producer
    })
    .await
    .expect("producer thread");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let err = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(2),
        |_, _| {},
    )
    .await
    .expect_err("stalled behind the open transaction");
    match &err {
        StateError::RestoreStalled {
            records, pending, ..
        } => assert_eq!((*records, *pending), (2, 1), "{err}"),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Retry);

    tokio::task::spawn_blocking(move || {
        producer
            .commit_transaction(Duration::from_secs(30))
            .expect("commit")
    })
    .await
    .expect("commit thread");
    let stats = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(30),
        |_, _| {},
    )
    .await
    .expect("restore after commit");
    assert_eq!(stats.records, 3);
    assert_eq!(store.load("wmC").unwrap().as_deref(), Some(&b"c1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_restore_leaves_an_empty_store_that_can_restore_again() {
    let topic = create_topic(1).await;
    produce_transactions(&topic, vec![(true, vec![rec("wmA", "a1", &[(1, 1)], 0)])]).await;
    // Left open so that the first restore cannot finish before it is dropped.
    let t = topic.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = base_config()
            .set("transactional.id", format!("state-test-drop-{}", suffix()))
            .set("transaction.timeout.ms", "60000")
            .create()
            .expect("producer");
        let timeout = Duration::from_secs(30);
        producer.init_transactions(timeout).expect("init");
        producer.begin_transaction().expect("begin");
        let r = rec("wmB", "b1", &[], 0);
        producer
            .send(
                BaseRecord::<str, [u8]>::to(&t)
                    .key("wmB")
                    .partition(0)
                    .headers(headers_of(&r))
                    .payload(&b"b1"[..]),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(timeout).expect("flush");
        producer
    })
    .await
    .expect("producer thread");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let cut = tokio::time::timeout(
        Duration::from_secs(3),
        restore(
            base_config(),
            &topic,
            &mut store,
            Duration::from_secs(60),
            |_, _| {},
        ),
    )
    .await;
    assert!(cut.is_err(), "restore should still be waiting: {cut:?}");
    assert_eq!(store.customers(), 0);
    assert!(!store.contains("wmA"));

    tokio::task::spawn_blocking(move || {
        producer
            .commit_transaction(Duration::from_secs(30))
            .expect("commit")
    })
    .await
    .expect("commit thread");
    let stats = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(30),
        |_, _| {},
    )
    .await
    .expect("restore after the dropped one");
    assert_eq!(stats.records, 2);
    assert_eq!(store.load("wmB").unwrap().as_deref(), Some(&b"b1"[..]));
    store.apply("wmZ", b"z", &[]).expect("apply after restore");
    assert_eq!(store.load("wmZ").unwrap().as_deref(), Some(&b"z"[..]));
}
