//! The Prometheus recorder and the list of every metric the connector exposes.
//!
//! Other modules record with the `metrics` macros (`metrics::counter!(names::EVENTS_TOTAL,
//! "type" => "CREATED")`); this module installs the global recorder once, sets explicit histogram
//! buckets for every `*_seconds` histogram and describes every metric (HELP text and unit), so
//! `/metrics` documents itself. librdkafka's statistics JSON is mapped to `tanma_kafka_*`
//! metrics by [`record_librdkafka_stats`].

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::OpsError;

pub use super::stats::{record_librdkafka_stats, record_librdkafka_stats_raw};

/// Metric names, so that writers and the describer cannot drift apart.
pub mod names {
    /// Counter `{outcome}`: API requests by outcome (`ok`, `http_error`, `business_error`, …).
    pub const API_REQUESTS_TOTAL: &str = "tanma_api_requests_total";
    /// Histogram: API request latency.
    pub const API_REQUEST_DURATION_SECONDS: &str = "tanma_api_request_duration_seconds";
    /// Counter `{reason}`: API request retries.
    pub const API_RETRIES_TOTAL: &str = "tanma_api_retries_total";
    /// Histogram: time spent waiting for the client-side rate limiter.
    pub const API_RATE_LIMIT_WAIT_SECONDS: &str = "tanma_api_rate_limit_wait_seconds";
    /// Counter `{kind}`: windows read completely (forward, lookback, rescan).
    pub const WINDOWS_READ_TOTAL: &str = "tanma_windows_read_total";
    /// Counter: windows split in two because they held too many relations.
    pub const WINDOWS_SPLIT_TOTAL: &str = "tanma_windows_split_total";
    /// Counter: windows re-read because their pages drifted while being read.
    pub const WINDOW_DRIFT_REREADS_TOTAL: &str = "tanma_window_drift_rereads_total";
    /// Counter `{type}`: change events published (CREATED, UPDATED).
    pub const EVENTS_TOTAL: &str = "tanma_events_total";
    /// Counter: relations read that matched the last known version.
    pub const RELATIONS_UNCHANGED_TOTAL: &str = "tanma_relations_unchanged_total";
    /// Counter: relations (rows) read from the API.
    pub const RELATIONS_READ_TOTAL: &str = "tanma_relations_read_total";
    /// Counter: records written to the dead-letter topic.
    pub const DEAD_LETTERS_TOTAL: &str = "tanma_dead_letters_total";
    /// Counter `{outcome}`: Kafka transactions (committed, aborted, failed).
    pub const KAFKA_TRANSACTIONS_TOTAL: &str = "tanma_kafka_transactions_total";
    /// Histogram: duration of `commit_transaction`.
    pub const KAFKA_COMMIT_DURATION_SECONDS: &str = "tanma_kafka_commit_duration_seconds";
    /// Counter `{topic}`: records produced in committed transactions.
    pub const KAFKA_RECORDS_PRODUCED_TOTAL: &str = "tanma_kafka_records_produced_total";
    /// Gauge: now minus the committed watermark.
    pub const WATERMARK_LAG_SECONDS: &str = "tanma_watermark_lag_seconds";
    /// Gauge `{tier}`: progress of the current re-scan pass, 0..1.
    pub const RESCAN_PROGRESS_RATIO: &str = "tanma_rescan_progress_ratio";
    /// Gauge: customers in the diff state.
    pub const CUSTOMERS_TRACKED: &str = "tanma_customers_tracked";
    /// Counter: state-topic records read during restore.
    pub const STATE_RESTORE_RECORDS_TOTAL: &str = "tanma_state_restore_records_total";
    /// Gauge or histogram: how long the last state restore took.
    pub const STATE_RESTORE_DURATION_SECONDS: &str = "tanma_state_restore_duration_seconds";
    /// Gauge: 1 when ready (state restored, broker reachable), else 0. Set by `Health::set_ready`.
    pub const READY: &str = "tanma_ready";
    /// Gauge: 1 when `/health` last answered 200, else 0. Set by the `/health` handler.
    pub const LIVE: &str = "tanma_live";
    /// Gauge: how long commits (or recoveries from the log) have been failing without a
    /// success in between; 0 while they succeed. `/health` fails past
    /// `ops.commit_failure_timeout_secs`.
    pub const COMMITS_FAILING_SECONDS: &str = "tanma_commits_failing_seconds";

