//! Kafka writes: the transactional producer, topic management and the checkpoint reader.
//!
//! ```text
//!  unit of work (events + state records + checkpoint, in that order)
//!        │
//!        ▼
//!  TransactionalProducer::commit ── begin ─▶ produce all ─▶ await deliveries ─▶ commit
//!        │                                        │ any error
//!        │                                        ▼
//!        │                               abort (unless fatal) ─▶ classified PublishError
//!        ▼
//!  events topic (delete) · state topic (compact) · checkpoint topic (compact, 1 partition)
//! ```
//!
//! # Delivery semantics
//!
//! Every unit of work is one Kafka transaction: a `read_committed` reader sees all of its records
//! or none. The checkpoint record is the last record of each transaction, so
//! [`checkpoint_store::read_latest`] (called after [`TransactionalProducer::new`] has fenced any
//! older instance) returns the checkpoint of the last committed unit of work.
//!
//! # Error handling
//!
//! Errors are sorted by [`crate::error::Classify`]: retriable errors (a broker briefly away, a
//! timeout) are `Retry`; a transaction that must be aborted or a record that was not delivered is
//! `Abort` (the caller redoes the unit of work); a fenced producer, a record too large for the
//! broker, a missing or unauthorized topic, or a misconfigured topic are `Fatal`.
//!
//! # Secrets
//!
//! [`rdkafka::ClientConfig`] holds the SASL password in clear text; its `Debug` hides only a fixed
//! list of keys. Log [`client_config::describe`] instead, which redacts every key that looks
//! secret (`password`, `secret`, `jaas`, private keys).

pub mod checkpoint_store;
pub mod client_config;
mod error;
pub mod kafka_context;
pub mod producer;
pub mod read_to_end;
pub mod topics;

pub use checkpoint_store::read_latest;
pub use client_config::client_config;
pub use error::{is_group_authorization, PublishError};
pub use kafka_context::{create_client, KafkaContext};
pub use producer::{CommitStats, OutRecord, TransactionalProducer};
pub use read_to_end::{
    read_to_end, read_to_end_blocking, Isolation, LogRecord, ReadError, ReadOptions, ReadSummary,
};
pub use topics::{ensure_topics, partition_count, TopicError};
