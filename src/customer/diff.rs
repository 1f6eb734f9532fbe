//! The diff: previous snapshot + the relations one window returned → nothing, CREATED or UPDATED;
//! previous snapshot + relations known to have ended → UPDATED or DELETED ([`remove_relations`]).
//!
//! Pure and deterministic. A window only returns the relations whose add time falls inside it,
//! so relations it did not return are kept untouched by [`diff`]: whether a missing relation has
//! ended is decided elsewhere (`pipeline::deletions`), from complete reads only.
//!
//! Changed paths, in this order per relation (relations in `qw_user_id` order):
//! `relations[<qw>]` (a new follower; old value absent), `relations[<qw>].mobiles`,
//! `relations[<qw>].wechat_nickname`, `relations[<qw>].wechat_avatar`, then per field in
//! `id` order `relations[<qw>].fields[<id>]` (field added or removed: the whole field as JSON,
//! the other side absent) or `relations[<qw>].fields[<id>].value|name|outer_field|stable`.
//! Should one relation carry the same field id more than once, the later occurrences are
//! addressed as `fields[<id>#<n>]` (n = 1, 2, … in canonical order).
//!
//! Values are JSON text. `None` means the path did not exist on that side; a present attribute
//! whose value is null is `Some("null")`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::canonical::{canonicalize_relation, customer_fingerprint_of, relation_fingerprint};
use super::model::{Customer, FieldValue, Relation};

/// A customer as the connector last knew it: the value of the state topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The customer, canonical.
    pub customer: Customer,
    /// 1 when first seen, +1 per change.
    pub revision: u64,
    /// [`customer_fingerprint`] of `customer`.
    pub fingerprint: u64,
    /// When this revision was observed (whole milliseconds, as stored in Avro).
    pub updated_at: DateTime<Utc>,
}

/// One changed path, with its old and new value as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChange {
    /// E.g. `relations[u1].fields[680].value`.
    pub path: String,
    /// Old value as JSON; `None` if the path did not exist before.
    pub old_value: Option<String>,
    /// New value as JSON; `None` if the path no longer exists.
    pub new_value: Option<String>,
}

/// A change to one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// First sight of the customer (revision 1).
    Created {
        /// The customer as first seen.
        after: Snapshot,
    },
    /// A change to a known customer (revision + 1).
    Updated {
        /// The previous snapshot.
        before: Snapshot,
        /// The new snapshot.
        after: Snapshot,
        /// The changed paths, in deterministic order; never empty.
        changes: Vec<PathChange>,
    },
    /// The customer's last relation ended (revision + 1). The after image is the customer with
    /// no relation (not null: readers of the first schema version require one).
    Deleted {
        /// The previous snapshot.
        before: Snapshot,
        /// The customer without relations.
        after: Snapshot,
        /// `relations[<qw>]` per ended relation (old value the relation, new value absent).
        changes: Vec<PathChange>,
    },
}

impl Change {
    /// The snapshot after the change (what goes to the state topic).
    pub fn after(&self) -> &Snapshot {
        match self {
            Change::Created { after }
            | Change::Updated { after, .. }
            | Change::Deleted { after, .. } => after,
        }
    }

    /// `"CREATED"`, `"UPDATED"` or `"DELETED"` (the Avro enum symbol).
    pub fn event_type(&self) -> &'static str {
        match self {
            Change::Created { .. } => "CREATED",
            Change::Updated { .. } => "UPDATED",
            Change::Deleted { .. } => "DELETED",
        }
    }

    /// The deterministic event id of this change.
    pub fn event_id(&self) -> String {
        let a = self.after();
        event_id(&a.customer.external_user_id, a.revision, a.fingerprint)
    }
}

