//! Reading a topic to the end captured now: the one implementation behind the state restore,
//! the checkpoint read, `verify`, `state` and the tests' topic readers.
//!
//! ```text
//!  read_uncommitted probe: metadata + high watermark of every partition   (the end, captured now)
//!  read_committed consumer: assign every non-empty partition from the beginning
//!  poll ─┬─ record below its partition's end ─▶ callback
//!        ├─ record at/after the end ─▶ that partition is done
//!        └─ nothing / PartitionEOF ─▶ positions: a partition whose position reached its end is done
//!  every partition done ─▶ Ok(summary)        no progress for `timeout` ─▶ Stalled(topic)
//! ```
//!
//! The end comes from a `read_uncommitted` client, as Materialize's progress search does: with
//! `read_committed`, ListOffsets answers the last stable offset, which an open transaction
//! holds back. The end is reached by *position*, not by the last record seen: transaction
//! markers and aborted batches occupy offsets a `read_committed` consumer never sees, so the
//! position after a commit marker is past the last record, and a partition whose records were
//! all aborted yields nothing at all. Partitions that were empty when the end was captured are
//! not read.
//!
//! Read after the transactional producer's `init_transactions` (which aborts a fenced
//! predecessor's open transaction): otherwise the last stable offset may stay below the
//! captured end until the broker times that transaction out, and the read stalls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::kafka_context::{create_client, KafkaContext};

mod error;
use error::refused;
pub use error::ReadError;

/// Large fetches, a bounded pre-fetch queue (fetch buffers stay alive while any of their
/// messages is queued, so queue + one response bound the client's memory), and a short back-off
/// when the queue is full (the default of 1 s idles the reader whenever the callback drains the
/// queue faster than that).
const FETCH_SETTINGS: [(&str, &str); 4] = [
    ("fetch.max.bytes", "8388608"),
    ("max.partition.fetch.bytes", "4194304"),
    ("queued.max.messages.kbytes", "8192"),
    ("fetch.queue.backoff.ms", "5"),
];
/// Poll wait; bounds how late a cancellation or a stall is noticed.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Positions are also checked this often while records keep arriving.
const POSITION_EVERY: Duration = Duration::from_secs(1);
/// Longest single metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which records a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Only committed transactions (the connector's stream).
    #[default]
    ReadCommitted,
    /// Everything written, aborted transactions included (tests of the transaction protocol).
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// How to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// No progress (no record, no position advance) for this long fails the read with
    /// [`ReadError::Stalled`]; also bounds the retries of metadata and watermark requests.
    pub timeout: Duration,
    /// [`Isolation::ReadCommitted`] unless a test needs to see aborted records.
    pub isolation: Isolation,
    /// Set it to stop the read early with [`ReadError::Cancelled`] (noticed within ~100 ms).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl ReadOptions {
    /// `read_committed`, not cancellable, giving up after `timeout` without progress.
    pub fn committed(timeout: Duration) -> ReadOptions {
        ReadOptions {
            timeout,
            ..ReadOptions::default()
        }
    }
}

/// One record, borrowed for the duration of the callback.
pub struct LogRecord<'a>(Source<'a>);

enum Source<'a> {
    Kafka(&'a BorrowedMessage<'a>),
    Parts(RecordParts<'a>),
}

/// The fields of a record that did not come from librdkafka (in-memory logs).
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: &'a [(String, Vec<u8>)],
}

