//! [`PublishError`]: what can go wrong writing to Kafka, and what the caller should do about it.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::{Classify, ErrorClass};

/// An error of the transactional producer or the checkpoint reader.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A librdkafka client could not be created (bad configuration). The message never carries a
    /// secret value.
    #[error("cannot create the Kafka {what} client: {cause}")]
    Client {
        /// Which client: `transactional producer`, `checkpoint consumer`, ...
        what: &'static str,
        /// librdkafka's reason, secrets redacted.
        cause: String,
    },
    /// A transaction call (`init_transactions`, `begin_transaction`, `commit_transaction`,
    /// `abort_transaction`) failed.
    #[error("Kafka {op} failed for transactional id {transactional_id:?}: {cause}")]
    Transaction {
        /// The librdkafka call.
        op: &'static str,
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// librdkafka's error.
        cause: KafkaError,
    },
    /// The producer was fenced by a newer instance with the same `transactional.id`, or hit
    /// another fatal error; it cannot be used again.
    #[error(
        "Kafka producer with transactional id {transactional_id:?} cannot continue ({code:?}: {reason}); \
         if the code is a fencing error another instance with the same kafka.transactional_id has taken over"
    )]
    Fenced {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// librdkafka's fatal error code.
        code: RDKafkaErrorCode,
        /// librdkafka's fatal error reason.
        reason: String,
    },
    /// The producer failed fatally for another reason than fencing: it cannot be used again,
    /// and whether its open transaction committed is unknown. The pipeline recovers with a new
    /// producer, as a restart would (whose `init_transactions` finds out whether it is fenced).
    #[error(
        "Kafka producer with transactional id {transactional_id:?} failed ({code:?}: {reason}); \
         replacing it and recovering from the topics"
    )]
    ProducerFailed {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// librdkafka's fatal error code.
        code: RDKafkaErrorCode,
        /// librdkafka's fatal error reason.
        reason: String,
    },
    /// A record could not be handed to librdkafka.
    #[error("cannot enqueue a record for topic {topic:?}: {cause}")]
    Enqueue {
        /// Destination topic.
        topic: String,
        /// librdkafka's error.
        cause: KafkaError,
    },
    /// librdkafka's queue stayed full for the whole wait.
    #[error("the producer queue stayed full for {waited:?} while enqueuing a record for topic {topic:?}")]
    QueueFull {
        /// Destination topic.
        topic: String,
        /// How long the producer waited for room.
        waited: Duration,
    },
    /// The broker denied the connector's principal an operation: an ACL is missing.
    #[error(
        "Kafka denied this client's principal {operation} on {resource} ({cause}); grant it \
         (docs/OPERATIONS.md lists every ACL the connector needs)"
    )]
    Unauthorized {
        /// The ACL operation needed, e.g. `Write`.
        operation: &'static str,
        /// What it is needed on, e.g. `topic "tanma.customer.events"`.
        resource: String,
        /// librdkafka's error.
        cause: String,
    },
    /// A record was enqueued but the broker did not accept it.
    #[error("a record for topic {topic:?} was not delivered: {cause}")]
    Delivery {
        /// Destination topic.
        topic: String,
        /// librdkafka's error.
        cause: KafkaError,
    },
    /// Delivery reports did not all arrive in time.
    #[error("{pending} delivery reports still missing after {waited:?} (transactional id {transactional_id:?})")]
    DeliveryTimeout {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// Records without a report.
        pending: usize,
        /// How long the producer waited.
        waited: Duration,
    },
    /// `commit_transaction` kept failing with retriable errors and the transaction could not be
    /// aborted either: whether it committed is unknown until a new producer resolves it.
    #[error(
        "the outcome of the commit for transactional id {transactional_id:?} is unknown ({cause}); \
         abort also failed ({abort_cause}); recovering from the topics (the checkpoint tells what was committed)"
    )]
    CommitOutcomeUnknown {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// The last commit error.
        cause: String,
        /// Why the abort failed.
        abort_cause: String,
    },
    /// A blocking librdkafka call did not return within twice its timeout plus a grace period:
    /// the producer is unusable and the outcome of its open transaction unknown.
    #[error(
        "Kafka call {op} for transactional id {transactional_id:?} did not return within {waited:?}; \
         replacing the producer and recovering from the topics"
    )]
    Stuck {
        /// The librdkafka call.
        op: &'static str,
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A blocking librdkafka call could not be run or did not return (its task panicked or the
    /// runtime is shutting down).
    #[error("blocking Kafka call {op} did not complete: {detail}")]
    Runtime {
        /// The librdkafka call.
        op: &'static str,
        /// What happened to the task.
        detail: String,
    },
    /// The checkpoint topic does not have exactly one partition.
    #[error("checkpoint topic {topic:?} must have exactly one partition, it has {partitions}")]
    CheckpointPartitions {
        /// The checkpoint topic.
        topic: String,
        /// Partitions found.
        partitions: usize,
    },
    /// Reading the checkpoint topic up to its high watermark made no progress in time.
    #[error(
        "reading checkpoint topic {topic:?} to its high watermark made no progress for {waited:?} \
         ({records} records read)"
    )]
    CheckpointTimeout {
        /// The checkpoint topic.
        topic: String,
        /// Records read before the read stalled.
        records: u64,
        /// How long without progress.
        waited: Duration,
    },
    /// Reading the checkpoint topic failed.
    #[error(
        "reading checkpoint topic {topic:?} failed during {op}: {cause}{}",
        cause.rdkafka_error_code().map_or("", acl_hint)
    )]
    CheckpointRead {
        /// The checkpoint topic.
        topic: String,
        /// What was being done.
        op: &'static str,
        /// librdkafka's error.
        cause: KafkaError,
    },
}