/// Merges the relations one window returned into the previous snapshot (relations not returned
/// are kept untouched: a missing relation is never a deletion). None if nothing changed.
///
/// `relations` may come in any order with mobiles and fields in any order. If the window
/// returned the same `qw_user_id` twice with different content (the data moved under the read),
/// the copy with the larger fingerprint wins, so the result never depends on row order.
/// `prev` must belong to `external_user_id`. First sight with no relation at all is no change.
/// `now` is truncated to whole milliseconds.
pub fn diff(
    prev: Option<&Snapshot>,
    external_user_id: &str,
    relations: Vec<Relation>,
    now: DateTime<Utc>,
) -> Option<Change> {
    let keyed = relations
        .into_iter()
        .map(|mut r| {
            canonicalize_relation(&mut r);
            (relation_fingerprint(&r), r)
        })
        .collect();
    diff_fingerprinted(prev.cloned(), external_user_id, keyed, now).map(|(change, _)| change)
}

/// [`diff`] for relations already in canonical form, each with its [`relation_fingerprint`]
/// (so the caller's fingerprints are not computed again). Also returns the fingerprints of the
/// relations of the snapshot after the change, in order. Takes the previous snapshot by value:
/// it becomes the event's `before` without another copy.
pub fn diff_fingerprinted(
    prev: Option<Snapshot>,
    external_user_id: &str,
    mut keyed: Vec<(u64, Relation)>,
    now: DateTime<Utc>,
) -> Option<(Change, Vec<u64>)> {
    let now = truncate_millis(now);
    keyed.sort_unstable_by(|(fa, a), (fb, b)| a.qw_user_id.cmp(&b.qw_user_id).then(fa.cmp(fb)));
    // Keep the last (largest fingerprint) copy of each qw_user_id.
    keyed.dedup_by(|later, earlier| {
        if later.1.qw_user_id == earlier.1.qw_user_id {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });

    match prev {
        None => {
            if keyed.is_empty() {
                return None;
            }
            let (fps, relations): (Vec<u64>, Vec<Relation>) = keyed.into_iter().unzip();
            let fingerprint = customer_fingerprint_of(external_user_id, &fps);
            let customer = Customer {
                external_user_id: external_user_id.to_string(),
                relations,
            };
            Some((
                Change::Created {
                    after: Snapshot {
                        customer,
                        revision: 1,
                        fingerprint,
                        updated_at: now,
                    },
                },
                fps,
            ))
        }
        Some(prev) => {
            let mut changes = Vec::new();
            let mut customer = prev.customer.clone();
            customer.external_user_id = external_user_id.to_string();
            let mut fps: Vec<u64> = customer
                .relations
                .iter()
                .map(relation_fingerprint)
                .collect();
            for (fp, rel) in keyed {
                let at = customer
                    .relations
                    .binary_search_by(|r| r.qw_user_id.cmp(&rel.qw_user_id));
                let old = at.ok().and_then(|i| customer.relations.get(i));
                let before_len = changes.len();
                relation_changes(old, &rel, &mut changes);
                if changes.len() > before_len {
                    match at {
                        Ok(i) => {
                            customer.relations[i] = rel;
                            fps[i] = fp;
                        }
                        Err(i) => {
                            customer.relations.insert(i, rel);
                            fps.insert(i, fp);
                        }
                    }
                }
            }
            if changes.is_empty() {
                return None;
            }
            let fingerprint = customer_fingerprint_of(external_user_id, &fps);
            let revision = prev.revision.saturating_add(1);
            Some((
                Change::Updated {
                    before: prev,
                    after: Snapshot {
                        customer,
                        revision,
                        fingerprint,
                        updated_at: now,
                    },
                    changes,
                },
                fps,
            ))
        }
    }
}

/// Removes the relations `qw_user_ids` (ended) from `prev`: UPDATED with one `relations[<qw>]`
/// path per removed relation (old value the relation, new value absent) while relations remain,
/// DELETED (after image without relations) when none does. `None` when none of them is in
/// `prev`. `now` is truncated to whole milliseconds.
pub fn remove_relations(
    prev: Snapshot,
    qw_user_ids: &[&str],
    now: DateTime<Utc>,
) -> Option<Change> {
    let mut customer = prev.customer.clone();
    let mut changes = Vec::new();
    customer.relations.retain(|r| {
        let ended = qw_user_ids.contains(&r.qw_user_id.as_str());
        if ended {
            changes.push(PathChange {
                path: format!("relations[{}]", r.qw_user_id),
                old_value: relation_text(r),
                new_value: None,
            });
        }
        !ended
    });
    if changes.is_empty() {
        return None;
    }
    let fps: Vec<u64> = customer
        .relations
        .iter()
        .map(relation_fingerprint)
        .collect();
    let after = Snapshot {
        fingerprint: customer_fingerprint_of(&customer.external_user_id, &fps),
        customer,
        revision: prev.revision.saturating_add(1),
        updated_at: truncate_millis(now),
    };
    Some(if after.customer.relations.is_empty() {
        Change::Deleted {
            before: prev,
            after,
            changes,
        }
    } else {
        Change::Updated {
            before: prev,
            after,
            changes,
        }
    })
}

/// Deterministic event id: the first 16 bytes of
/// `sha256(external_user_id ‖ 0x00 ‖ revision (BE) ‖ fingerprint (BE))`, as 32 hex chars.
pub fn event_id(external_user_id: &str, revision: u64, fingerprint: u64) -> String {
    let mut h = Sha256::new();
    h.update(external_user_id.as_bytes());
    h.update([0u8]);
    h.update(revision.to_be_bytes());
    h.update(fingerprint.to_be_bytes());
    let digest = h.finalize();
    hex::encode(digest.get(..16).unwrap_or(&digest[..]))
}

/// A relation as JSON (the same field names as the Avro `Relation` record).
pub fn relation_json(r: &Relation) -> Value {
    json!({
        "qw_user_id": r.qw_user_id,
        "mobiles": r.mobiles,
        "wechat_nickname": r.nickname,
        "wechat_avatar": r.avatar,
        "fields": r.fields.iter().map(field_json).collect::<Vec<_>>(),
    })
}

/// A field as JSON (the same field names as the Avro `Field` record).
pub fn field_json(f: &FieldValue) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "outer_field": f.outer_field,
        "value": f.value,
        "stable": f.stable,
    })
}

