//! Restore of the store from the compacted state topic (read_committed, to the captured end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::error::StateError;
use super::store::{decode_fingerprint, StateStore, HEADER_FINGERPRINT, HEADER_RELATIONS};
use super::windows::{decode_grave, join_relation_headers, HEADER_GRAVE, HEADER_RELATION_WINDOWS};
use crate::publish::client_config::TracingContext;

/// Librdkafka fetch settings: large fetches, a bounded pre-fetch queue (memory target: fetch
/// buffers stay alive while any of their messages is queued, so queue + one response bound the
/// client's memory), and a short back-off when the queue is full (the default of 1 s idles the
/// restore whenever the application drains the queue faster than that).
const FETCH_MAX_BYTES: &str = "8388608";
const MAX_PARTITION_FETCH_BYTES: &str = "4194304";
const QUEUED_MAX_MESSAGES_KBYTES: &str = "8192";
const FETCH_QUEUE_BACKOFF_MS: &str = "5";
/// Report progress (callback, counters) every this many records.
const PROGRESS_EVERY: u64 = 16_384;
/// Poll wait; bounds how late a cancellation or a stall is noticed.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Figures of one restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreStats {
    /// State records read (including tombstones and repeated keys).
    pub records: u64,
    /// Customers in the store afterwards.
    pub customers: usize,
    /// Key and value bytes read.
    pub bytes: u64,
    /// Wall time of the restore.
    pub elapsed: Duration,
}

