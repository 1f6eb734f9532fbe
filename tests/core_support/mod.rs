//! The commit protocol's fault scenarios, shared by the in-process suite (`core_steps.rs`, over
//! `MemoryLog`) and its run against the real broker (`core_steps_kafka.rs`, over `KafkaLog`).
//!
//! A scenario: a backfill, then a phase of changes read by a forced re-scan, each phase with a
//! fault armed at one step of one unit of work. A crashed or shut-down connector is restarted
//! over the same source and log, as a process would be. Afterwards the committed stream must be
//! exact: per customer, events with revisions 1..n and no gap, n = 1 + the changes made to it,
//! unique event ids, and the latest state record equal to the source's truth.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tanma_connector::config::{Config, RescanTier};
use tanma_connector::customer::Relation;
use tanma_connector::encode::{Codec, Framing};
use tanma_connector::ops::Health;
use tanma_connector::pipeline::faults::{Action, FaultPlan, Step};
use tanma_connector::pipeline::memory::MemorySource;
use tanma_connector::pipeline::{Connector, Exit, PipelineError, RunOptions, TransactionalLog};
use tokio_util::sync::CancellationToken;

/// Customers in a scenario's backfill.
pub const CUSTOMERS: u32 = 240;
/// Restarts allowed in one phase before the scenario counts as stuck.
const MAX_RESTARTS: u32 = 5;

/// A committed record, however it was read back.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Key bytes.
    pub key: Vec<u8>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The world of one scenario: the API's data, what the test changed, the configuration.
pub struct World {
    /// The API's data.
    pub source: MemorySource,
    /// Changes made per customer (beyond its creation).
    pub changes: BTreeMap<String, u32>,
    /// The connector's configuration.
    pub cfg: Config,
    /// Where the backfill starts.
    pub t0: DateTime<Utc>,
    /// Keeps the state directory alive.
    pub dir: tempfile::TempDir,
}

fn relation(qw: &str, nickname: &str) -> Relation {
    Relation {
        qw_user_id: qw.to_string(),
        mobiles: vec![format!("138{:08}", nickname.len())],
        nickname: Some(nickname.to_string()),
        avatar: None,
        fields: Vec::new(),
    }
}

fn ext(i: u32) -> String {
    format!("wm-{i:05}")
}

impl World {
    /// `CUSTOMERS` customers with 1–3 relations each, all of a customer's relations added in
    /// the same second (so each customer is created by exactly one event), spread over ten
    /// days. `cfg` is taken as a base: windows, backoff and state dir are set here.
    pub fn new(mut cfg: Config) -> World {
        let now = Utc::now().timestamp();
        let t0 = DateTime::from_timestamp(now - 10 * 86_400, 0).expect("t0");
        let dir = tempfile::tempdir().expect("tempdir");
        cfg.windows.start_time = t0.to_rfc3339();
        cfg.windows.window_secs = 86_400;
        cfg.windows.split_threshold = 60;
        cfg.windows.settle_lag_secs = 1;
        cfg.windows.lookback_secs = 3_600;
        cfg.windows.concurrency = 3;
        cfg.windows.poll_interval_ms = 50;
        cfg.windows.rescan = vec![tier(0)];
        cfg.api.backoff_initial_ms = 10;
        cfg.api.backoff_max_ms = 100;
        cfg.state.dir = dir.path().join("state");
        cfg.ops.progress = false;
        cfg.ops.listen = String::new();
        let source = MemorySource::new();
        let mut changes = BTreeMap::new();
        for i in 0..CUSTOMERS {
            let at = t0 + chrono::Duration::seconds(i64::from(i) * 3_541 + 7);
            for k in 0..=(i % 3) {
                source.upsert(at, &ext(i), relation(&format!("staff-{k}"), "first"));
            }
            changes.insert(ext(i), 0);
        }
        World {
            source,
            changes,
            cfg,
            t0,
            dir,
        }
    }

    /// Changes of one phase, each on its own customers: a renamed relation (every 5th), a new
    /// relation added late in the customer's old second (every 5th + 1), and new customers.
    /// Forces a re-scan pass of everything so the changes are read.
    pub fn change(&mut self, phase: u32) {
        let nickname = format!("renamed-{phase}");
        let mut new_customers = Vec::new();
        for i in 0..CUSTOMERS {
            let e = ext(i);
            if i % 5 == 0 {
                assert!(self.source.rename(&e, "staff-0", &nickname));
                *self.changes.get_mut(&e).expect("known") += 1;
            } else if i % 5 == 1 {
                let at = self.t0 + chrono::Duration::seconds(i64::from(i) * 3_541 + 7);
                let qw = format!("late-{phase}");
                self.source.upsert(at, &e, relation(&qw, "late"));
                *self.changes.get_mut(&e).expect("known") += 1;
            }
        }
        for j in 0..20 {
            let e = format!("wm-new-{phase}-{j:02}");
            let at = self.t0 + chrono::Duration::seconds(i64::from(j) * 9_973 + 11);
            self.source.upsert(at, &e, relation("staff-0", "new"));
            new_customers.push(e);
        }
        for e in new_customers {
            self.changes.insert(e, 0);
        }
        self.cfg.windows.rescan = vec![tier(phase)];
    }
}