impl PublishError {
    /// A record for `topic` the broker did not accept: [`PublishError::Unauthorized`] when the
    /// principal may not write to it, else [`PublishError::Delivery`].
    pub(crate) fn delivery(topic: &str, cause: KafkaError) -> Self {
        Self::write_denied(topic, &cause).unwrap_or_else(|| PublishError::Delivery {
            topic: topic.to_string(),
            cause,
        })
    }

    /// A record for `topic` librdkafka would not take: [`PublishError::Unauthorized`] when the
    /// principal may not write to it, else [`PublishError::Enqueue`].
    pub(crate) fn enqueue(topic: &str, cause: KafkaError) -> Self {
        Self::write_denied(topic, &cause).unwrap_or_else(|| PublishError::Enqueue {
            topic: topic.to_string(),
            cause,
        })
    }

    fn write_denied(topic: &str, cause: &KafkaError) -> Option<Self> {
        (cause.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed)).then(
            || PublishError::Unauthorized {
                operation: "Write",
                resource: format!("topic {topic:?}"),
                cause: cause.to_string(),
            },
        )
    }

    /// The producer cannot continue (librdkafka's fatal error `code`): a missing ACL on the
    /// transactional id or the cluster is [`PublishError::Unauthorized`], fencing (another
    /// instance took over) [`PublishError::Fenced`], anything else (e.g. the invalid
    /// transaction state librdkafka can end in when an abort times out across a broker restart,
    /// confluentinc/librdkafka#3297) [`PublishError::ProducerFailed`].
    pub(crate) fn fatal(transactional_id: &str, code: RDKafkaErrorCode, reason: String) -> Self {
        let denied = |operation, resource| PublishError::Unauthorized {
            operation,
            resource,
            cause: format!("{code:?}: {reason}"),
        };
        match code {
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
                denied("Write", format!("transactional id {transactional_id:?}"))
            }
            RDKafkaErrorCode::ClusterAuthorizationFailed => denied(
                "IdempotentWrite",
                format!("the cluster (transactional id {transactional_id:?})"),
            ),
            RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionCoordinatorFenced => PublishError::Fenced {
                transactional_id: transactional_id.to_string(),
                code,
                reason,
            },
            _ => PublishError::ProducerFailed {
                transactional_id: transactional_id.to_string(),
                code,
                reason,
            },
        }
    }
}

impl Classify for PublishError {
    fn class(&self) -> ErrorClass {
        match self {
            PublishError::Client { .. }
            | PublishError::Unauthorized { .. }
            | PublishError::Fenced { .. }
            | PublishError::Runtime { .. }
            | PublishError::CheckpointPartitions { .. } => ErrorClass::Fatal,
            PublishError::Transaction { cause, .. }
            | PublishError::CheckpointRead { cause, .. } => kafka_error_class(cause),
            PublishError::Enqueue { cause, .. } => match kafka_error_class(cause) {
                ErrorClass::Fatal => ErrorClass::Fatal,
                // Nothing of the open transaction can be trusted any more.
                _ => ErrorClass::Abort,
            },
            // The unit may or may not be committed: the pipeline recovers from the log.
            PublishError::QueueFull { .. }
            | PublishError::DeliveryTimeout { .. }
            | PublishError::CommitOutcomeUnknown { .. }
            | PublishError::Stuck { .. }
            | PublishError::ProducerFailed { .. } => ErrorClass::Abort,
            PublishError::Delivery { cause, .. } => match kafka_error_class(cause) {
                ErrorClass::Fatal => ErrorClass::Fatal,
                _ => ErrorClass::Abort,
            },
            PublishError::CheckpointTimeout { .. } => ErrorClass::Retry,
        }
    }
}

/// Error codes after which retrying cannot help: fencing, authorization, records the broker will
/// never accept, topics that do not exist.
pub(crate) fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::TransactionCoordinatorFenced
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownTopicId
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::InvalidTransactionTimeout
    )
}

/// Error codes that say the client's principal lacks an ACL.
pub(crate) fn is_authorization_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
    )
}

