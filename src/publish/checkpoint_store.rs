//! Reading the connector's checkpoint back from the compacted, one-partition checkpoint topic.
//!
//! The checkpoint is the last record of every transaction, keyed by the `transactional.id`, so
//! the last committed value for that key is the checkpoint of the last committed unit of work.
//! The read follows Materialize's progress search: take the high watermark with a
//! `read_uncommitted` client, then consume `read_committed` from the beginning until the
//! position reaches it. The tail of the log is not trusted on its own, because transaction
//! control records occupy offsets that a consumer never sees.
//!
//! Call [`read_latest`] only after [`super::TransactionalProducer::new`]: `init_transactions` has
//! then fenced older producers and aborted their open transactions, so the last stable offset
//! reaches the high watermark and the read completes.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::client_config::{client_config, describe_creation_error, TracingContext};
use super::error::{is_group_authorization, PublishError};
use crate::config::KafkaConfig;

/// Longest single poll; the progress deadline is checked between polls.
const POLL_SLICE: Duration = Duration::from_millis(200);

/// Returns the last committed value for `key` on the checkpoint `topic`, or `None` if there is
/// none (or the last one is a tombstone).
///
/// Errors: the topic must have exactly one partition (`Fatal`); no progress for `timeout` while
/// reading up to the high watermark is `Retry`.
pub async fn read_latest(
    cfg: &KafkaConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, PublishError> {
    let cfg = cfg.clone();
    let topic = topic.to_string();
    let key = key.to_string();
    tokio::task::spawn_blocking(move || read_latest_blocking(&cfg, &topic, key.as_bytes(), timeout))
        .await
        .map_err(|e| PublishError::Runtime {
            op: "read checkpoint",
            detail: e.to_string(),
        })?
}

fn consumer(
    cfg: &KafkaConfig,
    isolation: &str,
) -> Result<BaseConsumer<TracingContext>, PublishError> {
    let mut c: ClientConfig = client_config(cfg);
    c.set(
        "group.id",
        format!("{}-checkpoint-reader", cfg.transactional_id),
    );
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "earliest");
    c.set("isolation.level", isolation);
    c.create_with_context(TracingContext)
        .map_err(|e| PublishError::Client {
            what: "checkpoint consumer",
            cause: describe_creation_error(&e),
        })
}

fn read_latest_blocking(
    cfg: &KafkaConfig,
    topic: &str,
    key: &[u8],
    timeout: Duration,
) -> Result<Option<Vec<u8>>, PublishError> {
    let read_err = |op: &'static str| {
        move |cause: KafkaError| PublishError::CheckpointRead {
            topic: topic.to_string(),
            op,
            cause,
        }
    };
    let op_timeout = Duration::from_millis(cfg.operation_timeout_ms.max(1));

    let probe = consumer(cfg, "read_uncommitted")?;
    let metadata = probe
        .fetch_metadata(Some(topic), op_timeout)
        .map_err(read_err("fetch_metadata"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| {
            if t.error().is_some() {
                0
            } else {
                t.partitions().len()
            }
        });
    if partitions != 1 {
        return Err(PublishError::CheckpointPartitions {
            topic: topic.to_string(),
            partitions,
        });
    }
    let (_low, high) = probe
        .fetch_watermarks(topic, 0, op_timeout)
        .map_err(read_err("fetch_watermarks"))?;
    drop(probe);
    if high <= 0 {
        return Ok(None);
    }

    let reader = consumer(cfg, "read_committed")?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(read_err("assign"))?;
    reader.assign(&assignment).map_err(read_err("assign"))?;

    let mut latest: Option<Vec<u8>> = None;
    let mut position = -1_i64;
    let mut last_progress = Instant::now();
    loop {
        match reader.poll(POLL_SLICE) {
            Some(Ok(message)) => {
                if message.key() == Some(key) {
                    latest = message.payload().map(<[u8]>::to_vec);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            // Assigned, never joined or committed: the group only makes librdkafka look up its
            // coordinator, which a principal without rights on the group may not. Harmless.
            Some(Err(e)) if is_group_authorization(&e) => {}
            Some(Err(cause)) => return Err(read_err("poll")(cause)),
        }
        let now = current_position(&reader, topic).map_err(read_err("position"))?;
        if now > position {
            position = now;
            last_progress = Instant::now();
        }
        if position >= high {
            return Ok(latest);
        }
        if last_progress.elapsed() >= timeout {
            return Err(PublishError::CheckpointTimeout {
                topic: topic.to_string(),
                position,
                high_watermark: high,
                waited: last_progress.elapsed(),
            });
        }
    }
}

/// The reader's position on partition 0, or -1 before the first fetch.
fn current_position(reader: &BaseConsumer<TracingContext>, topic: &str) -> Result<i64, KafkaError> {
    let positions = reader.position()?;
    Ok(positions
        .find_partition(topic, 0)
        .and_then(|p| match p.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .unwrap_or(-1))
}