/// Reads `topic` from the beginning up to the high watermarks captured at start
/// (read_committed; PartitionEOF = keep going; no progress for `timeout` = Retry error), feeding
/// the store. Runs the consumer loop on a blocking thread. Reports progress through
/// `tanma_state_restore_records_total` and a callback `progress(records, total_estimate)`.
///
/// The store is reset first, so a failed restore can simply be retried. Call it after the
/// transactional producer's `init_transactions`, which aborts a fenced predecessor's open
/// transaction; otherwise the last stable offset may stay below the captured end until the
/// broker times that transaction out. While it runs, `store` is an empty stand-in; if the
/// future is dropped, the blocking thread stops within ~100 ms and `store` stays empty.
pub async fn restore(
    client: ClientConfig,
    topic: &str,
    store: &mut StateStore,
    timeout: Duration,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<RestoreStats, StateError> {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (tx, mut rx) = tokio::sync::watch::channel((0u64, 0u64));
    let mut owned = std::mem::replace(store, store.detached());
    let job_topic = topic.to_string();
    let mut handle = tokio::task::spawn_blocking(move || {
        let result = run(&client, &job_topic, &mut owned, timeout, &tx, &stop);
        if stop.load(Ordering::Relaxed) {
            // Nobody will take the store back; the caller's stand-in owns the spill path now.
            owned.abandon();
        }
        (owned, result)
    });
    let joined = loop {
        tokio::select! {
            biased;
            joined = &mut handle => break joined,
            changed = rx.changed() => match changed {
                Ok(()) => {
                    let (records, total) = *rx.borrow_and_update();
                    progress(records, total);
                }
                // The thread dropped its sender: it is finishing.
                Err(_) => break (&mut handle).await,
            },
        }
    };
    let (owned, result) = joined.map_err(|e| StateError::RestoreTask {
        topic: topic.to_string(),
        reason: e.to_string(),
    })?;
    *store = owned;
    let (records, bytes, total) = result?;
    progress(records, total);
    let stats = RestoreStats {
        records,
        customers: store.customers(),
        bytes,
        elapsed: started.elapsed(),
    };
    let sizes = store.stats();
    metrics::histogram!("tanma_state_restore_seconds").record(stats.elapsed.as_secs_f64());
    store.emit_gauges();
    tracing::info!(
        topic,
        records = stats.records,
        customers = stats.customers,
        relations = sizes.relations,
        bytes = stats.bytes,
        index_bytes = sizes.index_bytes,
        elapsed_ms = stats.elapsed.as_millis() as u64,
        "Restored the diff state from the state topic."
    );
    Ok(stats)
}

/// Sets the stop flag when the restore future goes away.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One partition to read: where it must end.
#[derive(Debug)]
struct Pending {
    partition: i32,
    /// Low watermark captured at start (for the progress estimate).
    start: i64,
    /// High watermark captured at start; done once the position reaches it.
    end: i64,
    done: bool,
}

/// The blocking restore; returns `(records, bytes, total_estimate)`.
fn run(
    client: &ClientConfig,
    topic: &str,
    store: &mut StateStore,
    timeout: Duration,
    progress: &tokio::sync::watch::Sender<(u64, u64)>,
    stop: &AtomicBool,
) -> Result<(u64, u64, u64), StateError> {
    let kafka = |action: &'static str| {
        let topic = topic.to_string();
        move |source| StateError::Kafka {
            topic,
            action,
            source,
        }
    };
    store.reset()?;
    let group = format!(
        "tanma-state-restore-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let mut config = client.clone();
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", FETCH_MAX_BYTES)
        .set("max.partition.fetch.bytes", MAX_PARTITION_FETCH_BYTES)
        .set("queued.max.messages.kbytes", QUEUED_MAX_MESSAGES_KBYTES)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    // The end offsets come from a read_uncommitted client: with read_committed, ListOffsets
    // answers the last stable offset, which an open transaction holds back.
    let probe: BaseConsumer<TracingContext> = config
        .clone()
        .set("isolation.level", "read_uncommitted")
        .create_with_context(TracingContext)
        .map_err(kafka("create watermark consumer"))?;
    let mut pending = end_offsets(&probe, topic, timeout)?;
    drop(probe);
    let total: u64 = pending
        .iter()
        .map(|p| (p.end - p.start).max(0) as u64)
        .sum();
    pending.retain(|p| p.end > 0);
    if pending.is_empty() {
        return Ok((0, 0, 0));
    }
    let consumer: BaseConsumer<TracingContext> = config
        .set("isolation.level", "read_committed")
        .create_with_context(TracingContext)
        .map_err(kafka("create consumer"))?;
    let mut assignment = TopicPartitionList::new();
    for p in &pending {
        assignment
            .add_partition_offset(topic, p.partition, Offset::Beginning)
            .map_err(kafka("build assignment"))?;
    }
    consumer.assign(&assignment).map_err(kafka("assign"))?;

    let mut open = pending.len();
    let (mut records, mut bytes, mut reported) = (0u64, 0u64, 0u64);
    let mut last_progress = Instant::now();
    while open > 0 {
        if stop.load(Ordering::Relaxed) {
            return Err(StateError::RestoreTask {
                topic: topic.to_string(),
                reason: "cancelled".into(),
            });
        }
        match consumer.poll(POLL_WAIT) {
            Some(Ok(msg)) => {
                let partition = msg.partition();
                let offset = msg.offset();
                let Some(p) = pending.iter_mut().find(|p| p.partition == partition) else {
                    continue;
                };
                if p.done {
                    continue;
                }
                if offset >= p.end {
                    // In-order delivery: everything below the end was delivered or skipped
                    // (markers, aborted batches). Newer records are not part of this restore.
                    p.done = true;
                    open -= 1;
                    pause(&consumer, topic, partition);
                    continue;
                }
                bytes += apply_record(store, topic, &msg)?;
                records += 1;
                last_progress = Instant::now();
                if offset + 1 >= p.end {
                    p.done = true;
                    open -= 1;
                    pause(&consumer, topic, partition);
                }
                if records - reported >= PROGRESS_EVERY {
                    metrics::counter!("tanma_state_restore_records_total")
                        .increment(records - reported);
                    reported = records;
                    let _ = progress.send((records, total));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                // Control records (commit/abort markers) and aborted batches advance the
                // position without yielding a message: ask for it.
                let advanced = settle_by_position(&consumer, topic, &mut pending)?;
                if advanced > 0 {
                    open -= advanced;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > timeout {
                    return Err(StateError::RestoreStalled {
                        topic: topic.to_string(),
                        timeout,
                        records,
                        pending: open,
                    });
                }
            }
            // Assigned, never joined: no rights on the group are needed (see the function).
            Some(Err(e)) if crate::publish::is_group_authorization(&e) => {}
            Some(Err(e)) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                    return Err(StateError::TopicMissing {
                        topic: topic.to_string(),
                    });
                }
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
                    return Err(kafka("consume")(e));
                }
                tracing::warn!(topic, error = %e, "Error while reading the state topic; retrying.");
                if last_progress.elapsed() > timeout {
                    return Err(StateError::RestoreStalled {
                        topic: topic.to_string(),
                        timeout,
                        records,
                        pending: open,
                    });
                }
            }
        }
    }
    store.flush()?;
    metrics::counter!("tanma_state_restore_records_total").increment(records - reported);
    let _ = progress.send((records, total));
    Ok((records, bytes, total))
}

