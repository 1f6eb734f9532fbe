//! The client context of every librdkafka client the crate creates (producer, consumers, admin):
//! librdkafka's log lines and client errors go to `tracing` (target `librdkafka`) at a level
//! chosen deliberately, its statistics to the `tanma_kafka_*` metrics.
//!
//! | condition | level |
//! | --- | --- |
//! | partition EOF ("reached end of partition": every read to the end) | DEBUG |
//! | a producer/consumer-only property ignored by the other client type | DEBUG |
//! | coordinator loading / moving, leader elections, request timeouts, a broker connection lost or refused, concurrent transactions: librdkafka retries these itself | INFO |
//! | all brokers down | WARN |
//! | TLS handshake / certificate, SASL authentication, authorization, fencing, fatal errors | ERROR |
//! | anything else | librdkafka's own level (error → ERROR, warning → WARN, notice/info → INFO, debug → DEBUG) |
//!
//! Whether a condition is a real problem is decided by the code that waits for it (a restore
//! that makes no progress, a transaction that cannot commit): those report their own errors.
//! Every message is scrubbed of the client's secret property values before it is logged.

use std::borrow::Cow;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use tracing::Level;

use super::client_config::{is_sensitive_key, REDACTED};

/// Target of every librdkafka log event.
pub const LOG_TARGET: &str = "librdkafka";

/// The crate's librdkafka client context: deliberate log levels, statistics as metrics, secrets
/// scrubbed. Create clients with [`create_client`], which builds it from the configuration.
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    /// Values of the client's secret properties, replaced by [`REDACTED`] in every message.
    secrets: Arc<[String]>,
}

