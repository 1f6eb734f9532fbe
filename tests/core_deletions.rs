//! Ended relations and customers, in-process over the in-memory source and log: an ended
//! relation becomes an UPDATED event, a customer's last ended relation a DELETED event plus a
//! state tombstone, only after `windows.delete_confirmations` complete reads, never from an
//! incomplete read or a window that had to be split, never past the guard; a customer that
//! comes back is CREATED with its next revision; a fault at any step of the deleting unit still
//! gives exactly one DELETED.
//!
//! Confirmation counts live in memory (a restart only delays a deletion), so the default of two
//! confirmations and the guard (which sees from one pass what the next would delete) are shown
//! by one long-running connector re-scanning every 2 s; the other cases run each re-scan pass in
//! a fresh connector (a restart: the windows the deletions rely on are those restored from the
//! state topic) with `delete_confirmations = 1`, which makes any read wrongly taken as evidence
//! delete at once.

mod core_support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use core_support::{run_phase, World};
use serde_json::Value;
use tanma_connector::config::{Config, DeletionMode, RescanTier};
use tanma_connector::customer::Relation;
use tanma_connector::encode::{Codec, Framing};
use tanma_connector::ops::Health;
use tanma_connector::pipeline::faults::{Action, FaultPlan, Step};
use tanma_connector::pipeline::memory::MemoryLog;
use tanma_connector::pipeline::{Connector, PipelineError, RunOptions};
use tanma_connector::state::{decode_grave, HEADER_GRAVE};
use tokio_util::sync::CancellationToken;

/// A world of `core_support::CUSTOMERS` customers (customer `i` has `i % 3 + 1` relations
/// `staff-0..`, all added at `t0 + i·3541 s + 7 s`), deleting with `fraction` as the guard after
/// one confirmation.
fn world(fraction: f64) -> (World, MemoryLog) {
    let mut cfg = Config::default();
    cfg.windows.max_delete_fraction = fraction;
    cfg.windows.delete_confirmations = 1;
    let mut w = World::new(cfg);
    w.cfg.windows.rescan = vec![tier(0)];
    let log = MemoryLog::new(&w.cfg);
    (w, log)
}

fn ext(i: u32) -> String {
    format!("wm-{i:05}")
}

fn tier(pass: u32) -> RescanTier {
    RescanTier {
        max_age_secs: 0,
        every_secs: 365 * 86_400 + u64::from(pass),
    }
}

/// Runs connectors until caught up; `pass > 0` forces a fresh re-scan pass of everything.
async fn pass(w: &mut World, log: &MemoryLog, pass: u32, plan: &FaultPlan) {
    w.cfg.windows.rescan = vec![tier(pass)];
    let handles = log.clone();
    run_phase(w, plan, move || handles.reopen()).await;
}

/// One decoded event: (key, type, revision, event_id, the record as JSON).
fn events(log: &MemoryLog, w: &World) -> Vec<(String, String, u64, String, Value)> {
    let codec = Codec::new(Framing::SingleObject).expect("codec");
    log.records(&w.cfg.topics.events)
        .into_iter()
        .map(|r| {
            let v = codec
                .decode_event_json(r.value.as_deref().expect("value"))
                .expect("decodes");
            let id = r
                .headers
                .iter()
                .find(|(k, _)| k == "event_id")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .expect("event_id header");
            (
                String::from_utf8(r.key).expect("key"),
                v["event_type"].as_str().expect("type").to_string(),
                v["revision"].as_u64().expect("revision"),
                id,
                v,
            )
        })
        .collect()
}

/// Events of type `ty` for `key`.
fn of(evs: &[(String, String, u64, String, Value)], key: &str, ty: &str) -> Vec<Value> {
    evs.iter()
        .filter(|e| e.0 == key && e.1 == ty)
        .map(|e| e.4.clone())
        .collect()
}

