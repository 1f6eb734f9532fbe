//! Every metric name the crate writes, with its type, unit and HELP text: the one source of
//! truth. Emit sites use the constants (`metrics::counter!(names::EVENTS_TOTAL, "type" =>
//! "CREATED")`), [`super::metrics::describe_all`] describes every entry of [`ALL`], and the
//! recorder installed by [`super::metrics::install`] reports any name that is not declared here
//! ([`super::metrics::undeclared`]).
//!
//! Labels are part of each entry's documentation (`{label}`); one figure has one name.

use metrics::Unit;

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution (exported with explicit buckets).
    Histogram,
}

impl MetricKind {
    /// The Prometheus `# TYPE` of this kind.
    pub fn prometheus_type(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One declared metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The exported name.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Its unit, if any.
    pub unit: Option<Unit>,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// The HELP text.
    pub help: &'static str,
}

/// Declares each metric once: a constant per name and the [`ALL`] table.
macro_rules! declare_metrics {
    ($(
        $konst:ident = $kind:ident($name:literal, $unit:expr, [$($label:literal),*], $help:literal);
    )*) => {
        $(
            #[doc = concat!("`", $name, "` (", stringify!($kind), $(", `{", $label, "}`",)* "): ", $help)]
            pub const $konst: &str = $name;
        )*
        /// Every metric the crate writes (the connector and its simulator).
        pub const ALL: &[MetricDef] = &[$(
            MetricDef {
                name: $name,
                kind: MetricKind::$kind,
                unit: $unit,
                labels: &[$($label),*],
                help: $help,
            },
        )*];
    };
}

const COUNT: Option<Unit> = Some(Unit::Count);
const SECONDS: Option<Unit> = Some(Unit::Seconds);
const BYTES: Option<Unit> = Some(Unit::Bytes);

declare_metrics! {
    // The Tanma API client.
    API_REQUESTS_TOTAL = Counter("tanma_api_requests_total", COUNT, ["outcome"],
        "Tanma API requests, by outcome.");
    API_REQUEST_DURATION_SECONDS = Histogram("tanma_api_request_duration_seconds", SECONDS, [],
        "Latency of one Tanma API request, retries excluded.");
    API_RETRIES_TOTAL = Counter("tanma_api_retries_total", COUNT, ["reason"],
        "Tanma API request retries, by reason.");
    API_RATE_LIMIT_WAIT_SECONDS = Histogram("tanma_api_rate_limit_wait_seconds", SECONDS, [],
        "Time a request waited for the client-side rate limiter.");
    WINDOW_REREAD_REQUESTS_TOTAL = Counter("tanma_window_reread_requests_total", COUNT, [],
        "Page requests beyond the first pass of a window read (drift, unstable order).");
    WINDOW_INCOMPLETE_READS_TOTAL = Counter("tanma_window_incomplete_reads_total", COUNT, [],
        "Window reads that ended incomplete: not every row of totalCount was seen.");
    WINDOW_DRIFT_REREADS_TOTAL = Counter("tanma_window_drift_rereads_total", COUNT, [],
        "Windows re-read because their pages shifted while being read.");

    // The planner.
    PLAN_WINDOWS_TOTAL = Counter("tanma_plan_windows_total", COUNT, ["kind"],
        "Windows handed out by the planner, by kind (forward, lookback, rescan).");
    WINDOWS_SPLIT_TOTAL = Counter("tanma_windows_split_total", COUNT, ["kind"],
        "Windows split in two because their totalCount exceeded the split threshold, by kind.");
    PLAN_RESCAN_PASSES_TOTAL = Counter("tanma_plan_rescan_passes_total", COUNT, ["tier"],
        "Re-scan passes completed, by tier.");
    PLAN_REWINDS_TOTAL = Counter("tanma_plan_rewinds_total", COUNT, [],
        "Times the planner took back every window handed out since the last commit.");
    PLAN_INCOMPLETE_WINDOWS_TOTAL = Counter("tanma_plan_incomplete_windows_total", COUNT, ["kind"],
        "Committed windows whose read was incomplete, queued for a retry, by window kind.");
    PLAN_RETRY_WINDOWS = Gauge("tanma_plan_retry_windows", COUNT, [],
        "Windows queued for a retry after an incomplete read.");
    RESCAN_PASS_WINDOWS = Gauge("tanma_rescan_pass_windows", COUNT, ["tier"],
        "Windows read by the current (or last) re-scan pass of a tier.");
    RESCAN_PASS_REQUESTS = Gauge("tanma_rescan_pass_requests", COUNT, ["tier"],
        "API requests of the current (or last) re-scan pass of a tier.");
    RESCAN_PASS_REREAD_REQUESTS = Gauge("tanma_rescan_pass_reread_requests", COUNT, ["tier"],
        "Requests of the current (or last) re-scan pass beyond each window's first pass.");
    RESCAN_PASS_PAGES = Gauge("tanma_rescan_pass_pages", COUNT, ["tier"],
        "Sum of ceil(totalCount / pageSize) over the windows of the current (or last) re-scan pass.");
    RESCAN_PROGRESS_RATIO = Gauge("tanma_rescan_progress_ratio", None, ["tier"],
        "Progress of the current re-scan pass of each tier, from 0 to 1.");
    WATERMARK_LAG_SECONDS = Gauge("tanma_watermark_lag_seconds", SECONDS, [],
        "Now minus the committed forward watermark.");

    // The pipeline.
    WINDOWS_READ_TOTAL = Counter("tanma_windows_read_total", COUNT, ["kind"],
        "Add-time windows read completely, by kind (forward, lookback, rescan).");
    EVENTS_TOTAL = Counter("tanma_events_total", COUNT, ["type"],
        "Change events published in committed transactions, by type (CREATED, UPDATED).");
    RELATIONS_READ_TOTAL = Counter("tanma_relations_read_total", COUNT, [],
        "Relations (one row per customer and follow user) read from the API.");
    RELATIONS_UNCHANGED_TOTAL = Counter("tanma_relations_unchanged_total", COUNT, [],
        "Relations read that matched the customer's last known version (no event).");
    RELATIONS_ENDED_TOTAL = Counter("tanma_relations_ended_total", COUNT, [],
        "Relations taken as ended (absent from delete_confirmations complete reads; committed).");
    RELATIONS_ABSENT = Gauge("tanma_relations_absent", COUNT, [],
        "Known relations absent from at least one complete read and not seen since.");
    DELETIONS_HELD = Gauge("tanma_deletions_held", None, [],
        "1 while the deletion guard (windows.max_delete_fraction) holds deletions back, else 0.");
    DELETIONS_HELD_TOTAL = Counter("tanma_deletions_held_total", COUNT, [],
        "Relation deletions the guard held back (each time a unit would have made them).");
    DEAD_LETTERS_TOTAL = Counter("tanma_dead_letters_total", COUNT, [],
        "Records that could not be encoded and went to the dead-letter topic.");
    BATCH_RETRIES_TOTAL = Counter("tanma_batch_retries_total", COUNT, ["class"],
        "Batches retried from the last checkpoint after an error, by error class.");

    // Kafka: transactions.
    KAFKA_TRANSACTIONS_TOTAL = Counter("tanma_kafka_transactions_total", COUNT, ["outcome"],
        "Kafka transactions, by outcome (committed, aborted, failed).");
    KAFKA_COMMIT_DURATION_SECONDS = Histogram("tanma_kafka_commit_duration_seconds", SECONDS, [],
        "Duration of commit_transaction.");
    KAFKA_RECORDS_PRODUCED_TOTAL = Counter("tanma_kafka_records_produced_total", COUNT, ["topic"],
        "Records produced in committed transactions, by topic.");
    RECOVERIES_TOTAL = Counter("tanma_recoveries_total", COUNT, [],
        "In-process recoveries from the topics (fence, checkpoint, restore) after a failure that followed a commit or repeated failed commits.");

    // The diff state.
    CUSTOMERS_TRACKED = Gauge("tanma_customers_tracked", COUNT, [],
        "Customers in the diff state.");
    STATE_RELATIONS = Gauge("tanma_state_relations", COUNT, [],
        "Relations in the diff state.");
    STATE_INDEX_BYTES = Gauge("tanma_state_index_bytes", BYTES, [],
        "Memory held by the diff state's in-memory indexes.");
    STATE_SPILL_BYTES = Gauge("tanma_state_spill_bytes", BYTES, [],
        "Size of the diff state's local spill file.");
    STATE_SPILL_ERRORS_TOTAL = Counter("tanma_state_spill_errors_total", COUNT, [],
        "Spill file reads that failed while forgetting a customer (its relations stay indexed).");
    STATE_SPILL_COMPACTIONS_TOTAL = Counter("tanma_state_spill_compactions_total", COUNT, [],
        "Compactions of the diff state's spill file.");
    STATE_RESTORE_RECORDS_TOTAL = Counter("tanma_state_restore_records_total", COUNT, [],
        "State-topic records read while restoring the diff state.");
    STATE_RESTORE_DURATION_SECONDS = Gauge("tanma_state_restore_duration_seconds", SECONDS, [],
        "How long the last restore of the diff state from the state topic took.");

    // Operations.
    READY = Gauge("tanma_ready", None, [],
        "1 when the connector is ready (state restored, broker reachable), else 0.");
    LIVE = Gauge("tanma_live", None, [],
        "1 when /health last answered 200, else 0.");
    COMMITS_FAILING_SECONDS = Gauge("tanma_commits_failing_seconds", SECONDS, [],
        "How long commits (or recoveries from the log) have kept failing; 0 while they succeed.");

    // librdkafka statistics (the producer's `statistics.interval.ms`).
    KAFKA_TX_REQUESTS_TOTAL = Counter("tanma_kafka_tx_requests_total", COUNT, [],
        "Requests sent to Kafka brokers (librdkafka tx).");
    KAFKA_TX_BYTES_TOTAL = Counter("tanma_kafka_tx_bytes_total", BYTES, [],
        "Bytes sent to Kafka brokers (librdkafka tx_bytes).");
    KAFKA_RX_RESPONSES_TOTAL = Counter("tanma_kafka_rx_responses_total", COUNT, [],
        "Responses received from Kafka brokers (librdkafka rx).");
    KAFKA_RX_BYTES_TOTAL = Counter("tanma_kafka_rx_bytes_total", BYTES, [],
        "Bytes received from Kafka brokers (librdkafka rx_bytes).");
    KAFKA_TX_MESSAGES_TOTAL = Counter("tanma_kafka_tx_messages_total", COUNT, [],
        "Messages sent to Kafka brokers (librdkafka txmsgs).");
    KAFKA_RX_MESSAGES_TOTAL = Counter("tanma_kafka_rx_messages_total", COUNT, [],
        "Messages consumed from Kafka brokers (librdkafka rxmsgs).");
    KAFKA_MSG_QUEUE_MESSAGES = Gauge("tanma_kafka_msg_queue_messages", COUNT, [],
        "Messages waiting in the producer queue (librdkafka msg_cnt).");
    KAFKA_MSG_QUEUE_BYTES = Gauge("tanma_kafka_msg_queue_bytes", BYTES, [],
        "Bytes waiting in the producer queue (librdkafka msg_size).");
    KAFKA_TOPIC_TX_MESSAGES_TOTAL = Counter("tanma_kafka_topic_tx_messages_total", COUNT, ["topic"],
        "Messages sent per topic (sum of the partitions' librdkafka txmsgs).");
    KAFKA_BROKER_RTT_AVG_SECONDS = Gauge("tanma_kafka_broker_rtt_avg_seconds", SECONDS, ["broker"],
        "Average broker round-trip time over the last statistics interval (librdkafka rtt.avg).");

    // The simulator (`tanma-connector sim`, and in-process in tests and benchmarks).
    SIM_REQUESTS_TOTAL = Counter("tanma_sim_requests_total", COUNT, ["outcome"],
        "Simulator: list requests answered, by outcome.");
    SIM_REQUEST_DURATION_SECONDS = Histogram("tanma_sim_request_duration_seconds", SECONDS, [],
        "Simulator: time to answer one list request.");
    SIM_ROWS_SERVED_TOTAL = Counter("tanma_sim_rows_served_total", COUNT, [],
        "Simulator: rows served in successful list responses.");
    SIM_MUTATIONS_TOTAL = Counter("tanma_sim_mutations_total", COUNT, ["kind"],
        "Simulator: mutations applied to the dataset, by kind.");
}

/// The declaration of `name`, if it is declared.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    ALL.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_suffixed_by_type() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            assert!(m.name.starts_with("tanma_"), "{}", m.name);
            assert!(!m.help.is_empty(), "{} has no help", m.name);
            match m.kind {
                MetricKind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                MetricKind::Gauge | MetricKind::Histogram => {
                    assert!(!m.name.ends_with("_total"), "{}", m.name)
                }
            }
            if m.unit == SECONDS {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
        }
        assert_eq!(find(EVENTS_TOTAL).map(|m| m.labels), Some(&["type"][..]));
        assert!(find("tanma_plan_splits_total").is_none());
    }
}
