//! The two seams of the main loop: where windows come from and where units of work go.
//!
//! ```text
//!   WindowSource ──read(window)──▶ Connector ──commit(records)──▶ TransactionalLog
//!   (HTTP: WindowReader;                        (Kafka: KafkaLog;
//!    tests: MemorySource)                        tests: MemoryLog)
//! ```
//!
//! The loop in [`super::runner`] is written against these traits only, so the commit protocol
//! (diff → one transaction → apply → tell the planner) can be driven step by step in-process,
//! with faults injected at every step ([`super::faults`]), and the same scenarios run once more
//! against the real broker.
//!
//! # The log's contract
//! * [`TransactionalLog::fence`] makes this writer the only one: any older writer with the same
//!   identity can no longer commit, and a transaction it (or we) left open is aborted or
//!   resolved. After it returns, the committed content of the log changes only through us.
//! * [`TransactionalLog::commit`] writes every record or none. `Ok` means committed. An error
//!   means nothing became visible — except [`PublishError::CommitOutcomeUnknown`], after which the
//!   caller must not assume either and re-reads the log (after fencing) to learn the truth.
//! * [`TransactionalLog::read_checkpoint`] and [`TransactionalLog::restore_state`] read
//!   committed data only, up to the end of the log as it was when the read began.

use std::future::Future;
use std::time::Duration;

use super::unit::{DeadLetters, DEAD_LETTER_FP_HEADER};
use crate::config::Config;
use crate::plan::Window;
use crate::publish::{
    client_config, read_latest, read_to_end, CommitStats, OutRecord, PublishError, ReadError,
    ReadOptions, TransactionalProducer,
};
use crate::state::{restore, RestoreStats, StateError, StateStore};
use crate::upstream::window_reader::{WindowOutcome, WindowReader};
use crate::upstream::ApiError;

/// Where windows come from: reads every row of one add-time window.
pub trait WindowSource: Clone + Send + Sync + 'static {
    /// Reads `window` whole, or reports that it holds more than `split_threshold` rows.
    fn read(
        &self,
        window: Window,
        split_threshold: u64,
    ) -> impl Future<Output = Result<WindowOutcome, ApiError>> + Send;
}

impl WindowSource for WindowReader {
    fn read(
        &self,
        window: Window,
        split_threshold: u64,
    ) -> impl Future<Output = Result<WindowOutcome, ApiError>> + Send {
        WindowReader::read(self, window, split_threshold)
    }
}

/// Where units of work go: a log with atomic multi-record transactions (see the module docs).
pub trait TransactionalLog: Send + Sync + 'static {
    /// Becomes the only writer (Kafka: a fresh producer whose `init_transactions` fences older
    /// ones and aborts what was left open under the same `transactional.id`).
    fn fence(&mut self) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Writes `records` in one transaction: all of them become visible, or none.
    fn commit(
        &self,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<CommitStats, PublishError>> + Send;

    /// Writes `records` in a transaction and aborts it (fault drills: a failure during produce).
    fn write_aborted(
        &self,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<CommitStats, PublishError>> + Send;

    /// The value of the latest committed checkpoint record, if any.
    fn read_checkpoint(&self)
        -> impl Future<Output = Result<Option<Vec<u8>>, PublishError>> + Send;

    /// Empties `store` and fills it from the committed state records.
    fn restore_state(
        &self,
        store: &mut StateStore,
    ) -> impl Future<Output = Result<RestoreStats, StateError>> + Send;

    /// The content fingerprints of every committed dead letter (header
    /// [`DEAD_LETTER_FP_HEADER`]), so that a restart does not dead-letter a row again.
    fn read_dead_letters(&self) -> impl Future<Output = Result<DeadLetters, PublishError>> + Send;
}

/// The Kafka implementation: the transactional producer, the checkpoint topic and the state
/// topic, all read `read_committed` to the high watermarks captured when the read starts.
pub struct KafkaLog {
    cfg: Config,
    producer: Option<TransactionalProducer>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("transactional_id", &self.cfg.kafka.transactional_id)
            .field("fenced", &self.producer.is_some())
            .finish()
    }
}

impl KafkaLog {
    /// A log for `cfg`'s topics; nothing is connected until [`TransactionalLog::fence`].
    pub fn new(cfg: &Config) -> KafkaLog {
        KafkaLog {
            cfg: cfg.clone(),
            producer: None,
        }
    }

    fn producer(&self) -> Result<&TransactionalProducer, PublishError> {
        self.producer.as_ref().ok_or(PublishError::Runtime {
            op: "commit",
            detail: "the log was not fenced before use".into(),
        })
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.state.restore_timeout_ms)
    }
}

impl TransactionalLog for KafkaLog {
    async fn fence(&mut self) -> Result<(), PublishError> {
        // The old producer goes first: librdkafka may still hold its open transaction, which
        // the new producer's init_transactions aborts.
        if let Some(old) = self.producer.take() {
            old.close().await;
        }
        self.producer = Some(TransactionalProducer::new(&self.cfg.kafka).await?);
        Ok(())
    }

    async fn commit(&self, records: Vec<OutRecord>) -> Result<CommitStats, PublishError> {
        self.producer()?.commit(records).await
    }

    async fn write_aborted(&self, records: Vec<OutRecord>) -> Result<CommitStats, PublishError> {
        self.producer()?.write_aborted(records).await
    }

    async fn read_checkpoint(&self) -> Result<Option<Vec<u8>>, PublishError> {
        read_latest(
            &self.cfg.kafka,
            &self.cfg.topics.checkpoint,
            &self.cfg.kafka.transactional_id,
            self.read_timeout(),
        )
        .await
    }

    async fn restore_state(&self, store: &mut StateStore) -> Result<RestoreStats, StateError> {
        restore(
            client_config(&self.cfg.kafka),
            &self.cfg.topics.state,
            store,
            self.read_timeout(),
            |done, total| tracing::debug!(done, total, "Restoring state."),
        )
        .await
    }

    async fn read_dead_letters(&self) -> Result<DeadLetters, PublishError> {
        let topic = self.cfg.topics.dead_letter.clone();
        let read = read_to_end(
            &client_config(&self.cfg.kafka),
            &topic,
            ReadOptions::committed(self.read_timeout()),
            DeadLetters::new(),
            |seen: &mut DeadLetters, record| {
                record.for_each_header(|name, value| {
                    if name == DEAD_LETTER_FP_HEADER {
                        if let Ok(bytes) = <[u8; 8]>::try_from(value) {
                            seen.insert(u64::from_be_bytes(bytes));
                        }
                    }
                });
                Ok::<(), std::convert::Infallible>(())
            },
        )
        .await;
        match read {
            Ok((seen, _)) => Ok(seen),
            // Not created yet (it is created with the others at start; a test may skip it).
            Err(ReadError::TopicMissing { .. }) => Ok(DeadLetters::new()),
            // Read on the dead-letter topic is recommended, not required (docs/OPERATIONS.md):
            // without it a restart may dead-letter a row that is still bad once more.
            Err(e) if e.is_refused() => {
                tracing::warn!(topic, error = %e, "Cannot read the dead-letter topic (no Read ACL): rows dead-lettered before this start may be dead-lettered once more.");
                Ok(DeadLetters::new())
            }
            Err(e) => Err(PublishError::Runtime {
                op: "read the dead-letter topic",
                detail: e.to_string(),
            }),
        }
    }
}
