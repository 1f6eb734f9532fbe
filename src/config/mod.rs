//! Configuration: one serde tree, loaded from a TOML file with every key overridable by an
//! environment variable, then validated as a whole.
//!
//! Environment overrides use the prefix `TANMA_` and `__` between levels:
//! `TANMA_API__BASE_URL`, `TANMA_KAFKA__BOOTSTRAP_SERVERS`, `TANMA_WINDOWS__SETTLE_LAG_SECS`.
//! Secrets (`api.app_key`, `kafka.sasl_password`, `schema_registry.password`) may come only from
//! the environment or from a file named by the matching `*_file` key, never from the config file
//! itself. Unknown keys are rejected. [`Config::validate`] lists every problem at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::DateTime;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Tanma API.
    pub api: ApiConfig,
    /// Time windows: backfill, lookback, re-scans.
    pub windows: WindowsConfig,
    /// Kafka connection and producer.
    pub kafka: KafkaConfig,
    /// Topic names and settings.
    pub topics: TopicsConfig,
    /// Optional Confluent-compatible schema registry.
    pub schema_registry: SchemaRegistryConfig,
    /// Local diff-state store.
    pub state: StateConfig,
    /// Metrics, health, logging, shutdown.
    pub ops: OpsConfig,
}

/// The Tanma API client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Base URL, e.g. `https://account.tanmarket.cn/apiServer`. No default that reaches the internet.
    pub base_url: String,
    /// Application id (`appId` header).
    pub app_id: String,
    /// Shared secret; from `TANMA_API__APP_KEY` only (or `app_key_file`).
    #[serde(skip_serializing)]
    pub app_key: Option<SecretString>,
    /// File holding the app key (trailing newline ignored).
    pub app_key_file: Option<PathBuf>,
    /// Also send the `appKey` header (off: working clients do not send it).
    pub send_app_key_header: bool,
    /// IANA time zone in which `since`/`before` are written.
    pub time_zone: String,
    /// Rows per page.
    pub page_size: u32,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Client-side rate limit, requests per second, shared by all fetchers.
    pub rate_limit_per_sec: f64,
    /// Requests allowed in a burst above the rate.
    pub rate_limit_burst: u32,
    /// Attempts per request for transient errors, the first included.
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt, with jitter.
    pub backoff_initial_ms: u64,
    /// Largest backoff delay.
    pub backoff_max_ms: u64,
    /// Attempts when the body is not valid JSON, before giving up on the request.
    pub malformed_attempts: u32,
    /// Attempts with a fresh timestamp after code 1003 (clock skew), before stopping.
    pub clock_skew_attempts: u32,
    /// Business codes that stop the connector (1002 always does).
    pub fatal_codes: Vec<i64>,
    /// Re-reads of a window whose pages disagree before it is read as two halves (a window
    /// wider than one second, halved at most three times).
    pub max_drift_rereads: u32,
    /// Request budget of one window that cannot be halved, in passes: it is read again until
    /// complete (the distinct rows seen equal a stable `totalCount`), at most this many times
    /// in all, so at most this × `ceil(totalCount / page_size)` requests. Still incomplete
    /// then, its window is read again soon.
    pub max_read_passes: u32,
    /// Extra CA certificate (PEM) for HTTPS to the API.
    pub ca_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            app_id: String::new(),
            app_key: None,
            app_key_file: None,
            send_app_key_header: false,
            time_zone: "Asia/Shanghai".into(),
            page_size: 100,
            request_timeout_ms: 10_000,
            max_response_bytes: 16 * 1024 * 1024,
            rate_limit_per_sec: 20.0,
            rate_limit_burst: 5,
            max_attempts: 8,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            malformed_attempts: 3,
            clock_skew_attempts: 3,
            fatal_codes: Vec::new(),
            max_drift_rereads: 3,
            max_read_passes: 20,
            ca_file: None,
        }
    }
}

/// One re-scan tier: windows whose add time is younger than `max_age_secs` (0 = any age) are
/// re-read every `every_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescanTier {
    /// Oldest add time this tier covers, as an age in seconds; 0 means everything since `start_time`.
    pub max_age_secs: u64,
    /// How often the tier's range is re-read in full.
    pub every_secs: u64,
}

/// Time windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Where the watermark starts on first run (RFC 3339).
    pub start_time: String,
    /// Width of a forward (backfill) window.
    pub window_secs: u64,
    /// A window whose totalCount exceeds this is split in two (down to one second).
    pub split_threshold: u64,
    /// Windows are read only up to `now - settle_lag`.
    pub settle_lag_secs: u64,
    /// Pause between cycles once caught up.
    pub poll_interval_ms: u64,
    /// Each cycle re-reads `[watermark - lookback, watermark)` to catch late relations.
    pub lookback_secs: u64,
    /// Windows fetched concurrently.
    pub concurrency: usize,
    /// Re-scan schedule.
    pub rescan: Vec<RescanTier>,
    /// Share of API requests re-scans may use while forward progress has work.
    pub rescan_budget_fraction: f64,
    /// Whether ended relations and customers are emitted (UPDATED / DELETED + tombstone).
    pub deletions: DeletionMode,
    /// Complete reads in a row (in different units of work) a known relation must be absent
    /// from before it is taken as ended.
    pub delete_confirmations: u32,
    /// Deletions are held (nothing deleted, logged, `tanma_deletions_held`) while the relations
    /// seen absent exceed this share of the known relations.
    pub max_delete_fraction: f64,
}

