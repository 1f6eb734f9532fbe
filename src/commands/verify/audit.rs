//! The audit rules, applied event by event in bounded memory: per customer only its latest
//! revision and after-image fingerprint and the runs of revisions seen; per event a 64-bit hash
//! of its id.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use super::truth::{relations_fp, Fp, Truth};

/// Most examples kept in a report.
const MAX_EXAMPLES: usize = 20;

/// Figures of one audit.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Audit {
    /// Customers in the truth.
    pub truth_customers: usize,
    /// Events read.
    pub events: u64,
    /// CREATED events read.
    pub created: u64,
    /// UPDATED events read.
    pub updated: u64,
    /// Customers missing or stale.
    pub lost: u64,
    /// Repeated events.
    pub duplicated: u64,
    /// Events that should not exist.
    pub spurious: u64,
    /// Up to 20 examples of problems.
    pub examples: Vec<String>,
}

impl Audit {
    /// True when nothing was lost, duplicated or spurious.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.spurious == 0
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(s);
        }
    }
}

/// The disjoint, sorted runs `[first, last]` of the revisions seen of one customer.
#[derive(Debug, Default, Clone)]
struct Runs(Vec<(i64, i64)>);

impl Runs {
    /// Adds `rev`; false when it was already there.
    fn insert(&mut self, rev: i64) -> bool {
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

/// What the audit remembers of one customer.
#[derive(Debug, Clone)]
struct Seen {
    latest_rev: i64,
    latest_after: Fp,
    revisions: Runs,
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
/// [`audit_state`]).
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
        let a = &mut self.audit;
        a.events += 1;
        let ext = e["external_user_id"].as_str().unwrap_or_default();
        let id = e["event_id"].as_str().unwrap_or_default();
        let rev = e["revision"].as_i64().unwrap_or(-1);
        match e["event_type"].as_str() {
            Some("CREATED") => a.created += 1,
            Some("UPDATED") => {
                a.updated += 1;
                if e["before"]["relations"] == e["after"]["relations"] {
                    a.spurious += 1;
                    a.note(format!("{ext}: UPDATED rev {rev} without a change"));
                }
            }
            other => {
                a.spurious += 1;
                a.note(format!("{ext}: unexpected event type {other:?}"));
            }
        }
        if !self.ids.insert(xxh3_64(id.as_bytes())) {
            a.duplicated += 1;
            a.note(format!("{ext}: event_id {id} seen twice"));
        }
        if !self.truth.contains(ext) {
            a.spurious += 1;
            a.note(format!("{ext}: not in the truth"));
        }
        let after = relations_fp(&e["after"]["relations"]);
        let seen = match self.customers.get_mut(ext) {
            Some(seen) => seen,
            None => self.customers.entry(ext.to_string()).or_insert(Seen {
                latest_rev: rev,
                latest_after: after,
                revisions: Runs::default(),
            }),
        };
        if !seen.revisions.insert(rev) {
            a.duplicated += 1;
            a.note(format!("{ext}: revision {rev} twice"));
        }
        if rev > seen.latest_rev {
            seen.latest_rev = rev;
            seen.latest_after = after;
        }
    }

    /// The checks that need every event: revision gaps, a first revision, the latest
    /// after-image of every customer of the truth.
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
        }
        for (ext, fp) in self.truth.iter() {
            match self.customers.get(ext) {
                None => {
                    a.lost += 1;
                    a.note(format!("{ext}: no event"));
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

/// One customer's latest committed snapshot in the state topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateEntry {
    /// The snapshot's revision.
    pub revision: u64,
    /// The fingerprint of its `relations` ([`super::relations_fp`] of [`super::relations_json`]).
    pub relations: Fp,
}

/// Figures of a state-topic audit: the latest snapshot of every customer against the truth
/// and against the events.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct StateAudit {
    /// Customers in the truth.
    pub truth_customers: usize,
    /// Customers with a snapshot in the state topic.
    pub snapshots: usize,
    /// Customers of the truth without a snapshot.
    pub missing: u64,
    /// Customers whose latest snapshot differs from the truth.
    pub stale: u64,
    /// Snapshots of customers the truth does not have.
    pub extra: u64,
    /// Snapshots whose revision differs from the customer's latest event revision.
    pub revision_mismatch: u64,
    /// Up to 20 examples of problems.
    pub examples: Vec<String>,
}

impl StateAudit {
    /// True when every customer's snapshot equals the truth and its latest event.
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.stale == 0 && self.extra == 0 && self.revision_mismatch == 0
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(s);
        }
    }
}

