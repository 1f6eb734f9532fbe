//! Live mutations of the dataset and their log.
//!
//! Every mutation (scheduled by the background task, applied through the control API, or
//! inserted by the paging-drift fault) is appended to the log with a sequence number and the
//! server time, under the same lock as the dataset change, so the log order is the change order.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;

/// What a mutation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationKind {
    /// A new relation, add time = now (existing or new customer).
    New,
    /// A relation whose add time lies in the past, visible only from now on.
    Late,
    /// A profile change on an existing relation (version + 1).
    Changed,
    /// A relation no longer returned.
    Removed,
}

impl MutationKind {
    /// Lowercase label.
    pub fn as_str(self) -> &'static str {
        match self {
            MutationKind::New => "new",
            MutationKind::Late => "late",
            MutationKind::Changed => "changed",
            MutationKind::Removed => "removed",
        }
    }
}

/// Who caused a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationCause {
    /// The background task.
    Scheduled,
    /// `POST /_sim/apply` or [`super::SimControl::apply`].
    Apply,
    /// The paging-drift fault.
    Drift,
}

/// One entry of the mutation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutationRecord {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// Server time of the mutation.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: MutationKind,
    /// Why.
    pub cause: MutationCause,
    /// The customer.
    pub external_user_id: String,
    /// The staff member.
    pub qw_user_id: String,
    /// The relation's add time.
    pub add_time: DateTime<Utc>,
    /// The relation's profile version after the mutation.
    pub version: u32,
}

/// A request to apply mutations synchronously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    /// The kind of mutation.
    pub kind: MutationKind,
    /// How many (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// For `changed`/`removed`: only relations of this customer; for `new`/`late`: add the
    /// relation to this customer.
    #[serde(default)]
    pub external_user_id: Option<String>,
    /// With `externalUserId`: the staff member.
    #[serde(default)]
    pub qw_user_id: Option<String>,
    /// For `late`: the add time (default: random within the lookback).
    #[serde(default)]
    pub add_time: Option<DateTime<Utc>>,
}

/// Largest `count` of one apply request.
pub(crate) const MAX_APPLY: u32 = 100_000;

fn one() -> u32 {
    1
}

impl ApplyRequest {
    /// `count` random mutations of `kind`.
    pub fn new(kind: MutationKind, count: u32) -> ApplyRequest {
        ApplyRequest {
            kind,
            count,
            external_user_id: None,
            qw_user_id: None,
            add_time: None,
        }
    }
}

/// Why an apply request could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The named customer does not exist.
    #[error("unknown externalUserId {0:?}")]
    UnknownCustomer(String),
    /// The named staff member does not exist.
    #[error("unknown qwUserId {0:?}")]
    UnknownStaff(String),
    /// The request names something impossible.
    #[error("invalid apply request: {0}")]
    Invalid(String),
}

impl crate::error::Classify for ApplyError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Fatal
    }
}

/// The mutable part of the simulator: dataset, log and the mutation generator.
pub(crate) struct World {
    pub(crate) data: Dataset,
    log: VecDeque<MutationRecord>,
    capacity: usize,
    next_seq: u64,
    rng: ChaCha8Rng,
    /// Earliest add time of a late relation with lookback 0.
    start: i64,
}

impl World {
    pub(crate) fn new(data: Dataset, capacity: usize, start: i64) -> World {
        let rng = ChaCha8Rng::seed_from_u64(data.seed ^ 0x6d75_7461_7465);
        World {
            data,
            log: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            rng,
            start,
        }
    }

    /// The sequence number the next mutation will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Log entries with `seq > after`, at most `limit`.
    pub(crate) fn log_after(&self, after: u64, limit: usize) -> Vec<MutationRecord> {
        let first = self.log.front().map_or(self.next_seq, |r| r.seq);
        let skip =
            usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        self.log.iter().skip(skip).take(limit).cloned().collect()
    }

    fn record(
        &mut self,
        kind: MutationKind,
        cause: MutationCause,
        id: u32,
        now: DateTime<Utc>,
    ) -> Option<MutationRecord> {
        let rel = *self.data.rel(id)?;
        let rec = MutationRecord {
            seq: self.next_seq,
            at: now,
            kind,
            cause,
            external_user_id: self.data.renderer.ext_id(rel.cust),
            qw_user_id: self.data.renderer.staff_id(rel.staff).to_string(),
            add_time: DateTime::from_timestamp(rel.add_time, 0).unwrap_or_default(),
            version: rel.version,
        };
        self.next_seq += 1;
        if self.log.len() >= self.capacity {
            self.log.pop_front();
        }
        self.log.push_back(rec.clone());
        metrics::counter!(crate::ops::metrics::names::SIM_MUTATIONS_TOTAL, "kind" => kind.as_str())
            .increment(1);
        Some(rec)
    }

