//! The diff: CREATED / UPDATED / nothing, changed paths, order independence.

mod encode_support;

use encode_support::{any_relations, field, relation, t};
use proptest::prelude::*;
use tanma_connector::customer::{
    customer_fingerprint, diff, event_id, Change, PathChange, Relation, Snapshot,
};

fn created(ext: &str, rels: Vec<Relation>) -> Snapshot {
    match diff(None, ext, rels, t(1)) {
        Some(Change::Created { after }) => after,
        other => panic!("expected CREATED, got {other:?}"),
    }
}

fn updated(prev: &Snapshot, rels: Vec<Relation>) -> (Snapshot, Vec<PathChange>) {
    match diff(Some(prev), &prev.customer.external_user_id, rels, t(2)) {
        Some(Change::Updated {
            before,
            after,
            changes,
        }) => {
            assert_eq!(&before, prev);
            (after, changes)
        }
        other => panic!("expected UPDATED, got {other:?}"),
    }
}

fn paths(changes: &[PathChange]) -> Vec<&str> {
    changes.iter().map(|c| c.path.as_str()).collect()
}

#[test]
fn first_sight_is_created_with_revision_one() {
    let s = created("wm1", vec![relation("b"), relation("a")]);
    assert_eq!(s.revision, 1);
    assert_eq!(s.updated_at, t(1));
    assert_eq!(s.customer.relations[0].qw_user_id, "a");
    assert_eq!(s.fingerprint, customer_fingerprint(&s.customer));
    assert!(diff(None, "wm1", vec![], t(1)).is_none());
}

#[test]
fn same_input_twice_is_no_change() {
    let s = created("wm1", vec![relation("a"), relation("b")]);
    assert!(diff(Some(&s), "wm1", vec![relation("b"), relation("a")], t(2)).is_none());
    // A window that returns only some relations changes nothing either.
    assert!(diff(Some(&s), "wm1", vec![relation("a")], t(2)).is_none());
    assert!(diff(Some(&s), "wm1", vec![], t(2)).is_none());
}

#[test]
fn new_follower_is_one_path_with_the_relation_as_json() {
    let s = created("wm1", vec![relation("a")]);
    let (after, changes) = updated(&s, vec![relation("c")]);
    assert_eq!(after.revision, 2);
    assert_eq!(after.customer.relations.len(), 2, "relation a is kept");
    assert_eq!(paths(&changes), vec!["relations[c]"]);
    assert_eq!(changes[0].old_value, None);
    let v: serde_json::Value =
        serde_json::from_str(changes[0].new_value.as_deref().unwrap()).unwrap();
    assert_eq!(v["qw_user_id"], "c");
    assert_eq!(v["wechat_nickname"], "张三 🐼");
    assert_eq!(v["wechat_avatar"], serde_json::Value::Null);
    assert_eq!(v["fields"][3]["id"], 681);
    assert_ne!(after.fingerprint, s.fingerprint);
}

