//! The main loop: plan, fetch, diff, publish, apply.
//!
//! [`startup::build`] performs the start-up sequence whose order carries the exactly-once
//! argument (see `docs/DESIGN.md`): topics verified → schemas registered → producer initialised
//! (fencing any older instance with the same `transactional.id` and aborting its open
//! transaction) → checkpoint read → state restored, both read_committed to the end. Only then does
//! [`runner::Connector::run`] poll.

pub mod deletions;
pub mod faults;
pub mod memory;
pub mod ports;
pub mod runner;
pub mod startup;
pub mod unit;
mod unit_delete;

pub use ports::{KafkaLog, TransactionalLog, WindowSource};
pub use runner::{Connector, Exit, RunOptions};

use crate::error::{Classify, ErrorClass};

/// Why the pipeline stopped or a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The API failed.
    #[error("Tanma API: {0}")]
    Api(#[from] crate::upstream::ApiError),
    /// Kafka writes failed.
    #[error("Kafka: {0}")]
    Publish(#[from] crate::publish::PublishError),
    /// Topics are missing or misconfigured.
    #[error("Kafka topics: {0}")]
    Topics(#[from] crate::publish::TopicError),
    /// The schema registry failed or refused our schemas.
    #[error("schema registry: {0}")]
    Registry(#[from] crate::encode::RegistryError),
    /// Encoding set-up failed.
    #[error("Avro: {0}")]
    Encode(#[from] crate::encode::EncodeError),
    /// The state store failed.
    #[error("state store: {0}")]
    State(#[from] crate::state::StateError),
    /// The checkpoint could not be read.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::plan::CheckpointError),
    /// The planner refused an operation (a bug or an unusable checkpoint).
    #[error("planner: {0}")]
    Plan(#[from] crate::plan::PlanError),
    /// A unit of work could not be built.
    #[error("{0}")]
    Unit(#[from] unit::UnitError),
    /// The background task fetching a batch died (a bug: it does not fail otherwise).
    #[error("the task fetching windows failed: {0}")]
    FetchTask(String),
    /// A fault injected by a test or drill ([`faults::FaultPlan`]).
    #[error("{0}")]
    Injected(#[from] faults::Injected),
}

impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Api(e) => e.class(),
            PipelineError::Publish(e) => e.class(),
            PipelineError::Topics(e) => e.class(),
            PipelineError::Registry(e) => e.class(),
            PipelineError::Encode(e) => e.class(),
            PipelineError::State(e) => e.class(),
            PipelineError::Checkpoint(e) => e.class(),
            PipelineError::Plan(e) => e.class(),
            PipelineError::Unit(e) => e.class(),
            PipelineError::FetchTask(_) => ErrorClass::Fatal,
            PipelineError::Injected(faults::Injected::Failed(_)) => ErrorClass::Retry,
            PipelineError::Injected(faults::Injected::Crashed(_)) => ErrorClass::Fatal,
        }
    }
}
