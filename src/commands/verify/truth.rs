//! The simulator's truth, held compactly: one 128-bit fingerprint of each customer's
//! `relations` (in the JSON shape of decoded events), streamed from `GET /_sim/truth`.
//!
//! Fingerprints replace JSON comparisons so that an audit of a million customers fits in
//! memory: [`relations_fp`] of an event's or snapshot's `relations` equals the truth's
//! fingerprint exactly when the two JSON values are equal (up to a 2⁻¹²⁸ collision).

use std::collections::HashMap;

use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::customer::diff::relation_json;
use crate::customer::Relation;
use crate::upstream::wire::Row;

/// A 128-bit fingerprint of a JSON value.
pub type Fp = u128;

/// Every customer of the truth and the fingerprint of its relations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    customers: HashMap<String, Fp>,
}

impl Truth {
    /// Customers in the truth.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    /// True when the truth has no customer.
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    /// The fingerprint of a customer's relations ([`relations_fp`]), if the truth has it.
    pub fn get(&self, external_user_id: &str) -> Option<Fp> {
        self.customers.get(external_user_id).copied()
    }

    /// True when the truth has this customer.
    pub fn contains(&self, external_user_id: &str) -> bool {
        self.customers.contains_key(external_user_id)
    }

    /// Every customer and its fingerprint, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Fp)> {
        self.customers.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The truth of these customers and their relations (in any order; a later relation with
    /// the same `qw_user_id` replaces an earlier one, as the connector's upsert does).
    pub fn from_relations<'a>(rows: impl IntoIterator<Item = (&'a str, &'a Relation)>) -> Truth {
        let mut b = TruthBuilder::default();
        for (ext, r) in rows {
            b.add(ext, r);
        }
        b.finish()
    }
}

/// Collects the truth relation by relation, remembering only a hash per relation.
#[derive(Debug, Default)]
struct TruthBuilder {
    /// Per customer: `(xxh3 of qw_user_id, fingerprint of the relation's JSON)`.
    customers: HashMap<String, Vec<(u64, Fp)>>,
}

impl TruthBuilder {
    fn add(&mut self, ext: &str, r: &Relation) {
        let key = xxh3_64(r.qw_user_id.as_bytes());
        let fp = value_fp(&relation_json(r));
        let rels = match self.customers.get_mut(ext) {
            Some(rels) => rels,
            None => self.customers.entry(ext.to_string()).or_default(),
        };
        match rels.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = fp,
            None => rels.push((key, fp)),
        }
    }

    fn finish(self) -> Truth {
        Truth {
            customers: self
                .customers
                .into_iter()
                .map(|(ext, rels)| {
                    let mut acc = RelationsAcc::default();
                    rels.iter().for_each(|(_, fp)| acc.add(*fp));
                    (ext, acc.finish())
                })
                .collect(),
        }
    }

    /// Adds one NDJSON line `{"addTime", "row"}` of the truth dump (`line` is its number).
    fn add_line(&mut self, line: usize, text: &[u8]) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct TruthLine {
            row: Row,
        }
        let parsed: TruthLine =
            serde_json::from_slice(text).map_err(|e| format!("truth line {line}: {e}"))?;
        let (ext, rel) = Relation::from_row(&parsed.row, line).map_err(|e| e.to_string())?;
        self.add(&ext, &rel);
        Ok(())
    }
}

/// The truth: every visible relation, grouped into canonical customers, streamed from
/// `{sim_url}/_sim/truth` (the dump is never held whole).
pub async fn fetch_truth(sim_url: &str) -> Result<Truth, String> {
    let mut resp = reqwest::get(format!("{}/_sim/truth", sim_url.trim_end_matches('/')))
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("truth API: {e}"))?;
    let mut builder = TruthBuilder::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut line = 0usize;
    let mut feed = |text: &[u8], builder: &mut TruthBuilder| -> Result<(), String> {
        let text = text.trim_ascii();
        if !text.is_empty() {
            builder.add_line(line, text)?;
        }
        line += 1;
        Ok(())
    };
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("truth API: {e}"))? {
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            feed(&pending[start..start + nl], &mut builder)?;
            start += nl + 1;
        }
        pending.drain(..start);
    }
    feed(&pending, &mut builder)?;
    Ok(builder.finish())
}

/// The JSON shape of `relations` in decoded events and snapshots.
pub fn relations_json(relations: &[Relation]) -> Value {
    Value::Array(relations.iter().map(relation_json).collect())
}