/// Compares the latest snapshots with `truth`, and their revisions with the latest revision
/// of each customer's events ([`EventsAudit::latest_revisions`]).
pub fn audit_state(
    truth: &Truth,
    state: &BTreeMap<String, StateEntry>,
    latest_revisions: &HashMap<String, i64>,
) -> StateAudit {
    let mut a = StateAudit {
        truth_customers: truth.len(),
        snapshots: state.len(),
        ..StateAudit::default()
    };
    for (ext, fp) in truth.iter() {
        match state.get(ext) {
            None => {
                a.missing += 1;
                a.note(format!("{ext}: no snapshot"));
            }
            Some(s) if s.relations != fp => {
                a.stale += 1;
                a.note(format!(
                    "{ext}: snapshot (rev {}) differs from the truth",
                    s.revision
                ));
            }
            Some(_) => {}
        }
    }
    for (ext, s) in state {
        if !truth.contains(ext) {
            a.extra += 1;
            a.note(format!("{ext}: snapshot of a customer not in the truth"));
        }
        let ev = latest_revisions.get(ext.as_str()).copied();
        if ev != i64::try_from(s.revision).ok() {
            a.revision_mismatch += 1;
            a.note(format!(
                "{ext}: snapshot revision {} but latest event revision {ev:?}",
                s.revision
            ));
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::verify::relations_json;
    use crate::customer::Relation;
    use serde_json::json;

    fn rel(qw: &str, nickname: &str) -> Relation {
        Relation {
            qw_user_id: qw.into(),
            mobiles: vec![],
            nickname: Some(nickname.into()),
            avatar: None,
            fields: vec![],
        }
    }

    fn event(ext: &str, id: &str, rev: i64, before: &[&Relation], after: &[&Relation]) -> Value {
        let json = |rels: &[&Relation]| {
            relations_json(&rels.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
        };
        json!({
            "external_user_id": ext,
            "event_id": id,
            "revision": rev,
            "event_type": if rev == 1 { "CREATED" } else { "UPDATED" },
            "before": if rev == 1 { Value::Null } else { json!({"relations": json(before)}) },
            "after": {"relations": json(after)},
        })
    }

    #[test]
    fn revision_runs_count_repeats_and_gaps() {
        let mut runs = Runs::default();
        for rev in [3, 1, 2, 7, 5, 6] {
            assert!(runs.insert(rev), "{rev}");
        }
        assert_eq!(runs.0, vec![(1, 3), (5, 7)]);
        assert!(!runs.insert(2) && !runs.insert(7) && !runs.insert(5));
        assert!(runs.insert(4));
        assert_eq!(runs.0, vec![(1, 7)]);
        assert!(runs.insert(-1));
        assert_eq!(runs.0, vec![(-1, -1), (1, 7)]);
    }

    #[test]
    fn a_clean_stream_is_clean() {
        let (a1, a2, b1) = (rel("qa", "1"), rel("qa", "2"), rel("qb", "1"));
        let truth = Truth::from_relations([("c1", &a2), ("c1", &b1), ("c2", &a1)]);
        let events = [
            event("c1", "e1", 1, &[], &[&a1]),
            event("c2", "e2", 1, &[], &[&a1]),
            event("c1", "e3", 2, &[&a1], &[&a2, &b1]),
        ];
        let all = audit_all(&truth, &events);
        assert!(all.audit.clean(), "{:?}", all.audit);
        assert_eq!(
            (all.audit.events, all.audit.created, all.audit.updated),
            (3, 2, 1)
        );
        assert_eq!(all.latest_revisions.get("c1"), Some(&2));
    }

    #[test]
    fn every_kind_of_problem_is_counted() {
        let (a1, a2) = (rel("qa", "1"), rel("qa", "2"));
        let truth = Truth::from_relations([("c1", &a2), ("c2", &a1), ("c3", &a1)]);
        let events = [
            event("c1", "e1", 1, &[], &[&a1]),
            event("c1", "e1", 1, &[], &[&a1]), // same id and revision: 2 duplicated
            event("c1", "e4", 3, &[&a1], &[&a1]), // no change + gap 1 → 3
            event("c2", "e5", 2, &[&a2], &[&a1]), // no revision 1
            event("c9", "e6", 1, &[], &[&a1]), // not in the truth
        ];
        let a = audit(&truth, &events);
        assert_eq!(a.duplicated, 2, "{a:?}");
        // UPDATED without a change, the gap, c9 not in the truth.
        assert_eq!(a.spurious, 3, "{a:?}");
        // c1's latest (rev 3) differs from the truth; c2 lacks revision 1; c3 has no event.
        assert_eq!(a.lost, 3, "{a:?}");
        assert!(!a.clean());
        assert!(!a.examples.is_empty() && a.examples.len() <= MAX_EXAMPLES);
    }

    #[test]
    fn state_audit_compares_snapshots_with_truth_and_events() {
        let (a1, a2) = (rel("qa", "1"), rel("qa", "2"));
        let truth = Truth::from_relations([("c1", &a2), ("c2", &a1), ("c3", &a1)]);
        let fp = |r: &Relation| relations_fp(&relations_json(std::slice::from_ref(r)));
        let state = BTreeMap::from([
            (
                "c1".to_string(),
                StateEntry {
                    revision: 2,
                    relations: fp(&a2),
                },
            ),
            (
                "c2".to_string(),
                StateEntry {
                    revision: 1,
                    relations: fp(&a2),
                },
            ),
            (
                "c9".to_string(),
                StateEntry {
                    revision: 1,
                    relations: fp(&a1),
                },
            ),
        ]);
        let latest = HashMap::from([("c1".to_string(), 2), ("c2".to_string(), 1)]);
        let a = audit_state(&truth, &state, &latest);
        assert_eq!(
            (a.missing, a.stale, a.extra, a.revision_mismatch),
            (1, 1, 1, 1),
            "{a:?}"
        );
        assert_eq!(a.snapshots, 3);
        assert!(!a.clean());
    }
}
