//! Shared fixture of the integration tests: real Kafka and a schema registry, unique names,
//! condition waits ([`wait`]) and a helper that reads a topic to its end (the connector's own
//! [`read_to_end`]).
//!
//! Every test binary uses it with `mod support;`. Infrastructure comes from the environment
//! (`KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`) or, when a Docker engine is reachable, from
//! containers started once per test binary; otherwise the tests fail with the command that
//! starts local infrastructure.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use tanma_connector::config::{KafkaConfig, TopicsConfig};
use tanma_connector::publish::{read_to_end, Isolation, ReadOptions};
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
/// `read_uncommitted`); the connector's own [`read_to_end`]. Panics if no progress is made for
/// `timeout`.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
) -> Vec<ReadRecord> {
    let isolation = match isolation {
        "read_committed" => Isolation::ReadCommitted,
        "read_uncommitted" => Isolation::ReadUncommitted,
        other => panic!("unknown isolation level {other:?}"),
    };
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    let opts = ReadOptions {
        timeout,
        isolation,
        cancel: None,
    };
    let read = read_to_end(&client, topic, opts, Vec::new(), |out, r| {
        let mut headers = Vec::new();
        r.for_each_header(|k, v| headers.push((k.to_string(), v.to_vec())));
        out.push(ReadRecord {
            partition: r.partition(),
            offset: r.offset(),
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().map(<[u8]>::to_vec),
            headers,
        });
        Ok::<(), std::convert::Infallible>(())
    })
    .await;
    let (mut out, _) = read.unwrap_or_else(|e| panic!("reading {topic} ({isolation:?}): {e}"));
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

pub mod harness;
pub mod wait;

#[allow(unused_imports)]
pub use wait::{poll_until, wait_for, wait_until};
