//! Fault injection at every step of a unit of work, for tests and drills.
//!
//! A [`FaultPlan`] is armed with (step, action, occurrence) triples and handed to
//! [`super::Connector::with_faults`]. Without a plan (production) every check is a no-op.
//!
//! ```text
//!  build unit ─▶ BeforeProduce ─▶ DuringProduce ─▶ Commit ─▶ CommitUnknown
//!                                                              │ committed
//!           OnCommitted ◀── Apply (half the unit applied) ◀── AfterCommit
//! ```
//!
//! Steps up to [`Step::Commit`] fail with nothing visible in the log; from
//! [`Step::CommitUnknown`] on the unit *is* committed, and the connector must not rewind against
//! its local state (it re-reads the log instead: see `docs/DESIGN.md`).

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::ports::TransactionalLog;
use crate::publish::{CommitStats, OutRecord, PublishError};

/// A place in the commit protocol of one unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The unit is built; nothing is written yet.
    BeforeProduce,
    /// Half of the unit's records are written in a transaction, which then fails (aborted).
    DuringProduce,
    /// Every record is written; the commit fails and the transaction is aborted.
    Commit,
    /// The commit succeeds but its outcome is reported as unknown.
    CommitUnknown,
    /// Committed; nothing applied to the local state yet.
    AfterCommit,
    /// Committed; the local state fails after applying half of the unit.
    Apply,
    /// Committed and applied; the planner has not yet been told.
    OnCommitted,
}

impl Step {
    /// Every step, in protocol order.
    pub const ALL: [Step; 7] = [
        Step::BeforeProduce,
        Step::DuringProduce,
        Step::Commit,
        Step::CommitUnknown,
        Step::AfterCommit,
        Step::Apply,
        Step::OnCommitted,
    ];

    /// Whether the unit is committed once this step is reached.
    pub fn after_commit(self) -> bool {
        matches!(
            self,
            Step::CommitUnknown | Step::AfterCommit | Step::Apply | Step::OnCommitted
        )
    }
}

/// What happens at an armed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The step fails with a retriable error (a full disk, a broker away).
    Fail,
    /// The process dies at this step: the run returns [`super::PipelineError::Crashed`] at once,
    /// without any clean-up, as after a SIGKILL.
    Crash,
    /// Shutdown is requested at this step; the step itself goes on.
    Shutdown,
}

#[derive(Debug)]
struct Armed {
    step: Step,
    action: Action,
    /// Passes of the step still to let through before acting.
    skip: u32,
}

/// Faults to inject, shared between a test and the connectors it drives (a clone shares the
/// armed faults, so a plan can outlive a "crashed" connector and its restart).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    armed: Arc<Mutex<Vec<Armed>>>,
    /// The shutdown token of the run in progress, cancelled by [`Action::Shutdown`].
    shutdown: Arc<Mutex<Option<CancellationToken>>>,
    fired: Arc<Mutex<Vec<(Step, Action)>>>,
}

impl FaultPlan {
    /// An empty plan.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// [`Action::Shutdown`] cancels `token` from now on (the connector's run attaches its own).
    pub fn attach(&self, token: CancellationToken) {
        *lock(&self.shutdown) = Some(token);
    }

    /// Acts the `nth` time (1-based) `step` is reached from now on.
    pub fn arm(&self, step: Step, action: Action, nth: u32) -> &Self {
        lock(&self.armed).push(Armed {
            step,
            action,
            skip: nth.saturating_sub(1),
        });
        self
    }

    /// The faults that fired, in order.
    pub fn fired(&self) -> Vec<(Step, Action)> {
        lock(&self.fired).clone()
    }

    /// Whether every armed fault has fired.
    pub fn exhausted(&self) -> bool {
        lock(&self.armed).is_empty()
    }

    /// Passes `step`: the action armed for this pass, if any (a shutdown is requested here).
    pub fn hit(&self, step: Step) -> Option<Action> {
        let mut armed = lock(&self.armed);
        let i = armed.iter().position(|a| a.step == step)?;
        if armed[i].skip > 0 {
            armed[i].skip -= 1;
            return None;
        }
        let action = armed.remove(i).action;
        drop(armed);
        lock(&self.fired).push((step, action));
        tracing::info!(?step, ?action, "Injected fault.");
        if action == Action::Shutdown {
            if let Some(token) = lock(&self.shutdown).as_ref() {
                token.cancel();
            }
        }
        Some(action)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an injected fault turned a step into.
#[derive(Debug, thiserror::Error)]
pub enum Injected {
    /// [`Action::Fail`].
    #[error("injected failure at {0:?}")]
    Failed(Step),
    /// [`Action::Crash`].
    #[error("injected crash at {0:?}")]
    Crashed(Step),
}

impl Injected {
    /// The step the fault was injected at.
    pub fn step(&self) -> Step {
        match self {
            Injected::Failed(s) | Injected::Crashed(s) => *s,
        }
    }
}

/// Checks a step that has no log side: `Err` for a failure or a crash.
pub fn check(plan: Option<&FaultPlan>, step: Step) -> Result<(), Injected> {
    match plan.and_then(|p| p.hit(step)) {
        Some(Action::Fail) => Err(Injected::Failed(step)),
        Some(Action::Crash) => Err(Injected::Crashed(step)),
        Some(Action::Shutdown) | None => Ok(()),
    }
}

/// How a commit through [`commit`] ended.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The log refused (nothing visible, unless the outcome is unknown).
    #[error(transparent)]
    Log(#[from] PublishError),
    /// An injected fault.
    #[error(transparent)]
    Injected(#[from] Injected),
}

/// Commits `records` to `log`, passing the log-side steps of `plan` on the way.
pub async fn commit<L: TransactionalLog>(
    log: &L,
    mut records: Vec<OutRecord>,
    plan: Option<&FaultPlan>,
) -> Result<CommitStats, CommitError> {
    let Some(plan) = plan else {
        return Ok(log.commit(records).await?);
    };
    check(Some(plan), Step::BeforeProduce)?;
    if let Some(action) = plan
        .hit(Step::DuringProduce)
        .filter(|a| *a != Action::Shutdown)
    {
        records.truncate(records.len().div_ceil(2));
        log.write_aborted(records).await?;
        return Err(fault(action, Step::DuringProduce).into());
    }
    if let Some(action) = plan.hit(Step::Commit).filter(|a| *a != Action::Shutdown) {
        log.write_aborted(records).await?;
        return Err(fault(action, Step::Commit).into());
    }
    let stats = log.commit(records).await?;
    match plan.hit(Step::CommitUnknown) {
        Some(Action::Fail) => Err(PublishError::CommitOutcomeUnknown {
            transactional_id: "<injected>".into(),
            cause: "injected: commit outcome unknown".into(),
            abort_cause: "injected".into(),
        }
        .into()),
        Some(Action::Crash) => Err(Injected::Crashed(Step::CommitUnknown).into()),
        Some(Action::Shutdown) | None => Ok(stats),
    }
}

fn fault(action: Action, step: Step) -> Injected {
    match action {
        Action::Crash => Injected::Crashed(step),
        _ => Injected::Failed(step),
    }
}