    /// Counter: requests sent to brokers (librdkafka `tx`).
    pub const KAFKA_TX_REQUESTS_TOTAL: &str = "tanma_kafka_tx_requests_total";
    /// Counter: bytes sent to brokers (librdkafka `tx_bytes`).
    pub const KAFKA_TX_BYTES_TOTAL: &str = "tanma_kafka_tx_bytes_total";
    /// Counter: responses received from brokers (librdkafka `rx`).
    pub const KAFKA_RX_RESPONSES_TOTAL: &str = "tanma_kafka_rx_responses_total";
    /// Counter: bytes received from brokers (librdkafka `rx_bytes`).
    pub const KAFKA_RX_BYTES_TOTAL: &str = "tanma_kafka_rx_bytes_total";
    /// Counter: messages sent to brokers (librdkafka `txmsgs`).
    pub const KAFKA_TX_MESSAGES_TOTAL: &str = "tanma_kafka_tx_messages_total";
    /// Counter: messages consumed from brokers (librdkafka `rxmsgs`).
    pub const KAFKA_RX_MESSAGES_TOTAL: &str = "tanma_kafka_rx_messages_total";
    /// Gauge: messages waiting in the producer queue (librdkafka `msg_cnt`).
    pub const KAFKA_MSG_QUEUE_MESSAGES: &str = "tanma_kafka_msg_queue_messages";
    /// Gauge: bytes waiting in the producer queue (librdkafka `msg_size`).
    pub const KAFKA_MSG_QUEUE_BYTES: &str = "tanma_kafka_msg_queue_bytes";
    /// Counter `{topic}`: messages sent per topic (sum of the partitions' `txmsgs`).
    pub const KAFKA_TOPIC_TX_MESSAGES_TOTAL: &str = "tanma_kafka_topic_tx_messages_total";
    /// Gauge `{broker}`: average broker round-trip time over the last statistics interval.
    pub const KAFKA_BROKER_RTT_AVG_SECONDS: &str = "tanma_kafka_broker_rtt_avg_seconds";
}

/// Buckets for HTTP requests to the Tanma API.
pub const API_REQUEST_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for rate-limiter waits (mostly zero, occasionally seconds).
pub const RATE_LIMIT_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for Kafka transaction commits.
pub const KAFKA_COMMIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for long operations (state restore), and the default for any other `*_seconds`.
pub const LONG_OPERATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the global `metrics` recorder and describes every metric.
///
/// Idempotent: later calls return a clone of the first handle (tests in one binary may all call
/// it). Fails when another recorder was installed by someone else first. The caller should
/// serve the handle with [`crate::ops::serve`], which also runs the recorder's upkeep.
pub fn install() -> Result<PrometheusHandle, OpsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    // One installer at a time: a racing caller must not see the global recorder set before the
    // winner has published its handle.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let builder = builder()?;
    match builder.install_recorder() {
        Ok(handle) => {
            let handle = HANDLE.get_or_init(|| handle).clone();
            describe_all();
            Ok(handle)
        }
        Err(source) => Err(OpsError::MetricsInstall { source }),
    }
}

fn builder() -> Result<PrometheusBuilder, OpsError> {
    let full = |n: &str| Matcher::Full(n.to_string());
    let b = PrometheusBuilder::new()
        .set_buckets_for_metric(
            full(names::API_REQUEST_DURATION_SECONDS),
            API_REQUEST_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                full(names::API_RATE_LIMIT_WAIT_SECONDS),
                RATE_LIMIT_WAIT_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                full(names::KAFKA_COMMIT_DURATION_SECONDS),
                KAFKA_COMMIT_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LONG_OPERATION_BUCKETS)
        })
        .map_err(|source| OpsError::MetricsInstall { source })?;
    Ok(b)
}

