//! End-to-end: simulator → connector → real Kafka + schema registry, audited against the
//! simulator's truth.

mod support;

use std::time::Duration;

use support::harness::{sim_config, TestEnv};
use tanma_connector::pipeline::Exit;
use tanma_connector::sim::{ApplyRequest, MutationKind};

fn count_types(events: &[serde_json::Value]) -> (usize, usize) {
    let created = events
        .iter()
        .filter(|e| e["event_type"] == "CREATED")
        .count();
    let updated = events
        .iter()
        .filter(|e| e["event_type"] == "UPDATED")
        .count();
    (created, updated)
}

/// Backfill, then a restart over unchanged data: exactly one CREATED per customer, the latest
/// image of every customer equals the truth, and the restart (which re-reads nothing new) and a
/// full re-read from scratch with the restored state produce no events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_is_exact_and_restarts_add_nothing() {
    let env = TestEnv::new(sim_config(7, 3_000), |_| {}).await;
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let audit = env.audit().await;
    assert!(audit.clean(), "{audit:#?}");
    assert_eq!(audit.created as usize, audit.truth_customers);
    let before = env.events().await.len();

    // Restart: resumes from the checkpoint, restores state; nothing changed → no events.
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    assert_eq!(
        env.events().await.len(),
        before,
        "a restart over unchanged data emitted events"
    );
}

/// Three full re-reads of unchanged data emit nothing; live changes emit exactly one UPDATED
/// per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescans_emit_nothing_for_unchanged_data_and_one_update_per_change() {
    let mut env = TestEnv::new(sim_config(11, 1_500), |_| {}).await;
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let baseline_events = env.events().await;
    let baseline = baseline_events.len();
    let seen: std::collections::HashSet<String> = baseline_events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
        .collect();

    // Three full re-reads from start_time against the restored state: a fresh checkpoint key
    // (new transactional id) replays every window.
    for i in 0..3 {
        env.cfg.kafka.transactional_id = format!("{}-rescan{i}", env.cfg.kafka.transactional_id);
        assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
        assert_eq!(
            env.events().await.len(),
            baseline,
            "re-scan {i} emitted events for unchanged data"
        );
    }

    // Now change 25 relations in old windows; a full re-read must emit exactly 25 UPDATED, one
    // per changed customer-relation, with the changed relation's paths.
    let changed = env
        .sim
        .control()
        .apply(&ApplyRequest::new(MutationKind::Changed, 25))
        .expect("apply");
    let customers: std::collections::HashSet<_> =
        changed.iter().map(|m| m.external_user_id.clone()).collect();
    env.cfg.kafka.transactional_id = format!("{}-after", env.cfg.kafka.transactional_id);
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let events = env.events().await;
    // Partitions interleave differently on every read: select new events by id, not position.
    let new: Vec<_> = events
        .iter()
        .filter(|e| !seen.contains(e["event_id"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    let (created, updated) = count_types(&new);
    assert_eq!(created, 0);
    assert_eq!(updated, customers.len(), "one UPDATED per changed customer");
    for e in &new {
        let ext = e["external_user_id"].as_str().unwrap_or_default();
        assert!(
            customers.contains(ext),
            "UPDATED for an unchanged customer {ext}"
        );
        assert!(
            e["changes"].as_array().is_some_and(|c| !c.is_empty()),
            "UPDATED without changes"
        );
    }
    let audit = env.audit().await;
    assert!(audit.clean(), "{audit:#?}");
}

/// A late relation (add time in an old window, visible only now) is found by the re-scan, and
/// a customer whose followers are in different windows gets no spurious update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_relation_in_old_window_is_found_by_rescan() {
    let env = TestEnv::new(sim_config(13, 800), |c| {
        c.windows.rescan = vec![tanma_connector::config::RescanTier {
            max_age_secs: 0,
            every_secs: 2,
        }];
    })
    .await;
    let (stop, handle) = env.spawn();
    let truth = env.sim.control().truth();
    let expected = truth
        .iter()
        .filter_map(|t| t.row.external_user_id.clone())
        .collect::<std::collections::HashSet<_>>()
        .len();
    env.wait_events("backfill", Duration::from_secs(120), |ev| {
        count_types(ev).0 == expected
    })
    .await;
    let before = env.events().await;
    let late = env
        .sim
        .control()
        .apply(&ApplyRequest::new(MutationKind::Late, 3))
        .expect("apply");
    env.wait_events("late relations found", Duration::from_secs(60), |ev| {
        late.iter().all(|m| {
            ev.iter().any(|x| {
                x["external_user_id"] == m.external_user_id.as_str()
                    && x["after"]["relations"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["qw_user_id"] == m.qw_user_id.as_str()))
            })
        })
    })
    .await;
    stop.cancel();
    assert_eq!(handle.await.expect("join").expect("run"), Exit::Shutdown);
    let after = env.events().await;
    // Only the late relations caused events, though several re-scan passes ran meanwhile.
    let late_customers: std::collections::HashSet<_> =
        late.iter().map(|m| m.external_user_id.as_str()).collect();
    assert!(
        after.len() - before.len() <= late_customers.len(),
        "{} new events for {} customers with a late relation",
        after.len() - before.len(),
        late_customers.len()
    );
    let audit = env.audit().await;
    assert!(audit.clean(), "{audit:#?}");
}

/// The acceptance size: a 50,000-relation backfill yields exactly one CREATED per
/// customer, and the latest image of every customer equals the truth (read_committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_50k_relations_creates_each_customer_once() {
    // ~1.65 relations per customer.
    let env = TestEnv::new(sim_config(17, 30_500), |c| {
        c.windows.split_threshold = 2_000;
    })
    .await;
    let relations = env.sim.control().stats().relations;
    assert!(relations >= 50_000, "dataset has {relations} relations");
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let audit = env.audit().await;
    assert!(audit.clean(), "{audit:#?}");
    assert_eq!(audit.created as usize, audit.truth_customers);
    let events = env.events().await;
    let mut created: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "CREATED")
        .filter_map(|e| e["external_user_id"].as_str())
        .collect();
    let n = created.len();
    created.sort_unstable();
    created.dedup();
    assert_eq!(created.len(), n, "a customer was CREATED twice");
}
