//! Live mutations: late relations in old windows, profile changes, removals, the log, pause.

mod sim_support;

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use reqwest::Method;
use sim_support::{start, wait_until};
use tanma_connector::customer::Relation;
use tanma_connector::sim::{
    ApplyRequest, MutationCause, MutationKind, MutationRates, MutationRecord, SimConfig,
};

#[tokio::test]
async fn late_relation_appears_in_an_old_window() {
    let cfg = SimConfig::for_tests(21, 200);
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let w_since = s + Span::days(3);
    let w_before = s + Span::days(4);
    let before: Vec<_> = c.window(w_since, w_before, 100).await;

    let at = w_since + Span::hours(5);
    let body = format!(
        r#"{{"kind":"late","count":1,"addTime":"{}"}}"#,
        at.to_rfc3339()
    );
    let (status, out) = c.send_json(Method::POST, "/_sim/apply", &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let recs: Vec<MutationRecord> = serde_json::from_slice(&out).unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(
        (r.kind, r.cause, r.add_time),
        (MutationKind::Late, MutationCause::Apply, at)
    );
    assert!(r.at > e, "server time of the mutation is now");

    let after = c.window(w_since, w_before, 100).await;
    assert_eq!(after.len(), before.len() + 1);
    let new_row = after
        .iter()
        .find(|row| !before.contains(row))
        .expect("one new row");
    assert_eq!(
        new_row.external_user_id.as_deref(),
        Some(r.external_user_id.as_str())
    );
    assert_eq!(new_row.qw_user_id.as_deref(), Some(r.qw_user_id.as_str()));
    // It is not in the neighbouring windows.
    let next_day = c.window(w_before, w_before + Span::days(1), 100).await;
    assert!(!next_day.contains(new_row));

    // Random late relations land within the lookback (default one hour before now).
    let recs = sim
        .control()
        .apply(&ApplyRequest::new(MutationKind::Late, 5))
        .unwrap();
    let now = Utc::now();
    assert!(recs
        .iter()
        .all(|r| r.add_time >= now - Span::hours(1) - Span::seconds(5) && r.add_time < now));
}

#[tokio::test]
async fn changes_and_removals_are_visible_and_logged() {
    let cfg = SimConfig::for_tests(22, 200);
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let truth = sim.control().truth();
    let target = truth[17].clone();
    let ext = target.row.external_user_id.clone().unwrap();
    let qw = target.row.qw_user_id.clone().unwrap();

    let mut prev = Relation::from_row(&target.row, 0).unwrap().1;
    for v in 1..=4u32 {
        let recs = sim
            .control()
            .apply(&ApplyRequest {
                external_user_id: Some(ext.clone()),
                qw_user_id: Some(qw.clone()),
                ..ApplyRequest::new(MutationKind::Changed, 1)
            })
            .unwrap();
        assert_eq!(recs[0].version, v);
        let page = c
            .page(target.add_time, target.add_time + Span::seconds(1), 100, 1)
            .await;
        let row = page
            .result
            .unwrap()
            .into_iter()
            .find(|r| {
                r.qw_user_id.as_deref() == Some(&qw) && r.external_user_id.as_deref() == Some(&ext)
            })
            .expect("still served");
        let rel = Relation::from_row(&row, 0).unwrap().1;
        assert_ne!(rel, prev, "version {v} changed the canonical relation");
        prev = rel;
    }

    let removed = sim
        .control()
        .apply(&ApplyRequest {
            external_user_id: Some(ext.clone()),
            qw_user_id: Some(qw.clone()),
            ..ApplyRequest::new(MutationKind::Removed, 1)
        })
        .unwrap();
    assert_eq!(removed[0].kind, MutationKind::Removed);
    let all = c.window(s, e, 100).await;
    assert_eq!(all.len(), truth.len() - 1);
    assert!(!all.iter().any(
        |r| r.qw_user_id.as_deref() == Some(&qw) && r.external_user_id.as_deref() == Some(&ext)
    ));
    // Removing it again is refused.
    let again = sim.control().apply(&ApplyRequest {
        external_user_id: Some(ext.clone()),
        qw_user_id: Some(qw.clone()),
        ..ApplyRequest::new(MutationKind::Removed, 1)
    });
    assert!(again.is_err());

    // Random changes over HTTP return their keys; the log has everything, in order.
    let (status, out) = c
        .send_json(
            Method::POST,
            "/_sim/apply",
            r#"{"kind":"changed","count":10}"#,
        )
        .await;
    assert_eq!(status, 200);
    let recs: Vec<MutationRecord> = serde_json::from_slice(&out).unwrap();
    assert_eq!(recs.len(), 10);
    let log: Vec<MutationRecord> =
        serde_json::from_slice(&c.get("/_sim/mutations?after=0").await).unwrap();
    assert_eq!(log.len(), 4 + 1 + 10);
    assert!(log.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(log[0].seq, 1);
    let tail: Vec<MutationRecord> =
        serde_json::from_slice(&c.get("/_sim/mutations?after=13").await).unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![14, 15]);

    // Unknown names are 404.
    let (status, _) = c
        .send_json(
            Method::POST,
            "/_sim/apply",
            r#"{"kind":"changed","externalUserId":"nope"}"#,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn new_relations_keep_the_index_ordered() {
    let cfg = SimConfig::for_tests(23, 100);
    let (sim, c) = start(cfg).await;
    let initial = sim.control().stats().relations;
    let recs = sim
        .control()
        .apply(&ApplyRequest::new(MutationKind::New, 40))
        .unwrap();
    assert_eq!(recs.len(), 40);
    let late = sim
        .control()
        .apply(&ApplyRequest::new(MutationKind::Late, 40))
        .unwrap();
    assert_eq!(late.len(), 40);
    assert_eq!(
        sim.control().stats().relations as usize,
        initial as usize + 80
    );
    let truth = sim.control().truth();
    let key = |t: &tanma_connector::sim::TruthRow| {
        (
            t.add_time,
            t.row.external_user_id.clone(),
            t.row.qw_user_id.clone(),
        )
    };
    assert!(truth.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    let now = Utc::now();
    let fresh = c
        .window(now - Span::minutes(2), now + Span::minutes(1), 100)
        .await;
    for r in &recs {
        assert!(fresh.iter().any(|row| row.external_user_id.as_deref()
            == Some(&r.external_user_id)
            && row.qw_user_id.as_deref() == Some(&r.qw_user_id)));
    }
}

#[tokio::test]
async fn background_mutations_run_and_pause() {
    let cfg = SimConfig {
        mutations: MutationRates {
            new_per_sec: 40.0,
            late_per_sec: 10.0,
            changed_per_sec: 40.0,
            removed_per_sec: 5.0,
            late_lookback_secs: 600,
        },
        ..SimConfig::for_tests(24, 500)
    };
    let (sim, c) = start(cfg).await;
    let ctl = sim.control().clone();
    wait_until("background mutations", Duration::from_secs(10), || {
        let ctl = ctl.clone();
        async move {
            let log = ctl.mutations_after(0);
            [
                MutationKind::New,
                MutationKind::Late,
                MutationKind::Changed,
                MutationKind::Removed,
            ]
            .iter()
            .all(|k| log.iter().any(|r| r.kind == *k))
        }
    })
    .await;
    assert!(ctl
        .mutations_after(0)
        .iter()
        .all(|r| r.cause == MutationCause::Scheduled));

    let (status, _) = c.send_json(Method::POST, "/_sim/mutations/pause", "").await;
    assert_eq!(status, 200);
    assert!(ctl.is_paused() && ctl.stats().paused);
    // A tick already running when the pause landed may still finish: take the mark after it.
    let mark = ctl.stats().last_mutation_seq;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mark = ctl.stats().last_mutation_seq.max(mark);
    // Observe a quiet period of several ticks (an absence cannot be waited on).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ctl.stats().last_mutation_seq,
        mark,
        "no mutations while paused"
    );

    let (status, _) = c
        .send_json(Method::POST, "/_sim/mutations/resume", "")
        .await;
    assert_eq!(status, 200);
    wait_until("mutations after resume", Duration::from_secs(10), || {
        let ctl = ctl.clone();
        async move { ctl.stats().last_mutation_seq > mark }
    })
    .await;
    sim.shutdown().await;
}
