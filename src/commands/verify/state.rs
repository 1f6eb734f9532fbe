//! The state-topic audit: the latest snapshot of every customer against the truth and against
//! the customer's events. An alive customer has a snapshot equal to the truth at its latest
//! event's revision; a customer gone from the truth has none (its key was tombstoned).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::audit::MAX_EXAMPLES;
use super::truth::{Fp, Truth};

/// One customer's latest committed snapshot in the state topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateEntry {
    /// The snapshot's revision.
    pub revision: u64,
    /// The fingerprint of its `relations` ([`super::relations_fp`] of [`super::relations_json`]).
    pub relations: Fp,
}

/// Figures of a state-topic audit.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct StateAudit {
    /// Customers in the truth.
    pub truth_customers: usize,
    /// Customers with a snapshot in the state topic.
    pub snapshots: usize,
    /// Customers with events, gone from the truth and without a snapshot (tombstoned).
    pub tombstoned: u64,
    /// Customers of the truth without a snapshot.
    pub missing: u64,
    /// Customers whose latest snapshot differs from the truth.
    pub stale: u64,
    /// Snapshots of customers gone from the truth (they had events): not tombstoned.
    pub not_deleted: u64,
    /// Snapshots of customers with no event that the truth does not have.
    pub extra: u64,
    /// Snapshots of customers of the truth whose revision differs from the customer's latest
    /// event revision.
    pub revision_mismatch: u64,
    /// Up to 20 examples of problems.
    pub examples: Vec<String>,
}

impl StateAudit {
    /// True when every alive customer's snapshot equals the truth and its latest event, and no
    /// other customer has one.
    pub fn clean(&self) -> bool {
        self.missing == 0
            && self.stale == 0
            && self.not_deleted == 0
            && self.extra == 0
            && self.revision_mismatch == 0
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(s);
        }
    }
}

/// Compares the latest snapshots with `truth`, and their revisions with the latest revision
/// of each customer's events ([`super::EventsAudit::latest_revisions`]). Each snapshot counts in
/// at most one figure.
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
        let ev = latest_revisions.get(ext).copied();
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
            Some(s) if ev != i64::try_from(s.revision).ok() => {
                a.revision_mismatch += 1;
                a.note(format!(
                    "{ext}: snapshot revision {} but latest event revision {ev:?}",
                    s.revision
                ));
            }
            Some(_) => {}
        }
    }
    for (ext, s) in state.iter().filter(|(ext, _)| !truth.contains(ext)) {
        if latest_revisions.contains_key(ext.as_str()) {
            a.not_deleted += 1;
            a.note(format!(
                "{ext}: gone from the truth, snapshot (rev {}) not tombstoned",
                s.revision
            ));
        } else {
            a.extra += 1;
            a.note(format!(
                "{ext}: snapshot of a customer with no event, not in the truth"
            ));
        }
    }
    a.tombstoned = latest_revisions
        .keys()
        .filter(|ext| !truth.contains(ext) && !state.contains_key(ext.as_str()))
        .count() as u64;
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::verify::{relations_fp, relations_json};
    use crate::customer::Relation;

    fn rel(qw: &str, nickname: &str) -> Relation {
        Relation {
            qw_user_id: qw.into(),
            mobiles: vec![],
            nickname: Some(nickname.into()),
            avatar: None,
            fields: vec![],
        }
    }

    fn entry(revision: u64, r: &Relation) -> StateEntry {
        StateEntry {
            revision,
            relations: relations_fp(&relations_json(std::slice::from_ref(r))),
        }
    }

    fn latest(revs: &[(&str, i64)]) -> HashMap<String, i64> {
        revs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_state_equal_to_the_truth_with_tombstones_is_clean() {
        let a1 = rel("qa", "1");
        let truth = Truth::from_relations([("c1", &a1)]);
        let state = BTreeMap::from([("c1".to_string(), entry(2, &a1))]);
        // c2 was deleted (its latest event is DELETED rev 3) and tombstoned.
        let a = audit_state(&truth, &state, &latest(&[("c1", 2), ("c2", 3)]));
        assert!(a.clean(), "{a:?}");
        assert_eq!((a.snapshots, a.tombstoned), (1, 1));
    }

    #[test]
    fn state_audit_counts_every_kind_of_problem_once() {
        let (a1, a2) = (rel("qa", "1"), rel("qa", "2"));
        let truth = Truth::from_relations([("c1", &a2), ("c2", &a1), ("c3", &a1), ("c4", &a1)]);
        let state = BTreeMap::from([
            ("c1".to_string(), entry(2, &a2)), // equal
            ("c2".to_string(), entry(1, &a2)), // stale
            ("c4".to_string(), entry(1, &a1)), // events say rev 2
            ("c8".to_string(), entry(2, &a1)), // gone, had events: not tombstoned
            ("c9".to_string(), entry(1, &a1)), // no event, not in the truth
        ]);
        let revs = latest(&[("c1", 2), ("c2", 1), ("c4", 2), ("c8", 3), ("c7", 2)]);
        let a = audit_state(&truth, &state, &revs);
        assert_eq!(
            (
                a.missing,
                a.stale,
                a.revision_mismatch,
                a.not_deleted,
                a.extra
            ),
            (1, 1, 1, 1, 1),
            "{a:?}"
        );
        assert_eq!((a.snapshots, a.tombstoned), (5, 1));
        assert!(!a.clean());
    }

    #[test]
    fn an_untombstoned_customer_alone_fails_the_state_audit() {
        let a1 = rel("qa", "1");
        let truth = Truth::from_relations([("c1", &a1)]);
        let state = BTreeMap::from([
            ("c1".to_string(), entry(1, &a1)),
            ("c2".to_string(), entry(1, &a1)),
        ]);
        let a = audit_state(&truth, &state, &latest(&[("c1", 1), ("c2", 2)]));
        assert_eq!((a.not_deleted, a.extra, a.tombstoned), (1, 0, 0), "{a:?}");
        assert!(!a.clean());
    }
}
