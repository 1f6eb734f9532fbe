//! In-memory implementations of the two ports, for the core's step-by-step tests.
//!
//! * [`MemorySource`]: a set of follow relations with add times, read by window like the API
//!   (whole windows, or "too large" above the split threshold); failures can be injected.
//! * [`MemoryLog`]: topics as vectors of committed records, with Kafka's transactional
//!   contract: a commit is all or nothing, aborted writes are invisible, and fencing makes
//!   every older handle's commits fail as a fenced producer's would.
//!
//! Both are cheap to clone and share their data between clones, so a test can keep a handle,
//! "crash" a connector (drop it) and start a new one over the same data, as a restart does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rdkafka::error::RDKafkaErrorCode;

use super::ports::{TransactionalLog, WindowSource};
use super::unit::{DeadLetters, DEAD_LETTER_FP_HEADER};
use crate::config::Config;
use crate::customer::Relation;
use crate::plan::Window;
use crate::publish::{CommitStats, OutRecord, PublishError};
use crate::state::{
    decode_grave, join_relation_headers, RestoreStats, StateError, StateStore, HEADER_GRAVE,
    HEADER_RELATIONS, HEADER_RELATION_WINDOWS,
};
use crate::upstream::api_error::RequestCtx;
use crate::upstream::window_reader::{WindowOutcome, WindowRead};
use crate::upstream::ApiError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Follow relations by add time, read like the API reads them.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    inner: Arc<Mutex<SourceInner>>,
}

#[derive(Debug, Default)]
struct SourceInner {
    /// (externalUserId, qwUserId) → (add time, relation).
    rows: BTreeMap<(String, String), (DateTime<Utc>, Relation)>,
    /// Reads still to fail.
    failures: u32,
    reads: u64,
    /// Reads answer `complete: false` (as a read whose pages kept drifting does).
    incomplete: bool,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> MemorySource {
        MemorySource::default()
    }

    /// Adds (or replaces) the relation `(ext, relation.qw_user_id)` added at `at`.
    pub fn upsert(&self, at: DateTime<Utc>, ext: &str, relation: Relation) {
        let key = (ext.to_string(), relation.qw_user_id.clone());
        lock(&self.inner).rows.insert(key, (at, relation));
    }

    /// Changes the nickname of an existing relation (a profile change); false if unknown.
    pub fn rename(&self, ext: &str, qw_user_id: &str, nickname: &str) -> bool {
        let mut g = lock(&self.inner);
        match g.rows.get_mut(&(ext.to_string(), qw_user_id.to_string())) {
            Some((_, r)) => {
                r.nickname = Some(nickname.to_string());
                true
            }
            None => false,
        }
    }

    /// Removes the relation `(ext, qw_user_id)` (the follow relation ended); false if unknown.
    pub fn remove(&self, ext: &str, qw_user_id: &str) -> bool {
        let key = (ext.to_string(), qw_user_id.to_string());
        lock(&self.inner).rows.remove(&key).is_some()
    }

    /// From now on every read is incomplete (`complete: false`, as after drift that never
    /// settled), or complete again.
    pub fn set_incomplete(&self, incomplete: bool) {
        lock(&self.inner).incomplete = incomplete;
    }

    /// The next `n` reads fail with a transient API error.
    pub fn fail_next_reads(&self, n: u32) {
        lock(&self.inner).failures = n;
    }

    /// Window reads made so far.
    pub fn reads(&self) -> u64 {
        lock(&self.inner).reads
    }

    /// Every customer as the API holds it now: relations sorted by `qwUserId`.
    pub fn truth(&self) -> BTreeMap<String, Vec<Relation>> {
        let mut out: BTreeMap<String, Vec<Relation>> = BTreeMap::new();
        for ((ext, _), (_, r)) in &lock(&self.inner).rows {
            out.entry(ext.clone()).or_default().push(r.clone());
        }
        out
    }

    fn read_now(&self, window: Window, split_threshold: u64) -> Result<WindowOutcome, ApiError> {
        let mut g = lock(&self.inner);
        g.reads += 1;
        if g.failures > 0 {
            g.failures -= 1;
            return Err(ApiError::Exhausted {
                attempts: 1,
                reason: "injected",
                last: "injected read failure".into(),
                request: RequestCtx {
                    since: window.since.to_rfc3339(),
                    before: window.before.to_rfc3339(),
                    page_no: 1,
                },
            });
        }
        let relations: Vec<(String, Relation)> = g
            .rows
            .iter()
            .filter(|(_, (at, _))| window.since <= *at && *at < window.before)
            .map(|((ext, _), (_, r))| (ext.clone(), r.clone()))
            .collect();
        let total_count = relations.len() as u64;
        if total_count > split_threshold && window.split().is_some() {
            return Ok(WindowOutcome::TooLarge {
                window,
                total_count,
            });
        }
        Ok(WindowOutcome::Complete(WindowRead {
            window,
            total_count,
            relations,
            rejected: Vec::new(),
            requests: 1,
            reread_requests: 0,
            pages: 1,
            drift_rereads: 0,
            complete: !g.incomplete,
        }))
    }
}

impl WindowSource for MemorySource {
    async fn read(&self, window: Window, split_threshold: u64) -> Result<WindowOutcome, ApiError> {
        self.read_now(window, split_threshold)
    }
}

/// Topics as vectors of committed records, with Kafka's transactional contract.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    shared: Arc<Mutex<LogInner>>,
    /// This handle's producer epoch; 0 until fenced.
    epoch: u64,
    transactional_id: String,
    checkpoint_topic: String,
    state_topic: String,
    dead_letter_topic: String,
}

