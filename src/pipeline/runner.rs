//! The main loop: plan → fetch → diff → commit → apply, until shut down.
//!
//! ```text
//! loop {
//!     if the last unit failed after its commit: recover (fence, checkpoint, restore)
//!     batch   = the batch fetched ahead, or planner.next_batch(now, concurrency)
//!     results = fetch every window concurrently (a background task), in batch order
//!     next    = planner.next_batch(..), its fetch started now: it overlaps this commit
//!     unit    = the longest prefix of complete results, diffed against the state store
//!     commit(unit.events + unit.state + checkpoint_after(last window))   // one transaction
//!     on success: store.apply(unit.staged); planner.on_committed(each window)
//!     on failure before the commit: drop `next`; planner.rewind(); back off (nothing was
//!                 applied, so the next try is the same)
//!     on failure after the commit (or an unknown outcome): drop `next`; back off; recover
//! }
//! ```
//!
//! A failure after a successful commit (the state volume full while applying, the planner
//! refusing) must never lead to a rewind: the local state may be half applied, and a rewind
//! would diff committed windows against it and emit part of the unit again. Such a unit is
//! treated like a crash after commit: the connector recovers exactly as a restart does
//! ([`Connector::recover`]: fence, read the checkpoint, restore the state from the state topic),
//! so it continues from what Kafka holds, which is the truth.
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
use crate::publish::{OutRecord, PublishError};
use crate::state::{StateStore, WindowGrid};
use crate::upstream::window_reader::{WindowOutcome, WindowRead, WindowReader};

use super::deletions::Deletions;
use super::faults::{self, CommitError, FaultPlan, Step};
use super::ports::{KafkaLog, TransactionalLog, WindowSource};
use super::unit::{DeadLetters, StagedState, Topics, Unit, UnitContext, UnitError};
use super::PipelineError;
use crate::backoff::{Backoff, Jitter};
use crate::ops::metrics::names;

/// Everything the loop needs, built by [`super::startup`] (or by a test, over in-memory ports).
pub struct Connector<S: WindowSource = WindowReader, L: TransactionalLog = KafkaLog> {
    /// The validated configuration.
    pub cfg: Config,
    /// Reads windows.
    pub source: S,
    /// Decides which windows come next.
    pub planner: Planner,
    /// Last committed snapshot of every customer.
    pub store: StateStore,
    /// Where units of work are committed (already fenced).
    pub log: L,
    /// Avro codec.
    pub codec: Codec,
    /// Liveness / readiness.
    pub health: Health,
    /// Faults to inject (tests and drills); `None` in production.
    pub faults: Option<FaultPlan>,
    /// Contents dead-lettered (committed) by this process, so a bad row is sent once, not at
    /// every re-read of its window. Kept across recoveries (what it holds is committed); a
    /// restart starts empty, so a row still bad is dead-lettered once more after a restart.
    pub dead_letters: DeadLetters,
    /// Confirmation counts of relations seen absent (in memory: a restart only delays a
    /// deletion).
    pub deletions: Deletions,
}

/// Consecutive failed commits after which the connector recovers as a restart would (a fresh
/// producer: librdkafka was seen to stay wedged after a broker outage).
const RECOVER_AFTER_FAILED_COMMITS: u32 = 3;

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

/// Why a batch failed, and whether its unit of work may have been committed.
struct BatchFailure {
    error: PipelineError,
    /// The unit was (or may have been) committed: the local state cannot be trusted.
    committed: bool,
}

impl BatchFailure {
    fn before_commit(error: impl Into<PipelineError>) -> Self {
        BatchFailure {
            error: error.into(),
            committed: false,
        }
    }

    fn after_commit(error: impl Into<PipelineError>) -> Self {
        BatchFailure {
            error: error.into(),
            committed: true,
        }
    }
}

/// What can fail once a unit is committed.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    Injected(#[from] faults::Injected),
}

impl From<ApplyError> for PipelineError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::State(e) => e.into(),
            ApplyError::Plan(e) => e.into(),
            ApplyError::Injected(e) => e.into(),
        }
    }
}

/// The loop's own state between iterations.
struct LoopState {
    backoff: Backoff,
    progress: Progress,
    /// The batch fetched ahead while the previous one was committed.
    ahead: Option<Prefetch>,
    failed_commits: u32,
    /// The local state may disagree with Kafka: recover before the next unit.
    must_recover: bool,
}