/// Unique event ids, and per customer revisions 1..n without a gap.
fn check_chain(evs: &[(String, String, u64, String, Value)]) {
    let mut ids = HashSet::new();
    let mut revs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (key, _, rev, id, _) in evs {
        assert!(ids.insert(id.clone()), "{key}: event id {id} twice");
        revs.entry(key).or_default().push(*rev);
    }
    for (key, r) in revs {
        let want: Vec<u64> = (1..=r.len() as u64).collect();
        assert_eq!(r, want, "{key}: revisions");
    }
}

/// The latest state record of `key`: `None` for a tombstone (with its grave revision).
fn latest_state(log: &MemoryLog, w: &World, key: &str) -> (bool, Option<u64>) {
    let recs = log.records(&w.cfg.topics.state);
    let r = recs
        .iter()
        .rev()
        .find(|r| r.key == key.as_bytes())
        .expect("state record");
    let grave = r
        .headers
        .iter()
        .find(|(k, _)| k == HEADER_GRAVE)
        .and_then(|(_, v)| decode_grave(v))
        .map(|(rev, _)| rev);
    (r.value.is_some(), grave)
}

fn staff(qw: &str) -> Relation {
    Relation {
        qw_user_id: qw.to_string(),
        mobiles: vec![format!("138{:08}", "first".len())],
        nickname: Some("first".to_string()),
        avatar: None,
        fields: Vec::new(),
    }
}

fn added_at(w: &World, i: u32) -> chrono::DateTime<chrono::Utc> {
    w.t0 + chrono::Duration::seconds(i64::from(i) * 3_541 + 7)
}

