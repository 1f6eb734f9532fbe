//! The transactional producer: one unit of work = one Kafka transaction.
//!
//! Modelled on Materialize's Kafka sink: every blocking librdkafka call runs on
//! [`tokio::task::spawn_blocking`]; a transaction is begun only when there is something to write
//! (Kafka has no heartbeat to keep an idle transaction open); on failure the producer makes a
//! polite `abort_transaction` unless it is fatally failed, and returns a classified error.
//!
//! librdkafka's transactional calls can block past their own timeout (an `abort_transaction`
//! during a broker restart was seen to never return; confluentinc/librdkafka#3779 reports ten
//! minutes). No call is awaited longer than twice its timeout plus [`STUCK_GRACE`]: past that
//! the producer is *stuck*, every later call fails at once with [`PublishError::Stuck`], and the
//! pipeline replaces it as a restart would (a new producer fences this one).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::Mutex;

use super::client_config::{describe, describe_creation_error, producer_config};
use super::error::{kafka_error_class, PublishError};
use super::kafka_context::{create_client, KafkaContext};
use crate::config::KafkaConfig;
use crate::error::ErrorClass;
use crate::ops::metrics::names;

/// Attempts at `commit_transaction` while it fails with retriable errors (librdkafka allows
/// calling it again to learn the outcome).
const COMMIT_ATTEMPTS: u32 = 3;
/// Attempts at `abort_transaction` while it fails with retriable errors.
const ABORT_ATTEMPTS: u32 = 3;
/// Added to twice the operation timeout: how long a blocking librdkafka call may take before
/// the producer counts as stuck.
const STUCK_GRACE: Duration = Duration::from_secs(10);
/// Longest pause between two tries at enqueuing into a full queue.
const QUEUE_FULL_MAX_BACKOFF: Duration = Duration::from_millis(100);

/// One record to write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key (partitioned with Java-compatible murmur2).
    pub key: Vec<u8>,
    /// Record value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What one committed transaction wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Records written.
    pub records: usize,
    /// Key, value and header bytes written.
    pub bytes: usize,
    /// Records per topic.
    pub per_topic: BTreeMap<String, usize>,
    /// From begin to the end of the commit.
    pub duration: Duration,
}

/// A transactional Kafka producer. Only one transaction is open at a time: concurrent
/// [`TransactionalProducer::commit`] calls run one after the other.
pub struct TransactionalProducer {
    /// The librdkafka producer (its own thread polls delivery reports).
    producer: Arc<FutureProducer<KafkaContext>>,
    /// `transactional.id`, for messages.
    transactional_id: String,
    /// Timeout of init, commit and abort calls.
    op_timeout: Duration,
    /// How long to wait for all delivery reports of one transaction.
    delivery_timeout: Duration,
    /// How long to wait for room in a full producer queue before giving up.
    queue_full_wait: Duration,
    /// Serialises transactions; `true` while a transaction is left open by a failed abort and
    /// must be aborted before the next one begins.
    dangling: Mutex<bool>,
    /// Set when a blocking call did not return in time (see the module docs).
    stuck: AtomicBool,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("transactional_id", &self.transactional_id)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// How far a failed transaction got, which decides the clean-up.
enum Failure {
    /// Nothing is open.
    NotStarted(PublishError),
    /// A transaction is open and must be aborted.
    Open(PublishError),
    /// `commit_transaction` kept failing with retriable errors.
    CommitUnresolved(KafkaError),
}

impl TransactionalProducer {
    /// Creates the producer with `transactional.id` = `cfg.transactional_id`,
    /// `transaction.timeout.ms`, `partitioner = murmur2_random` (Java-compatible),
    /// `enable.idempotence`, lz4 compression, a bounded queue (`queue.buffering.max.kbytes`
    /// 65536) and `linger.ms` 5, and `statistics.interval.ms` from `kafka.statistics_interval_ms`.
    /// Calls `init_transactions`, which fences any older producer with the same id and aborts
    /// its open transaction.
    pub async fn new(cfg: &KafkaConfig) -> Result<Self, PublishError> {
        let config = producer_config(cfg);
        tracing::info!(config = %describe(&config), "creating the transactional Kafka producer");
        let producer: FutureProducer<KafkaContext> =
            create_client(&config).map_err(|e| PublishError::Client {
                what: "transactional producer",
                cause: describe_creation_error(&e),
            })?;
        let op_timeout = Duration::from_millis(cfg.operation_timeout_ms.max(1));
        let this = Self {
            producer: Arc::new(producer),
            transactional_id: cfg.transactional_id.clone(),
            op_timeout,
            delivery_timeout: Duration::from_millis(cfg.transaction_timeout_ms) + op_timeout,
            queue_full_wait: op_timeout,
            dangling: Mutex::new(false),
            stuck: AtomicBool::new(false),
        };
        this.blocking("init_transactions", move |p| {
            p.init_transactions(op_timeout)
        })
        .await?
        .map_err(|e| this.txn_error("init_transactions", e))?;
        tracing::info!(transactional_id = %this.transactional_id, "Kafka transactions initialised");
        Ok(this)
    }

