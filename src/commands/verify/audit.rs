//! The events audit, applied event by event in bounded memory: per customer only its latest
//! revision, after-image fingerprint and whether that latest event is DELETED, and the runs of
//! revisions seen; per event a 64-bit hash of its id.
//!
//! The truth holds the customers alive now (removed relations excluded). A customer absent from
//! it is gone: its latest event must be DELETED. A figure counts problems, not events: one bad
//! event can show in two figures (e.g. a DELETED that skips a revision is spurious and a gap).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use super::truth::{relations_fp, Fp, Truth};

/// Most examples kept in a report.
pub(super) const MAX_EXAMPLES: usize = 20;

/// Figures of one audit.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Audit {
    /// Customers in the truth (alive now).
    pub truth_customers: usize,
    /// Events read.
    pub events: u64,
    /// CREATED events read.
    pub created: u64,
    /// UPDATED events read.
    pub updated: u64,
    /// DELETED events read.
    pub deleted: u64,
    /// Customers gone from the truth whose latest event is DELETED (as it should be).
    pub deleted_customers: u64,
    /// Customers of the truth missing or stale.
    pub lost: u64,
    /// Repeated events.
    pub duplicated: u64,
    /// Events that should not exist.
    pub spurious: u64,
    /// Customers gone from the truth whose latest event is not DELETED.
    pub not_deleted: u64,
    /// Customers of the truth whose latest event is DELETED.
    pub wrongly_deleted: u64,
    /// Up to 20 examples of problems.
    pub examples: Vec<String>,
}

impl Audit {
    /// True when nothing was lost, duplicated, spurious, left undeleted or wrongly deleted.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.spurious == 0
            && self.not_deleted == 0
            && self.wrongly_deleted == 0
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(s);
        }
    }
}

/// The disjoint, sorted runs `[first, last]` of the revisions seen of one customer.
#[derive(Debug, Default, Clone)]
pub(super) struct Runs(pub(super) Vec<(i64, i64)>);

impl Runs {
    /// Adds `rev`; false when it was already there.
    pub(super) fn insert(&mut self, rev: i64) -> bool {
        let runs = &mut self.0;
        // The first run starting after `rev`.
        let i = runs.partition_point(|&(first, _)| first <= rev);
        if i > 0 && runs[i - 1].1 >= rev {
            return false;
        }
        let joins_left = i > 0 && runs[i - 1].1 + 1 == rev;
        let joins_right = i < runs.len() && runs[i].0 - 1 == rev;
        match (joins_left, joins_right) {
            (true, true) => {
                runs[i - 1].1 = runs[i].1;
                runs.remove(i);
            }
            (true, false) => runs[i - 1].1 = rev,
            (false, true) => runs[i].0 = rev,
            (false, false) => runs.insert(i, (rev, rev)),
        }
        true
    }
}

/// The `event_type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    Updated,
    Deleted,
}

impl Kind {
    fn of(e: &Value) -> Option<Kind> {
        match e["event_type"].as_str() {
            Some("CREATED") => Some(Kind::Created),
            Some("UPDATED") => Some(Kind::Updated),
            Some("DELETED") => Some(Kind::Deleted),
            _ => None,
        }
    }
}

/// What the audit remembers of one customer.
#[derive(Debug, Clone)]
struct Seen {
    latest_rev: i64,
    latest_after: Fp,
    /// The event with the highest revision is DELETED.
    latest_deleted: bool,
    revisions: Runs,
}

/// The fields of one event the rules look at.
struct Event<'e> {
    ext: &'e str,
    rev: i64,
    kind: Option<Kind>,
    after: Fp,
    raw: &'e Value,
}

/// The events audit, fed one decoded event at a time.
#[derive(Debug)]
pub struct EventAuditor<'t> {
    truth: &'t Truth,
    audit: Audit,
    ids: HashSet<u64>,
    customers: HashMap<String, Seen>,
}

/// The result of an events audit: the figures, and each customer's latest event revision (for
/// [`super::audit_state`]).
#[derive(Debug, Clone, Default)]
pub struct EventsAudit {
    /// The figures.
    pub audit: Audit,
    /// Highest event revision of every customer with events.
    pub latest_revisions: HashMap<String, i64>,
}

