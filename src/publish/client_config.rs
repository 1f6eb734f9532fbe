//! librdkafka client configuration from [`KafkaConfig`], a log-safe description of it, and the
//! client context that routes librdkafka's logs and statistics to `tracing` and `metrics`.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use secrecy::ExposeSecret;

use crate::config::KafkaConfig;

/// Text that replaces a secret value in descriptions and error messages.
pub const REDACTED: &str = "[redacted]";

/// The common client configuration: `bootstrap.servers`, `security.protocol`, SASL mechanism,
/// username and password, `ssl.ca.location`, then every `kafka.properties` pass-through entry.
///
/// The result holds the SASL password in clear text; log [`describe`] of it, not the value.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.bootstrap_servers.trim());
    c.set("security.protocol", cfg.security_protocol.to_lowercase());
    if let Some(mechanism) = &cfg.sasl_mechanism {
        c.set("sasl.mechanism", mechanism);
    }
    if let Some(username) = &cfg.sasl_username {
        c.set("sasl.username", username);
    }
    if let Some(password) = &cfg.sasl_password {
        c.set("sasl.password", password.expose_secret());
    }
    if let Some(ca) = &cfg.ssl_ca_location {
        c.set("ssl.ca.location", ca.to_string_lossy());
    }
    for (key, value) in &cfg.properties {
        c.set(key, value);
    }
    c
}

/// The producer configuration: the common client configuration, producer defaults that
/// `kafka.properties` may override, then the transactional settings, which it may not.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(cfg);
    let defaults = [
        // Java-compatible partitioning, so Java / Kafka Streams consumers co-partition.
        ("partitioner", "murmur2_random"),
        ("compression.type", "lz4"),
        ("queue.buffering.max.kbytes", "65536"),
        ("linger.ms", "5"),
    ];
    for (key, value) in defaults {
        if c.get(key).is_none() {
            c.set(key, value);
        }
    }
    // Only the producer reports statistics: the librdkafka totals become counters set to their
    // absolute value, which two clients reporting into the same metrics would make jump.
    if c.get("statistics.interval.ms").is_none() {
        c.set(
            "statistics.interval.ms",
            cfg.statistics_interval_ms.to_string(),
        );
    }
    c.set("enable.idempotence", "true");
    c.set("transactional.id", &cfg.transactional_id);
    c.set(
        "transaction.timeout.ms",
        cfg.transaction_timeout_ms.to_string(),
    );
    c
}

