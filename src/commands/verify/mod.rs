//! `tanma-connector verify`: audits what the connector committed against a source of truth —
//! the simulator's truth API, which holds the customers alive now (ended relations excluded).
//! Used by the chaos run, the demo, the benchmarks and the end-to-end tests.
//!
//! Reports, over the events topic (read_committed; the rules: [`EventAuditor`]):
//! - **lost**: a customer of the truth with no event, without revision 1, or whose latest
//!   after-image differs from the truth;
//! - **duplicated**: an `event_id` seen twice, a revision seen twice, or a second CREATED without
//!   a DELETED before it;
//! - **spurious**: an UPDATED whose after-image equals its before-image, a revision gap, an
//!   unknown event type, a DELETED that is not the next revision after an image it starts from
//!   (its before-image) or whose after-image has relations, an UPDATED or DELETED right after a
//!   DELETED, a CREATED after a DELETED that does not continue its revision;
//! - **not_deleted**: a customer gone from the truth whose latest event is not DELETED;
//! - **wrongly_deleted**: a customer of the truth whose latest event is DELETED;
//! - and, for information, the events by type (`deleted` is the DELETED events) and the customers
//!   gone from the truth whose latest event is DELETED (`deleted_customers`).
//!
//! With `--state` it also reads the state topic (read_committed; a tombstone removes a customer)
//! and reports customers of the truth whose latest snapshot is missing, differs from the truth or
//! has a revision other than the customer's latest event, snapshots of customers gone from the
//! truth (`not_deleted`: not tombstoned) and snapshots of customers with no event ([`audit_state`]).
//!
//! It streams: the truth and both topics are read record by record ([`crate::publish::read_to_end`])
//! and only compact per-customer figures are kept (fingerprints of the relations, the latest
//! revision and whether it is DELETED, the runs of revisions seen, a 64-bit hash per event id), so
//! a run of a million customers can be audited in a few hundred megabytes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::encode::Codec;
use crate::publish::{client_config, read_to_end_blocking, ReadError, ReadOptions};

mod audit;
mod state;
mod truth;

pub use audit::{audit, audit_all, Audit, EventAuditor, EventsAudit};
pub use state::{audit_state, StateAudit, StateEntry};
pub use truth::{fetch_truth, relations_fp, relations_json, value_fp, Fp, Truth};

/// Why reading a topic for the audit failed.
#[derive(Debug)]
enum ReadFailure {
    /// The topic does not exist (yet).
    Missing(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Missing(s) | ReadFailure::Other(s) => f.write_str(s),
        }
    }
}

/// Reads `topic` to its end (blocking, read_committed), calling `f(key, value)` per record.
fn read_topic(
    cfg: &Config,
    topic: &str,
    timeout: Duration,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<(), String>,
) -> Result<(), ReadFailure> {
    let opts = ReadOptions::committed(timeout);
    match read_to_end_blocking(
        &client_config(&cfg.kafka),
        topic,
        &opts,
        |_| {},
        |r| f(r.key(), r.value()),
    ) {
        Ok(_) => Ok(()),
        Err(ReadError::Callback(e)) => Err(ReadFailure::Other(e)),
        Err(e @ ReadError::TopicMissing { .. }) => Err(ReadFailure::Missing(e.to_string())),
        Err(e) => Err(ReadFailure::Other(e.to_string())),
    }
}

/// Every committed event, decoded to JSON (blocking). Holds them all: for tests and small
/// topics; [`audit_events_topic`] audits without holding them.
pub fn read_events(cfg: &Config, codec: &Codec, timeout: Duration) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    read_topic(cfg, &cfg.topics.events, timeout, |_, payload| {
        if let Some(p) = payload {
            out.push(codec.decode_event_json(p).map_err(|e| e.to_string())?);
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Audits every committed event against `truth` as it is read (blocking, bounded memory).
pub fn audit_events_topic(
    cfg: &Config,
    codec: &Codec,
    truth: &Truth,
    timeout: Duration,
) -> Result<EventsAudit, String> {
    audit_events_streaming(cfg, codec, truth, timeout).map_err(|e| e.to_string())
}

fn audit_events_streaming(
    cfg: &Config,
    codec: &Codec,
    truth: &Truth,
    timeout: Duration,
) -> Result<EventsAudit, ReadFailure> {
    let mut auditor = EventAuditor::new(truth);
    read_topic(cfg, &cfg.topics.events, timeout, |_, payload| {
        if let Some(p) = payload {
            auditor.event(&codec.decode_event_json(p).map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    Ok(auditor.finish())
}

/// Reads the state topic (blocking, read_committed, to its end) and returns the latest snapshot
/// of every customer (its revision and relations fingerprint); a tombstone removes the customer.
pub fn read_state(
    cfg: &Config,
    codec: &Codec,
    timeout: Duration,
) -> Result<BTreeMap<String, StateEntry>, String> {
    read_state_streaming(cfg, codec, timeout).map_err(|e| e.to_string())
}

fn read_state_streaming(
    cfg: &Config,
    codec: &Codec,
    timeout: Duration,
) -> Result<BTreeMap<String, StateEntry>, ReadFailure> {
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
                let relations = relations_fp(&relations_json(&s.customer.relations));
                out.insert(
                    key,
                    StateEntry {
                        revision: s.revision,
                        relations,
                    },
                );
            }
        }
        Ok(())
    })?;
    Ok(out)
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

/// The outcome of one audit pass.
enum Pass {
    /// Figures (state figures with `--state`).
    Done(Audit, Option<StateAudit>),
    /// A topic does not exist yet.
    Missing(String),
    /// A failure that ends `verify` with this exit code.
    Failed(i32, String),
}

/// One audit: the truth, then the events topic, then (with `state`) the state topic.
async fn audit_once(
    cfg: &Config,
    codec: &std::sync::Arc<Codec>,
    sim_url: &str,
    state: bool,
) -> Pass {
    let truth = match fetch_truth(sim_url).await {
        Ok(t) => std::sync::Arc::new(t),
        Err(e) => return Pass::Failed(super::exit_code::INTERNAL, e),
    };
    let (c, k, t) = (cfg.clone(), codec.clone(), truth.clone());
    let joined = tokio::task::spawn_blocking(move || -> Result<_, ReadFailure> {
        let events = audit_events_streaming(&c, &k, &t, Duration::from_secs(120))?;
        let state = if state {
            let snapshots = read_state_streaming(&c, &k, Duration::from_secs(300))?;
            Some(audit_state(&t, &snapshots, &events.latest_revisions))
        } else {
            None
        };
        Ok((events.audit, state))
    })
    .await;
    match joined {
        Ok(Ok((events, state))) => Pass::Done(events, state),
        Ok(Err(ReadFailure::Missing(e))) => Pass::Missing(e),
        Ok(Err(ReadFailure::Other(e))) => Pass::Failed(super::exit_code::KAFKA_FATAL, e),
        Err(e) => Pass::Failed(super::exit_code::INTERNAL, e.to_string()),
    }
}

/// [`run`] with options. With `state`, prints `{"events": <Audit>, "state": <StateAudit>}`
/// and is clean only when both are. A topic that does not exist yet counts as not clean.
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
        let (a, state) = match audit_once(cfg, &codec, sim_url, opts.state).await {
            Pass::Done(a, state) => (a, state),
            Pass::Missing(e) if Instant::now() < deadline => {
                eprintln!("verify: {e}; waiting");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Pass::Missing(e) => {
                eprintln!("verify: {e}");
                return super::exit_code::KAFKA_FATAL;
            }
            Pass::Failed(code, e) => {
                eprintln!("verify: {e}");
                return code;
            }
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