impl<S: WindowSource, L: TransactionalLog> Connector<S, L> {
    /// Injects `plan`'s faults into this connector's units of work.
    pub fn with_faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Some(plan);
        self
    }

    /// Runs until `shutdown` is cancelled (or, with `opts.stop_when_caught_up`, until caught
    /// up). Returns an error only for fatal conditions; transient ones are retried with backoff.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        opts: RunOptions,
    ) -> Result<Exit, PipelineError> {
        let topics = Topics::from(&self.cfg.topics);
        if let Some(plan) = &self.faults {
            plan.attach(shutdown.clone());
        }
        let mut st = LoopState {
            backoff: Backoff::new(
                Duration::from_millis(self.cfg.api.backoff_initial_ms.max(10)),
                Duration::from_millis(self.cfg.api.backoff_max_ms.max(100)),
            )
            .with_jitter(Jitter::Equal),
            progress: Progress::new(self.cfg.ops.progress),
            ahead: None,
            failed_commits: 0,
            must_recover: false,
        };
        let poll = Duration::from_millis(self.cfg.windows.poll_interval_ms);
        let concurrency = self.cfg.windows.concurrency;
        loop {
            self.health.beat();
            if shutdown.is_cancelled() {
                st.progress.finish();
                return Ok(Exit::Shutdown);
            }
            if st.must_recover {
                let recovered = tokio::select! {
                    _ = shutdown.cancelled() => continue,
                    r = self.recover() => r,
                };
                if let Err(e) = recovered {
                    self.back_off(e, &mut st, &shutdown, "Recovery failed; retrying.")
                        .await?;
                    continue;
                }
                st.must_recover = false;
                metrics::counter!(names::RECOVERIES_TOTAL).increment(1);
            }
            let now = Utc::now();
            self.report(now, &mut st.progress);
            let current = match st.ahead.take() {
                Some(fetch) => fetch,
                None => {
                    let batch = self.planner.next_batch(now, concurrency);
                    if batch.is_empty() {
                        if opts.stop_when_caught_up {
                            st.progress.finish();
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
                    st.progress.finish();
                    return Ok(Exit::Shutdown);
                }
                f = current.join() => f?,
            };
            if fetched.end.is_none() && !shutdown.is_cancelled() {
                let next = self.planner.next_batch(Utc::now(), concurrency);
                if !next.is_empty() {
                    st.ahead = Some(self.fetch(next));
                }
            }
            match self.finish_batch(fetched, &topics).await {
                Ok(()) => {
                    if st.backoff.reset() {
                        info!("Recovered; resuming normal operation.");
                    }
                    st.failed_commits = 0;
                    self.health.commit_succeeded();
                }
                Err(failure) => self.batch_failed(failure, &mut st, &shutdown).await?,
            }
        }
    }

    /// Handles a failed batch: a fatal error ends the run; otherwise the planner rewinds (or,
    /// if the unit may have been committed, the connector recovers) after a backoff.
    async fn batch_failed(
        &mut self,
        failure: BatchFailure,
        st: &mut LoopState,
        shutdown: &CancellationToken,
    ) -> Result<(), PipelineError> {
        // Taken back with everything else handed out since the last commit.
        st.ahead = None;
        let BatchFailure { error, committed } = failure;
        if error.class() == ErrorClass::Fatal {
            return Err(error);
        }
        let kafka_side = !matches!(error, PipelineError::Api(_));
        if kafka_side {
            st.failed_commits += 1;
        }
        let what = if committed {
            st.must_recover = true;
            "Unit committed, but the local state could not follow; recovering from the topics as a restart would."
        } else {
            self.planner.rewind();
            if st.failed_commits >= RECOVER_AFTER_FAILED_COMMITS {
                // librdkafka can stay wedged after a broker outage (every transaction times
                // out): start over with a fresh producer, as a restart would.
                st.must_recover = true;
                st.failed_commits = 0;
            }
            "Batch failed; nothing was committed or applied; retrying from the last checkpoint."
        };
        if kafka_side {
            self.back_off(error, st, shutdown, what).await
        } else {
            self.pause(error, st, shutdown, what).await;
            Ok(())
        }
    }

    /// Records a Kafka-side failure (for `/health`), logs it and sleeps the backoff.
    async fn back_off(
        &mut self,
        error: PipelineError,
        st: &mut LoopState,
        shutdown: &CancellationToken,
        what: &'static str,
    ) -> Result<(), PipelineError> {
        if error.class() == ErrorClass::Fatal {
            return Err(error);
        }
        self.health.commit_failed();
        self.pause(error, st, shutdown, what).await;
        Ok(())
    }

    async fn pause(
        &self,
        error: PipelineError,
        st: &mut LoopState,
        shutdown: &CancellationToken,
        what: &'static str,
    ) {
        let class = error.class();
        let delay = st.backoff.next_delay();
        warn!(error = %error, class = class.as_str(), retry_in_ms = delay.as_millis() as u64, "{what}");
        metrics::counter!(names::BATCH_RETRIES_TOTAL, "class" => class.as_str()).increment(1);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }

    /// Starts reading `batch` in the background.
    fn fetch(&self, batch: Vec<PlannedWindow>) -> Prefetch {
        let source = self.source.clone();
        let threshold = self.cfg.windows.split_threshold;
        Prefetch(tokio::spawn(fetch_batch(source, batch, threshold)))
    }

    /// Commits the complete prefix of a fetched batch in one transaction, then splits the
    /// window that ended it early or reports the failure that did.
    async fn finish_batch(
        &mut self,
        fetched: Fetched,
        topics: &Topics,
    ) -> Result<(), BatchFailure> {
        self.commit_prefix(fetched.done, topics).await?;
        match fetched.end {
            None => Ok(()),
            // Takes back the window and every window handed out after it; they come again
            // after its halves.
            Some(FetchEnd::TooLarge(pw)) => {
                self.planner.split(&pw).map_err(BatchFailure::before_commit)
            }
            Some(FetchEnd::Failed(e)) => Err(BatchFailure::before_commit(e)),
        }
    }

    async fn commit_prefix(
        &mut self,
        done: Vec<(PlannedWindow, WindowRead)>,
        topics: &Topics,
    ) -> Result<(), BatchFailure> {
        let Some(last) = done.last().map(|(pw, _)| *pw) else {
            return Ok(());
        };
        // Before the checkpoint: an incomplete read is queued for a retry in this transaction.
        for (pw, read) in &done {
            self.planner
                .record_read(pw, read.summary())
                .map_err(BatchFailure::before_commit)?;
        }
        let (mut unit, windows) = self
            .build_unit(done, topics)
            .map_err(BatchFailure::before_commit)?;
        let mut records = std::mem::take(&mut unit.records);
        records.push(self.checkpoint_record(self.planner.checkpoint_after(&last)));
        let started = Instant::now();
        let commit = match faults::commit(&self.log, records, self.faults.as_ref()).await {
            Ok(stats) => stats,
            // The transaction may have committed: only the log can tell.
            Err(CommitError::Log(
                e @ (PublishError::CommitOutcomeUnknown { .. }
                | PublishError::Stuck { .. }
                | PublishError::ProducerFailed { .. }),
            )) => return Err(BatchFailure::after_commit(e)),
            Err(CommitError::Log(e)) => return Err(BatchFailure::before_commit(e)),
            Err(CommitError::Injected(i)) => {
                let committed = i.step().after_commit();
                return Err(BatchFailure {
                    error: i.into(),
                    committed,
                });
            }
        };
        // Committed: only now does the local state learn about it.
        self.apply_committed(unit.staged, &windows)
            .map_err(BatchFailure::after_commit)?;
        self.dead_letters.extend(unit.dead_lettered);
        self.deletions.committed(&unit.evidence, &unit.decision);
        let st = unit.stats;
        metrics::counter!(names::RELATIONS_READ_TOTAL).increment(st.relations);
        metrics::counter!(names::RELATIONS_UNCHANGED_TOTAL).increment(st.unchanged);
        metrics::counter!(names::EVENTS_TOTAL, "type" => "CREATED").increment(st.created);
        metrics::counter!(names::EVENTS_TOTAL, "type" => "UPDATED").increment(st.updated);
        metrics::counter!(names::EVENTS_TOTAL, "type" => "DELETED").increment(st.deleted);
        metrics::counter!(names::DEAD_LETTERS_TOTAL).increment(st.dead_letters);
        self.store.emit_gauges();
        progress::record_commit(st.created + st.updated + st.deleted);
        debug!(
            windows = windows.len(),
            relations = st.relations,
            created = st.created,
            updated = st.updated,
            deleted = st.deleted,
            relations_ended = st.relations_ended,
            rewindowed = st.rewindowed,
            unchanged = st.unchanged,
            records = commit.records,
            commit_ms = started.elapsed().as_millis() as u64,
            watermark = %self.planner.watermark(),
            "Committed unit of work."
        );
        Ok(())
    }

    /// Diffs the windows' relations against the committed state.
    fn build_unit(
        &self,
        done: Vec<(PlannedWindow, WindowRead)>,
        topics: &Topics,
    ) -> Result<(Unit, Vec<PlannedWindow>), UnitError> {
        let mut unit = Unit::default();
        let ctx = UnitContext {
            store: &self.store,
            codec: &self.codec,
            topics,
            policy: self.cfg.topics.on_bad_record,
            dead_lettered: &self.dead_letters,
            now: Utc::now(),
            deletions: Some(&self.deletions).filter(|d| d.enabled()),
            grid: WindowGrid::new(
                self.cfg.start_time().timestamp(),
                self.cfg.windows.window_secs,
            ),
        };
        let mut windows = Vec::with_capacity(done.len());
        for (pw, read) in done {
            unit.set_rescan(matches!(
                pw.kind,
                WindowKind::Rescan { .. } | WindowKind::Retry { .. }
            ));
            windows.push(pw);
            unit.add_window(read, &ctx)?;
        }
        unit.finish(&ctx)?;
        Ok((unit, windows))
    }

    fn checkpoint_record(&self, checkpoint: Checkpoint) -> OutRecord {
        OutRecord {
            topic: self.cfg.topics.checkpoint.clone(),
            key: self.cfg.kafka.transactional_id.as_bytes().to_vec(),
            value: Some(checkpoint.to_bytes()),
            headers: Vec::new(),
        }
    }

    /// After a successful commit: the state store and the planner learn about the unit. An
    /// error here leaves them part-way, which is why the caller recovers instead of rewinding.
    fn apply_committed(
        &mut self,
        staged: Vec<StagedState>,
        windows: &[PlannedWindow],
    ) -> Result<(), ApplyError> {
        let plan = self.faults.clone();
        let plan = plan.as_ref();
        faults::check(plan, Step::AfterCommit)?;
        let half = staged.len() / 2;
        let mut staged = staged.into_iter();
        for s in staged.by_ref().take(half) {
            self.apply_staged(s)?;
        }
        faults::check(plan, Step::Apply)?;
        for s in staged {
            self.apply_staged(s)?;
        }
        faults::check(plan, Step::OnCommitted)?;
        for pw in windows {
            self.planner.on_committed(pw)?;
        }
        Ok(())
    }

    fn apply_staged(&mut self, s: StagedState) -> Result<(), crate::state::StateError> {
        match s.buried {
            Some(revision) => {
                self.store.bury(&s.external_user_id, revision);
                Ok(())
            }
            None => self
                .store
                .apply(&s.external_user_id, &s.value, &s.relations),
        }
    }

    fn report(&self, now: chrono::DateTime<Utc>, progress: &mut Progress) {
        let lag = (now - self.planner.watermark()).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!(names::WATERMARK_LAG_SECONDS).set(lag);
        for (tier, ratio) in self.planner.rescan_progress().into_iter().enumerate() {
            metrics::gauge!(names::RESCAN_PROGRESS_RATIO, "tier" => tier.to_string()).set(ratio);
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
async fn fetch_batch<S: WindowSource>(
    source: S,
    batch: Vec<PlannedWindow>,
    threshold: u64,
) -> Fetched {
    let n = batch.len().max(1);
    let reads = batch.into_iter().map(|pw| {
        let source = source.clone();
        async move {
            let outcome = source.read(pw.window, threshold).await;
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
                metrics::counter!(names::WINDOWS_READ_TOTAL, "kind" => pw.kind.as_str())
                    .increment(1);
                debug!(window = %pw.window, kind = pw.kind.as_str(), total_count = read.total_count,
                    requests = read.requests, "Window read.");
                fetched.done.push((pw, read));
            }
            Ok(WindowOutcome::TooLarge { total_count, .. }) => {
                debug!(window = %pw.window, total_count, "Window too large; splitting.");
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