impl<'a> LogRecord<'a> {
    /// A record of an in-memory log.
    pub fn from_parts(parts: RecordParts<'a>) -> LogRecord<'a> {
        LogRecord(Source::Parts(parts))
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        match &self.0 {
            Source::Kafka(m) => m.partition(),
            Source::Parts(p) => p.partition,
        }
    }

    /// Offset.
    pub fn offset(&self) -> i64 {
        match &self.0 {
            Source::Kafka(m) => m.offset(),
            Source::Parts(p) => p.offset,
        }
    }

    /// Key.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.0 {
            Source::Kafka(m) => m.key(),
            Source::Parts(p) => p.key,
        }
    }

    /// Value; `None` is a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        match &self.0 {
            Source::Kafka(m) => m.payload(),
            Source::Parts(p) => p.value,
        }
    }

    /// Calls `f(name, value)` for every header, in order (a null value is empty).
    pub fn for_each_header<'s>(&'s self, mut f: impl FnMut(&'s str, &'s [u8])) {
        match &self.0 {
            Source::Kafka(m) => {
                let m: &'s BorrowedMessage<'a> = m;
                if let Some(headers) = m.headers() {
                    for h in headers.iter() {
                        f(h.key, h.value.unwrap_or_default());
                    }
                }
            }
            Source::Parts(p) => p.headers.iter().for_each(|(k, v)| f(k, v)),
        }
    }
}

