//! Shared fixture of the integration tests: real Kafka and a schema registry, unique names,
//! condition waits ([`wait`]) and helpers that read a topic to its end.
//!
//! Every test binary uses it with `mod support;`. Infrastructure comes from the environment
//! (`KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`) or, when a Docker engine is reachable, from
//! containers started once per test binary; otherwise the tests fail with the command that
//! starts local infrastructure.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tanma_connector::config::{KafkaConfig, TopicsConfig};
use testcontainers_modules::kafka::apache::{Kafka, KAFKA_PORT};
use testcontainers_modules::testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::OnceCell;

/// The command that starts local infrastructure without Docker.
pub const START_HINT: &str = "scripts/infra/infra.sh start && source .infra/env";

/// Where the tests find Kafka and the schema registry.
#[derive(Debug)]
pub struct Infra {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Confluent-compatible registry base URL (e.g. `http://127.0.0.1:18081/apis/ccompat/v7`).
    pub registry_url: String,
}

/// Containers started by this test binary; kept for its whole life.
struct Containers {
    _kafka: Option<ContainerAsync<Kafka>>,
    _registry: Option<ContainerAsync<GenericImage>>,
}

static INFRA: OnceCell<(Infra, Containers)> = OnceCell::const_new();

/// `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL` from the environment when set; otherwise,
/// if a Docker engine is reachable, Kafka (KRaft) and an Apicurio registry started once per test
/// binary; otherwise a panic naming the command that starts local infrastructure.
pub async fn infra() -> &'static Infra {
    let (infra, _) = INFRA.get_or_init(start_infra).await;
    infra
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn docker_reachable() -> bool {
    env("DOCKER_HOST").is_some()
        || Path::new("/var/run/docker.sock").exists()
        || env("HOME").is_some_and(|h| Path::new(&h).join(".docker/run/docker.sock").exists())
}

async fn start_infra() -> (Infra, Containers) {
    let kafka_env = env("KAFKA_BOOTSTRAP_SERVERS");
    let registry_env = env("SCHEMA_REGISTRY_URL");
    if (kafka_env.is_none() || registry_env.is_none()) && !docker_reachable() {
        panic!(
            "integration tests need Kafka and a schema registry: KAFKA_BOOTSTRAP_SERVERS={kafka_env:?}, \
             SCHEMA_REGISTRY_URL={registry_env:?}, and no Docker engine is reachable. \
             Start local infrastructure with `{START_HINT}` and run the tests again."
        );
    }
    let (bootstrap, kafka) = match kafka_env {
        Some(b) => (b, None),
        None => {
            let container = Kafka::default()
                .with_jvm_image()
                .with_tag("4.1.0")
                .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
                .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
                .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
                .with_env_var("KAFKA_LOG_CLEANER_BACKOFF_MS", "100")
                .start()
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot start the Kafka container ({e}); or run `{START_HINT}`")
                });
            let port = container
                .get_host_port_ipv4(KAFKA_PORT)
                .await
                .unwrap_or_else(|e| panic!("no host port for the Kafka container: {e}"));
            (format!("127.0.0.1:{port}"), Some(container))
        }
    };
    let (registry_url, registry) = match registry_env {
        Some(u) => (u.trim_end_matches('/').to_string(), None),
        None => {
            let container = GenericImage::new("apicurio/apicurio-registry", "3.3.3")
                .with_exposed_port(8080.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Listening on"))
                .start()
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot start the registry container ({e}); or run `{START_HINT}`")
                });
            let port = container
                .get_host_port_ipv4(8080.tcp())
                .await
                .unwrap_or_else(|e| panic!("no host port for the registry container: {e}"));
            (
                format!("http://127.0.0.1:{port}/apis/ccompat/v7"),
                Some(container),
            )
        }
    };
    (
        Infra {
            bootstrap,
            registry_url,
        },
        Containers {
            _kafka: kafka,
            _registry: registry,
        },
    )
}

/// `prefix` plus a random suffix; valid as a topic name, group id or transactional id.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{:08x}{nanos:08x}", rand::random::<u32>())
}

/// A connector Kafka configuration for tests: the given transactional id, short timeouts (an
/// abandoned transaction must not stall `read_committed` readers for a minute).
pub fn kafka_config(infra: &Infra, transactional_id: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: infra.bootstrap.clone(),
        transactional_id: transactional_id.to_string(),
        transaction_timeout_ms: 10_000,
        operation_timeout_ms: 15_000,
        ..KafkaConfig::default()
    }
}

/// Four fresh topic names starting with `prefix`; `partitions` for events and state.
pub fn topics_config(prefix: &str, partitions: i32) -> TopicsConfig {
    let base = unique(prefix);
    TopicsConfig {
        events: format!("{base}.events"),
        state: format!("{base}.state"),
        checkpoint: format!("{base}.checkpoint"),
        dead_letter: format!("{base}.dlq"),
        partitions,
        replication_factor: 1,
        create: true,
        ..TopicsConfig::default()
    }
}

fn consumer(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .unwrap_or_else(|e| panic!("cannot create a {isolation} consumer: {e}"))
}

/// A `read_committed` consumer (no auto commit, from the earliest offset).
pub fn read_committed_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    consumer(bootstrap, group, "read_committed")
}

/// A `read_uncommitted` consumer (no auto commit, from the earliest offset).
pub fn read_uncommitted_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    consumer(bootstrap, group, "read_uncommitted")
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of `topic` (all partitions, in offset order per partition) up to the high
/// watermark taken when the call starts, as seen with `isolation` (`read_committed` or
/// `read_uncommitted`). Panics if no progress is made for `timeout`.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
) -> Vec<ReadRecord> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    let isolation = isolation.to_string();
    tokio::task::spawn_blocking(move || read_all_blocking(&bootstrap, &topic, &isolation, timeout))
        .await
        .unwrap_or_else(|e| panic!("reading the topic panicked: {e}"))
}

fn read_all_blocking(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
) -> Vec<ReadRecord> {
    let probe = read_uncommitted_consumer(bootstrap, &unique("probe"));
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut high = BTreeMap::new();
    for p in &partitions {
        let (_, h) = probe
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
        high.insert(*p, h);
    }
    let reader = consumer(bootstrap, &unique("reader"), isolation);
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("assignment: {e}"));
    }
    reader
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
    let mut out = Vec::new();
    let mut last_progress = Instant::now();
    let mut reached = BTreeMap::new();
    loop {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
        let positions = reader
            .position()
            .unwrap_or_else(|e| panic!("position: {e}"));
        let mut done = true;
        for p in &partitions {
            let pos = match positions.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            let h = high.get(p).copied().unwrap_or(0);
            if reached.get(p).copied().unwrap_or(-1) < pos {
                reached.insert(*p, pos);
                last_progress = Instant::now();
            }
            if h > 0 && pos < h {
                done = false;
            }
        }
        if done {
            out.sort_by_key(|r| (r.partition, r.offset));
            return out;
        }
        if last_progress.elapsed() > timeout {
            panic!("no progress reading {topic} ({isolation}) for {timeout:?}: reached {reached:?}, high watermarks {high:?}");
        }
    }
}
pub mod harness;
pub mod wait;

#[allow(unused_imports)]
pub use wait::{poll_until, wait_for, wait_until};
