//! Reading the connector's checkpoint back from the compacted, one-partition checkpoint topic.
//!
//! The checkpoint is the last record of every transaction, keyed by the `transactional.id`, so
//! the last committed value for that key is the checkpoint of the last committed unit of work.
//! The read is [`super::read_to_end`]: the high watermark from a `read_uncommitted` client, then
//! `read_committed` from the beginning until the position reaches it (transaction control
//! records occupy offsets that a consumer never sees, so the last record is not the end).
//!
//! Call [`read_latest`] only after [`super::TransactionalProducer::new`]: `init_transactions` has
//! then fenced older producers and aborted their open transactions, so the last stable offset
//! reaches the high watermark and the read completes.

use std::time::Duration;

use super::client_config::client_config;
use super::error::PublishError;
use super::read_to_end::{read_to_end, ReadError, ReadOptions};
use crate::config::KafkaConfig;

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
    let key = key.as_bytes().to_vec();
    let read = read_to_end(
        &client_config(cfg),
        topic,
        ReadOptions::committed(timeout),
        None,
        move |latest: &mut Option<Option<Vec<u8>>>, record| {
            if record.key() == Some(key.as_slice()) {
                *latest = Some(record.value().map(<[u8]>::to_vec));
            }
            Ok::<(), std::convert::Infallible>(())
        },
    )
    .await;
    let (latest, summary) = match read {
        Ok(done) => done,
        Err(ReadError::TopicMissing { .. }) => {
            return Err(PublishError::CheckpointPartitions {
                topic: topic.to_string(),
                partitions: 0,
            })
        }
        Err(e) => return Err(checkpoint_error(topic, e)),
    };
    if summary.partitions != 1 {
        return Err(PublishError::CheckpointPartitions {
            topic: topic.to_string(),
            partitions: summary.partitions,
        });
    }
    Ok(latest.flatten())
}

/// Maps a failed read of the checkpoint topic.
fn checkpoint_error(topic: &str, e: ReadError<std::convert::Infallible>) -> PublishError {
    match e {
        ReadError::Kafka { action, source, .. } => PublishError::CheckpointRead {
            topic: topic.to_string(),
            op: action,
            cause: source,
        },
        ReadError::Stalled {
            timeout, records, ..
        } => PublishError::CheckpointTimeout {
            topic: topic.to_string(),
            records,
            waited: timeout,
        },
        other => PublishError::Runtime {
            op: "read checkpoint",
            detail: other.to_string(),
        },
    }
}