#[derive(Debug, Default)]
struct LogInner {
    topics: BTreeMap<String, Vec<OutRecord>>,
    /// The newest epoch handed out by `fence`.
    epoch: u64,
    commits: u64,
    aborted: u64,
}

impl MemoryLog {
    /// An empty log for `cfg`'s topics and transactional id.
    pub fn new(cfg: &Config) -> MemoryLog {
        MemoryLog {
            shared: Arc::default(),
            epoch: 0,
            transactional_id: cfg.kafka.transactional_id.clone(),
            checkpoint_topic: cfg.topics.checkpoint.clone(),
            state_topic: cfg.topics.state.clone(),
            dead_letter_topic: cfg.topics.dead_letter.clone(),
        }
    }

    /// Another writer over the same data (a restarted process): unfenced until it fences.
    pub fn reopen(&self) -> MemoryLog {
        MemoryLog {
            epoch: 0,
            ..self.clone()
        }
    }

    /// Every committed record of `topic`, in log order.
    pub fn records(&self, topic: &str) -> Vec<OutRecord> {
        lock(&self.shared)
            .topics
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    /// Transactions committed and aborted so far.
    pub fn transactions(&self) -> (u64, u64) {
        let g = lock(&self.shared);
        (g.commits, g.aborted)
    }

    fn check_epoch(&self, g: &LogInner) -> Result<(), PublishError> {
        if self.epoch == 0 || self.epoch != g.epoch {
            return Err(PublishError::Fenced {
                transactional_id: self.transactional_id.clone(),
                code: RDKafkaErrorCode::ProducerFenced,
                reason: format!("epoch {} is not the newest ({})", self.epoch, g.epoch),
            });
        }
        Ok(())
    }
}

fn stats_of(records: &[OutRecord], started: Instant) -> CommitStats {
    let mut stats = CommitStats {
        records: records.len(),
        ..CommitStats::default()
    };
    for r in records {
        stats.bytes += r.key.len() + r.value.as_ref().map_or(0, Vec::len);
        *stats.per_topic.entry(r.topic.clone()).or_default() += 1;
    }
    stats.duration = started.elapsed();
    stats
}

impl TransactionalLog for MemoryLog {
    async fn fence(&mut self) -> Result<(), PublishError> {
        let mut g = lock(&self.shared);
        g.epoch += 1;
        self.epoch = g.epoch;
        Ok(())
    }

    async fn commit(&self, records: Vec<OutRecord>) -> Result<CommitStats, PublishError> {
        let started = Instant::now();
        let mut g = lock(&self.shared);
        self.check_epoch(&g)?;
        if records.is_empty() {
            return Ok(CommitStats::default());
        }
        let stats = stats_of(&records, started);
        for r in records {
            g.topics.entry(r.topic.clone()).or_default().push(r);
        }
        g.commits += 1;
        Ok(stats)
    }

    async fn write_aborted(&self, records: Vec<OutRecord>) -> Result<CommitStats, PublishError> {
        let started = Instant::now();
        let mut g = lock(&self.shared);
        self.check_epoch(&g)?;
        g.aborted += 1;
        Ok(stats_of(&records, started))
    }

    async fn read_checkpoint(&self) -> Result<Option<Vec<u8>>, PublishError> {
        let g = lock(&self.shared);
        let latest = g.topics.get(&self.checkpoint_topic).and_then(|records| {
            records
                .iter()
                .rev()
                .find(|r| r.key == self.transactional_id.as_bytes())
        });
        Ok(latest.and_then(|r| r.value.clone()))
    }

    async fn read_dead_letters(&self) -> Result<DeadLetters, PublishError> {
        let fingerprints = self
            .records(&self.dead_letter_topic)
            .iter()
            .flat_map(|r| r.headers.iter())
            .filter(|(name, _)| name == DEAD_LETTER_FP_HEADER)
            .filter_map(|(_, v)| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
            .collect();
        Ok(fingerprints)
    }

    async fn restore_state(&self, store: &mut StateStore) -> Result<RestoreStats, StateError> {
        let started = Instant::now();
        store.reset()?;
        let records = self.records(&self.state_topic);
        let mut stats = RestoreStats::default();
        for (offset, r) in records.iter().enumerate() {
            let ext = String::from_utf8_lossy(&r.key);
            stats.records += 1;
            stats.bytes += (r.key.len() + r.value.as_ref().map_or(0, Vec::len)) as u64;
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_slice())
            };
            let invalid = |reason: String| StateError::InvalidRecord {
                topic: self.state_topic.clone(),
                partition: 0,
                offset: offset as i64,
                reason,
            };
            match &r.value {
                None => match header(HEADER_GRAVE).and_then(decode_grave) {
                    Some((revision, _)) => store.bury_checked(&ext, revision)?,
                    None => store.remove_checked(&ext)?,
                },
                Some(value) => {
                    let rel = header(HEADER_RELATIONS)
                        .ok_or_else(|| invalid(format!("no {HEADER_RELATIONS} header")))?;
                    let rel = join_relation_headers(rel, header(HEADER_RELATION_WINDOWS))
                        .map_err(invalid)?;
                    store.apply_raw(&ext, value, &rel)?;
                }
            }
        }
        stats.customers = store.customers();
        stats.elapsed = started.elapsed();
        Ok(stats)
    }
}