/// Order-independent accumulation of relation fingerprints.
#[derive(Debug, Default, Clone, Copy)]
struct RelationsAcc {
    sum: u128,
    count: u64,
}

impl RelationsAcc {
    fn add(&mut self, fp: Fp) {
        self.sum = self.sum.wrapping_add(fp);
        self.count += 1;
    }

    fn finish(self) -> Fp {
        let mut h = Xxh3::new();
        h.update(b"relations");
        h.update(&self.sum.to_le_bytes());
        h.update(&self.count.to_le_bytes());
        h.digest128()
    }
}

/// The fingerprint of a `relations` value of a decoded event or snapshot: equal to the
/// truth's fingerprint of a customer exactly when the value equals the truth's relations in
/// canonical form (an array sorted by `qw_user_id`, without repeats). Any other value gets
/// a fingerprint of its own, which no truth has.
pub fn relations_fp(relations: &Value) -> Fp {
    let Some(items) = relations.as_array() else {
        return value_fp(relations);
    };
    let mut acc = RelationsAcc::default();
    let mut previous: Option<&str> = None;
    for item in items {
        let qw = item.get("qw_user_id").and_then(Value::as_str);
        match (previous, qw) {
            (_, None) => return value_fp(relations),
            (Some(p), Some(q)) if p >= q => return value_fp(relations),
            _ => {}
        }
        previous = qw;
        acc.add(value_fp(item));
    }
    acc.finish()
}

/// A fingerprint of a JSON value; equal values (objects compared as maps) give equal prints.
pub fn value_fp(v: &Value) -> Fp {
    let mut h = Xxh3::new();
    hash_value(v, &mut h);
    h.digest128()
}

fn hash_str(s: &str, h: &mut Xxh3) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn hash_value(v: &Value, h: &mut Xxh3) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            hash_str(&n.to_string(), h);
        }
        Value::String(s) => {
            h.update(b"s");
            hash_str(s, h);
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| hash_value(i, h));
        }
        Value::Object(map) => {
            h.update(b"{");
            h.update(&(map.len() as u64).to_le_bytes());
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                hash_str(k, h);
                hash_value(v, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::FieldValue;
    use serde_json::json;

    fn rel(qw: &str, nickname: &str) -> Relation {
        Relation {
            qw_user_id: qw.into(),
            mobiles: vec!["138".into()],
            nickname: Some(nickname.into()),
            avatar: None,
            fields: vec![FieldValue {
                id: 7,
                name: Some("level".into()),
                outer_field: None,
                value: Some("gold".into()),
                stable: true,
            }],
        }
    }

    #[test]
    fn truth_equals_the_canonical_relations_json() {
        let (a, b, old_b) = (rel("qwA", "x"), rel("qwB", "y"), rel("qwB", "old"));
        // The dump's order does not matter; a later relation with the same qw replaces.
        let truth = Truth::from_relations([("c1", &old_b), ("c1", &b), ("c1", &a)]);
        let fp = truth.get("c1").expect("c1 in the truth");
        assert_eq!(fp, relations_fp(&relations_json(&[a.clone(), b.clone()])));
        assert_ne!(fp, relations_fp(&relations_json(&[a.clone(), old_b])));
        // Not canonical: reordered, repeated, without qw, or not an array.
        assert_ne!(fp, relations_fp(&relations_json(&[b.clone(), a.clone()])));
        let once = Truth::from_relations([("c2", &a)]).get("c2");
        let only_a = relations_json(std::slice::from_ref(&a));
        assert_eq!(once, Some(relations_fp(&only_a)));
        assert_ne!(once, Some(relations_fp(&relations_json(&[a.clone(), a]))));
        assert_ne!(fp, relations_fp(&json!([{"mobiles": []}])));
        assert_ne!(fp, relations_fp(&Value::Null));
        assert_eq!(truth.len(), 1);
        assert!(truth.contains("c1") && !truth.contains("c2"));
    }

    #[test]
    fn value_fingerprint_follows_json_equality() {
        let a: Value = serde_json::from_str(r#"{"x": 1, "y": [true, null, "s"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y": [true, null, "s"], "x": 1}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(value_fp(&a), value_fp(&b));
        for other in [
            json!({"x": 1.0, "y": [true, null, "s"]}),
            json!({"x": 1, "y": [true, null]}),
            json!({"x": 1, "y": [true, "null", "s"]}),
            json!({"x": 1, "y": [true, null, "s"], "z": null}),
            json!(["x", 1]),
        ] {
            assert_ne!(a, other);
            assert_ne!(value_fp(&a), value_fp(&other), "{other}");
        }
    }
}
