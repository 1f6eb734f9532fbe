//! The main loop: start up (topics, schemas, fencing, checkpoint, state), then plan → fetch →
//! diff → commit → apply until shut down.
//!
//! ```text
//! loop {
//!     batch   = the batch fetched ahead, or planner.next_batch(now, concurrency)
//!     results = fetch every window concurrently (a background task), in batch order
//!     next    = planner.next_batch(..), its fetch started now: it overlaps this commit
//!     unit    = the longest prefix of complete results, diffed against the state store
//!     commit(unit.events + unit.state + checkpoint_after(last window))   // one transaction
//!     on success: store.apply(unit.staged); planner.on_committed(each window)
//!     on failure: drop `next`; planner.rewind(); back off; nothing was applied, so the next
//!                 try is the same
//! }
//! ```
//!
//! Fetching ahead changes nothing the transaction holds: the next batch's windows are only read
//! from the API while this one commits; they are diffed against the state store after this
//! commit was applied, and committed in hand-out order. A batch that ended early (a window too
//! large to read whole, or a failure) fetches nothing ahead, because the split or the rewind
//! changes what comes next.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::encode::Codec;
use crate::error::{Classify, ErrorClass};
use crate::ops::{progress, Health, Progress};
use crate::plan::{Checkpoint, PlannedWindow, Planner, WindowKind};
use crate::publish::{OutRecord, TransactionalProducer};
use crate::state::StateStore;
use crate::upstream::window_reader::{WindowOutcome, WindowRead, WindowReader};

use super::unit::{Topics, Unit, UnitContext};
use super::PipelineError;

/// Everything the loop needs, built by [`super::startup`].
pub struct Connector {
    /// The validated configuration.
    pub cfg: Config,
    /// Reads windows from the API.
    pub reader: WindowReader,
    /// Decides which windows come next.
    pub planner: Planner,
    /// Last committed snapshot of every customer.
    pub store: StateStore,
    /// Transactional producer (already fenced older instances).
    pub producer: TransactionalProducer,
    /// Avro codec.
    pub codec: Codec,
    /// Liveness / readiness.
    pub health: Health,
}

/// Consecutive failed commits after which the producer is recreated.
const PRODUCER_RESET_AFTER: u32 = 3;

/// How a [`Connector::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Shut down on request, after the open transaction was committed.
    Shutdown,
    /// Stopped because `stop_when_caught_up` was set and nothing was due.
    CaughtUp,
}

/// Options for tests and one-shot runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Return [`Exit::CaughtUp`] the first time the planner has nothing due.
    pub stop_when_caught_up: bool,
}

