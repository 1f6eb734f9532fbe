//! `tanma-connector check-config`: validates the configuration, builds the librdkafka clients
//! the connector would create (offline), then tries the API, the broker and (if configured) the
//! schema registry, and prints every problem found. `--offline` stops before the network.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

use crate::config::Config;
use crate::plan::Window;
use crate::publish::client_config;
use crate::publish::client_config::{describe_creation_error, is_sensitive_key, producer_config};
use crate::publish::{create_client, KafkaContext};
use crate::upstream::client::ApiClient;
use crate::upstream::window_reader::WindowReader;

use super::exit_code;

/// Tries the API (one request for a one-second window at `windows.start_time`), the broker
/// (a metadata request) and the schema registry if one is configured (a read of schema id 1;
/// "not found" counts as an answer, unreachable or 401/403 do not). Returns one line per
/// problem; empty means all answered.
pub async fn probe(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    match ApiClient::new(&cfg.api) {
        Ok(client) => {
            let reader = WindowReader::new(client, &cfg.api);
            let start = cfg.start_time();
            let w = Window::new(start, start + chrono::Duration::seconds(1));
            if let Err(e) = reader.read(w, u64::MAX).await {
                problems.push(format!("api ({}): {e}", cfg.api.base_url));
            }
        }
        Err(e) => problems.push(format!("api: {e}")),
    }
    let kafka = cfg.kafka.clone();
    let timeout = Duration::from_millis(cfg.kafka.operation_timeout_ms.min(15_000));
    let broker = tokio::task::spawn_blocking(move || -> Result<usize, String> {
        let consumer: BaseConsumer<KafkaContext> =
            create_client(&client_config(&kafka)).map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
            .map_err(|e| e.to_string())
    })
    .await;
    match broker {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!(
            "kafka ({}): metadata request failed: {e}",
            cfg.kafka.bootstrap_servers
        )),
        Err(e) => problems.push(format!("kafka: {e}")),
    }
    if let Some(url) = &cfg.schema_registry.url {
        use crate::encode::{RegistryClient, RegistryError};
        let timeout = Duration::from_millis(cfg.kafka.operation_timeout_ms.min(15_000));
        match RegistryClient::from_config(&cfg.schema_registry, timeout) {
            Ok(Some(client)) => match client.schema_by_id(1).await {
                Ok(_) => {}
                Err(RegistryError::Status { status: 404, .. }) => {}
                Err(e) => problems.push(format!("schema registry ({url}): {e}")),
            },
            Ok(None) => {}
            Err(e) => problems.push(format!("schema registry ({url}): {e}")),
        }
    }
    problems
}

/// Builds the librdkafka client configurations the connector uses, the transactional producer's
/// and a consumer's (state restore, checkpoint), without contacting anything: librdkafka checks
/// every property name and value (an unknown property, a codec it was built without), then the
/// whole configuration while creating the client (with no bootstrap servers, so no connection
/// is attempted; CA and key files are read). Returns one line per problem, secrets redacted.
pub fn offline(cfg: &Config) -> Vec<String> {
    let mut consumer = client_config(&cfg.kafka);
    consumer.set("group.id", format!("{}-check", cfg.kafka.transactional_id));
    let mut problems = Vec::new();
    if let Err(e) = build_offline::<BaseProducer>(&producer_config(&cfg.kafka)) {
        problems.push(format!("kafka (producer client configuration): {e}"));
    }
    if let Err(e) = build_offline::<BaseConsumer>(&consumer) {
        problems.push(format!("kafka (consumer client configuration): {e}"));
    }
    problems
}

/// librdkafka's checks of `config`, property by property and as a whole, with no network.
fn build_offline<C: rdkafka::config::FromClientConfig>(
    config: &ClientConfig,
) -> Result<(), String> {
    config.create_native_config().map_err(|e| describe(&e))?;
    let mut unconnected = config.clone();
    unconnected.remove("bootstrap.servers");
    C::from_config(&unconnected)
        .map(drop)
        .map_err(|e| describe(&e))
}

/// A refused property as `key=value: reason` (the value hidden for secret keys).
fn describe(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, reason, key, value) if !is_sensitive_key(key) => {
            format!("librdkafka refuses {key}={value}: {reason}")
        }
        other => describe_creation_error(other),
    }
}

/// Runs the check and prints the outcome; returns the process exit code: 2 if the librdkafka
/// client configuration is refused, 5 if the API, broker or registry did not answer.
pub async fn check(cfg: &Config, offline_only: bool) -> i32 {
    let owned = cfg.clone();
    let refused = tokio::task::spawn_blocking(move || offline(&owned))
        .await
        .unwrap_or_else(|e| vec![format!("kafka: client configuration check failed: {e}")]);
    if !refused.is_empty() {
        eprintln!("invalid configuration:");
        for p in &refused {
            eprintln!("  - {p}");
        }
        return exit_code::CONFIG;
    }
    if offline_only {
        println!("configuration valid; the librdkafka clients build (offline: nothing contacted)");
        return exit_code::OK;
    }
    let problems = probe(cfg).await;
    if problems.is_empty() {
        println!("configuration valid; the API and the broker answered");
        exit_code::OK
    } else {
        eprintln!("configuration valid, but:");
        for p in &problems {
            eprintln!("  - {p}");
        }
        exit_code::CHECK_FAILED
    }
}
