//! `tanma-connector verify`: audits what the connector committed against a source of truth —
//! the simulator's truth API. Used by the chaos run, the benchmarks and the end-to-end tests.
//!
//! Reports, over the events topic (read_committed):
//! - **lost**: a customer of the truth with no event, or whose latest after-image differs from the
//!   truth;
//! - **duplicated**: an `event_id` seen twice, a second CREATED for a customer, or a revision seen
//!   twice;
//! - **spurious**: an event for a customer the truth does not have, an UPDATED whose after-image
//!   equals its before-image, or a revision gap.
//!
//! With `--state` it also reads the state topic (read_committed) and reports customers whose
//! latest snapshot is missing, differs from the truth, belongs to no customer of the truth, or
//! has a revision other than the customer's latest event ([`audit_state`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::customer::{Customer, Relation};
use crate::encode::Codec;
use crate::publish::{client_config, read_to_end_blocking, ReadError, ReadOptions};
use crate::upstream::wire::Row;

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
        if self.examples.len() < 20 {
            self.examples.push(s);
        }
    }
}

/// The truth: every visible relation, grouped into canonical customers, as the JSON shape the
/// event's `after.relations` has.
pub async fn fetch_truth(sim_url: &str) -> Result<BTreeMap<String, Value>, String> {
    let body = reqwest::get(format!("{}/_sim/truth", sim_url.trim_end_matches('/')))
        .await
        .map_err(|e| format!("truth API: {e}"))?
        .text()
        .await
        .map_err(|e| format!("truth API: {e}"))?;
    let mut customers: BTreeMap<String, Customer> = BTreeMap::new();
    for (i, line) in body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("truth line {i}: {e}"))?;
        let row: Row = serde_json::from_value(v.get("row").cloned().unwrap_or(Value::Null))
            .map_err(|e| format!("truth line {i}: {e}"))?;
        let (ext, rel) = Relation::from_row(&row, i).map_err(|e| e.to_string())?;
        customers
            .entry(ext.clone())
            .or_insert_with(|| Customer {
                external_user_id: ext,
                relations: Vec::new(),
            })
            .upsert(rel);
    }
    Ok(customers
        .into_iter()
        .map(|(k, c)| (k, relations_json(&c.relations)))
        .collect())
}