/// Registers HELP text and units for every metric the connector writes. Called by [`install`].
pub fn describe_all() {
    use names::*;
    describe_counter!(
        API_REQUESTS_TOTAL,
        Unit::Count,
        "Tanma API requests, by outcome."
    );
    describe_histogram!(
        API_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Latency of one Tanma API request, retries excluded."
    );
    describe_counter!(
        API_RETRIES_TOTAL,
        Unit::Count,
        "Tanma API request retries, by reason."
    );
    describe_histogram!(
        API_RATE_LIMIT_WAIT_SECONDS,
        Unit::Seconds,
        "Time a request waited for the client-side rate limiter."
    );
    describe_counter!(
        WINDOWS_READ_TOTAL,
        Unit::Count,
        "Add-time windows read completely, by kind (forward, lookback, rescan)."
    );
    describe_counter!(
        WINDOWS_SPLIT_TOTAL,
        Unit::Count,
        "Windows split in two because their totalCount exceeded the split threshold."
    );
    describe_counter!(
        WINDOW_DRIFT_REREADS_TOTAL,
        Unit::Count,
        "Windows re-read because their pages shifted while being read."
    );
    describe_counter!(
        EVENTS_TOTAL,
        Unit::Count,
        "Change events published in committed transactions, by type (CREATED, UPDATED)."
    );
    describe_counter!(
        RELATIONS_UNCHANGED_TOTAL,
        Unit::Count,
        "Relations read that matched the customer's last known version (no event)."
    );
    describe_counter!(
        RELATIONS_READ_TOTAL,
        Unit::Count,
        "Relations (one row per customer and follow user) read from the API."
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "Records that could not be encoded and went to the dead-letter topic."
    );
    describe_counter!(
        KAFKA_TRANSACTIONS_TOTAL,
        Unit::Count,
        "Kafka transactions, by outcome (committed, aborted, failed)."
    );
    describe_histogram!(
        KAFKA_COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of commit_transaction."
    );
    describe_counter!(
        KAFKA_RECORDS_PRODUCED_TOTAL,
        Unit::Count,
        "Records produced in committed transactions, by topic."
    );
    describe_gauge!(
        WATERMARK_LAG_SECONDS,
        Unit::Seconds,
        "Now minus the committed forward watermark."
    );
    describe_gauge!(
        RESCAN_PROGRESS_RATIO,
        "Progress of the current re-scan pass of each tier, from 0 to 1."
    );
    describe_gauge!(
        CUSTOMERS_TRACKED,
        Unit::Count,
        "Customers in the diff state."
    );
    describe_counter!(
        STATE_RESTORE_RECORDS_TOTAL,
        Unit::Count,
        "State-topic records read while restoring the diff state."
    );
    describe_gauge!(
        STATE_RESTORE_DURATION_SECONDS,
        Unit::Seconds,
        "How long restoring the diff state from the state topic took."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 when the connector is ready (state restored, broker reachable), else 0."
    );
    describe_gauge!(
        LIVE,
        Unit::Count,
        "1 when /health last answered 200, else 0."
    );
    describe_gauge!(
        COMMITS_FAILING_SECONDS,
        Unit::Seconds,
        "How long commits have been failing without a success in between (0 while they succeed)."
    );
    describe_counter!(
        KAFKA_TX_REQUESTS_TOTAL,
        Unit::Count,
        "Requests sent to Kafka brokers (librdkafka tx)."
    );
    describe_counter!(
        KAFKA_TX_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes sent to Kafka brokers (librdkafka tx_bytes)."
    );
    describe_counter!(
        KAFKA_RX_RESPONSES_TOTAL,
        Unit::Count,
        "Responses received from Kafka brokers (librdkafka rx)."
    );
    describe_counter!(
        KAFKA_RX_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes received from Kafka brokers (librdkafka rx_bytes)."
    );
    describe_counter!(
        KAFKA_TX_MESSAGES_TOTAL,
        Unit::Count,
        "Messages sent to Kafka brokers (librdkafka txmsgs)."
    );
    describe_counter!(
        KAFKA_RX_MESSAGES_TOTAL,
        Unit::Count,
        "Messages consumed from Kafka brokers (librdkafka rxmsgs)."
    );
    describe_gauge!(
        KAFKA_MSG_QUEUE_MESSAGES,
        Unit::Count,
        "Messages waiting in the producer queue (librdkafka msg_cnt)."
    );
    describe_gauge!(
        KAFKA_MSG_QUEUE_BYTES,
        Unit::Bytes,
        "Bytes waiting in the producer queue (librdkafka msg_size)."
    );
    describe_counter!(
        KAFKA_TOPIC_TX_MESSAGES_TOTAL,
        Unit::Count,
        "Messages sent per topic (sum of the partitions' librdkafka txmsgs)."
    );
    describe_gauge!(
        KAFKA_BROKER_RTT_AVG_SECONDS,
        Unit::Seconds,
        "Average broker round-trip time over the last statistics interval (librdkafka rtt.avg)."
    );
}