/// Waits for `cond` (deadline 30 s).
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One connector re-scanning everything every 2 s (whole seconds of the planner's clock: at
/// least 1 s apart) in the background, until the token is cancelled.
async fn spawn_rescanning(
    w: &World,
    log: &MemoryLog,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<tanma_connector::pipeline::Exit, PipelineError>>,
) {
    let mut cfg = w.cfg.clone();
    cfg.windows.rescan = vec![RescanTier {
        max_age_secs: 0,
        every_secs: 2,
    }];
    let stop = CancellationToken::new();
    let connector = Connector::start(
        cfg,
        w.source.clone(),
        log.reopen(),
        Codec::new(Framing::SingleObject).expect("codec"),
        Health::new(Duration::from_secs(600)),
    )
    .await
    .expect("starts");
    let task = tokio::spawn(connector.run(stop.clone(), RunOptions::default()));
    (stop, task)
}

#[tokio::test]
async fn ended_relation_updates_last_relation_deletes_and_a_return_creates() {
    let (mut w, log) = world(1.0);
    w.cfg.windows.delete_confirmations = 2;
    let none = FaultPlan::new();
    pass(&mut w, &log, 0, &none).await;
    let created = events(&log, &w).len();
    let (stop, task) = spawn_rescanning(&w, &log).await;
    // Customer 2 has staff-0..2; customer 3 only staff-0.
    let removed = Instant::now();
    assert!(w.source.remove(&ext(2), "staff-2"));
    assert!(w.source.remove(&ext(3), "staff-0"));
    wait_for("UPDATED and DELETED", || {
        events(&log, &w).len() >= created + 2
    })
    .await;
    // Two complete reads in different passes, a second apart at least (the first pass read
    // day 0 after the removal).
    assert!(
        removed.elapsed() >= Duration::from_millis(900),
        "deleted after one read: {:?}",
        removed.elapsed()
    );
    let evs = events(&log, &w);
    assert_eq!(evs.len(), created + 2, "{:?}", &evs[created..]);
    let up = of(&evs, &ext(2), "UPDATED");
    assert_eq!(up.len(), 1);
    let change = &up[0]["changes"][0];
    assert_eq!(change["path"], "relations[staff-2]");
    assert!(change["old_value"]
        .as_str()
        .expect("old")
        .contains("staff-2"));
    assert_eq!(change["new_value"], Value::Null);
    assert_eq!(
        up[0]["after"]["relations"].as_array().map(Vec::len),
        Some(2)
    );
    let del = of(&evs, &ext(3), "DELETED");
    assert_eq!(del.len(), 1);
    assert_eq!(del[0]["revision"], 2);
    assert_eq!(del[0]["after"]["relations"], serde_json::json!([]));
    assert_eq!(
        del[0]["before"]["relations"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(latest_state(&log, &w, &ext(3)), (false, Some(2)));
    assert!(latest_state(&log, &w, &ext(2)).0);
    // The customer comes back: CREATED with revision 3.
    w.source.upsert(added_at(&w, 3), &ext(3), staff("staff-0"));
    wait_for("CREATED again", || {
        of(&events(&log, &w), &ext(3), "CREATED").len() == 2
    })
    .await;
    // A customer added at the live edge (read in a window of a second or so, recorded as its
    // grid cell) and removed again: DELETED too.
    let live = "wm-live";
    w.source.upsert(chrono::Utc::now(), live, staff("staff-9"));
    wait_for("the live customer", || {
        of(&events(&log, &w), live, "CREATED").len() == 1
    })
    .await;
    assert!(w.source.remove(live, "staff-9"));
    wait_for("the live customer DELETED", || {
        of(&events(&log, &w), live, "DELETED").len() == 1
    })
    .await;
    stop.cancel();
    task.await.expect("joins").expect("runs");
    let evs = events(&log, &w);
    assert_eq!(of(&evs, &ext(3), "CREATED")[1]["revision"], 3);
    assert_eq!(latest_state(&log, &w, &ext(3)), (true, None));
    assert_eq!(evs.len(), created + 5);
    check_chain(&evs);
    // The grave and windows survive a restart: nothing moves on a pass in a fresh process.
    pass(&mut w, &log, 9, &none).await;
    assert_eq!(events(&log, &w).len(), created + 5);
}

#[tokio::test]
async fn incomplete_reads_delete_nothing() {
    let (mut w, log) = world(1.0);
    let none = FaultPlan::new();
    pass(&mut w, &log, 0, &none).await;
    let created = events(&log, &w).len();
    assert!(w.source.remove(&ext(3), "staff-0"));
    w.source.set_incomplete(true);
    for p in 1..=3 {
        pass(&mut w, &log, p, &none).await;
    }
    assert_eq!(
        events(&log, &w).len(),
        created,
        "deleted from incomplete reads"
    );
    w.source.set_incomplete(false);
    pass(&mut w, &log, 4, &none).await;
    let evs = events(&log, &w);
    assert_eq!(of(&evs, &ext(3), "DELETED").len(), 1);
    assert_eq!(evs.len(), created + 1);
}

#[tokio::test]
async fn a_split_window_is_no_evidence_only_its_complete_leaves_are() {
    let (mut w, log) = world(1.0);
    // Day 0 gets 80 more relations (customers 3000+), above the split threshold of 60.
    for k in 0..80u32 {
        let at = w.t0 + chrono::Duration::seconds(i64::from(k) * 1_000 + 11);
        w.source.upsert(at, &ext(3000 + k), staff("staff-0"));
    }
    let none = FaultPlan::new();
    pass(&mut w, &log, 0, &none).await;
    let created = events(&log, &w).len();
    assert!(w.source.remove(&ext(3000), "staff-0"));
    // A fresh process: day 0 is found too large and split again. Were the too-large answer
    // (no rows) evidence, every relation of day 0 would be deleted.
    pass(&mut w, &log, 1, &none).await;
    let evs = events(&log, &w);
    assert_eq!(evs.len(), created + 1, "{:?}", &evs[created..]);
    assert_eq!(of(&evs, &ext(3000), "DELETED").len(), 1);
}

#[tokio::test]
async fn the_guard_holds_a_mass_disappearance_until_raised() {
    let handle = tanma_connector::ops::metrics::install().expect("metrics");
    let held = || {
        handle
            .render()
            .lines()
            .find(|l| l.starts_with("tanma_deletions_held_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (mut w, log) = world(0.05);
    // The guard needs a pass to see what the next would delete: two confirmations.
    w.cfg.windows.delete_confirmations = 2;
    let none = FaultPlan::new();
    pass(&mut w, &log, 0, &none).await;
    let created = events(&log, &w).len();
    let (stop, task) = spawn_rescanning(&w, &log).await;
    // A third of the customers lose every relation: far above 5 % of the relations.
    for i in (0..core_support::CUSTOMERS).filter(|i| i % 3 == 0) {
        assert!(w.source.remove(&ext(i), "staff-0"));
    }
    wait_for("deletions held", || held() >= 80.0).await;
    // Two more passes' worth of reads (11 windows a pass): still nothing deleted.
    let reads = w.source.reads();
    wait_for("more passes", || w.source.reads() >= reads + 30).await;
    stop.cancel();
    task.await.expect("joins").expect("runs");
    assert_eq!(
        events(&log, &w).len(),
        created,
        "the guard let deletions through"
    );
    // The operator raises the fraction and restarts: two more passes delete them.
    w.cfg.windows.max_delete_fraction = 0.5;
    let (stop, task) = spawn_rescanning(&w, &log).await;
    wait_for("the deletions", || events(&log, &w).len() >= created + 80).await;
    stop.cancel();
    task.await.expect("joins").expect("runs");
    let evs = events(&log, &w);
    assert_eq!(evs.len(), created + 80);
    assert!(evs[created..].iter().all(|e| e.1 == "DELETED"));
    check_chain(&evs);
}

#[tokio::test]
async fn deletions_off_emits_nothing() {
    let (mut w, log) = world(1.0);
    w.cfg.windows.deletions = DeletionMode::Off;
    let none = FaultPlan::new();
    pass(&mut w, &log, 0, &none).await;
    let created = events(&log, &w).len();
    assert!(w.source.remove(&ext(3), "staff-0"));
    assert!(w.source.remove(&ext(2), "staff-1"));
    for p in 1..=3 {
        pass(&mut w, &log, p, &none).await;
    }
    assert_eq!(events(&log, &w).len(), created);
}

/// A fault at `step` in the first unit of the pass that makes the deletions (its first re-scan
/// window holds both customers); passes run until they are committed.
async fn fault_in_the_deleting_unit(step: Step, action: Action) {
    let (mut w, log) = world(1.0);
    let none = FaultPlan::new();
    pass(&mut w, &log, 0, &none).await;
    let created = events(&log, &w).len();
    // Customer 0 has only staff-0, customer 1 has staff-0 and staff-1 (both in day 0).
    assert!(w.source.remove(&ext(0), "staff-0"));
    assert!(w.source.remove(&ext(1), "staff-1"));
    let plan = FaultPlan::new();
    plan.arm(step, action, 1);
    let mut p = 1;
    while of(&events(&log, &w), &ext(0), "DELETED").is_empty() && p < 4 {
        pass(&mut w, &log, p, &plan).await;
        p += 1;
    }
    assert!(plan.exhausted(), "{step:?}/{action:?} never fired");
    pass(&mut w, &log, p, &none).await;
    let evs = events(&log, &w);
    assert_eq!(
        of(&evs, &ext(0), "DELETED").len(),
        1,
        "{step:?}/{action:?}: DELETED events"
    );
    assert_eq!(of(&evs, &ext(1), "UPDATED").len(), 1, "{step:?}/{action:?}");
    assert_eq!(evs.len(), created + 2, "{step:?}/{action:?}");
    assert_eq!(latest_state(&log, &w, &ext(0)), (false, Some(2)));
    check_chain(&evs);
}

#[tokio::test]
async fn every_fault_in_a_deleting_unit_gives_exactly_one_deleted() {
    for step in Step::ALL {
        for action in [Action::Fail, Action::Crash, Action::Shutdown] {
            fault_in_the_deleting_unit(step, action).await;
        }
    }
}