/// The JSON shape of `relations` in decoded events and snapshots.
pub fn relations_json(relations: &[Relation]) -> Value {
    Value::Array(
        relations
            .iter()
            .map(|r| {
                serde_json::json!({
                    "qw_user_id": r.qw_user_id,
                    "mobiles": r.mobiles,
                    "wechat_nickname": r.nickname,
                    "wechat_avatar": r.avatar,
                    "fields": r.fields.iter().map(|f| serde_json::json!({
                        "id": f.id, "name": f.name, "outer_field": f.outer_field,
                        "value": f.value, "stable": f.stable,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// Reads every committed event (blocking) and decodes it to JSON.
pub fn read_events(cfg: &Config, codec: &Codec, timeout: Duration) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    read_topic(cfg, &cfg.topics.events, timeout, |_, payload| {
        if let Some(p) = payload {
            out.push(codec.decode_event_json(p).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// One customer's latest committed snapshot in the state topic.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    /// The snapshot's revision.
    pub revision: u64,
    /// `relations`, in the JSON shape of [`relations_json`].
    pub relations: Value,
}

/// Reads the state topic (blocking, read_committed, to its end) and returns the latest snapshot
/// of every customer; a tombstone removes the customer.
pub fn read_state(
    cfg: &Config,
    codec: &Codec,
    timeout: Duration,
) -> Result<BTreeMap<String, StateEntry>, String> {
    let topic = cfg.topics.state.clone();
    let mut out = BTreeMap::new();
    read_topic(cfg, &topic, timeout, |key, payload| {
        let key = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
        match payload {
            None => {
                out.remove(&key);
            }
            Some(p) => {
                let s = codec
                    .decode_snapshot(p)
                    .map_err(|e| format!("{topic}: snapshot of {key:?}: {e}"))?;
                if s.customer.external_user_id != key {
                    return Err(format!(
                        "{topic}: record key {key:?} holds the snapshot of {:?}",
                        s.customer.external_user_id
                    ));
                }
                out.insert(
                    key,
                    StateEntry {
                        revision: s.revision,
                        relations: relations_json(&s.customer.relations),
                    },
                );
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Reads `topic` to the end captured at the start (blocking, read_committed;
/// [`crate::publish::read_to_end`]), calling `f(key, payload)` for every record.
fn read_topic(
    cfg: &Config,
    topic: &str,
    timeout: Duration,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<(), String>,
) -> Result<(), String> {
    let opts = ReadOptions::committed(timeout);
    read_to_end_blocking(
        &client_config(&cfg.kafka),
        topic,
        &opts,
        |_| {},
        |r| f(r.key(), r.value()),
    )
    .map(|_| ())
    .map_err(|e| match e {
        ReadError::Callback(e) => e,
        other => other.to_string(),
    })
}

/// Compares `events` with `truth`.
pub fn audit(truth: &BTreeMap<String, Value>, events: &[Value]) -> Audit {
    let mut a = Audit {
        truth_customers: truth.len(),
        ..Audit::default()
    };
    let mut ids = HashSet::new();
    let mut latest: HashMap<&str, (i64, &Value)> = HashMap::new();
    let mut revisions: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in events {
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
        if !ids.insert(id) {
            a.duplicated += 1;
            a.note(format!("{ext}: event_id {id} seen twice"));
        }
        if !truth.contains_key(ext) {
            a.spurious += 1;
            a.note(format!("{ext}: not in the truth"));
        }
        revisions.entry(ext).or_default().push(rev);
        if latest.get(ext).is_none_or(|(r, _)| rev > *r) {
            latest.insert(ext, (rev, &e["after"]["relations"]));
        }
    }
    for (ext, revs) in &mut revisions {
        revs.sort_unstable();
        for w in revs.windows(2) {
            if w[0] == w[1] {
                a.duplicated += 1;
                a.note(format!("{ext}: revision {} twice", w[0]));
            } else if w[1] != w[0] + 1 {
                a.spurious += 1;
                a.note(format!("{ext}: revision gap {} → {}", w[0], w[1]));
            }
        }
        if revs.first() != Some(&1) {
            a.lost += 1;
            a.note(format!("{ext}: no revision 1 (CREATED)"));
        }
    }
    for (ext, rels) in truth {
        match latest.get(ext.as_str()) {
            None => {
                a.lost += 1;
                a.note(format!("{ext}: no event"));
            }
            Some((rev, after)) if *after != rels => {
                a.lost += 1;
                a.note(format!(
                    "{ext}: latest event (rev {rev}) differs from the truth"
                ));
            }
            _ => {}
        }
    }
    a
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
        if self.examples.len() < 20 {
            self.examples.push(s);
        }
    }
}

/// Compares the latest snapshots with `truth`, and their revisions with the highest revision of
/// each customer's events.
pub fn audit_state(
    truth: &BTreeMap<String, Value>,
    state: &BTreeMap<String, StateEntry>,
    events: &[Value],
) -> StateAudit {
    let mut a = StateAudit {
        truth_customers: truth.len(),
        snapshots: state.len(),
        ..StateAudit::default()
    };
    let mut latest_rev: HashMap<&str, i64> = HashMap::new();
    for e in events {
        let ext = e["external_user_id"].as_str().unwrap_or_default();
        let rev = e["revision"].as_i64().unwrap_or(-1);
        let r = latest_rev.entry(ext).or_insert(rev);
        *r = (*r).max(rev);
    }
    for (ext, rels) in truth {
        match state.get(ext) {
            None => {
                a.missing += 1;
                a.note(format!("{ext}: no snapshot"));
            }
            Some(s) if s.relations != *rels => {
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
        if !truth.contains_key(ext) {
            a.extra += 1;
            a.note(format!("{ext}: snapshot of a customer not in the truth"));
        }
        let ev = latest_rev.get(ext.as_str()).copied();
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

/// What `verify` checks besides the events.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Also audit the state topic ([`audit_state`]).
    pub state: bool,
}

/// Runs the audit, re-checking every 2 s until it is clean or `wait` has passed; prints the
/// figures as JSON and returns the exit code (0 clean, 1 otherwise).
pub async fn run(cfg: &Config, sim_url: &str, wait: Duration) -> i32 {
    run_with(cfg, sim_url, wait, VerifyOptions::default()).await
}

/// [`run`] with options. With `state`, prints `{"events": <Audit>, "state": <StateAudit>}`
/// and is clean only when both are.
pub async fn run_with(cfg: &Config, sim_url: &str, wait: Duration, opts: VerifyOptions) -> i32 {
    let deadline = Instant::now() + wait;
    let codec = match super::reader_codec(cfg).await {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            eprintln!("verify: {e}");
            return super::exit_code::KAFKA_FATAL;
        }
    };
    loop {
        let truth = match fetch_truth(sim_url).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("verify: {e}");
                return super::exit_code::INTERNAL;
            }
        };
        let c = cfg.clone();
        let k = codec.clone();
        let events =
            tokio::task::spawn_blocking(move || read_events(&c, &k, Duration::from_secs(120)))
                .await;
        let events = match events {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => {
                eprintln!("verify: {e}");
                return super::exit_code::KAFKA_FATAL;
            }
            Err(e) => {
                eprintln!("verify: {e}");
                return super::exit_code::INTERNAL;
            }
        };
        let a = audit(&truth, &events);
        let state = if opts.state {
            let c = cfg.clone();
            let k = codec.clone();
            match tokio::task::spawn_blocking(move || read_state(&c, &k, Duration::from_secs(300)))
                .await
            {
                Ok(Ok(st)) => Some(audit_state(&truth, &st, &events)),
                Ok(Err(e)) => {
                    eprintln!("verify: {e}");
                    return super::exit_code::KAFKA_FATAL;
                }
                Err(e) => {
                    eprintln!("verify: {e}");
                    return super::exit_code::INTERNAL;
                }
            }
        } else {
            None
        };
        let clean = a.clean() && state.as_ref().is_none_or(StateAudit::clean);
        if clean || Instant::now() >= deadline {
            let out = match &state {
                Some(st) => serde_json::to_string_pretty(&serde_json::json!({
                    "events": a,
                    "state": st,
                })),
                None => serde_json::to_string_pretty(&a),
            };
            println!("{}", out.unwrap_or_default());
            return if clean { 0 } else { 1 };
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
