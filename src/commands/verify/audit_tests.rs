//! Tests of the events audit over synthetic decoded events.

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

fn rels(rels: &[&Relation]) -> Value {
    relations_json(&rels.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
}

/// A decoded event; `before: None` is a null before-image.
fn ev(ext: &str, rev: i64, kind: &str, before: Option<&[&Relation]>, after: &[&Relation]) -> Value {
    json!({
        "external_user_id": ext,
        "event_id": format!("{ext}/{rev}/{kind}"),
        "revision": rev,
        "event_type": kind,
        "before": before.map_or(Value::Null, |b| json!({"relations": rels(b)})),
        "after": {"relations": rels(after)},
    })
}

/// CREATED at rev 1, UPDATED after.
fn event(ext: &str, id: &str, rev: i64, before: &[&Relation], after: &[&Relation]) -> Value {
    let mut e = if rev == 1 {
        ev(ext, rev, "CREATED", None, after)
    } else {
        ev(ext, rev, "UPDATED", Some(before), after)
    };
    e["event_id"] = json!(id);
    e
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
        event("c9", "e6", 1, &[], &[&a1]), // not in the truth, not DELETED
    ];
    let a = audit(&truth, &events);
    assert_eq!(a.duplicated, 2, "{a:?}");
    // UPDATED without a change, the gap.
    assert_eq!(a.spurious, 2, "{a:?}");
    // c1's latest (rev 3) differs from the truth; c2 lacks revision 1; c3 has no event.
    assert_eq!(a.lost, 3, "{a:?}");
    assert_eq!((a.not_deleted, a.wrongly_deleted), (1, 0), "{a:?}");
    assert!(!a.clean());
    assert!(!a.examples.is_empty() && a.examples.len() <= MAX_EXAMPLES);
}

/// c1: created, gains b, loses b (an ordinary UPDATED), loses its last relation (DELETED), comes
/// back (CREATED, revision continuing). c2: created and deleted. The truth holds c1 only.
fn deletions_and_a_return() -> (Truth, Vec<Value>) {
    let (a1, a2, b1) = (rel("qa", "1"), rel("qa", "2"), rel("qb", "1"));
    let truth = Truth::from_relations([("c1", &a2)]);
    let events = vec![
        ev("c1", 1, "CREATED", None, &[&a1]),
        ev("c2", 1, "CREATED", None, &[&b1]),
        ev("c1", 2, "UPDATED", Some(&[&a1]), &[&a1, &b1]),
        ev("c1", 3, "UPDATED", Some(&[&a1, &b1]), &[&a1]),
        ev("c2", 2, "DELETED", Some(&[&b1]), &[]),
        ev("c1", 4, "DELETED", Some(&[&a1]), &[]),
        ev("c1", 5, "CREATED", None, &[&a2]),
    ];
    (truth, events)
}

#[test]
fn deletions_and_a_returning_customer_are_clean() {
    let (truth, events) = deletions_and_a_return();
    let all = audit_all(&truth, &events);
    let a = &all.audit;
    assert!(a.clean(), "{a:?}");
    assert_eq!((a.created, a.updated, a.deleted), (3, 2, 2), "{a:?}");
    assert_eq!(a.deleted_customers, 1, "{a:?}");
    assert_eq!(all.latest_revisions.get("c1"), Some(&5));
    assert_eq!(all.latest_revisions.get("c2"), Some(&2));
}

#[test]
fn a_gone_customer_whose_latest_event_is_not_deleted_is_counted() {
    let (truth, mut events) = deletions_and_a_return();
    // c2 never deleted: its latest event is its CREATED.
    events.retain(|e| !(e["external_user_id"] == "c2" && e["event_type"] == "DELETED"));
    let a = audit(&truth, &events);
    assert_eq!((a.not_deleted, a.deleted_customers), (1, 0), "{a:?}");
    assert_eq!(
        (a.lost, a.duplicated, a.spurious, a.wrongly_deleted),
        (0, 0, 0, 0)
    );
    assert!(!a.clean());
    // The same for a customer deleted, back, and gone again without a second DELETED.
    let (_, events) = deletions_and_a_return();
    let a = audit(&Truth::from_relations([]), &events);
    assert_eq!((a.not_deleted, a.deleted_customers), (1, 1), "{a:?}");
    assert!(!a.clean());
}