impl<'t> EventAuditor<'t> {
    /// An audit against `truth`, with no event yet.
    pub fn new(truth: &'t Truth) -> EventAuditor<'t> {
        EventAuditor {
            truth,
            audit: Audit {
                truth_customers: truth.len(),
                ..Audit::default()
            },
            ids: HashSet::new(),
            customers: HashMap::new(),
        }
    }

    /// Checks one decoded event (the JSON of `Codec::decode_event_json`).
    pub fn event(&mut self, e: &Value) {
        let ev = Event {
            ext: e["external_user_id"].as_str().unwrap_or_default(),
            rev: e["revision"].as_i64().unwrap_or(-1),
            kind: Kind::of(e),
            after: relations_fp(&e["after"]["relations"]),
            raw: e,
        };
        self.event_alone(&ev);
        let id = e["event_id"].as_str().unwrap_or_default();
        if !self.ids.insert(xxh3_64(id.as_bytes())) {
            self.audit.duplicated += 1;
            self.audit
                .note(format!("{}: event_id {id} seen twice", ev.ext));
        }
        self.event_in_sequence(&ev);
    }

    /// The rules about one event by itself: its type, and that it changes something.
    fn event_alone(&mut self, ev: &Event<'_>) {
        let (a, ext, rev, e) = (&mut self.audit, ev.ext, ev.rev, ev.raw);
        a.events += 1;
        match ev.kind {
            Some(Kind::Created) => a.created += 1,
            Some(Kind::Updated) => {
                a.updated += 1;
                if e["before"]["relations"] == e["after"]["relations"] {
                    a.spurious += 1;
                    a.note(format!("{ext}: UPDATED rev {rev} without a change"));
                }
            }
            Some(Kind::Deleted) => {
                a.deleted += 1;
                if !e["after"]["relations"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
                {
                    a.spurious += 1;
                    a.note(format!(
                        "{ext}: DELETED rev {rev} whose after-image has relations"
                    ));
                }
            }
            None => {
                a.spurious += 1;
                let other = e["event_type"].as_str();
                a.note(format!("{ext}: unexpected event type {other:?}"));
            }
        }
    }

    /// The rules about an event and the customer's earlier ones: revisions, a CREATED only
    /// first or after a DELETED, a DELETED only after an image it starts from.
    fn event_in_sequence(&mut self, ev: &Event<'_>) {
        let a = &mut self.audit;
        let Some(seen) = self.customers.get_mut(ev.ext) else {
            if ev.kind == Some(Kind::Deleted) {
                a.spurious += 1;
                a.note(format!("{}: DELETED without an earlier event", ev.ext));
            }
            let mut revisions = Runs::default();
            revisions.insert(ev.rev);
            let seen = Seen {
                latest_rev: ev.rev,
                latest_after: ev.after,
                latest_deleted: ev.kind == Some(Kind::Deleted),
                revisions,
            };
            self.customers.insert(ev.ext.to_string(), seen);
            return;
        };
        if !seen.revisions.insert(ev.rev) {
            a.duplicated += 1;
            a.note(format!("{}: revision {} twice", ev.ext, ev.rev));
        } else if let Some((duplicate, problem)) = sequence_problem(seen, ev) {
            *(if duplicate {
                &mut a.duplicated
            } else {
                &mut a.spurious
            }) += 1;
            a.note(format!("{}: {problem}", ev.ext));
        }
        if ev.rev > seen.latest_rev {
            seen.latest_rev = ev.rev;
            seen.latest_after = ev.after;
            seen.latest_deleted = ev.kind == Some(Kind::Deleted);
        }
    }

    /// The checks that need every event: revision gaps, a first revision, the latest event of
    /// every customer against the truth (alive: its after-image; gone: DELETED).
    pub fn finish(self) -> EventsAudit {
        let mut a = self.audit;
        for (ext, seen) in &self.customers {
            for w in seen.revisions.0.windows(2) {
                a.spurious += 1;
                a.note(format!("{ext}: revision gap {} → {}", w[0].1, w[1].0));
            }
            if seen.revisions.0.first().map(|r| r.0) != Some(1) {
                a.lost += 1;
                a.note(format!("{ext}: no revision 1 (CREATED)"));
            }
            if self.truth.contains(ext) {
                continue;
            }
            if seen.latest_deleted {
                a.deleted_customers += 1;
            } else {
                a.not_deleted += 1;
                a.note(format!(
                    "{ext}: gone from the truth, latest event (rev {}) is not DELETED",
                    seen.latest_rev
                ));
            }
        }
        for (ext, fp) in self.truth.iter() {
            match self.customers.get(ext) {
                None => {
                    a.lost += 1;
                    a.note(format!("{ext}: no event"));
                }
                Some(seen) if seen.latest_deleted => {
                    a.wrongly_deleted += 1;
                    a.note(format!(
                        "{ext}: in the truth, latest event (rev {}) is DELETED",
                        seen.latest_rev
                    ));
                }
                Some(seen) if seen.latest_after != fp => {
                    a.lost += 1;
                    a.note(format!(
                        "{ext}: latest event (rev {}) differs from the truth",
                        seen.latest_rev
                    ));
                }
                Some(_) => {}
            }
        }
        EventsAudit {
            audit: a,
            latest_revisions: self
                .customers
                .into_iter()
                .map(|(ext, seen)| (ext, seen.latest_rev))
                .collect(),
        }
    }
}

/// What is wrong with `ev` (a revision not seen before) after the customer's events so far
/// (`seen`): `(true, _)` a duplicate, `(false, _)` spurious.
fn sequence_problem(seen: &Seen, ev: &Event<'_>) -> Option<(bool, String)> {
    let (rev, latest) = (ev.rev, seen.latest_rev);
    let follows = rev == latest + 1;
    match ev.kind {
        Some(Kind::Created) if !seen.latest_deleted => Some((
            true,
            format!("CREATED rev {rev} without a DELETED after rev {latest}"),
        )),
        Some(Kind::Created) if !follows => Some((
            false,
            format!("CREATED rev {rev} does not continue DELETED rev {latest}"),
        )),
        Some(Kind::Updated) if seen.latest_deleted && rev > latest => Some((
            false,
            format!("UPDATED rev {rev} after DELETED rev {latest} (no CREATED)"),
        )),
        Some(Kind::Deleted) if seen.latest_deleted => Some((
            false,
            format!("DELETED rev {rev} after DELETED rev {latest}"),
        )),
        Some(Kind::Deleted) if !follows => Some((
            false,
            format!("DELETED rev {rev} does not follow rev {latest}"),
        )),
        Some(Kind::Deleted)
            if relations_fp(&ev.raw["before"]["relations"]) != seen.latest_after =>
        {
            Some((
                false,
                format!("DELETED rev {rev}: before-image is not the after-image of rev {latest}"),
            ))
        }
        _ => None,
    }
}

/// Audits a list of decoded events against `truth` (see [`EventAuditor`]).
pub fn audit_all(truth: &Truth, events: &[Value]) -> EventsAudit {
    let mut auditor = EventAuditor::new(truth);
    events.iter().for_each(|e| auditor.event(e));
    auditor.finish()
}

/// Compares `events` with `truth`.
pub fn audit(truth: &Truth, events: &[Value]) -> Audit {
    audit_all(truth, events).audit
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