    /// The producer's `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// One transaction: begin, produce every record in order, wait for all deliveries, commit.
    /// An empty batch opens no transaction and returns empty stats.
    ///
    /// On error the open transaction is aborted (unless the producer is fatally failed) and the
    /// classified error is returned: after `Retry` or `Abort` nothing of `records` is visible to
    /// `read_committed` readers and the caller may send the unit of work again.
    ///
    /// Once the producer is stuck (a librdkafka call did not return), every error is
    /// [`PublishError::Stuck`]: whether the transaction committed is unknown.
    pub async fn commit(&self, records: Vec<OutRecord>) -> Result<CommitStats, PublishError> {
        match self.commit_once(records).await {
            Err(_) if self.stuck.load(Ordering::Acquire) => Err(self.stuck_error("commit")),
            result => result,
        }
    }

    async fn commit_once(&self, records: Vec<OutRecord>) -> Result<CommitStats, PublishError> {
        let mut dangling = self.dangling.lock().await;
        if records.is_empty() {
            return Ok(CommitStats::default());
        }
        if *dangling {
            self.abort_open().await.map_err(|e| self.abort_error(e))?;
            *dangling = false;
        }
        let started = Instant::now();
        match self.run_transaction(records).await {
            Ok(mut stats) => {
                stats.duration = started.elapsed();
                metrics::counter!(names::KAFKA_TRANSACTIONS_TOTAL, "outcome" => "committed")
                    .increment(1);
                metrics::histogram!(names::KAFKA_COMMIT_DURATION_SECONDS)
                    .record(stats.duration.as_secs_f64());
                for (topic, n) in &stats.per_topic {
                    metrics::counter!(names::KAFKA_RECORDS_PRODUCED_TOTAL, "topic" => topic.clone())
                        .increment(*n as u64);
                }
                tracing::debug!(
                    records = stats.records,
                    bytes = stats.bytes,
                    duration_ms = stats.duration.as_millis() as u64,
                    "Kafka transaction committed"
                );
                Ok(stats)
            }
            Err(Failure::NotStarted(e)) => Err(e),
            Err(Failure::Open(e)) => {
                metrics::counter!(names::KAFKA_TRANSACTIONS_TOTAL, "outcome" => "aborted")
                    .increment(1);
                if self.fatal_error().is_none() {
                    if let Err(abort) = self.abort_open().await {
                        tracing::warn!(error = %abort, "could not abort the Kafka transaction; will abort before the next one");
                        *dangling = true;
                    }
                }
                Err(e)
            }
            Err(Failure::CommitUnresolved(cause)) => {
                metrics::counter!(names::KAFKA_TRANSACTIONS_TOTAL, "outcome" => "aborted")
                    .increment(1);
                match self.abort_open().await {
                    Ok(()) => Err(PublishError::Transaction {
                        op: "commit_transaction",
                        transactional_id: self.transactional_id.clone(),
                        cause,
                    }),
                    Err(abort) => Err(PublishError::CommitOutcomeUnknown {
                        transactional_id: self.transactional_id.clone(),
                        cause: cause.to_string(),
                        abort_cause: abort.to_string(),
                    }),
                }
            }
        }
    }

    /// Writes `records` in a transaction, waits until every one is on the log, then aborts the
    /// transaction: `read_uncommitted` readers see the records, `read_committed` readers never
    /// do. For tests and fault drills (proving that aborted data stays invisible).
    pub async fn write_aborted(
        &self,
        records: Vec<OutRecord>,
    ) -> Result<CommitStats, PublishError> {
        let mut dangling = self.dangling.lock().await;
        if records.is_empty() {
            return Ok(CommitStats::default());
        }
        if *dangling {
            self.abort_open().await.map_err(|e| self.abort_error(e))?;
            *dangling = false;
        }
        let started = Instant::now();
        let staged = self.stage(records).await;
        let opened = !matches!(staged, Err(Failure::NotStarted(_)));
        let abort = if opened {
            self.abort_open().await
        } else {
            Ok(())
        };
        if opened {
            metrics::counter!(names::KAFKA_TRANSACTIONS_TOTAL, "outcome" => "aborted").increment(1);
        }
        if let Err(e) = &abort {
            tracing::warn!(error = %e, "could not abort the Kafka transaction; will abort before the next one");
            *dangling = true;
        }
        match staged {
            Ok(mut stats) => {
                abort.map_err(|e| self.abort_error(e))?;
                stats.duration = started.elapsed();
                Ok(stats)
            }
            Err(Failure::NotStarted(e) | Failure::Open(e)) => Err(e),
            Err(Failure::CommitUnresolved(cause)) => {
                Err(self.txn_error("commit_transaction", cause))
            }
        }
    }

