//! Ended relations and customers end to end: simulator → connector → the real broker and
//! registry. A relation the simulator removes becomes an UPDATED event (path `relations[<qw>]`),
//! a customer's last relation a DELETED event plus a tombstone on the state topic; a customer
//! that comes back is CREATED with its next revision; and the real binary killed with SIGKILL
//! the moment a DELETED is written (before or just after its commit) still commits exactly one
//! DELETED. Fails when the broker's variables are missing.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::Value;
use support::harness::{sim_config, TestEnv};
use support::read_all;
use tanma_connector::config::RescanTier;
use tanma_connector::pipeline::Exit;
use tanma_connector::sim::{ApplyRequest, MutationKind};
use tanma_connector::state::{decode_grave, HEADER_GRAVE};

/// Staff members of each customer in the simulator's truth.
fn relations_by_customer(env: &TestEnv) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in env.sim.control().truth() {
        if let (Some(ext), Some(qw)) = (t.row.external_user_id, t.row.qw_user_id) {
            out.entry(ext).or_default().push(qw);
        }
    }
    out
}

/// Removes the relation `(ext, qw)`; returns the staff member the simulator removed.
fn remove(env: &TestEnv, ext: &str, qw: &str) -> String {
    let mut req = ApplyRequest::new(MutationKind::Removed, 1);
    req.external_user_id = Some(ext.to_string());
    req.qw_user_id = Some(qw.to_string());
    let done = env.sim.control().apply(&req).expect("removed");
    done.first().expect("one").qw_user_id.clone()
}

/// Events of `ext` of type `ty` that are not in `before` (event ids).
fn new_of<'a>(
    before: &HashSet<String>,
    events: &'a [Value],
    ext: &str,
    ty: &str,
) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["external_user_id"] == ext && e["event_type"] == ty)
        .filter(|e| !before.contains(e["event_id"].as_str().unwrap_or_default()))
        .collect()
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_string))
        .collect()
}

/// Unique event ids; per customer revisions 1..n without a gap.
fn check_chain(events: &[Value]) {
    let mut ids = HashSet::new();
    let mut revs: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for e in events {
        let ext = e["external_user_id"].as_str().expect("ext");
        assert!(
            ids.insert(e["event_id"].as_str().expect("id")),
            "{ext}: id twice"
        );
        revs.entry(ext)
            .or_default()
            .push(e["revision"].as_i64().expect("rev"));
    }
    for (ext, r) in revs {
        let want: Vec<i64> = (1..=r.len() as i64).collect();
        assert_eq!(r, want, "{ext}: revisions");
    }
}

/// The latest state record of `ext`: (is a snapshot, grave revision of a tombstone).
async fn latest_state(env: &TestEnv, ext: &str) -> (bool, Option<u64>) {
    let recs = read_all(
        &env.infra.bootstrap,
        &env.cfg.topics.state,
        "read_committed",
        Duration::from_secs(30),
    )
    .await;
    let r = recs
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(ext.as_bytes()))
        .expect("a state record");
    let grave = r
        .headers
        .iter()
        .find(|(k, _)| k == HEADER_GRAVE)
        .and_then(|(_, v)| decode_grave(v))
        .map(|(rev, _)| rev);
    (r.value.is_some(), grave)
}

/// Whether a DELETED event of `ext` is in the events topic, committed or not.
async fn deleted_written(env: &TestEnv, ext: &str) -> bool {
    read_all(
        &env.infra.bootstrap,
        &env.cfg.topics.events,
        "read_uncommitted",
        Duration::from_secs(30),
    )
    .await
    .iter()
    .any(|r| {
        r.key.as_deref() == Some(ext.as_bytes())
            && r.headers
                .iter()
                .any(|(k, v)| k == "event_type" && v == b"DELETED")
    })
}

