//! Fuzzing the diff (proptest): arbitrary relation sets, in any order, with duplicates, against
//! an arbitrary previous snapshot. Invariants: the after-image is canonical and its fingerprint
//! is the customer's; the result does not depend on row order; applying the same rows again is
//! no change; relations are never deleted; revisions count changes; an UPDATED names at least
//! one path.
//!
//! Longer run: `PROPTEST_CASES=20000 cargo test --test fuzz_diff` (see docs/OPERATIONS.md).

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use tanma_connector::customer::canonical::{
    canonicalize_relation, customer_fingerprint, relation_fingerprint,
};
use tanma_connector::customer::diff::{diff, Change, Snapshot};
use tanma_connector::customer::{FieldValue, Relation};

fn small() -> impl Strategy<Value = Option<String>> {
    // A tiny alphabet so that collisions (same staff, same field id, equal values) are common.
    proptest::option::of("[ab]{0,2}")
}

fn field() -> impl Strategy<Value = FieldValue> {
    (0i64..4, small(), small(), small(), any::<bool>()).prop_map(
        |(id, name, outer_field, value, stable)| FieldValue {
            id,
            name,
            outer_field,
            value,
            stable,
        },
    )
}

fn relation() -> impl Strategy<Value = Relation> {
    (
        "[uvw]",
        proptest::collection::vec("[0-9]{1,2}", 0..3),
        small(),
        small(),
        proptest::collection::vec(field(), 0..4),
    )
        .prop_map(|(qw_user_id, mobiles, nickname, avatar, fields)| Relation {
            qw_user_id,
            mobiles,
            nickname,
            avatar,
            fields,
        })
}

fn relations() -> impl Strategy<Value = Vec<Relation>> {
    proptest::collection::vec(relation(), 0..6)
}

fn assert_canonical(s: &Snapshot) -> Result<(), TestCaseError> {
    let rels = &s.customer.relations;
    for w in rels.windows(2) {
        prop_assert!(
            w[0].qw_user_id < w[1].qw_user_id,
            "relations not sorted/unique"
        );
    }
    for r in rels {
        let mut c = r.clone();
        canonicalize_relation(&mut c);
        prop_assert_eq!(&c, r, "relation not canonical");
    }
    prop_assert_eq!(s.fingerprint, customer_fingerprint(&s.customer));
    Ok(())
}

const EXT: &str = "wmFuzzCustomer";

fn t(sec: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + sec, 123_456_789)
        .single()
        .expect("time")
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn diff_invariants(first in relations(), second in relations(), seed in any::<u64>()) {
        // First sight.
        let created = diff(None, EXT, first.clone(), t(0));
        let prev = match created {
            None => {
                prop_assert!(first.is_empty(), "non-empty first sight produced no change");
                None
            }
            Some(Change::Created { after }) => {
                prop_assert_eq!(after.revision, 1);
                assert_canonical(&after)?;
                let qws: std::collections::BTreeSet<_> = first.iter().map(|r| &r.qw_user_id).collect();
                prop_assert_eq!(after.customer.relations.len(), qws.len());
                prop_assert_eq!(after.updated_at.timestamp_subsec_nanos() % 1_000_000, 0);
                // Same rows again: nothing.
                prop_assert!(diff(Some(&after), EXT, first.clone(), t(1)).is_none());
                Some(after)
            }
            Some(other) => return Err(TestCaseError::fail(format!("first sight was {other:?}"))),
        };

        // Order independence: a permutation of the rows (and of their mobiles and fields).
        let mut shuffled = second.clone();
        let n = shuffled.len();
        if n > 1 {
            shuffled.rotate_left((seed as usize) % n);
        }
        for r in &mut shuffled {
            r.fields.reverse();
            r.mobiles.reverse();
        }
        let a = diff(prev.as_ref(), EXT, second.clone(), t(2));
        let b = diff(prev.as_ref(), EXT, shuffled, t(2));
        prop_assert_eq!(a.as_ref().map(|c| c.after().clone()), b.as_ref().map(|c| c.after().clone()));

        if let Some(change) = a {
            let after = change.after();
            assert_canonical(after)?;
            // Idempotent.
            prop_assert!(diff(Some(after), EXT, second.clone(), t(3)).is_none(), "re-applying changed again");
            match (&change, &prev) {
                (Change::Updated { before, changes, .. }, Some(p)) => {
                    prop_assert_eq!(before, p);
                    prop_assert_eq!(after.revision, p.revision + 1);
                    prop_assert!(!changes.is_empty());
                    prop_assert_ne!(after.fingerprint, p.fingerprint);
                    // Never deletes.
                    for r in &p.customer.relations {
                        prop_assert!(after.customer.relations.iter().any(|x| x.qw_user_id == r.qw_user_id));
                    }
                }
                (Change::Created { .. }, None) => prop_assert_eq!(after.revision, 1),
                (c, p) => return Err(TestCaseError::fail(format!("{c:?} after {p:?}"))),
            }
            // Every incoming relation is present, with the content of one of its copies.
            for r in &second {
                let mut c = r.clone();
                canonicalize_relation(&mut c);
                let got = after.customer.relations.iter().find(|x| x.qw_user_id == r.qw_user_id);
                prop_assert!(got.is_some());
                let copies: Vec<u64> = second.iter().filter(|x| x.qw_user_id == r.qw_user_id).map(|x| {
                    let mut y = x.clone();
                    canonicalize_relation(&mut y);
                    relation_fingerprint(&y)
                }).collect();
                // The copy with the largest fingerprint wins (row order cannot matter).
                prop_assert_eq!(copies.iter().max().copied(), Some(relation_fingerprint(got.expect("present"))));
            }
        } else if let Some(p) = &prev {
            // No change: the winning copy of every incoming relation equals the stored one.
            for r in &second {
                let best = second.iter().filter(|x| x.qw_user_id == r.qw_user_id).map(|x| {
                    let mut y = x.clone();
                    canonicalize_relation(&mut y);
                    relation_fingerprint(&y)
                }).max();
                let stored = p.customer.relations.iter().find(|x| x.qw_user_id == r.qw_user_id);
                prop_assert_eq!(stored.map(relation_fingerprint), best);
            }
        } else {
            prop_assert!(second.is_empty());
        }
    }
}
