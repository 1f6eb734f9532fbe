//! librdkafka statistics (`statistics.interval.ms`) mapped to `tanma_kafka_*` metrics.
//!
//! Only the fields below are read; every field is optional so that a librdkafka upgrade that
//! adds or drops fields never breaks the mapping. Cumulative librdkafka totals become counters
//! set to their absolute value (Prometheus `rate()` handles a client restart as a counter reset);
//! levels become gauges.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::metrics::names;
use super::OpsError;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    msg_cnt: Option<u64>,
    msg_size: Option<u64>,
    tx: Option<u64>,
    tx_bytes: Option<u64>,
    rx: Option<u64>,
    rx_bytes: Option<u64>,
    txmsgs: Option<u64>,
    rxmsgs: Option<u64>,
    brokers: BTreeMap<String, Broker>,
    topics: BTreeMap<String, Topic>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Broker {
    nodeid: Option<i64>,
    rtt: Option<Window>,
}

/// librdkafka's rolling-window statistics; times in microseconds.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Window {
    avg: Option<i64>,
    cnt: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Topic {
    partitions: BTreeMap<String, Partition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Partition {
    partition: Option<i64>,
    txmsgs: Option<u64>,
}

/// Maps one librdkafka statistics JSON document (as handed to `ClientContext::stats_raw`) to the
/// `tanma_kafka_*` metrics: request, byte and message totals, the producer queue, messages per
/// topic and the average round-trip time per broker.
///
/// Bootstrap and internal pseudo-brokers (node id −1) and the unassigned partition (−1) are
/// skipped. A broker's RTT is only set when the interval had samples. Errors are best effort:
/// log them at debug level and carry on.
pub fn record_librdkafka_stats(json: &str) -> Result<(), OpsError> {
    record_librdkafka_stats_raw(json.as_bytes())
}

/// [`record_librdkafka_stats`] for the raw bytes handed to `ClientContext::stats_raw`.
pub fn record_librdkafka_stats_raw(json: &[u8]) -> Result<(), OpsError> {
    let stats: Stats = serde_json::from_slice(json).map_err(|source| OpsError::Stats {
        excerpt: crate::error::excerpt(&String::from_utf8_lossy(json), 120),
        source,
    })?;
    let absolute = |name: &'static str, v: Option<u64>| {
        if let Some(v) = v {
            metrics::counter!(name).absolute(v);
        }
    };
    absolute(names::KAFKA_TX_REQUESTS_TOTAL, stats.tx);
    absolute(names::KAFKA_TX_BYTES_TOTAL, stats.tx_bytes);
    absolute(names::KAFKA_RX_RESPONSES_TOTAL, stats.rx);
    absolute(names::KAFKA_RX_BYTES_TOTAL, stats.rx_bytes);
    absolute(names::KAFKA_TX_MESSAGES_TOTAL, stats.txmsgs);
    absolute(names::KAFKA_RX_MESSAGES_TOTAL, stats.rxmsgs);
    if let Some(v) = stats.msg_cnt {
        metrics::gauge!(names::KAFKA_MSG_QUEUE_MESSAGES).set(v as f64);
    }
    if let Some(v) = stats.msg_size {
        metrics::gauge!(names::KAFKA_MSG_QUEUE_BYTES).set(v as f64);
    }
    for (name, topic) in &stats.topics {
        let sent: u64 = topic
            .partitions
            .values()
            .filter(|p| p.partition.is_some_and(|id| id >= 0))
            .filter_map(|p| p.txmsgs)
            .sum();
        metrics::counter!(names::KAFKA_TOPIC_TX_MESSAGES_TOTAL, "topic" => name.clone())
            .absolute(sent);
    }
    for (name, broker) in &stats.brokers {
        if broker.nodeid.is_none_or(|id| id < 0) {
            continue;
        }
        if let Some(Window {
            avg: Some(avg),
            cnt: Some(cnt),
        }) = broker.rtt
        {
            if cnt > 0 && avg >= 0 {
                metrics::gauge!(names::KAFKA_BROKER_RTT_AVG_SECONDS, "broker" => name.clone())
                    .set(avg as f64 / 1_000_000.0);
            }
        }
    }
    Ok(())
}