    /// One random mutation of `kind`. `late_lookback_secs` bounds late add times (0 = since
    /// the dataset start). `None` if nothing could be mutated (an empty dataset).
    pub(crate) fn random(
        &mut self,
        kind: MutationKind,
        cause: MutationCause,
        late_lookback_secs: u64,
        now: DateTime<Utc>,
    ) -> Option<MutationRecord> {
        let t = now.timestamp();
        let id = match kind {
            MutationKind::New => Some(self.data.add_relation(&mut self.rng, t, t)),
            MutationKind::Late => {
                let lo = if late_lookback_secs == 0 {
                    self.start
                } else {
                    t.saturating_sub(i64::try_from(late_lookback_secs).unwrap_or(i64::MAX))
                };
                let lo = lo.min(t - 1);
                let at = self.rng.random_range(lo..t);
                Some(self.data.add_relation(&mut self.rng, at, t))
            }
            MutationKind::Changed => {
                let id = self.data.random_visible(&mut self.rng)?;
                self.data.change(id).then_some(id)
            }
            MutationKind::Removed => {
                let id = self.data.random_visible(&mut self.rng)?;
                self.data.remove(id).then_some(id)
            }
        }?;
        self.record(kind, cause, id, now)
    }

    /// A late relation with its add time in `[lo, hi)` (seconds), for the drift fault.
    pub(crate) fn late_in(
        &mut self,
        lo: i64,
        hi: i64,
        now: DateTime<Utc>,
    ) -> Option<MutationRecord> {
        if hi <= lo {
            return None;
        }
        let at = self.rng.random_range(lo..hi);
        let id = self.data.add_relation(&mut self.rng, at, now.timestamp());
        self.record(MutationKind::Late, MutationCause::Drift, id, now)
    }

    /// Carries out an apply request.
    pub(crate) fn apply(
        &mut self,
        req: &ApplyRequest,
        late_lookback_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<MutationRecord>, ApplyError> {
        if req.count > MAX_APPLY {
            return Err(ApplyError::Invalid(format!(
                "count {} is over the limit of {MAX_APPLY}",
                req.count
            )));
        }
        let Some(ext) = req.external_user_id.as_deref() else {
            if req.qw_user_id.is_some() {
                return Err(ApplyError::Invalid("qwUserId needs externalUserId".into()));
            }
            if let (Some(at), MutationKind::Late) = (req.add_time, req.kind) {
                return Ok(self.late_at(req.count, at, now));
            }
            return Ok((0..req.count)
                .filter_map(|_| {
                    self.random(req.kind, MutationCause::Apply, late_lookback_secs, now)
                })
                .collect());
        };
        let cust = self
            .data
            .find_customer(ext)
            .ok_or_else(|| ApplyError::UnknownCustomer(ext.to_string()))?;
        let staff = match req.qw_user_id.as_deref() {
            Some(q) => Some(
                self.data
                    .find_staff(q)
                    .ok_or_else(|| ApplyError::UnknownStaff(q.to_string()))?,
            ),
            None => None,
        };
        let t = now.timestamp();
        let mut out = Vec::new();
        for _ in 0..req.count {
            let id = match req.kind {
                MutationKind::New | MutationKind::Late => {
                    let at = match (req.kind, req.add_time) {
                        (MutationKind::New, _) => t,
                        (_, Some(a)) => a.timestamp(),
                        (_, None) => t.saturating_sub(
                            i64::try_from(late_lookback_secs.max(1)).unwrap_or(i64::MAX),
                        ),
                    };
                    let s = match staff {
                        Some(s) => s,
                        None => self.free_staff(cust).ok_or_else(|| {
                            ApplyError::Invalid(format!("{ext} is followed by every staff member"))
                        })?,
                    };
                    self.data.add_relation_for(cust, s, at, t)
                }
                MutationKind::Changed | MutationKind::Removed => self
                    .data
                    .relations_of(cust)
                    .into_iter()
                    .find(|i| {
                        self.data
                            .rel(*i)
                            .is_some_and(|r| !r.removed && staff.is_none_or(|s| s == r.staff))
                    })
                    .filter(|i| {
                        if req.kind == MutationKind::Changed {
                            self.data.change(*i)
                        } else {
                            self.data.remove(*i)
                        }
                    }),
            };
            match id.and_then(|id| self.record(req.kind, MutationCause::Apply, id, now)) {
                Some(r) => out.push(r),
                None => {
                    return Err(ApplyError::Invalid(format!(
                        "no visible relation of {ext} to apply {} to",
                        req.kind.as_str()
                    )))
                }
            }
        }
        Ok(out)
    }

    fn late_at(
        &mut self,
        count: u32,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<MutationRecord> {
        (0..count)
            .filter_map(|_| {
                let id = self
                    .data
                    .add_relation(&mut self.rng, at.timestamp(), now.timestamp());
                self.record(MutationKind::Late, MutationCause::Apply, id, now)
            })
            .collect()
    }

    fn free_staff(&self, cust: u32) -> Option<u16> {
        let following: Vec<u16> = self
            .data
            .relations_of(cust)
            .iter()
            .filter_map(|i| self.data.rel(*i))
            .filter(|r| !r.removed)
            .map(|r| r.staff)
            .collect();
        (0..self.data.staff_count()).find(|s| !following.contains(s))
    }
}
