//! Restore of the store from the compacted state topic (read_committed, to the captured end, by
//! [`crate::publish::read_to_end`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::error::StateError;
use super::store::{decode_fingerprint, StateStore, HEADER_FINGERPRINT, HEADER_RELATIONS};
use super::windows::{decode_grave, join_relation_headers, HEADER_GRAVE, HEADER_RELATION_WINDOWS};
use crate::ops::metrics::names;
use crate::publish::read_to_end::{
    read_to_end_blocking, Isolation, LogRecord, ReadError, ReadOptions,
};

/// Report progress (callback, counters) every this many records.
const PROGRESS_EVERY: u64 = 16_384;

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

/// Reads `topic` to its end ([`crate::publish::read_to_end`]: read_committed, up to the high
/// watermarks captured at start; no progress for `timeout` = Retry error), feeding the store.
/// Runs the consumer loop on a blocking thread. Reports progress through
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
        let result = run(&client, &job_topic, &mut owned, timeout, &tx, stop.clone());
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
    metrics::gauge!(names::STATE_RESTORE_DURATION_SECONDS).set(stats.elapsed.as_secs_f64());
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

/// The blocking restore; returns `(records, bytes, total_estimate)`.
fn run(
    client: &ClientConfig,
    topic: &str,
    store: &mut StateStore,
    timeout: Duration,
    progress: &tokio::sync::watch::Sender<(u64, u64)>,
    stop: Arc<AtomicBool>,
) -> Result<(u64, u64, u64), StateError> {
    store.reset()?;
    let opts = ReadOptions {
        timeout,
        isolation: Isolation::ReadCommitted,
        cancel: Some(stop),
    };
    let total = std::cell::Cell::new(0u64);
    let (mut records, mut reported) = (0u64, 0u64);
    let summary = read_to_end_blocking(
        client,
        topic,
        &opts,
        |offsets| total.set(offsets),
        |record| {
            apply_record(store, topic, &record)?;
            records += 1;
            if records - reported >= PROGRESS_EVERY {
                metrics::counter!(names::STATE_RESTORE_RECORDS_TOTAL).increment(records - reported);
                reported = records;
                let _ = progress.send((records, total.get()));
            }
            Ok(())
        },
    )
    .map_err(|e| restore_error(topic, e))?;
    store.flush()?;
    metrics::counter!(names::STATE_RESTORE_RECORDS_TOTAL).increment(summary.records - reported);
    let _ = progress.send((summary.records, summary.offsets));
    Ok((summary.records, summary.bytes, summary.offsets))
}

/// Maps a failed read of the state topic.
fn restore_error(topic: &str, e: ReadError<StateError>) -> StateError {
    let topic = topic.to_string();
    match e {
        ReadError::Callback(e) => e,
        ReadError::TopicMissing { .. } => StateError::TopicMissing { topic },
        ReadError::Kafka { action, source, .. } => StateError::Kafka {
            topic,
            action,
            source,
        },
        ReadError::Stalled {
            timeout,
            records,
            pending,
            ..
        } => StateError::RestoreStalled {
            topic,
            timeout,
            records,
            pending,
        },
        ReadError::Cancelled { .. } => StateError::RestoreTask {
            topic,
            reason: "cancelled".into(),
        },
        ReadError::Task { reason, .. } => StateError::RestoreTask { topic, reason },
    }
}

/// Applies one state record to the store.
fn apply_record(
    store: &mut StateStore,
    topic: &str,
    record: &LogRecord<'_>,
) -> Result<(), StateError> {
    let invalid = |reason: String| StateError::InvalidRecord {
        topic: topic.to_string(),
        partition: record.partition(),
        offset: record.offset(),
        reason,
    };
    let key = record.key().ok_or_else(|| invalid("missing key".into()))?;
    let ext = std::str::from_utf8(key).map_err(|e| invalid(format!("key is not UTF-8: {e}")))?;
    let (mut relations, mut fingerprint, mut windows, mut grave) = (None, None, None, None);
    record.for_each_header(|name, value| match name {
        HEADER_RELATIONS => relations = Some(value),
        HEADER_FINGERPRINT => fingerprint = Some(value),
        HEADER_RELATION_WINDOWS => windows = Some(value),
        HEADER_GRAVE => grave = Some(value),
        _ => {}
    });
    let Some(value) = record.value() else {
        return match grave.map(decode_grave) {
            None => store.remove_checked(ext),
            Some(Some((revision, _))) => store.bury_checked(ext, revision),
            Some(None) => Err(invalid(format!("header {HEADER_GRAVE} is not 16 bytes"))),
        };
    };
    let relations =
        relations.ok_or_else(|| invalid(format!("missing header {HEADER_RELATIONS}")))?;
    let relations = join_relation_headers(relations, windows).map_err(invalid)?;
    if fingerprint.and_then(decode_fingerprint).is_none() {
        return Err(invalid(format!(
            "header {HEADER_FINGERPRINT} missing or not 8 bytes"
        )));
    }
    store.apply_raw(ext, value, &relations)
}