/// Whether a librdkafka property holds a secret (its value must never be shown).
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "ssl.key.pem",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A log-safe, sorted `key=value` description of a client configuration; secret values are
/// replaced by [`REDACTED`].
pub fn describe(config: &ClientConfig) -> String {
    let map = config.config_map();
    let mut entries: Vec<(&str, &str)> = map.iter().map(|(k, v)| (*k, *v)).collect();
    entries.sort();
    entries
        .into_iter()
        .map(|(k, v)| {
            if is_sensitive_key(k) {
                format!("{k}={REDACTED}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders a client-creation error without the value of a secret property: librdkafka's
/// `ClientConfig` error carries the offending value, which may be a password.
pub fn describe_creation_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, _) if is_sensitive_key(key) => {
            format!("invalid client property {key}={REDACTED}: {description}")
        }
        other => other.to_string(),
    }
}

/// Client context that sends librdkafka's logs to `tracing` (target `librdkafka`) and its
/// statistics (when `statistics.interval.ms` is set, by default on the producer only) to the
/// `tanma_kafka_*` metrics (see [`crate::ops::metrics::record_librdkafka_stats_raw`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingContext;

/// librdkafka warnings about conditions that are expected while a broker or a coordinator
/// starts up and that librdkafka retries by itself: logged at INFO, not WARN.
const TRANSIENT_WARNINGS: [&str; 3] = [
    "Coordinator load in progress",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "NOT_COORDINATOR",
];

/// The `tracing` level a librdkafka log line is written at: librdkafka's own level, except
/// that transient start-up conditions ([`TRANSIENT_WARNINGS`]) are INFO.
pub fn log_level(level: RDKafkaLogLevel, message: &str) -> tracing::Level {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::Level::ERROR,
        RDKafkaLogLevel::Warning if TRANSIENT_WARNINGS.iter().any(|t| message.contains(t)) => {
            tracing::Level::INFO
        }
        RDKafkaLogLevel::Warning => tracing::Level::WARN,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::Level::INFO,
        RDKafkaLogLevel::Debug => tracing::Level::DEBUG,
    }
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match log_level(level, log_message) {
            tracing::Level::ERROR => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    /// Maps the statistics document to the `tanma_kafka_*` metrics without building rdkafka's
    /// typed `Statistics` (which fails on fields a newer librdkafka adds or drops).
    fn stats_raw(&self, statistics: &[u8]) {
        if let Err(e) = crate::ops::metrics::record_librdkafka_stats_raw(statistics) {
            tracing::debug!(target: "librdkafka", error = %e, "librdkafka statistics not recorded.");
        }
    }

    /// Conditions the connector's readers handle themselves (the end of a partition; the
    /// coordinator lookup of the group of an assigned reader, which needs no rights on it) at
    /// debug, the rest at warn.
    fn error(&self, error: KafkaError, reason: &str) {
        let expected = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::PartitionEOF | RDKafkaErrorCode::GroupAuthorizationFailed)
            );
        if expected {
            tracing::debug!(target: "librdkafka", error = %error, "librdkafka client error: {reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "librdkafka client error: {reason}");
        }
    }
}

impl ConsumerContext for TracingContext {}

#[cfg(test)]
mod log_level_tests {
    use super::*;

    #[test]
    fn transient_coordinator_warnings_are_info_others_keep_their_level() {
        let coord = "FindCoordinator response error: Coordinator load in progress";
        assert_eq!(
            log_level(RDKafkaLogLevel::Warning, coord),
            tracing::Level::INFO
        );
        let down = "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused";
        assert_eq!(
            log_level(RDKafkaLogLevel::Warning, down),
            tracing::Level::WARN
        );
        assert_eq!(
            log_level(RDKafkaLogLevel::Error, coord),
            tracing::Level::ERROR
        );
        assert_eq!(
            log_level(RDKafkaLogLevel::Debug, "x"),
            tracing::Level::DEBUG
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn sasl_config() -> KafkaConfig {
        let mut cfg = KafkaConfig {
            bootstrap_servers: " broker-1:9093,broker-2:9093 ".into(),
            security_protocol: "SASL_SSL".into(),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("connector".into()),
            sasl_password: Some(SecretString::from("hunter2-very-secret".to_string())),
            ssl_ca_location: Some("/etc/ca.pem".into()),
            ..KafkaConfig::default()
        };
        cfg.properties
            .insert("ssl.key.password".into(), "key-pass-secret".into());
        cfg.properties.insert("client.id".into(), "tanma".into());
        cfg
    }

    #[test]
    fn builds_every_connection_property() {
        let c = client_config(&sasl_config());
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("broker-1:9093,broker-2:9093")
        );
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("connector"));
        assert_eq!(c.get("sasl.password"), Some("hunter2-very-secret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(c.get("client.id"), Some("tanma"));
    }

    #[test]
    fn producer_config_is_transactional_and_java_compatible() {
        let mut cfg = KafkaConfig {
            transactional_id: "tx-1".into(),
            transaction_timeout_ms: 12_000,
            ..KafkaConfig::default()
        };
        cfg.properties.insert("linger.ms".into(), "20".into());
        let c = producer_config(&cfg);
        assert!(client_config(&cfg).get("statistics.interval.ms").is_none());
        assert_eq!(c.get("transactional.id"), Some("tx-1"));
        assert_eq!(c.get("transaction.timeout.ms"), Some("12000"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("queue.buffering.max.kbytes"), Some("65536"));
        assert_eq!(c.get("statistics.interval.ms"), Some("30000"));
        // A pass-through property overrides a default.
        assert_eq!(c.get("linger.ms"), Some("20"));
    }

    #[test]
    fn plaintext_config_sets_no_sasl_keys() {
        let c = client_config(&KafkaConfig::default());
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert!(c.get("sasl.password").is_none());
        assert!(c.get("sasl.mechanism").is_none());
    }

    #[test]
    fn description_never_contains_secrets() {
        let c = client_config(&sasl_config());
        let d = describe(&c);
        assert!(!d.contains("hunter2"), "{d}");
        assert!(!d.contains("key-pass-secret"), "{d}");
        assert!(d.contains(&format!("sasl.password={REDACTED}")), "{d}");
        assert!(d.contains("sasl.username=connector"), "{d}");
        assert!(
            d.contains("bootstrap.servers=broker-1:9093,broker-2:9093"),
            "{d}"
        );
    }

    #[test]
    fn creation_error_hides_secret_values() {
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "bad value".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let text = describe_creation_error(&e);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sasl.password"), "{text}");
    }
}
