//! How a read to the end fails.

use std::time::Duration;

use rdkafka::error::KafkaError;

/// Why a read to the end failed. `E` is the callback's error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The topic does not exist (or is not visible to this principal).
    #[error("topic {topic} does not exist")]
    TopicMissing {
        /// The topic.
        topic: String,
    },
    /// A client call failed.
    #[error("topic {topic}: {action} failed: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What was being done (create consumer, fetch metadata, fetch watermarks, assign, consume…).
        action: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// No progress for [`ReadOptions::timeout`].
    #[error(
        "topic {topic}: reading to the end made no progress for {timeout:?} ({records} records read, {pending} partitions short of their end offset)"
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// The no-progress limit.
        timeout: Duration,
        /// Records read before stalling.
        records: u64,
        /// Partitions not yet read to their captured end.
        pending: usize,
    },
    /// [`ReadOptions::cancel`] was set, or the async caller went away.
    #[error("topic {topic}: read cancelled")]
    Cancelled {
        /// The topic.
        topic: String,
    },
    /// The blocking reader thread ended abnormally.
    #[error("topic {topic}: reader thread failed: {reason}")]
    Task {
        /// The topic.
        topic: String,
        /// The join error.
        reason: String,
    },
    /// The callback failed; the read stopped there.
    #[error(transparent)]
    Callback(E),
}

impl<E> ReadError<E> {
    /// Whether the broker refused the principal (authentication or authorization).
    pub fn is_refused(&self) -> bool {
        matches!(self, ReadError::Kafka { source, .. } if refused(source))
    }
}

/// Whether `e` is a refusal that retrying cannot cure (authentication, authorization).
pub(super) fn refused(e: &KafkaError) -> bool {
    e.rdkafka_error_code().is_some_and(|code| {
        crate::publish::error::is_authorization_code(code)
            || crate::publish::error::is_authentication_code(code)
    })
}