    /// A failed abort, classified like every transactional call (a fatal error of the producer
    /// is fencing, a missing ACL or [`PublishError::ProducerFailed`]).
    fn abort_error(&self, cause: KafkaError) -> PublishError {
        self.txn_error("abort_transaction", cause)
    }

    /// Drops the producer on a blocking thread (librdkafka's destroy waits for its threads).
    ///
    /// Waits at most [`STUCK_GRACE`]: a stuck call still holds the client, which is then freed
    /// when that call returns.
    pub async fn close(self) {
        let producer = self.producer;
        let drop_it = tokio::task::spawn_blocking(move || drop(producer));
        if tokio::time::timeout(STUCK_GRACE, drop_it).await.is_err() {
            tracing::warn!(transactional_id = %self.transactional_id, "The old Kafka producer did not close in time; going on without waiting.");
        }
    }

    fn stuck_error(&self, op: &'static str) -> PublishError {
        PublishError::Stuck {
            op,
            transactional_id: self.transactional_id.clone(),
            waited: self.op_timeout * 2 + STUCK_GRACE,
        }
    }

    /// Begins a transaction, produces `records` in order and waits for every delivery report.
    /// Each record is dropped as soon as librdkafka holds its copy, so a large transaction is
    /// not held in memory twice while it is delivered.
    async fn stage(&self, records: Vec<OutRecord>) -> Result<CommitStats, Failure> {
        if let Some((code, reason)) = self.fatal_error() {
            return Err(Failure::NotStarted(self.fenced(code, reason)));
        }
        self.blocking("begin_transaction", |p| p.begin_transaction())
            .await
            .map_err(Failure::NotStarted)?
            .map_err(|e| Failure::NotStarted(self.txn_error("begin_transaction", e)))?;

        let mut stats = CommitStats::default();
        let mut topics: Vec<String> = Vec::new();
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let delivery = self.enqueue(&record).await.map_err(Failure::Open)?;
            let topic = match topics.iter().position(|t| *t == record.topic) {
                Some(i) => i,
                None => {
                    topics.push(record.topic.clone());
                    topics.len() - 1
                }
            };
            deliveries.push((topic, delivery));
            stats.records += 1;
            stats.bytes += record.key.len()
                + record.value.as_ref().map_or(0, Vec::len)
                + record
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            match stats.per_topic.get_mut(&record.topic) {
                Some(n) => *n += 1,
                None => {
                    stats.per_topic.insert(record.topic.clone(), 1);
                }
            }
        }
        let deliveries = deliveries
            .into_iter()
            .map(|(t, d)| (topics[t].as_str(), d))
            .collect();
        self.await_deliveries(deliveries)
            .await
            .map_err(Failure::Open)?;
        Ok(stats)
    }

    async fn run_transaction(&self, records: Vec<OutRecord>) -> Result<CommitStats, Failure> {
        let stats = self.stage(records).await?;
        let timeout = self.op_timeout;
        for attempt in 1..=COMMIT_ATTEMPTS {
            let result = self
                .blocking("commit_transaction", move |p| p.commit_transaction(timeout))
                .await
                .map_err(Failure::Open)?;
            match result {
                Ok(()) => return Ok(stats),
                Err(e) if kafka_error_class(&e) == ErrorClass::Retry => {
                    tracing::warn!(attempt, error = %e, "retriable error committing the Kafka transaction");
                    if attempt == COMMIT_ATTEMPTS {
                        return Err(Failure::CommitUnresolved(e));
                    }
                }
                Err(e) => return Err(Failure::Open(self.txn_error("commit_transaction", e))),
            }
        }
        // COMMIT_ATTEMPTS >= 1, so the loop returned.
        Err(Failure::Open(PublishError::Runtime {
            op: "commit_transaction",
            detail: "no commit attempt was made".into(),
        }))
    }