/// [`relation_json`] as text, written straight from the relation (keys in the same, sorted,
/// order as a `serde_json::Value` object prints them).
fn relation_text(r: &Relation) -> Option<String> {
    #[derive(Serialize)]
    struct RelationText<'a> {
        fields: Vec<FieldText<'a>>,
        mobiles: &'a [String],
        qw_user_id: &'a str,
        wechat_avatar: &'a Option<String>,
        wechat_nickname: &'a Option<String>,
    }
    serde_json::to_string(&RelationText {
        fields: r.fields.iter().map(FieldText::from).collect(),
        mobiles: &r.mobiles,
        qw_user_id: &r.qw_user_id,
        wechat_avatar: &r.avatar,
        wechat_nickname: &r.nickname,
    })
    .ok()
}

/// [`field_json`] as text; see [`relation_text`].
fn field_text(f: &FieldValue) -> Option<String> {
    serde_json::to_string(&FieldText::from(f)).ok()
}

#[derive(Serialize)]
struct FieldText<'a> {
    id: i64,
    name: &'a Option<String>,
    outer_field: &'a Option<String>,
    stable: bool,
    value: &'a Option<String>,
}

impl<'a> From<&'a FieldValue> for FieldText<'a> {
    fn from(f: &'a FieldValue) -> Self {
        FieldText {
            id: f.id,
            name: &f.name,
            outer_field: &f.outer_field,
            stable: f.stable,
            value: &f.value,
        }
    }
}

/// Any serializable value as JSON text.
fn json_text<T: Serialize + ?Sized>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

fn truncate_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn relation_changes(old: Option<&Relation>, new: &Relation, out: &mut Vec<PathChange>) {
    let base = format!("relations[{}]", new.qw_user_id);
    let Some(old) = old else {
        out.push(PathChange {
            path: base,
            old_value: None,
            new_value: relation_text(new),
        });
        return;
    };
    if old == new {
        return;
    }
    if old.mobiles != new.mobiles {
        out.push(PathChange {
            path: format!("{base}.mobiles"),
            old_value: json_text(&old.mobiles),
            new_value: json_text(&new.mobiles),
        });
    }
    push_opt(out, &base, "wechat_nickname", &old.nickname, &new.nickname);
    push_opt(out, &base, "wechat_avatar", &old.avatar, &new.avatar);
    field_changes(&base, &old.fields, &new.fields, out);
}