/// A re-scan tier of everything whose schedule differs per phase: a changed tier starts a
/// fresh pass at once (and no other pass is due within the test).
fn tier(phase: u32) -> RescanTier {
    RescanTier {
        max_age_secs: 0,
        every_secs: 365 * 86_400 + u64::from(phase),
    }
}

/// Runs connectors over `world` until one is caught up, restarting after an injected crash or
/// shutdown. `log` makes a fresh (unfenced) log handle for each start, as a new process has.
pub async fn run_phase<L, F>(world: &World, plan: &FaultPlan, mut log: F) -> u32
where
    L: TransactionalLog,
    F: FnMut() -> L,
{
    let codec = Codec::new(Framing::SingleObject).expect("codec");
    for restarts in 0..=MAX_RESTARTS {
        let health = Health::new(Duration::from_secs(600));
        let connector = Connector::start(
            world.cfg.clone(),
            world.source.clone(),
            log(),
            codec.clone(),
            health,
        )
        .await
        .expect("connector starts")
        .with_faults(plan.clone());
        let opts = RunOptions {
            stop_when_caught_up: true,
        };
        match connector.run(CancellationToken::new(), opts).await {
            Ok(Exit::CaughtUp) => return restarts,
            Ok(Exit::Shutdown) | Err(PipelineError::Injected(_)) => continue,
            Err(e) => panic!("connector failed: {e}"),
        }
    }
    panic!("not caught up after {MAX_RESTARTS} restarts");
}

/// A backfill with `fault` armed at the 2nd unit of work, then a phase of changes with the
/// same fault armed again; the stream is checked after each.
pub async fn scenario<L, F, R, Fut>(world: &mut World, fault: (Step, Action), log: F, read: R)
where
    L: TransactionalLog,
    F: FnMut() -> L + Clone,
    R: Fn(String) -> Fut,
    Fut: Future<Output = Vec<Rec>>,
{
    let (step, action) = fault;
    let plan = FaultPlan::new();
    for phase in ["the backfill", "the changes"] {
        if phase == "the changes" {
            world.change(1);
        }
        plan.arm(step, action, 2);
        run_phase(world, &plan, log.clone()).await;
        assert!(
            plan.exhausted(),
            "{step:?}/{action:?} never fired in {phase}"
        );
        let events = read(world.cfg.topics.events.clone()).await;
        check(world, &events, &read(world.cfg.topics.state.clone()).await);
    }
}

fn header<'a>(r: &'a Rec, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// The stream is exact: see the module docs.
pub fn check(world: &World, events: &[Rec], state: &[Rec]) {
    let codec = Codec::new(Framing::SingleObject).expect("codec");
    let mut ids = HashSet::new();
    let mut revisions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in events {
        let key = String::from_utf8(r.key.clone()).expect("utf-8 key");
        let id = header(r, "event_id").expect("event_id header");
        assert!(ids.insert(id.to_vec()), "event id of {key} committed twice");
        let ev = codec
            .decode_event_json(r.value.as_deref().expect("event value"))
            .expect("event decodes");
        let revision = ev["revision"].as_u64().expect("revision");
        let ty = ev["event_type"].as_str().expect("event_type");
        assert_eq!(
            ty == "CREATED",
            revision == 1,
            "{key}: {ty} at revision {revision}"
        );
        revisions.entry(key).or_default().push(revision);
    }
    for (key, revs) in &revisions {
        let want: Vec<u64> = (1..=revs.len() as u64).collect();
        assert_eq!(revs, &want, "{key}: revisions with a gap or repeat");
    }
    let truth = world.source.truth();
    for (key, changes) in &world.changes {
        let n = revisions.get(key).map_or(0, Vec::len) as u32;
        assert_eq!(n, 1 + changes, "{key}: {n} events for {changes} changes");
    }
    assert_eq!(
        revisions.len(),
        world.changes.len(),
        "events for unknown customers"
    );
    let mut latest: BTreeMap<String, &Rec> = BTreeMap::new();
    for r in state {
        latest.insert(String::from_utf8(r.key.clone()).expect("key"), r);
    }
    assert_eq!(latest.len(), truth.len(), "customers in the state topic");
    for (key, rels) in &truth {
        let rec = latest
            .get(key)
            .unwrap_or_else(|| panic!("{key}: no state record"));
        let snap = codec
            .decode_snapshot(rec.value.as_deref().expect("snapshot"))
            .expect("snapshot decodes");
        assert_eq!(
            &snap.customer.relations, rels,
            "{key}: state differs from the truth"
        );
        assert_eq!(
            snap.revision,
            revisions[key].len() as u64,
            "{key}: state revision"
        );
    }
}