/// `delete.retention.ms` of `topic` as the broker describes it.
async fn delete_retention_ms(bootstrap: &str, topic: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    described
        .into_iter()
        .next()
        .and_then(|r| r.ok())
        .and_then(|r| r.get("delete.retention.ms").and_then(|e| e.value.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_relations_update_delete_return_and_survive_sigkill() {
    let env = TestEnv::new(sim_config(23, 400), |c| {
        // Everything is re-read every 2 s: a deletion needs two passes.
        c.windows.rescan = vec![RescanTier {
            max_age_secs: 0,
            every_secs: 2,
        }];
    })
    .await;
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    // Tombstones (and the revisions they carry) stay readable for 7 days by default.
    assert_eq!(
        delete_retention_ms(&env.infra.bootstrap, &env.cfg.topics.state).await,
        Some("604800000".to_string())
    );
    let backfill = env.events().await;
    let created = backfill.len();
    let base = ids(&backfill);
    let of =
        |events: &[Value], ext: &str, ty: &str| -> usize { new_of(&base, events, ext, ty).len() };
    let rels = relations_by_customer(&env);
    let mut multi = rels.iter().filter(|(_, r)| r.len() >= 2);
    let mut single = rels.iter().filter(|(_, r)| r.len() == 1);
    let (a, a_rels) = multi.next().expect("a customer with two relations");
    let (b, b_rels) = single.next().expect("a customer with one relation");
    let (c, c_rels) = single.next().expect("another one");

    // In-process: an ended relation, a customer's last relation, the customer back.
    let (stop, task) = env.spawn();
    let a_qw = remove(&env, a, &a_rels[0]);
    remove(&env, b, &b_rels[0]);
    let events = env
        .wait_events("UPDATED and DELETED", Duration::from_secs(60), |e| {
            of(e, a, "UPDATED") > 0 && of(e, b, "DELETED") > 0
        })
        .await;
    let up = new_of(&base, &events, a, "UPDATED");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0]["changes"][0]["path"], format!("relations[{a_qw}]"));
    assert_eq!(up[0]["changes"][0]["new_value"], Value::Null);
    let del = new_of(&base, &events, b, "DELETED")[0].clone();
    assert_eq!(del["revision"], 2);
    assert_eq!(del["after"]["relations"], serde_json::json!([]));
    assert_eq!(latest_state(&env, b).await, (false, Some(2)));
    let mut back = ApplyRequest::new(MutationKind::New, 1);
    back.external_user_id = Some(b.clone());
    env.sim.control().apply(&back).expect("back");
    let events = env
        .wait_events("CREATED again", Duration::from_secs(60), |e| {
            of(e, b, "CREATED") == 1
        })
        .await;
    assert_eq!(new_of(&base, &events, b, "CREATED")[0]["revision"], 3);
    assert!(latest_state(&env, b).await.0);
    stop.cancel();
    task.await.expect("joins").expect("runs");
    assert_eq!(env.events().await.len(), created + 3);

    // The binary, killed the moment the DELETED of `c` is written (before or just after its
    // commit), then once more 1.5 s into its restart, then left to run.
    remove(&env, c, &c_rels[0]);
    let started = Instant::now();
    let (mut child, _log) = env.spawn_binary(0);
    while !deleted_written(&env, c).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no DELETED written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    (child, _) = env.spawn_binary(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    (child, _) = env.spawn_binary(2);
    env.wait_events("the DELETED committed", Duration::from_secs(60), |e| {
        of(e, c, "DELETED") > 0
    })
    .await;
    // Two more full re-reads of everything (rows served by the simulator), then stop.
    let stats = env.sim.control().stats();
    let target = stats.rows_served + 2 * stats.relations;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.sim.control().stats().rows_served < target {
        assert!(Instant::now() < deadline, "no further re-scan passes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    let events = env.events().await;
    assert_eq!(of(&events, c, "DELETED"), 1, "exactly one DELETED");
    assert_eq!(events.len(), created + 4);
    assert_eq!(latest_state(&env, c).await, (false, Some(2)));
    check_chain(&events);
}