    /// Hands one record to librdkafka, waiting (bounded) while its queue is full.
    async fn enqueue(&self, r: &OutRecord) -> Result<DeliveryFuture, PublishError> {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic)
            .key(r.key.as_slice())
            .headers(headers);
        if let Some(value) = &r.value {
            record = record.payload(value.as_slice());
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if started.elapsed() >= self.queue_full_wait {
                        return Err(PublishError::QueueFull {
                            topic: r.topic.clone(),
                            waited: started.elapsed(),
                        });
                    }
                    record = back;
                    // librdkafka's own thread drains the queue meanwhile.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(QUEUE_FULL_MAX_BACKOFF);
                }
                Err((cause, _)) => {
                    return Err(match self.fatal_error() {
                        Some((code, reason)) => self.fenced(code, reason),
                        None => PublishError::enqueue(&r.topic, cause),
                    })
                }
            }
        }
    }

    /// Waits for every delivery report; the first failure wins.
    async fn await_deliveries(
        &self,
        deliveries: Vec<(&str, DeliveryFuture)>,
    ) -> Result<(), PublishError> {
        let total = deliveries.len();
        let deadline = tokio::time::Instant::now() + self.delivery_timeout;
        for (done, (topic, delivery)) in deliveries.into_iter().enumerate() {
            let cause = match tokio::time::timeout_at(deadline, delivery).await {
                Ok(Ok(Ok(_))) => continue,
                Ok(Ok(Err((cause, _message)))) => cause,
                Ok(Err(_canceled)) => KafkaError::Canceled,
                Err(_elapsed) => {
                    return Err(PublishError::DeliveryTimeout {
                        transactional_id: self.transactional_id.clone(),
                        pending: total - done,
                        waited: self.delivery_timeout,
                    })
                }
            };
            return Err(match self.fatal_error() {
                Some((code, reason)) => self.fenced(code, reason),
                None => PublishError::delivery(topic, cause),
            });
        }
        Ok(())
    }

    /// Aborts the open transaction, retrying retriable failures.
    async fn abort_open(&self) -> Result<(), KafkaError> {
        let timeout = self.op_timeout;
        let mut last = KafkaError::Canceled;
        for attempt in 1..=ABORT_ATTEMPTS {
            let result = self
                .blocking("abort_transaction", move |p| p.abort_transaction(timeout))
                .await
                .map_err(|_| KafkaError::Canceled)?;
            match result {
                Ok(()) => {
                    tracing::info!(transactional_id = %self.transactional_id, "Kafka transaction aborted");
                    return Ok(());
                }
                Err(e) if kafka_error_class(&e) == ErrorClass::Retry => {
                    tracing::warn!(attempt, error = %e, "retriable error aborting the Kafka transaction");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Runs a blocking librdkafka call on the blocking pool.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<KafkaResult<T>, PublishError>
    where
        F: FnOnce(&FutureProducer<KafkaContext>) -> KafkaResult<T> + Send + 'static,
        T: Send + 'static,
    {
        if self.stuck.load(Ordering::Acquire) {
            return Err(self.stuck_error(op));
        }
        let producer = Arc::clone(&self.producer);
        let call = tokio::task::spawn_blocking(move || f(&producer));
        match tokio::time::timeout(self.op_timeout * 2 + STUCK_GRACE, call).await {
            Ok(joined) => joined.map_err(|e| PublishError::Runtime {
                op,
                detail: e.to_string(),
            }),
            Err(_) => {
                self.stuck.store(true, Ordering::Release);
                let e = self.stuck_error(op);
                tracing::warn!(error = %e, "A librdkafka call did not return in time; the producer will be replaced.");
                Err(e)
            }
        }
    }

    /// librdkafka's fatal error, if the producer has one (e.g. it was fenced).
    fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.producer.client().fatal_error()
    }

    fn fenced(&self, code: RDKafkaErrorCode, reason: String) -> PublishError {
        PublishError::fatal(&self.transactional_id, code, reason)
    }

    /// Turns a failed transaction call into a [`PublishError`], naming the fatal cause if the
    /// producer is fatally failed.
    fn txn_error(&self, op: &'static str, cause: KafkaError) -> PublishError {
        if kafka_error_class(&cause) == ErrorClass::Fatal {
            if let Some((code, reason)) = self.fatal_error() {
                return self.fenced(code, reason);
            }
        }
        PublishError::Transaction {
            op,
            transactional_id: self.transactional_id.clone(),
            cause,
        }
    }
}