/// Whether a consumer's `error` is the group coordinator refusing the principal: irrelevant to
/// the connector's readers, which are assigned their partitions and never join or commit (so
/// they need no ACL on any group), yet librdkafka looks up the coordinator of their `group.id`.
pub fn is_group_authorization(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed)
}

/// Error codes that say the broker refused the client's credentials.
pub(crate) fn is_authentication_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed
    )
}

/// What to append to the message of an error with `code`: a pointer to the ACL list when the
/// principal lacks an ACL, nothing otherwise.
pub(crate) fn acl_hint(code: RDKafkaErrorCode) -> &'static str {
    if is_authorization_code(code) {
        "; the connector's Kafka principal lacks an ACL (docs/OPERATIONS.md lists the ACLs it needs)"
    } else {
        ""
    }
}

/// The class of a librdkafka error: transaction errors by their own flags (fatal, requires
/// abort, retriable), others by code.
pub(crate) fn kafka_error_class(error: &KafkaError) -> ErrorClass {
    if let KafkaError::Transaction(e) = error {
        if e.is_fatal() || is_fatal_code(e.code()) {
            return ErrorClass::Fatal;
        }
        if e.txn_requires_abort() {
            return ErrorClass::Abort;
        }
        if e.is_retriable() {
            return ErrorClass::Retry;
        }
        return ErrorClass::Abort;
    }
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorClass::Fatal,
        KafkaError::Canceled => ErrorClass::Abort,
        _ => match error.rdkafka_error_code() {
            Some(code) if is_fatal_code(code) => ErrorClass::Fatal,
            _ => ErrorClass::Retry,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_is_fatal_other_fatal_producer_errors_recover() {
        let fatal = |code| PublishError::fatal("t", code, "r".into());
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::Fenced,
        ] {
            let e = fatal(code);
            assert!(matches!(e, PublishError::Fenced { .. }), "{code:?}: {e:?}");
            assert_eq!(e.class(), ErrorClass::Fatal, "{code:?}");
        }
        let e = fatal(RDKafkaErrorCode::InvalidTransactionalState);
        assert!(matches!(e, PublishError::ProducerFailed { .. }), "{e:?}");
        assert_eq!(e.class(), ErrorClass::Abort);
        let e = fatal(RDKafkaErrorCode::TransactionalIdAuthorizationFailed);
        assert_eq!(e.class(), ErrorClass::Fatal);
    }

    #[test]
    fn fencing_and_size_errors_are_fatal() {
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            let e = PublishError::Delivery {
                topic: "t".into(),
                cause: KafkaError::MessageProduction(code),
            };
            assert_eq!(e.class(), ErrorClass::Fatal, "{code:?}");
        }
    }

    #[test]
    fn transient_delivery_failure_aborts_and_transient_call_retries() {
        let delivery = PublishError::Delivery {
            topic: "t".into(),
            cause: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        };
        assert_eq!(delivery.class(), ErrorClass::Abort);
        let read = PublishError::CheckpointRead {
            topic: "t".into(),
            op: "fetch_watermarks",
            cause: KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
        };
        assert_eq!(read.class(), ErrorClass::Retry);
        let timeout = PublishError::CheckpointTimeout {
            topic: "t".into(),
            records: 1,
            waited: Duration::from_secs(1),
        };
        assert_eq!(timeout.class(), ErrorClass::Retry);
    }

    #[test]
    fn missing_acls_are_fatal_and_name_the_resource() {
        let write = PublishError::delivery(
            "my.events",
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert!(
            matches!(write, PublishError::Unauthorized { .. }),
            "{write:?}"
        );
        assert_eq!(write.class(), ErrorClass::Fatal);
        assert!(
            write.to_string().contains("Write on topic \"my.events\""),
            "{write}"
        );
        let txn = PublishError::fatal(
            "tx-1",
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            "denied".into(),
        );
        assert_eq!(txn.class(), ErrorClass::Fatal);
        assert!(
            txn.to_string()
                .contains("Write on transactional id \"tx-1\""),
            "{txn}"
        );
        let fenced = PublishError::fatal("tx-1", RDKafkaErrorCode::ProducerFenced, "x".into());
        assert!(matches!(fenced, PublishError::Fenced { .. }), "{fenced:?}");
        let other = PublishError::delivery(
            "t",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        );
        assert!(matches!(other, PublishError::Delivery { .. }), "{other:?}");
        assert!(acl_hint(RDKafkaErrorCode::TopicAuthorizationFailed).contains("ACL"));
        assert!(acl_hint(RDKafkaErrorCode::InvalidConfig).is_empty());
    }

    #[test]
    fn fatal_message_names_topic() {
        let e = PublishError::Delivery {
            topic: "tanma.customer.events".into(),
            cause: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        };
        assert!(e.to_string().contains("tanma.customer.events"));
    }
}
