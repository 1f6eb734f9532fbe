//! `tanma-connector check-config`: validates the configuration, then tries the API, the broker
//! and (if configured) the schema registry, and prints every problem found.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;
use crate::plan::Window;
use crate::publish::{client_config, create_client, KafkaContext};
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

/// Runs the check and prints the outcome; returns the process exit code.
pub async fn check(cfg: &Config) -> i32 {
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