fn push_opt(
    out: &mut Vec<PathChange>,
    base: &str,
    name: &str,
    old: &Option<String>,
    new: &Option<String>,
) {
    if old != new {
        out.push(PathChange {
            path: format!("{base}.{name}"),
            old_value: json_text(old),
            new_value: json_text(new),
        });
    }
}

/// Fields keyed by `(id, occurrence of that id)`, in canonical order.
fn keyed_fields(fields: &[FieldValue]) -> Vec<((i64, usize), &FieldValue)> {
    let mut out = Vec::with_capacity(fields.len());
    let mut prev: Option<(i64, usize)> = None;
    for f in fields {
        let occ = match prev {
            Some((id, n)) if id == f.id => n + 1,
            _ => 0,
        };
        prev = Some((f.id, occ));
        out.push(((f.id, occ), f));
    }
    out.sort_by_key(|(k, _)| *k);
    out
}

fn field_path(base: &str, (id, occ): (i64, usize)) -> String {
    if occ == 0 {
        format!("{base}.fields[{id}]")
    } else {
        format!("{base}.fields[{id}#{occ}]")
    }
}

fn field_changes(base: &str, old: &[FieldValue], new: &[FieldValue], out: &mut Vec<PathChange>) {
    let old = keyed_fields(old);
    let new = keyed_fields(new);
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some((k, f)), None) => {
                out.push(field_removed(base, *k, f));
                i += 1;
            }
            (None, Some((k, f))) => {
                out.push(field_added(base, *k, f));
                j += 1;
            }
            (Some((ko, fo)), Some((kn, fnew))) => {
                if ko < kn {
                    out.push(field_removed(base, *ko, fo));
                    i += 1;
                } else if kn < ko {
                    out.push(field_added(base, *kn, fnew));
                    j += 1;
                } else {
                    let p = field_path(base, *ko);
                    push_opt(out, &p, "value", &fo.value, &fnew.value);
                    push_opt(out, &p, "name", &fo.name, &fnew.name);
                    push_opt(out, &p, "outer_field", &fo.outer_field, &fnew.outer_field);
                    if fo.stable != fnew.stable {
                        out.push(PathChange {
                            path: format!("{p}.stable"),
                            old_value: json_text(&fo.stable),
                            new_value: json_text(&fnew.stable),
                        });
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
    }
}

fn field_added(base: &str, k: (i64, usize), f: &FieldValue) -> PathChange {
    PathChange {
        path: field_path(base, k),
        old_value: None,
        new_value: field_text(f),
    }
}

fn field_removed(base: &str, k: (i64, usize), f: &FieldValue) -> PathChange {
    PathChange {
        path: field_path(base, k),
        old_value: field_text(f),
        new_value: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_json_text_equals_the_value_form() {
        let r = Relation {
            qw_user_id: "u\"1".into(),
            mobiles: vec!["1".into(), "2".into()],
            nickname: Some("张三".into()),
            avatar: None,
            fields: vec![
                FieldValue {
                    id: 1,
                    name: Some("n".into()),
                    outer_field: None,
                    value: Some(String::new()),
                    stable: true,
                },
                FieldValue {
                    id: -2,
                    name: None,
                    outer_field: Some("o".into()),
                    value: None,
                    stable: false,
                },
            ],
        };
        assert_eq!(relation_text(&r), Some(relation_json(&r).to_string()));
        for f in &r.fields {
            assert_eq!(field_text(f), Some(field_json(f).to_string()));
        }
        assert_eq!(json_text(&r.nickname), Some(json!(r.nickname).to_string()));
        assert_eq!(json_text(&true), Some("true".to_string()));
    }
}