/// Partitions of `topic` and their high watermarks. Partitions whose low watermark equals
/// the high one (empty, or fully deleted) get `end = 0`.
fn end_offsets(
    probe: &BaseConsumer<TracingContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Pending>, StateError> {
    let kafka = |action: &'static str| {
        let topic = topic.to_string();
        move |source| StateError::Kafka {
            topic,
            action,
            source,
        }
    };
    let metadata = probe
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka("fetch metadata"))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(StateError::TopicMissing {
            topic: topic.to_string(),
        });
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            return Err(StateError::TopicMissing {
                topic: topic.to_string(),
            });
        }
        return Err(kafka("fetch metadata")(KafkaError::MetadataFetch(code)));
    }
    if t.partitions().is_empty() {
        return Err(StateError::TopicMissing {
            topic: topic.to_string(),
        });
    }
    let mut out = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (low, high) = probe
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(kafka("fetch watermarks"))?;
        out.push(Pending {
            partition: p.id(),
            start: low.min(high),
            end: if high > low { high } else { 0 },
            done: false,
        });
    }
    Ok(out)
}

/// Marks partitions whose consumer position reached their end; returns how many.
fn settle_by_position(
    consumer: &BaseConsumer<TracingContext>,
    topic: &str,
    pending: &mut [Pending],
) -> Result<usize, StateError> {
    let positions = consumer.position().map_err(|source| StateError::Kafka {
        topic: topic.to_string(),
        action: "read position",
        source,
    })?;
    let mut settled = 0;
    for p in pending.iter_mut().filter(|p| !p.done) {
        let reached = positions
            .find_partition(topic, p.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o >= p.end),
                _ => None,
            })
            .unwrap_or(false);
        if reached {
            p.done = true;
            settled += 1;
            pause(consumer, topic, p.partition);
        }
    }
    Ok(settled)
}

/// Stops fetching a partition that reached its end (records past it are not needed).
fn pause(consumer: &BaseConsumer<TracingContext>, topic: &str, partition: i32) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    if let Err(e) = consumer.pause(&tpl) {
        tracing::debug!(topic, partition, error = %e, "Could not pause a restored partition.");
    }
}

/// Applies one state record to the store; returns its key + value size.
fn apply_record<M: Message>(
    store: &mut StateStore,
    topic: &str,
    msg: &M,
) -> Result<u64, StateError> {
    let invalid = |reason: String| StateError::InvalidRecord {
        topic: topic.to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        reason,
    };
    let key = msg.key().ok_or_else(|| invalid("missing key".into()))?;
    let ext = std::str::from_utf8(key).map_err(|e| invalid(format!("key is not UTF-8: {e}")))?;
    let header = |name: &str| {
        msg.headers().and_then(|hs| {
            hs.iter()
                .find(|h| h.key == name)
                .map(|h| h.value.unwrap_or_default())
        })
    };
    let Some(value) = msg.payload() else {
        match header(HEADER_GRAVE).map(decode_grave) {
            None => store.remove_checked(ext)?,
            Some(Some((revision, _))) => store.bury_checked(ext, revision)?,
            Some(None) => return Err(invalid(format!("header {HEADER_GRAVE} is not 16 bytes"))),
        }
        return Ok(key.len() as u64);
    };
    let relations = header(HEADER_RELATIONS)
        .ok_or_else(|| invalid(format!("missing header {HEADER_RELATIONS}")))?;
    let relations =
        join_relation_headers(relations, header(HEADER_RELATION_WINDOWS)).map_err(invalid)?;
    if header(HEADER_FINGERPRINT)
        .and_then(decode_fingerprint)
        .is_none()
    {
        return Err(invalid(format!(
            "header {HEADER_FINGERPRINT} missing or not 8 bytes"
        )));
    }
    store.apply_raw(ext, value, &relations)?;
    Ok((key.len() + value.len()) as u64)
}
