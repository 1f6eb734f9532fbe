//! Errors of the state store and of its restore.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Classify, ErrorClass};

/// What went wrong in the state store or while restoring it from the state topic.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The spill directory or file could not be created, written or read.
    #[error("state spill file {path}: {action} failed: {source}")]
    Spill {
        /// The spill file (or its directory).
        path: PathBuf,
        /// What was being done (create, write, read, flush...).
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A spill entry is too large for the packed location (24-bit length).
    #[error(
        "state snapshot of {len} bytes for customer key hash {key_hash:016x} exceeds the {max} byte limit of the spill index"
    )]
    SnapshotTooLarge {
        /// xxh3 of the externalUserId.
        key_hash: u64,
        /// Encoded entry length.
        len: usize,
        /// Largest entry the index can address.
        max: usize,
    },
    /// The spill file grew past what the packed location can address (40-bit offset).
    #[error("state spill file {path} reached {offset} bytes, the most the index can address")]
    SpillFull {
        /// The spill file.
        path: PathBuf,
        /// Offset at which the write was attempted.
        offset: u64,
    },
    /// A spill entry read back does not parse, or belongs to another customer (hash collision
    /// or corruption of the local cache).
    #[error("state spill file {path}: entry at offset {offset} is invalid: {reason}")]
    CorruptSpill {
        /// The spill file.
        path: PathBuf,
        /// Offset of the entry.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A record of the state topic breaks the record contract (key, headers).
    #[error(
        "state topic {topic} partition {partition} offset {offset}: invalid state record: {reason}"
    )]
    InvalidRecord {
        /// State topic.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The state topic does not exist (or is not visible to this principal).
    #[error("state topic {topic} does not exist; the connector must create it before restoring")]
    TopicMissing {
        /// State topic.
        topic: String,
    },
    /// A Kafka client call failed while restoring.
    #[error("state topic {topic}: {action} failed: {source}")]
    Kafka {
        /// State topic.
        topic: String,
        /// What was being done (create consumer, fetch metadata, watermarks, assign, consume...).
        action: &'static str,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The restore made no progress for the configured time.
    #[error(
        "state topic {topic}: restore made no progress for {timeout:?} ({records} records read, {pending} partitions short of their end offset)"
    )]
    RestoreStalled {
        /// State topic.
        topic: String,
        /// The no-progress limit.
        timeout: Duration,
        /// Records read before stalling.
        records: u64,
        /// Partitions not yet read to their captured end offset.
        pending: usize,
    },
    /// The blocking restore thread died or was cancelled.
    #[error("state topic {topic}: restore thread ended abnormally: {reason}")]
    RestoreTask {
        /// State topic.
        topic: String,
        /// Join error text.
        reason: String,
    },
}

impl Classify for StateError {
    fn class(&self) -> ErrorClass {
        match self {
            // A local disk problem may clear (space freed); a restart rebuilds the cache anyway.
            StateError::Spill { .. } => ErrorClass::Retry,
            StateError::SnapshotTooLarge { .. } | StateError::SpillFull { .. } => ErrorClass::Fatal,
            // The local cache is rebuilt from the topic at every restore.
            StateError::CorruptSpill { .. } => ErrorClass::Retry,
            StateError::InvalidRecord { .. } | StateError::TopicMissing { .. } => ErrorClass::Fatal,
            StateError::Kafka { source, .. } => kafka_class(source),
            StateError::RestoreStalled { .. } | StateError::RestoreTask { .. } => ErrorClass::Retry,
        }
    }
}

/// Classifies a client error met while reading the state topic.
fn kafka_class(e: &rdkafka::error::KafkaError) -> ErrorClass {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    match e.rdkafka_error_code() {
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidConfig
            | C::InvalidArgument
            | C::UnsupportedFeature,
        ) => ErrorClass::Fatal,
        _ => match e {
            KafkaError::ClientCreation(_) => ErrorClass::Fatal,
            _ => ErrorClass::Retry,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let stalled = StateError::RestoreStalled {
            topic: "t".into(),
            timeout: Duration::from_secs(1),
            records: 3,
            pending: 1,
        };
        assert_eq!(stalled.class(), ErrorClass::Retry);
        assert!(stalled.to_string().contains("no progress"));
        let missing = StateError::TopicMissing { topic: "t".into() };
        assert_eq!(missing.class(), ErrorClass::Fatal);
        let creation = StateError::Kafka {
            topic: "t".into(),
            action: "create consumer",
            source: rdkafka::error::KafkaError::ClientCreation("bad".into()),
        };
        assert_eq!(creation.class(), ErrorClass::Fatal);
    }
}