/// Figures of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadSummary {
    /// Partitions of the topic.
    pub partitions: usize,
    /// Records handed to the callback.
    pub records: u64,
    /// Key and value bytes handed to the callback.
    pub bytes: u64,
    /// Offsets between the low and high watermarks captured at the start (markers, aborted and
    /// compacted-away records included): an upper bound of `records`, for progress estimates.
    pub offsets: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Reads `topic` from the beginning to the end captured at the start (see the module
/// documentation), calling `on_record` for every record in offset order per partition, and
/// returns the figures. Blocking: call it from a blocking thread, or use [`read_to_end`].
///
/// `client` is the common client configuration ([`super::client_config`]); group id,
/// isolation, offsets and fetch settings are set here. `on_start(offsets)` is called once the
/// end is known, before the first record, with [`ReadSummary::offsets`]. The callback's error
/// stops the read as [`ReadError::Callback`].
pub fn read_to_end_blocking<E>(
    client: &ClientConfig,
    topic: &str,
    opts: &ReadOptions,
    on_start: impl FnOnce(u64),
    on_record: impl FnMut(LogRecord<'_>) -> Result<(), E>,
) -> Result<ReadSummary, ReadError<E>> {
    let started = Instant::now();
    let reader = Reader::open(client, topic, opts)?;
    on_start(reader.summary.offsets);
    let mut summary = reader.run(opts, on_record)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// [`read_to_end_blocking`] on a blocking thread, folding every record into `state` with
/// `on_record(&mut state, record)`; returns the final state and the figures.
///
/// If the returned future is dropped, the blocking read stops within ~100 ms.
pub async fn read_to_end<S, E, F>(
    client: &ClientConfig,
    topic: &str,
    opts: ReadOptions,
    state: S,
    mut on_record: F,
) -> Result<(S, ReadSummary), ReadError<E>>
where
    S: Send + 'static,
    E: Send + 'static,
    F: FnMut(&mut S, LogRecord<'_>) -> Result<(), E> + Send + 'static,
{
    let cancel = opts.cancel.clone().unwrap_or_default();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let opts = ReadOptions {
        cancel: Some(cancel),
        ..opts
    };
    let (client, job_topic) = (client.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut state = state;
        let summary = read_to_end_blocking(
            &client,
            &job_topic,
            &opts,
            |_| {},
            |r| on_record(&mut state, r),
        )?;
        Ok((state, summary))
    })
    .await
    .map_err(|e| ReadError::Task {
        topic: topic.to_string(),
        reason: e.to_string(),
    })?
}

/// Sets the cancel flag when the async read goes away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One partition to read: where it ends.
#[derive(Debug)]
struct Pending {
    partition: i32,
    /// High watermark captured at the start; done once the position reaches it.
    end: i64,
    /// Highest position seen (progress).
    position: i64,
    done: bool,
}

/// The reading state of one call.
struct Reader<'t> {
    topic: &'t str,
    consumer: Option<BaseConsumer<KafkaContext>>,
    pending: Vec<Pending>,
    open: usize,
    summary: ReadSummary,
}

impl<'t> Reader<'t> {
    /// Captures the end of every partition and assigns the non-empty ones.
    fn open<E>(
        client: &ClientConfig,
        topic: &'t str,
        opts: &ReadOptions,
    ) -> Result<Reader<'t>, ReadError<E>> {
        let mut config = client.clone();
        config
            .set("group.id", reader_group(topic))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "true");
        for (key, value) in FETCH_SETTINGS {
            config.set(key, value);
        }
        let probe: BaseConsumer<KafkaContext> = create_client(
            config
                .clone()
                .set("isolation.level", Isolation::ReadUncommitted.as_str()),
        )
        .map_err(kafka(topic, "create watermark consumer"))?;
        let ends = retry_until(opts.timeout, || end_offsets(&probe, topic))?;
        drop(probe);
        let partitions = ends.len();
        let offsets = ends
            .iter()
            .map(|(_, low, high)| (high - low).max(0) as u64)
            .sum();
        let pending: Vec<Pending> = ends
            .into_iter()
            .filter(|(_, low, high)| high > low)
            .map(|(partition, _, end)| Pending {
                partition,
                end,
                position: -1,
                done: false,
            })
            .collect();
        let mut reader = Reader {
            topic,
            consumer: None,
            open: pending.len(),
            pending,
            summary: ReadSummary {
                partitions,
                offsets,
                ..ReadSummary::default()
            },
        };
        if reader.open == 0 {
            return Ok(reader);
        }
        let consumer: BaseConsumer<KafkaContext> =
            create_client(config.set("isolation.level", opts.isolation.as_str()))
                .map_err(kafka(topic, "create consumer"))?;
        let mut assignment = TopicPartitionList::new();
        for p in &reader.pending {
            assignment
                .add_partition_offset(topic, p.partition, Offset::Beginning)
                .map_err(kafka(topic, "build assignment"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(kafka(topic, "assign"))?;
        reader.consumer = Some(consumer);
        Ok(reader)
    }

    /// Polls until every partition reached its end.
    fn run<E>(
        mut self,
        opts: &ReadOptions,
        mut on_record: impl FnMut(LogRecord<'_>) -> Result<(), E>,
    ) -> Result<ReadSummary, ReadError<E>> {
        let Some(consumer) = self.consumer.take() else {
            return Ok(self.summary);
        };
        let mut last_progress = Instant::now();
        let mut last_positions = Instant::now();
        while self.open > 0 {
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(ReadError::Cancelled {
                    topic: self.topic.to_string(),
                });
            }
            let check_positions = match consumer.poll(POLL_WAIT) {
                Some(Ok(msg)) => {
                    if self.deliver(&consumer, &msg, &mut on_record)? {
                        last_progress = Instant::now();
                    }
                    last_positions.elapsed() >= POSITION_EVERY
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => true,
                Some(Err(e)) => {
                    self.consume_error(e)?;
                    true
                }
            };
            if check_positions {
                last_positions = Instant::now();
                if self.settle_by_position(&consumer)? {
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > opts.timeout {
                    return Err(ReadError::Stalled {
                        topic: self.topic.to_string(),
                        timeout: opts.timeout,
                        records: self.summary.records,
                        pending: self.open,
                    });
                }
            }
        }
        Ok(self.summary)
    }

    /// Hands a record below its partition's end to the callback; marks the partition done at
    /// its end. Returns whether anything progressed.
    fn deliver<E>(
        &mut self,
        consumer: &BaseConsumer<KafkaContext>,
        msg: &BorrowedMessage<'_>,
        on_record: &mut impl FnMut(LogRecord<'_>) -> Result<(), E>,
    ) -> Result<bool, ReadError<E>> {
        let (partition, offset) = (msg.partition(), msg.offset());
        let Some(i) = self.pending.iter().position(|p| p.partition == partition) else {
            return Ok(false);
        };
        let p = &mut self.pending[i];
        if p.done {
            return Ok(false);
        }
        if offset < p.end {
            p.position = p.position.max(offset + 1);
            let size = msg.key().map_or(0, <[u8]>::len) + msg.payload().map_or(0, <[u8]>::len);
            on_record(LogRecord(Source::Kafka(msg))).map_err(ReadError::Callback)?;
            self.summary.records += 1;
            self.summary.bytes += size as u64;
        }
        // In-order delivery: everything below the end was delivered or skipped (markers,
        // aborted batches); records past it are not part of this read.
        if offset + 1 >= self.pending[i].end {
            self.finish(consumer, i);
        }
        Ok(true)
    }

    /// Marks partitions whose position reached their end; true when any position advanced.
    fn settle_by_position<E>(
        &mut self,
        consumer: &BaseConsumer<KafkaContext>,
    ) -> Result<bool, ReadError<E>> {
        let positions = consumer
            .position()
            .map_err(kafka(self.topic, "read position"))?;
        let mut advanced = false;
        for i in 0..self.pending.len() {
            let p = &mut self.pending[i];
            if p.done {
                continue;
            }
            let Some(Offset::Offset(pos)) = positions
                .find_partition(self.topic, p.partition)
                .map(|e| e.offset())
            else {
                continue;
            };
            if pos > p.position {
                p.position = pos;
                advanced = true;
            }
            if pos >= p.end {
                self.finish(consumer, i);
            }
        }
        Ok(advanced)
    }

    /// Partition `i` reached its end: stop fetching it.
    fn finish(&mut self, consumer: &BaseConsumer<KafkaContext>, i: usize) {
        let p = &mut self.pending[i];
        p.done = true;
        self.open -= 1;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topic, p.partition);
        if let Err(e) = consumer.pause(&tpl) {
            tracing::debug!(topic = self.topic, partition = p.partition, error = %e, "Could not pause a partition read to its end.");
        }
    }

    /// A consumer error: a missing topic and topic or cluster authorization end the read (group
    /// authorization does not: see below); anything else is
    /// retried by librdkafka (and bounded by the no-progress timeout).
    fn consume_error<E>(&self, e: KafkaError) -> Result<(), ReadError<E>> {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Err(ReadError::TopicMissing {
                topic: self.topic.to_string(),
            }),
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => Err(kafka(self.topic, "consume")(e)),
            // Assigned, never joined or committed: the group only makes librdkafka look up its
            // coordinator, which a principal without rights on the group may not. Harmless.
            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => Ok(()),
            _ => {
                tracing::debug!(topic = self.topic, error = %e, "Consumer error while reading to the end; librdkafka retries.");
                Ok(())
            }
        }
    }
}

/// A group id no other reader uses (the reader assigns partitions and never commits).
fn reader_group(topic: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("tanma-read-to-end-{topic}-{}-{nanos}", std::process::id())
}

/// Maps a client error of `action` on `topic`.
fn kafka<'t, E>(
    topic: &'t str,
    action: &'static str,
) -> impl FnOnce(KafkaError) -> ReadError<E> + 't {
    move |source| ReadError::Kafka {
        topic: topic.to_string(),
        action,
        source,
    }
}

/// Retries `f` while it fails with a transient error (no leader yet right after the topic was
/// created, a broker briefly away), until `timeout`; a missing topic and a refused
/// authentication or authorization fail at once.
fn retry_until<T, E>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, ReadError<E>>,
) -> Result<T, ReadError<E>> {
    let started = Instant::now();
    loop {
        match f() {
            Err(ReadError::Kafka { ref source, .. })
                if started.elapsed() < timeout && !refused(source) =>
            {
                std::thread::sleep(POLL_WAIT);
            }
            other => return other,
        }
    }
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
fn end_offsets<E>(
    probe: &BaseConsumer<KafkaContext>,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, ReadError<E>> {
    let missing = || ReadError::TopicMissing {
        topic: topic.to_string(),
    };
    let metadata = probe
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka(topic, "fetch metadata"))?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(missing)?;
    if let Some(err) = t.error() {
        return match RDKafkaErrorCode::from(err) {
            RDKafkaErrorCode::UnknownTopicOrPartition => Err(missing()),
            code => Err(kafka(topic, "fetch metadata")(KafkaError::MetadataFetch(
                code,
            ))),
        };
    }
    if t.partitions().is_empty() {
        return Err(missing());
    }
    let mut out = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (low, high) = probe
            .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
            .map_err(kafka(topic, "fetch watermarks"))?;
        out.push((p.id(), low.min(high), high));
    }
    Ok(out)
}