#[test]
fn an_alive_customer_whose_latest_event_is_deleted_is_wrongly_deleted() {
    let (a1, b1) = (rel("qa", "1"), rel("qb", "1"));
    let truth = Truth::from_relations([("c1", &a1), ("c2", &b1)]);
    let events = [
        ev("c1", 1, "CREATED", None, &[&a1]),
        ev("c2", 1, "CREATED", None, &[&b1]),
        ev("c2", 2, "DELETED", Some(&[&b1]), &[]),
    ];
    let a = audit(&truth, &events);
    assert_eq!(a.wrongly_deleted, 1, "{a:?}");
    assert_eq!(
        (a.lost, a.duplicated, a.spurious, a.not_deleted),
        (0, 0, 0, 0)
    );
    assert!(!a.clean());
}

/// Each stream, audited alone against an empty truth, breaks exactly one rule.
fn assert_each_breaks(cases: Vec<(&str, Vec<Value>)>, figure: fn(&Audit) -> (u64, u64)) {
    for (what, events) in cases {
        let a = audit(&Truth::from_relations([]), &events);
        assert_eq!(figure(&a), (1, 0), "{what}: {a:?}");
        assert!(!a.clean(), "{what}");
    }
}

#[test]
fn a_malformed_deleted_event_is_spurious() {
    let (a1, b1) = (rel("qa", "1"), rel("qb", "1"));
    let created = || ev("c1", 1, "CREATED", None, &[&a1]);
    let deleted = |rev, before: &[&Relation]| ev("c1", rev, "DELETED", Some(before), &[]);
    let cases = vec![
        (
            "after-image with relations",
            vec![created(), ev("c1", 2, "DELETED", Some(&[&a1]), &[&a1])],
        ),
        (
            "no earlier event",
            vec![ev("c1", 1, "DELETED", Some(&[&a1]), &[])],
        ),
        (
            "before-image not the last after-image",
            vec![created(), deleted(2, &[&b1])],
        ),
        (
            "before-image null",
            vec![created(), ev("c1", 2, "DELETED", None, &[])],
        ),
        (
            "after DELETED",
            vec![created(), deleted(2, &[&a1]), deleted(3, &[])],
        ),
    ];
    // (spurious, everything else that is not clean)
    assert_each_breaks(cases, |a| {
        (
            a.spurious,
            a.lost + a.duplicated + a.not_deleted + a.wrongly_deleted,
        )
    });
    // A DELETED that skips a revision: spurious for itself and for the gap.
    let a = audit(&Truth::from_relations([]), &[created(), deleted(3, &[&a1])]);
    assert_eq!((a.spurious, a.lost, a.duplicated), (2, 0, 0), "{a:?}");
}

#[test]
fn created_is_legal_only_first_or_right_after_deleted() {
    let (a1, a2) = (rel("qa", "1"), rel("qa", "2"));
    let created = |rev, after: &[&Relation]| ev("c1", rev, "CREATED", None, after);
    let gone = || ev("c1", 2, "DELETED", Some(&[&a1]), &[]);
    // A second CREATED without a DELETED in between, at a new revision, then DELETED.
    let dup = vec![
        created(1, &[&a1]),
        created(2, &[&a2]),
        ev("c1", 3, "DELETED", Some(&[&a2]), &[]),
    ];
    assert_each_breaks(vec![("second CREATED", dup)], |a| {
        (
            a.duplicated,
            a.lost + a.spurious + a.not_deleted + a.wrongly_deleted,
        )
    });
    let cases = vec![(
        "UPDATED after DELETED",
        vec![
            created(1, &[&a1]),
            gone(),
            ev("c1", 3, "UPDATED", Some(&[]), &[&a2]),
            ev("c1", 4, "DELETED", Some(&[&a2]), &[]),
        ],
    )];
    assert_each_breaks(cases, |a| {
        (
            a.spurious,
            a.lost + a.duplicated + a.not_deleted + a.wrongly_deleted,
        )
    });
    // A return that skips revisions: spurious for itself and for the gap.
    let truth = Truth::from_relations([("c1", &a2)]);
    let a = audit(&truth, &[created(1, &[&a1]), gone(), created(4, &[&a2])]);
    assert_eq!(
        (a.spurious, a.duplicated, a.lost, a.wrongly_deleted),
        (2, 0, 0, 0),
        "{a:?}"
    );
    // The same return at the next revision is clean.
    let a = audit(&truth, &[created(1, &[&a1]), gone(), created(3, &[&a2])]);
    assert!(a.clean(), "{a:?}");
}