/// Whether ended relations and customers are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeletionMode {
    /// UPDATED for an ended relation, DELETED + a state tombstone for an ended customer.
    #[default]
    Emit,
    /// Relations missing from reads are kept (the behaviour before deletions existed).
    Off,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            start_time: "2024-01-01T00:00:00+08:00".into(),
            window_secs: 6 * 3600,
            split_threshold: 1000,
            settle_lag_secs: 10,
            poll_interval_ms: 5_000,
            lookback_secs: 3600,
            concurrency: 4,
            rescan: vec![
                RescanTier {
                    max_age_secs: 86_400,
                    every_secs: 3600,
                },
                RescanTier {
                    max_age_secs: 0,
                    every_secs: 86_400,
                },
            ],
            rescan_budget_fraction: 0.3,
            deletions: DeletionMode::Emit,
            delete_confirmations: 2,
            max_delete_fraction: 0.05,
        }
    }
}

/// Kafka connection and producer settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Stable `transactional.id`; one running instance per id (a second one fences the first).
    pub transactional_id: String,
    /// `transaction.timeout.ms`.
    pub transaction_timeout_ms: u64,
    /// Timeout for blocking calls: init, commit, abort, metadata.
    pub operation_timeout_ms: u64,
    /// The producer's `statistics.interval.ms`: how often librdkafka's statistics are mapped to
    /// the `tanma_kafka_*` metrics; 0 disables them.
    pub statistics_interval_ms: u64,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext, sasl_ssl.
    pub security_protocol: String,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`; from `TANMA_KAFKA__SASL_PASSWORD` only (or `sasl_password_file`).
    #[serde(skip_serializing)]
    pub sasl_password: Option<SecretString>,
    /// File holding the SASL password.
    pub sasl_password_file: Option<PathBuf>,
    /// `ssl.ca.location`.
    pub ssl_ca_location: Option<PathBuf>,
    /// Further librdkafka properties, passed through as they are.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            transactional_id: "tanma-connector".into(),
            transaction_timeout_ms: 60_000,
            operation_timeout_ms: 30_000,
            statistics_interval_ms: 30_000,
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_file: None,
            ssl_ca_location: None,
            properties: BTreeMap::new(),
        }
    }
}

/// Topics the connector writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Change events (CREATED / UPDATED), keyed by externalUserId.
    pub events: String,
    /// Compacted: each customer's latest snapshot, keyed by externalUserId.
    pub state: String,
    /// Compacted, one partition: the connector's checkpoint.
    pub checkpoint: String,
    /// Records that could not be encoded, with their raw JSON and the error.
    pub dead_letter: String,
    /// Partitions of the events and state topics when the connector creates them.
    pub partitions: i32,
    /// Replication factor when the connector creates topics.
    pub replication_factor: i32,
    /// Create missing topics at start.
    pub create: bool,
    /// What to do with a record that cannot be encoded: `dead_letter` or `stop`.
    pub on_bad_record: BadRecordPolicy,
    /// `delete.retention.ms` of the state topic when the connector creates it: how long the
    /// tombstone of a DELETED customer (and the revision it carries) stays readable.
    pub state_delete_retention_ms: u64,
}

/// What to do with a record that cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Write it to the dead-letter topic and go on.
    DeadLetter,
    /// Stop the connector.
    Stop,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            events: "tanma.customer.events".into(),
            state: "tanma.customer.state".into(),
            checkpoint: "tanma.connector.checkpoint".into(),
            dead_letter: "tanma.customer.dlq".into(),
            partitions: 6,
            replication_factor: 1,
            create: true,
            on_bad_record: BadRecordPolicy::DeadLetter,
            state_delete_retention_ms: 7 * 86_400_000,
        }
    }
}

/// Optional Confluent-compatible schema registry.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// Base URL (e.g. `http://registry:8081`); unset: Avro single-object encoding.
    pub url: Option<String>,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password; from the environment only (or `password_file`).
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// Local diff-state store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory for the local snapshot cache (rebuilt from the state topic at every start).
    pub dir: PathBuf,
    /// Give up restoring the state topic if no progress is made for this long.
    pub restore_timeout_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir().join("tanma-connector"),
            restore_timeout_ms: 120_000,
        }
    }
}

/// Metrics, health, logging, shutdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Listen address of `/metrics`, `/health`, `/ready`; empty disables it.
    pub listen: String,
    /// Log filter (`RUST_LOG` syntax); `RUST_LOG` wins when set.
    pub log_level: String,
    /// `auto` (JSON unless on a terminal), `json` or `text`.
    pub log_format: String,
    /// On SIGTERM/SIGINT: finish or abort the open transaction within this time, then exit.
    pub shutdown_grace_secs: u64,
    /// Show a progress bar during backfill when on a terminal.
    pub progress: bool,
    /// `/health` fails when the main loop has not ticked for this long.
    pub liveness_timeout_secs: u64,
    /// `/health` fails when commits have kept failing (broker unreachable, state volume full)
    /// for this long while work is pending.
    pub commit_failure_timeout_secs: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".into(),
            log_level: "info".into(),
            log_format: "auto".into(),
            shutdown_grace_secs: 30,
            progress: true,
            liveness_timeout_secs: 300,
            commit_failure_timeout_secs: 300,
        }
    }
}

/// A configuration that could not be loaded or is invalid. Lists every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// One line per problem, each naming its key.
    pub problems: Vec<String>,
}

const SECRET_KEYS: [(&str, &str); 3] = [
    ("api", "app_key"),
    ("kafka", "sasl_password"),
    ("schema_registry", "password"),
];

mod load;
mod validate;

impl Config {
    /// The API time zone (validated by [`Config::validate`]).
    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.api
            .time_zone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }

    /// The configured start of the watermark (validated by [`Config::validate`]).
    pub fn start_time(&self) -> DateTime<chrono::Utc> {
        DateTime::parse_from_rfc3339(&self.windows.start_time)
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }
}