impl KafkaContext {
    /// A context that scrubs the secret values of `config` (every key [`is_sensitive_key`]
    /// matches) from log lines.
    pub fn for_config(config: &ClientConfig) -> KafkaContext {
        // `config_map` shows some secrets as a placeholder; `get` gives the value.
        let secrets: Vec<String> = config
            .config_map()
            .keys()
            .filter(|k| is_sensitive_key(k))
            .filter_map(|k| config.get(k))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        KafkaContext {
            secrets: secrets.into(),
        }
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

/// Creates a librdkafka client (producer, consumer or admin) from `config` with the crate's
/// [`KafkaContext`]. Every client of the crate is made here.
pub fn create_client<T>(config: &ClientConfig) -> KafkaResult<T>
where
    T: FromClientConfigAndContext<KafkaContext>,
{
    config.create_with_context(KafkaContext::for_config(config))
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let message = self.scrub(log_message);
        emit(log_line_level(level, fac, &message), fac, &message);
    }

    /// Maps the statistics document to the `tanma_kafka_*` metrics without building rdkafka's
    /// typed `Statistics` (which fails on fields a newer librdkafka adds or drops).
    fn stats_raw(&self, statistics: &[u8]) {
        if let Err(e) = crate::ops::metrics::record_librdkafka_stats_raw(statistics) {
            tracing::debug!(target: LOG_TARGET, error = %e, "librdkafka statistics not recorded.");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.scrub(reason);
        let level = client_error_level(error.rdkafka_error_code(), &reason);
        let text = format!("librdkafka client error: {error}: {reason}");
        emit(level, "ERROR", &text);
    }
}

impl ConsumerContext for KafkaContext {}

/// Logs `message` at `level` under [`LOG_TARGET`].
fn emit(level: Level, facility: &str, message: &str) {
    match level {
        Level::ERROR => tracing::error!(target: LOG_TARGET, facility, "{message}"),
        Level::WARN => tracing::warn!(target: LOG_TARGET, facility, "{message}"),
        Level::INFO => tracing::info!(target: LOG_TARGET, facility, "{message}"),
        Level::DEBUG => tracing::debug!(target: LOG_TARGET, facility, "{message}"),
        Level::TRACE => tracing::trace!(target: LOG_TARGET, facility, "{message}"),
    }
}

/// Text of conditions that are real problems whatever librdkafka's level (lowercase).
const REAL_PROBLEMS: &[&str] = &[
    "ssl handshake",
    "certificate",
    "sasl authentication",
    "authentication failed",
    "authorization failed",
    "not authorized",
    "fenced",
    "fatal",
];

/// Text of conditions librdkafka retries by itself (lowercase).
const TRANSIENT: &[&str] = &[
    "coordinator load in progress",
    "coordinator not available",
    "not coordinator",
    "leader not available",
    "not leader",
    "broker transport failure",
    "connection refused",
    "connection reset",
    "disconnected",
    "timed out",
    "concurrent transactions",
];

/// Partition EOF, as librdkafka words it.
const PARTITION_EOF: &[&str] = &["reached end of partition", "no more messages"];

/// Properties set for both client types, which one of them ignores (lowercase).
const OTHER_CLIENT_PROPERTY: &[&str] = &[
    "is a producer property and will be ignored",
    "is a consumer property and will be ignored",
];

fn mentions(text: &str, needles: &[&str]) -> bool {
    let lower = text.to_ascii_lowercase();
    needles.iter().any(|n| lower.contains(n))
}

/// The level of one librdkafka log line (see the module table).
pub fn log_line_level(level: RDKafkaLogLevel, facility: &str, message: &str) -> Level {
    let own = match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => Level::ERROR,
        RDKafkaLogLevel::Warning => Level::WARN,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::INFO,
        RDKafkaLogLevel::Debug => Level::DEBUG,
    };
    if own == Level::DEBUG {
        return own;
    }
    if mentions(message, REAL_PROBLEMS) {
        return Level::ERROR;
    }
    if mentions(message, PARTITION_EOF)
        || (facility == "CONFWARN" && mentions(message, OTHER_CLIENT_PROPERTY))
    {
        return Level::DEBUG;
    }
    if mentions(message, &["brokers are down"]) {
        return Level::WARN;
    }
    if mentions(message, TRANSIENT) {
        return Level::INFO;
    }
    own
}

/// The level of one client error reported through the error callback (see the module table).
pub fn client_error_level(code: Option<RDKafkaErrorCode>, reason: &str) -> Level {
    use RDKafkaErrorCode as C;
    match code {
        // A reader assigns its partitions and never joins or commits: librdkafka's lookup of
        // its group's coordinator may be refused and changes nothing.
        Some(C::PartitionEOF | C::GroupAuthorizationFailed) => Level::DEBUG,
        Some(C::AllBrokersDown) => Level::WARN,
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::SSL
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::Fatal,
        ) => Level::ERROR,
        Some(
            C::BrokerTransportFailure
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::PreferredLeaderNotAvailable
            | C::ConcurrentTransactions,
        ) => Level::INFO,
        _ => log_line_level(RDKafkaLogLevel::Warning, "ERROR", reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RDKafkaLogLevel as L;

    #[test]
    fn expected_conditions_are_not_warnings() {
        let cases = [
            (L::Error, "FETCH", "Fetch from broker 1 reached end of partition at offset 42 (HighwaterMark 42)", Level::DEBUG),
            (L::Warning, "GETPID", "Failed to acquire transactional PID from broker TxnCoordinator/1: Broker: Coordinator load in progress: retrying", Level::INFO),
            (L::Warning, "FAIL", "127.0.0.1:19092/1: Connect to ipv4#127.0.0.1:19092 failed: Connection refused (after 0ms in state CONNECT)", Level::INFO),
            (L::Error, "FAIL", "ssl://10.0.0.1:9093/1: Disconnected (after 600012ms in state UP)", Level::INFO),
            (L::Warning, "CONFWARN", "[thrd:app]: Configuration property linger.ms is a producer property and will be ignored by this consumer instance", Level::DEBUG),
            (L::Info, "CLUSTERID", "Cluster id is abc", Level::INFO),
            (L::Debug, "FETCH", "Fetch topic t [0] at offset 7", Level::DEBUG),
        ];
        for (level, fac, msg, want) in cases {
            assert_eq!(log_line_level(level, fac, msg), want, "{msg}");
        }
    }

    #[test]
    fn real_problems_stay_loud() {
        let cases = [
            (L::Error, "FAIL", "ssl://10.0.0.1:9093/bootstrap: SSL handshake failed: certificate verify failed", Level::ERROR),
            (L::Warning, "SASL", "SASL authentication error: Authentication failed during authentication due to invalid credentials", Level::ERROR),
            (L::Warning, "TXNERR", "Current transaction failed in state InTransaction: producer fenced by newer instance", Level::ERROR),
            (L::Warning, "CONFWARN", "Configuration property `queue.buffering.max.ms` is deprecated", Level::WARN),
            (L::Error, "ERROR", "1/1 brokers are down", Level::WARN),
            (L::Error, "ERROR", "Something librdkafka considers an error", Level::ERROR),
        ];
        for (level, fac, msg, want) in cases {
            assert_eq!(log_line_level(level, fac, msg), want, "{msg}");
        }
    }

    #[test]
    fn client_errors_by_code() {
        use RDKafkaErrorCode as C;
        assert_eq!(client_error_level(Some(C::PartitionEOF), "x"), Level::DEBUG);
        assert_eq!(
            client_error_level(Some(C::CoordinatorLoadInProgress), "x"),
            Level::INFO
        );
        assert_eq!(
            client_error_level(Some(C::BrokerTransportFailure), "x"),
            Level::INFO
        );
        assert_eq!(
            client_error_level(Some(C::AllBrokersDown), "x"),
            Level::WARN
        );
        assert_eq!(
            client_error_level(Some(C::SaslAuthenticationFailed), "x"),
            Level::ERROR
        );
        assert_eq!(
            client_error_level(Some(C::ProducerFenced), "x"),
            Level::ERROR
        );
        assert_eq!(
            client_error_level(Some(C::MessageSizeTooLarge), "x"),
            Level::WARN
        );
        assert_eq!(
            client_error_level(None, "Fetch reached end of partition"),
            Level::DEBUG
        );
    }

    #[test]
    fn secrets_are_scrubbed() {
        let mut config = ClientConfig::new();
        config
            .set("sasl.password", "hunter2-secret")
            .set("ssl.key.password", "k3y-pass")
            .set("sasl.username", "connector");
        let ctx = KafkaContext::for_config(&config);
        let text = ctx.scrub("auth as connector with hunter2-secret and k3y-pass failed");
        assert_eq!(
            text,
            format!("auth as connector with {REDACTED} and {REDACTED} failed")
        );
        assert!(matches!(
            KafkaContext::default().scrub("plain"),
            Cow::Borrowed("plain")
        ));
    }
}