#[test]
fn attribute_and_field_paths_in_deterministic_order() {
    let s = created("wm1", vec![relation("a"), relation("b")]);
    let mut a = relation("a");
    a.mobiles = vec!["1".into()];
    a.avatar = Some(String::new());
    a.fields[0].value = Some("x".into());
    a.fields[1].stable = false;
    a.fields.remove(2); // 680 removed
    a.fields.push(field(900, "新", None, false));
    let mut b = relation("b");
    b.nickname = None;
    // Rows in reverse order: paths still follow qw_user_id order.
    let (after, changes) = updated(&s, vec![b, a]);
    assert_eq!(
        paths(&changes),
        vec![
            "relations[a].mobiles",
            "relations[a].wechat_avatar",
            "relations[a].fields[1].value",
            "relations[a].fields[2].stable",
            "relations[a].fields[680]",
            "relations[a].fields[900]",
            "relations[b].wechat_nickname",
        ]
    );
    let c = |p: &str| changes.iter().find(|c| c.path == p).unwrap();
    assert_eq!(
        c("relations[a].mobiles").old_value.as_deref(),
        Some(r#"["13800000000","13900000000"]"#)
    );
    assert_eq!(
        c("relations[a].mobiles").new_value.as_deref(),
        Some(r#"["1"]"#)
    );
    assert_eq!(
        c("relations[a].wechat_avatar").old_value.as_deref(),
        Some("null")
    );
    assert_eq!(
        c("relations[a].wechat_avatar").new_value.as_deref(),
        Some(r#""""#)
    );
    assert_eq!(
        c("relations[a].fields[2].stable").new_value.as_deref(),
        Some("false")
    );
    assert_eq!(c("relations[a].fields[680]").new_value, None);
    assert!(c("relations[a].fields[680]")
        .old_value
        .as_deref()
        .unwrap()
        .contains("职位"));
    assert_eq!(c("relations[a].fields[900]").old_value, None);
    assert_eq!(
        c("relations[b].wechat_nickname").new_value.as_deref(),
        Some("null")
    );
    assert_eq!(after.revision, 2);
}

#[test]
fn duplicate_rows_resolve_independently_of_order() {
    let s = created("wm1", vec![relation("a")]);
    let mut a2 = relation("a");
    a2.nickname = Some("other".into());
    let x = diff(Some(&s), "wm1", vec![relation("a"), a2.clone()], t(2));
    let y = diff(Some(&s), "wm1", vec![a2, relation("a")], t(2));
    assert_eq!(x, y);
}

#[test]
fn duplicate_field_ids_get_occurrence_paths() {
    let mut a = relation("a");
    a.fields = vec![
        field(5, "x", Some("1"), true),
        field(5, "y", Some("2"), true),
    ];
    let s = created("wm1", vec![a.clone()]);
    a.fields[1].value = Some("3".into());
    let (_, changes) = updated(&s, vec![a]);
    assert_eq!(paths(&changes), vec!["relations[a].fields[5#1].value"]);
}

#[test]
fn event_id_is_32_hex_and_deterministic() {
    let id = event_id("wm1", 2, 0xabc);
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(id, event_id("wm1", 2, 0xabc));
    assert_ne!(id, event_id("wm1", 3, 0xabc));
    assert_ne!(id, event_id("wm2", 2, 0xabc));
    assert_ne!(id, event_id("wm1", 2, 0xabd));
    let s = created("wm1", vec![relation("a")]);
    let c = Change::Created { after: s.clone() };
    assert_eq!(c.event_id(), event_id("wm1", 1, s.fingerprint));
    assert_eq!(c.event_type(), "CREATED");
}

#[test]
fn now_is_truncated_to_millis() {
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
    let s = diff(None, "wm1", vec![relation("a")], now).unwrap();
    assert_eq!(s.after().updated_at.timestamp_subsec_nanos(), 123_000_000);
}

/// One mutation of one attribute of one relation; returns the expected path.
fn mutate(r: &mut Relation, which: u8) -> String {
    let base = format!("relations[{}]", r.qw_user_id);
    match which % 7 {
        0 => {
            r.mobiles.push("x-new".into());
            format!("{base}.mobiles")
        }
        1 => {
            r.nickname = Some(format!("{}!", r.nickname.clone().unwrap_or_default()));
            format!("{base}.wechat_nickname")
        }
        2 => {
            r.avatar = match &r.avatar {
                None => Some(String::new()),
                Some(_) => None,
            };
            format!("{base}.wechat_avatar")
        }
        3 => {
            r.fields.push(field(99, "n", None, true));
            format!("{base}.fields[99]")
        }
        k => match r.fields.first_mut() {
            None => {
                r.fields.push(field(98, "n", Some(""), false));
                format!("{base}.fields[98]")
            }
            Some(f) => {
                let p = format!("{base}.fields[{}]", f.id);
                match k {
                    4 => {
                        f.value = match &f.value {
                            None => Some(String::new()),
                            Some(_) => None,
                        };
                        format!("{p}.value")
                    }
                    5 => {
                        f.stable = !f.stable;
                        format!("{p}.stable")
                    }
                    _ => {
                        f.outer_field =
                            Some(format!("{}~", f.outer_field.clone().unwrap_or_default()));
                        format!("{p}.outer_field")
                    }
                }
            }
        },
    }
}

proptest! {
    #[test]
    fn reordering_never_changes(rels in any_relations(), seed in any::<u64>()) {
        let s = created("wm1", rels.clone());
        // Shuffle rows, mobiles and fields deterministically from the seed.
        let mut shuffled = rels;
        let mut k = seed;
        let mut next = || { k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (k >> 33) as usize };
        for r in &mut shuffled {
            let n = r.mobiles.len();
            if n > 1 { r.mobiles.swap(next() % n, next() % n); }
            let m = r.fields.len();
            if m > 1 { r.fields.swap(next() % m, next() % m); }
            r.fields.reverse();
        }
        let n = shuffled.len();
        shuffled.rotate_left(next() % n);
        prop_assert!(diff(Some(&s), "wm1", shuffled.clone(), t(3)).is_none());
        // And first sight of the shuffled rows gives the same snapshot.
        prop_assert_eq!(created("wm1", shuffled), s);
    }

    #[test]
    fn any_single_mutation_is_one_update_with_its_path(
        rels in any_relations(), pick in any::<usize>(), which in any::<u8>()
    ) {
        let s = created("wm1", rels.clone());
        let mut changed = rels;
        let i = pick % changed.len();
        let expected = mutate(&mut changed[i], which);
        let only = vec![changed[i].clone()];
        let (after, changes) = updated(&s, only);
        prop_assert_eq!(paths(&changes), vec![expected.as_str()]);
        prop_assert_eq!(after.revision, 2);
        prop_assert_ne!(after.fingerprint, s.fingerprint);
        prop_assert_eq!(after.fingerprint, customer_fingerprint(&after.customer));
        // Applying the same rows again is no change.
        prop_assert!(diff(Some(&after), "wm1", changed, t(4)).is_none());
    }
}