impl Connector {
    /// Runs until `shutdown` is cancelled (or, with `opts.stop_when_caught_up`, until caught
    /// up). Returns an error only for fatal conditions; transient ones are retried with backoff.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        opts: RunOptions,
    ) -> Result<Exit, PipelineError> {
        let topics = Topics {
            events: self.cfg.topics.events.clone(),
            state: self.cfg.topics.state.clone(),
            dead_letter: self.cfg.topics.dead_letter.clone(),
        };
        let mut backoff = Backoff::new(
            Duration::from_millis(self.cfg.api.backoff_initial_ms.max(10)),
            Duration::from_millis(self.cfg.api.backoff_max_ms.max(100)),
        );
        let mut progress = Progress::new(self.cfg.ops.progress);
        let poll = Duration::from_millis(self.cfg.windows.poll_interval_ms);
        let mut failed_commits = 0u32;
        let concurrency = self.cfg.windows.concurrency;
        // The batch fetched ahead while the previous one was committed.
        let mut ahead: Option<Prefetch> = None;
        loop {
            self.health.beat();
            if shutdown.is_cancelled() {
                progress.finish();
                return Ok(Exit::Shutdown);
            }
            let now = Utc::now();
            self.report(now, &mut progress);
            let current = match ahead.take() {
                Some(fetch) => fetch,
                None => {
                    let batch = self.planner.next_batch(now, concurrency);
                    if batch.is_empty() {
                        if opts.stop_when_caught_up {
                            progress.finish();
                            return Ok(Exit::CaughtUp);
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = tokio::time::sleep(poll) => {}
                        }
                        continue;
                    }
                    self.fetch(batch)
                }
            };
            // Shutting down while windows are read: nothing of them was committed, so dropping
            // them loses nothing (they are read again after the restart).
            let fetched = tokio::select! {
                _ = shutdown.cancelled() => {
                    progress.finish();
                    return Ok(Exit::Shutdown);
                }
                f = current.join() => f?,
            };
            if fetched.end.is_none() && !shutdown.is_cancelled() {
                let next = self.planner.next_batch(Utc::now(), concurrency);
                if !next.is_empty() {
                    ahead = Some(self.fetch(next));
                }
            }
            match self.finish_batch(fetched, &topics).await {
                Ok(()) => {
                    backoff.reset();
                    failed_commits = 0;
                }
                Err(e) => {
                    // Taken back with everything else handed out since the last commit.
                    ahead = None;
                    self.planner.rewind();
                    let class = e.class();
                    if class == ErrorClass::Fatal {
                        return Err(e);
                    }
                    let delay = backoff.next();
                    warn!(error = %e, class = class.as_str(), retry_in_ms = delay.as_millis() as u64,
                        "Batch failed; nothing was committed or applied; retrying from the last checkpoint.");
                    metrics::counter!("tanma_batch_retries_total", "class" => class.as_str())
                        .increment(1);
                    if matches!(e, PipelineError::Publish(_)) {
                        failed_commits += 1;
                        if failed_commits >= PRODUCER_RESET_AFTER {
                            // librdkafka can stay wedged after a broker outage (every transaction
                            // times out): start over with a fresh producer, as a restart would.
                            self.reset_producer().await?;
                            failed_commits = 0;
                        }
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Starts reading `batch` in the background.
    fn fetch(&self, batch: Vec<PlannedWindow>) -> Prefetch {
        let reader = self.reader.clone();
        let threshold = self.cfg.windows.split_threshold;
        Prefetch(tokio::spawn(fetch_batch(reader, batch, threshold)))
    }

    /// Replaces the producer: the old one is closed (its open transaction, if any, is aborted by
    /// the new one's `init_transactions`, which also bumps the epoch).
    async fn reset_producer(&mut self) -> Result<(), PipelineError> {
        warn!(
            after_failures = PRODUCER_RESET_AFTER,
            "Transactions keep failing; recreating the Kafka producer."
        );
        metrics::counter!("tanma_kafka_producer_resets_total").increment(1);
        let fresh = TransactionalProducer::new(&self.cfg.kafka).await?;
        let old = std::mem::replace(&mut self.producer, fresh);
        old.close().await;
        Ok(())
    }

    /// Commits the complete prefix of a fetched batch in one transaction, then splits the
    /// window that ended it early or reports the failure that did.
    async fn finish_batch(
        &mut self,
        fetched: Fetched,
        topics: &Topics,
    ) -> Result<(), PipelineError> {
        self.commit_prefix(fetched.done, topics).await?;
        match fetched.end {
            None => Ok(()),
            // Takes back the window and every window handed out after it; they come again
            // after its halves.
            Some(FetchEnd::TooLarge(pw)) => Ok(self.planner.split(&pw)?),
            Some(FetchEnd::Failed(e)) => Err(PipelineError::Api(e)),
        }
    }

    async fn commit_prefix(
        &mut self,
        done: Vec<(PlannedWindow, WindowRead)>,
        topics: &Topics,
    ) -> Result<(), PipelineError> {
        let Some(last) = done.last().map(|(pw, _)| *pw) else {
            return Ok(());
        };
        let now = Utc::now();
        let mut unit = Unit::default();
        let ctx = UnitContext {
            store: &self.store,
            codec: &self.codec,
            topics,
            policy: self.cfg.topics.on_bad_record,
            now,
        };
        let mut windows = Vec::with_capacity(done.len());
        for (pw, read) in done {
            windows.push(pw);
            unit.add_window(read, &ctx)?;
        }
        let checkpoint: Checkpoint = self.planner.checkpoint_after(&last);
        let mut records = std::mem::take(&mut unit.records);
        records.push(OutRecord {
            topic: self.cfg.topics.checkpoint.clone(),
            key: self.cfg.kafka.transactional_id.as_bytes().to_vec(),
            value: Some(checkpoint.to_bytes()),
            headers: Vec::new(),
        });
        let started = Instant::now();
        let commit = self.producer.commit(records).await?;
        // Committed: only now does the local state learn about it.
        for s in unit.staged {
            self.store
                .apply(&s.external_user_id, &s.value, &s.relations)?;
        }
        for pw in &windows {
            self.planner.on_committed(pw)?;
        }
        let st = unit.stats;
        metrics::counter!("tanma_relations_read_total").increment(st.relations);
        metrics::counter!("tanma_relations_unchanged_total").increment(st.unchanged);
        metrics::counter!("tanma_events_total", "type" => "CREATED").increment(st.created);
        metrics::counter!("tanma_events_total", "type" => "UPDATED").increment(st.updated);
        metrics::counter!("tanma_dead_letters_total").increment(st.dead_letters);
        metrics::gauge!("tanma_customers_tracked").set(self.store.customers() as f64);
        progress::record_commit(st.created + st.updated);
        debug!(
            windows = windows.len(),
            relations = st.relations,
            created = st.created,
            updated = st.updated,
            unchanged = st.unchanged,
            records = commit.records,
            commit_ms = started.elapsed().as_millis() as u64,
            watermark = %self.planner.watermark(),
            "Committed unit of work."
        );
        Ok(())
    }

    fn report(&self, now: chrono::DateTime<Utc>, progress: &mut Progress) {
        let lag = (now - self.planner.watermark()).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!("tanma_watermark_lag_seconds").set(lag);
        for (tier, ratio) in self.planner.rescan_progress().into_iter().enumerate() {
            metrics::gauge!("tanma_rescan_progress_ratio", "tier" => tier.to_string()).set(ratio);
        }
        let (done, total) = self.planner.backfill_progress(now);
        progress.update(&progress::Status {
            done_secs: done.max(0) as u64,
            total_secs: total.max(0) as u64,
            caught_up: self.planner.caught_up(now),
            customers: self.store.customers() as u64,
            watermark_lag: Duration::from_secs_f64(lag),
        });
    }
}

/// A batch being read in the background; dropping it stops the reads.
struct Prefetch(tokio::task::JoinHandle<Fetched>);

impl Prefetch {
    async fn join(mut self) -> Result<Fetched, PipelineError> {
        (&mut self.0)
            .await
            .map_err(|e| PipelineError::FetchTask(e.to_string()))
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What reading a batch came to.
struct Fetched {
    /// The complete windows: a prefix of the batch, in batch order.
    done: Vec<(PlannedWindow, WindowRead)>,
    /// Why the prefix ended before the batch did.
    end: Option<FetchEnd>,
}

enum FetchEnd {
    /// This window must be split; it and the windows after it were not kept.
    TooLarge(PlannedWindow),
    /// Reading this window failed.
    Failed(crate::upstream::ApiError),
}

/// Reads the windows of `batch` concurrently and keeps the longest prefix that completed.
async fn fetch_batch(reader: WindowReader, batch: Vec<PlannedWindow>, threshold: u64) -> Fetched {
    let n = batch.len().max(1);
    let reads = batch.into_iter().map(|pw| {
        let reader = reader.clone();
        async move {
            let outcome = reader.read(pw.window, threshold).await;
            (pw, outcome)
        }
    });
    let mut results = futures::stream::iter(reads).buffered(n);
    let mut fetched = Fetched {
        done: Vec::new(),
        end: None,
    };
    while let Some((pw, outcome)) = results.next().await {
        match outcome {
            Ok(WindowOutcome::Complete(read)) => {
                metrics::counter!("tanma_windows_read_total", "kind" => kind_label(&pw.kind))
                    .increment(1);
                debug!(window = %pw.window, kind = kind_label(&pw.kind), total_count = read.total_count,
                    requests = read.requests, "Window read.");
                fetched.done.push((pw, read));
            }
            Ok(WindowOutcome::TooLarge { total_count, .. }) => {
                debug!(window = %pw.window, total_count, "Window too large; splitting.");
                metrics::counter!("tanma_windows_split_total").increment(1);
                // Windows after this one must wait for its halves: the prefix ends here (the
                // reads still running are dropped).
                fetched.end = Some(FetchEnd::TooLarge(pw));
                break;
            }
            Err(e) => {
                fetched.end = Some(FetchEnd::Failed(e));
                break;
            }
        }
    }
    fetched
}

fn kind_label(k: &WindowKind) -> &'static str {
    match k {
        WindowKind::Forward => "forward",
        WindowKind::Lookback => "lookback",
        WindowKind::Rescan { .. } => "rescan",
    }
}

/// Exponential backoff with full jitter.
struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    fn next(&mut self) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter: f64 = rand::random::<f64>();
        exp.mul_f64(0.5 + jitter / 2.0)
    }

    fn reset(&mut self) {
        if self.attempt > 0 {
            info!("Recovered; resuming normal operation.");
        }
        self.attempt = 0;
    }
}
