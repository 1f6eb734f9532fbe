//! End-to-end with bulk imports: seconds holding more relations than three pages and than
//! `windows.split_threshold`, served in a new order on every request (as SQL paging with ties
//! does), against the real broker and schema registry.
//!
//! 1. The backfill alone brings every relation, each in the read of the window that holds its
//!    add time: the audit is clean right after it, with exactly one CREATED per customer, and
//!    every relation an event adds lies in that event's window (no mutations: a relation added
//!    by the read of a later window would be one the backfill missed when it read its own).
//! 2. A re-scan pass costs what its windows' rows cost: `requests <= 1.05 × Σ ceil(totalCount /
//!    pageSize)` over its windows, plus the re-reads the unstable order forces (from the
//!    planner's `tanma_rescan_pass_*` gauges), and emits nothing. An empty window adds nothing
//!    to the sum, so a pass that crawled a range second by second would fail this.
//!
//! One test in this binary: it installs the process-wide metrics recorder. Prints its figures
//! (BENCHMARKS.md, "Bulk imports and unstable order").

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use support::harness::{sim_config, TestEnv};
use tanma_connector::config::RescanTier;
use tanma_connector::pipeline::Exit;
use tanma_connector::sim::BulkImports;

const BULK_SECONDS: u32 = 3;
const BULK_ROWS: u32 = 1_500;

/// The value of `series` (name with labels) in a Prometheus text rendering; 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .filter(|v| v.starts_with(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Checks that every relation an event adds (all of a CREATED's, the new ones of an UPDATED)
/// has its add time in the event's window, and that no UPDATED changes a known relation.
fn assert_first_sight_in_own_window(
    events: &[Value],
    add_times: &HashMap<(String, String), DateTime<Utc>>,
) {
    let time = |v: &Value| {
        DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .map(|t| t.to_utc())
            .unwrap_or_else(|e| panic!("window bound {v}: {e}"))
    };
    let relations = |image: &Value| -> HashMap<String, Value> {
        image["relations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["qw_user_id"].as_str().unwrap_or_default().to_string(),
                            r.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for e in events {
        let ext = e["external_user_id"].as_str().unwrap_or_default();
        let (since, before) = (time(&e["window_since"]), time(&e["window_before"]));
        let old = relations(&e["before"]);
        for (qw, r) in relations(&e["after"]) {
            match old.get(&qw) {
                Some(o) => assert_eq!(o, &r, "{ext}/{qw} changed without a mutation"),
                None => {
                    let at = add_times[&(ext.to_string(), qw.clone())];
                    assert!(
                        since <= at && at < before,
                        "{ext}/{qw} (added {at}) reached the stream in window [{since}, {before}): \
                         the read of its own window missed it"
                    );
                }
            }
        }
    }
}

fn ok_requests(env: &TestEnv) -> u64 {
    env.sim.control().stats().requests["ok"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_seconds_in_unstable_order_reach_the_stream_in_the_backfill() {
    let metrics = tanma_connector::ops::metrics::install().expect("metrics recorder");
    let mut sim = sim_config(29, 3_000);
    // Thirty days of history ending two hours ago: re-scans read data, not empty windows.
    let now = Utc::now().timestamp();
    sim.end = DateTime::from_timestamp(now - now % 60 - 7_200, 0).expect("time");
    sim.start = sim.end - chrono::Duration::days(30);
    sim.bulk = BulkImports {
        seconds: BULK_SECONDS,
        rows: BULK_ROWS,
    };
    sim.faults.unstable_order = 1.0;
    let mut env = TestEnv::new(sim, |c| {
        c.windows.window_secs = 21_600;
        c.windows.split_threshold = 1_000;
    })
    .await;
    let page = u64::from(env.cfg.api.page_size);
    assert!(u64::from(BULK_ROWS) > 3 * page && u64::from(BULK_ROWS) > 1_000);
    let stats = env.sim.control().stats();

    // 1. The backfill (re-scans off: the first pass has nothing to read, the next is a year away).
    let started = Instant::now();
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let backfill_secs = started.elapsed().as_secs_f64();
    let backfill_requests = ok_requests(&env);
    let audit = env.audit().await;
    assert!(audit.clean(), "{audit:#?}");
    assert_eq!(audit.created as usize, audit.truth_customers);
    let events = env.events().await;
    let add_times: HashMap<(String, String), DateTime<Utc>> = env
        .sim
        .control()
        .truth()
        .into_iter()
        .map(|t| {
            let key = (
                t.row.external_user_id.unwrap_or_default(),
                t.row.qw_user_id.unwrap_or_default(),
            );
            (key, t.add_time)
        })
        .collect();
    assert_first_sight_in_own_window(&events, &add_times);
    let updated = events
        .iter()
        .filter(|e| e["event_type"] == "UPDATED")
        .count();
    let text = metrics.render();
    assert_eq!(metric(&text, "tanma_window_incomplete_reads_total"), 0.0);
    let backfill_rereads = metric(&text, "tanma_window_reread_requests_total");
    let backfill_splits = metric(&text, "tanma_windows_split_total");
    assert!(
        backfill_rereads > 0.0,
        "the unstable order forced no re-read"
    );

    // 2. Re-scan passes back to back, in a new run (the tier changed: its pass starts at once).
    // The first pass learns the dense seconds again (the memory of dense ranges is not kept
    // across restarts); the second and later ones show the steady cost.
    env.cfg.windows.rescan = vec![RescanTier {
        max_age_secs: 0,
        every_secs: 1,
    }];
    let passes = |t: &str| metric(t, "tanma_plan_rescan_passes_total{tier=\"0\"}");
    let before = passes(&metrics.render());
    let (stop, run) = env.spawn();
    support::wait::wait_until("two re-scan passes", Duration::from_secs(300), || {
        let done = passes(&metrics.render()) >= before + 2.0;
        assert!(done || !run.is_finished(), "the connector stopped");
        async move { done }
    })
    .await;
    stop.cancel();
    assert_eq!(run.await.expect("join").expect("run"), Exit::Shutdown);
    let text = metrics.render();
    let gauge = |name: &str| metric(&text, &format!("{name}{{tier=\"0\"}}"));
    let windows = gauge("tanma_rescan_pass_windows");
    let requests = gauge("tanma_rescan_pass_requests");
    let rereads = gauge("tanma_rescan_pass_reread_requests");
    let pages = gauge("tanma_rescan_pass_pages");
    assert_eq!(metric(&text, "tanma_window_incomplete_reads_total"), 0.0);
    assert_eq!(
        env.events().await.len(),
        events.len(),
        "re-scans emitted events"
    );

    eprintln!(
        "FIGURES relations={} (bulk {}x{}), customers={}, page_size={page}, split_threshold=1000; \
         backfill: {backfill_requests} requests in {backfill_secs:.1} s, {backfill_rereads} of \
         them re-reads, {backfill_splits} windows split, {} events ({updated} UPDATED adding relations of later windows); re-scan pass: {windows} windows, {requests} requests = {} first-pass + {rereads} re-reads, \
         Σ ceil(rows/page) {pages}, first-pass/pages = {:.3}",
        stats.relations,
        BULK_SECONDS,
        BULK_ROWS,
        stats.customers,
        events.len(),
        requests - rereads,
        (requests - rereads) / pages
    );
    assert!(pages > 0.0 && requests > 0.0, "the pass was measured");
    assert!(
        rereads > 0.0,
        "the bulk seconds were read again in the pass"
    );
    assert!(
        requests <= 1.05 * pages + rereads,
        "a re-scan pass cost {requests} requests for {pages} pages and {rereads} re-reads"
    );
}
