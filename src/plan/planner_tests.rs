//! Planner tests: coverage, settle lag, lookback, re-scans and budget, splits, rewind, restart.

use super::*;
use crate::error::{Classify, ErrorClass};
use crate::plan::checkpoint::CheckpointError;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const T0: i64 = 1_700_000_000;

pub(super) fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + s, 0).unwrap()
}

pub(super) fn cfg(
    window: u64,
    settle: u64,
    lookback: u64,
    tiers: &[(u64, u64)],
    budget: f64,
) -> WindowsConfig {
    WindowsConfig {
        start_time: t(0).to_rfc3339(),
        window_secs: window,
        settle_lag_secs: settle,
        lookback_secs: lookback,
        rescan: tiers
            .iter()
            .map(|&(max_age_secs, every_secs)| RescanTier {
                max_age_secs,
                every_secs,
            })
            .collect(),
        rescan_budget_fraction: budget,
        ..WindowsConfig::default()
    }
}

/// Commits every window of every batch at `now` until nothing is due; returns them.
fn drain(p: &mut Planner, now: DateTime<Utc>, max: usize) -> Vec<PlannedWindow> {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let batch = p.next_batch(now, max);
        if batch.is_empty() {
            return all;
        }
        for w in batch {
            p.on_committed(&w).unwrap();
            all.push(w);
        }
    }
    panic!("planner never ran out of work");
}

fn forward(ws: &[PlannedWindow]) -> Vec<Window> {
    ws.iter()
        .filter(|w| w.kind == WindowKind::Forward)
        .map(|w| w.window)
        .collect()
}

pub(super) fn assert_partition(ws: &[Window], from: DateTime<Utc>, until: DateTime<Utc>) {
    let mut at = from;
    for w in ws {
        assert_eq!(w.since, at, "gap or overlap at {w} in {ws:?}");
        assert!(w.since < w.before, "empty window {w}");
        at = w.before;
    }
    assert_eq!(at, until, "range not covered to the end");
}

#[test]
fn backfill_covers_start_to_settled_now_once() {
    let mut p = Planner::new(&cfg(3600, 10, 0, &[], 0.0), None).unwrap();
    let now = t(100_000);
    let ws = drain(&mut p, now, 4);
    let f = forward(&ws);
    assert_partition(&f, t(0), t(99_990));
    assert!(f.iter().all(|w| w.secs() <= 3600));
    assert_eq!(f.last().map(|w| w.secs()), Some(99_990 % 3600));
    assert_eq!(p.watermark(), t(99_990));
    assert!(p.caught_up(now));
    assert_eq!(p.backfill_progress(now), (99_990, 99_990));
    assert!(
        p.next_batch(now, 4).is_empty(),
        "nothing due once caught up"
    );
    // Sequence numbers increase in hand-out order.
    assert!(ws.windows(2).all(|a| a[0].seq < a[1].seq));
}

#[test]
fn nothing_is_planned_past_now_minus_settle_lag() {
    let mut p = Planner::new(&cfg(600, 30, 3600, &[(0, 60)], 0.5), None).unwrap();
    for step in 0..200 {
        let now = t(1000 + step * 17);
        for w in p.next_batch(now, 3) {
            assert!(
                w.window.before <= now - TimeDelta::seconds(30),
                "{w:?} at {now}"
            );
            p.on_committed(&w).unwrap();
        }
    }
    // Before start + settle nothing at all.
    let mut q = Planner::new(&cfg(600, 30, 3600, &[(0, 60)], 0.5), None).unwrap();
    assert!(q.next_batch(t(29), 4).is_empty());
}

#[test]
fn lookback_rereads_behind_the_forward_edge_once_per_cycle() {
    let mut p = Planner::new(&cfg(1000, 0, 2500, &[], 0.0), None).unwrap();
    // Backfill: no lookback while forward work remains.
    let batch = p.next_batch(t(10_000), 3);
    assert!(batch.iter().all(|w| w.kind == WindowKind::Forward));
    for w in &batch {
        p.on_committed(w).unwrap();
    }
    let ws = drain(&mut p, t(10_000), 3);
    let lb: Vec<Window> = ws
        .iter()
        .filter(|w| w.kind == WindowKind::Lookback)
        .map(|w| w.window)
        .collect();
    assert_partition(&lb, t(7_500), t(10_000));
    assert!(lb.iter().all(|w| w.secs() <= 1000));
    // The next cycle looks back from the new edge.
    let ws = drain(&mut p, t(10_005), 8);
    assert_partition(&forward(&ws), t(10_000), t(10_005));
    let lb: Vec<Window> = ws
        .iter()
        .filter(|w| w.kind == WindowKind::Lookback)
        .map(|w| w.window)
        .collect();
    assert_partition(&lb, t(7_505), t(10_005));
    // No movement, no lookback.
    assert!(p.next_batch(t(10_005), 8).is_empty());
}

#[test]
fn lookback_is_clipped_to_start() {
    let mut p = Planner::new(&cfg(1000, 0, 5000, &[], 0.0), None).unwrap();
    let ws = drain(&mut p, t(1500), 8);
    let lb: Vec<Window> = ws
        .iter()
        .filter(|w| w.kind == WindowKind::Lookback)
        .map(|w| w.window)
        .collect();
    assert_partition(&lb, t(0), t(1500));
}

#[test]
fn split_replaces_window_by_halves_and_takes_back_later_ones() {
    let mut p = Planner::new(&cfg(100, 0, 0, &[], 0.0), None).unwrap();
    let b = p.next_batch(t(1000), 4);
    p.on_committed(&b[0]).unwrap();
    p.split(&b[1]).unwrap();
    // Later windows are no longer outstanding.
    assert!(matches!(
        p.on_committed(&b[2]),
        Err(PlanError::NotOutstanding { .. })
    ));
    let n = p.next_batch(t(1000), 4);
    let got: Vec<Window> = n.iter().map(|w| w.window).collect();
    assert_eq!(
        got,
        vec![
            Window::new(t(100), t(150)),
            Window::new(t(150), t(200)),
            b[2].window,
            b[3].window
        ]
    );
    assert!(n.iter().all(|w| w.seq > b[3].seq));
    let one = PlannedWindow {
        window: Window::new(t(5), t(6)),
        ..n[0]
    };
    let mut q = Planner::new(&cfg(1, 0, 0, &[], 0.0), None).unwrap();
    let w = q.next_batch(t(10), 1)[0];
    assert!(matches!(q.split(&w), Err(PlanError::Unsplittable { .. })));
    assert!(matches!(
        p.split(&one),
        Err(PlanError::NotOutstanding { .. })
    ));
}

#[test]
fn commits_must_follow_hand_out_order() {
    let mut p = Planner::new(&cfg(100, 0, 0, &[], 0.0), None).unwrap();
    let b = p.next_batch(t(1000), 3);
    let e = p.on_committed(&b[1]).unwrap_err();
    assert!(matches!(
        e,
        PlanError::OutOfOrder {
            got: 1,
            expected: 0,
            ..
        }
    ));
    assert_eq!(e.class(), ErrorClass::Fatal);
    p.on_committed(&b[0]).unwrap();
    assert!(matches!(
        p.on_committed(&b[0]),
        Err(PlanError::NotOutstanding { .. })
    ));
}

#[test]
fn watermark_moving_backwards_is_an_error_not_a_panic() {
    let mut p = Planner::new(&cfg(100, 0, 0, &[], 0.0), None).unwrap();
    let b = p.next_batch(t(1000), 2);
    p.committed_watermark = t(5000); // simulate corrupted bookkeeping
    let e = p.on_committed(&b[0]).unwrap_err();
    assert!(matches!(e, PlanError::WatermarkBackwards { .. }));
}

#[test]
fn rewind_replans_the_same_windows() {
    let mut p = Planner::new(&cfg(100, 0, 50, &[(0, 10)], 0.5), None).unwrap();
    // Get a re-scan pass going behind a watermark.
    drain(&mut p, t(1000), 4);
    let now = t(1300);
    let b = p.next_batch(now, 6);
    assert!(b
        .iter()
        .any(|w| matches!(w.kind, WindowKind::Rescan { .. })));
    let cp_before = p.checkpoint_after(&b[0]);
    p.on_committed(&b[0]).unwrap();
    p.rewind();
    let again = p.next_batch(now, 6);
    let key = |w: &PlannedWindow| (w.window, w.kind);
    assert_eq!(
        again.iter().take(b.len() - 1).map(key).collect::<Vec<_>>(),
        b[1..].iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(p.watermark(), cp_before.watermark);
}

#[test]
fn restart_resumes_with_in_flight_windows_first() {
    let c = cfg(100, 0, 0, &[(0, 500)], 0.5);
    let mut p = Planner::new(&c, None).unwrap();
    let now = t(2000);
    let b = p.next_batch(now, 4);
    let cp = p.checkpoint_after(&b[0]);
    p.on_committed(&b[0]).unwrap();
    let restored = Checkpoint::from_bytes(&cp.to_bytes()).unwrap();
    assert_eq!(restored.watermark, b[0].window.before);
    let mut q = Planner::new(&c, Some(restored)).unwrap();
    assert_eq!(q.watermark(), b[0].window.before);
    let n = q.next_batch(now, 4);
    let key = |w: &PlannedWindow| (w.window, w.kind);
    assert_eq!(
        n[..3].iter().map(key).collect::<Vec<_>>(),
        b[1..].iter().map(key).collect::<Vec<_>>()
    );
    for w in &n {
        q.on_committed(w).unwrap();
    }
    let mut f = forward(&b[..1]);
    f.extend(forward(&n));
    f.extend(forward(&drain(&mut q, now, 4)));
    assert_partition(&f, t(0), t(2000));
}

#[test]
fn restart_with_future_checkpoint_version_is_fatal() {
    let mut cp = Planner::new(&cfg(100, 0, 0, &[], 0.0), None)
        .unwrap()
        .checkpoint();
    cp.version = 7;
    let e = Planner::new(&cfg(100, 0, 0, &[], 0.0), Some(cp)).unwrap_err();
    assert!(matches!(
        e,
        PlanError::Checkpoint(CheckpointError::UnsupportedVersion { found: 7, .. })
    ));
    assert_eq!(e.class(), ErrorClass::Fatal);
}

#[test]
fn changed_tier_starts_afresh_and_drops_its_rereads() {
    let mut p = Planner::new(&cfg(100, 0, 0, &[(0, 50)], 1.0), None).unwrap();
    drain(&mut p, t(1000), 4);
    let b = p.next_batch(t(1100), 4);
    assert!(b.iter().any(|w| w.kind == WindowKind::Rescan { tier: 0 }));
    let cp = p.checkpoint_after(&b[0]);
    let q = Planner::new(&cfg(100, 0, 0, &[(0, 99)], 1.0), Some(cp)).unwrap();
    assert!(q.rescans[0].pass.is_none());
    assert!(q.pending.iter().all(|f| f.kind == WindowKind::Forward));
}

/// Runs a caught-up connector for `cycles` polls of `step` seconds; returns, per tier, the
/// passes as (started_at, range, windows committed for it).
type Pass = (DateTime<Utc>, Sweep, Vec<Window>);
fn steady_state(p: &mut Planner, from: i64, step: i64, cycles: i64, max: usize) -> Vec<Vec<Pass>> {
    let mut passes: Vec<Vec<Pass>> = vec![Vec::new(); p.rescans.len()];
    for c in 0..cycles {
        let now = t(from + c * step);
        loop {
            let batch = p.next_batch(now, max);
            if batch.is_empty() {
                break;
            }
            for w in batch {
                if let WindowKind::Rescan { tier } = w.kind {
                    let pass = p.rescans[tier].pass.clone().unwrap();
                    let list = &mut passes[tier];
                    if list.last().map(|l| l.0) != Some(pass.started_at) {
                        list.push((pass.started_at, pass.sweep, Vec::new()));
                    }
                    list.last_mut().unwrap().2.push(w.window);
                }
                p.on_committed(&w).unwrap();
            }
        }
    }
    passes
}

#[test]
fn rescan_tiers_sweep_their_range_once_per_period() {
    let mut p = Planner::new(&cfg(600, 5, 0, &[(3600, 900), (0, 7200)], 0.3), None).unwrap();
    drain(&mut p, t(20_000), 4);
    let passes = steady_state(&mut p, 20_000, 60, 600, 4);
    for (tier, list) in passes.iter().enumerate() {
        let every = [900, 7200][tier];
        assert!(
            list.len() >= (600 * 60 / every) as usize - 2,
            "tier {tier}: {} passes",
            list.len()
        );
        for (started, sweep, ws) in list {
            assert_partition(ws, sweep.from, sweep.until);
            let max_age = [3600, 0][tier];
            let want_from = if max_age == 0 {
                t(0)
            } else {
                t(0).max(*started - TimeDelta::seconds(max_age))
            };
            assert_eq!(sweep.from, want_from);
            assert!(sweep.until <= *started - TimeDelta::seconds(5));
        }
        for pair in list.windows(2) {
            let gap = (pair[1].0 - pair[0].0).num_seconds();
            assert!(gap >= every, "tier {tier} started again after {gap}s");
            assert!(gap <= every + 60, "tier {tier} late: {gap}s");
        }
    }
    assert!(p.rescan_progress().iter().all(|x| *x == 1.0));
}

#[test]
fn forward_never_starves_during_backfill_and_budget_holds() {
    let mut p = Planner::new(&cfg(3600, 0, 600, &[(86_400, 60), (0, 600)], 0.3), None).unwrap();
    let mut now = t(200 * 86_400);
    let (mut rescan_total, mut batches) = (0, 0);
    while p.frontier < now {
        now += TimeDelta::seconds(7);
        let batch = p.next_batch(now, 4);
        let rescans = batch
            .iter()
            .filter(|w| matches!(w.kind, WindowKind::Rescan { .. }))
            .count();
        assert!(
            batch.iter().any(|w| w.kind == WindowKind::Forward),
            "batch without forward"
        );
        if p.frontier < now {
            assert!(rescans <= 1, "{rescans} re-scan windows in a batch of 4");
            assert!(batch.iter().all(|w| w.kind != WindowKind::Lookback));
        }
        rescan_total += rescans;
        batches += 1;
        for w in batch {
            p.on_committed(&w).unwrap();
        }
    }
    assert!(batches > 1000);
    assert!(
        rescan_total > batches / 2,
        "re-scans barely ran: {rescan_total} in {batches}"
    );
    let (done, total) = p.backfill_progress(now);
    assert_eq!(done, total);
}

#[test]
fn batch_of_one_shares_by_credit() {
    let mut p = Planner::new(&cfg(60, 0, 0, &[(0, 1)], 0.25), None).unwrap();
    drain(&mut p, t(600), 1);
    let (mut fwd, mut rs) = (0, 0);
    for i in 0..400 {
        let b = p.next_batch(t(100_000 + i), 1);
        assert_eq!(b.len(), 1);
        match b[0].kind {
            WindowKind::Forward => fwd += 1,
            _ => rs += 1,
        }
        p.on_committed(&b[0]).unwrap();
    }
    assert_eq!((fwd, rs), (300, 100));
}

#[test]
fn caught_up_rescans_may_fill_the_batch() {
    let mut p = Planner::new(&cfg(100, 0, 0, &[(0, 1000)], 0.1), None).unwrap();
    drain(&mut p, t(600), 4); // the first pass, at t(600), had nothing to re-read
    let kinds = |b: &[PlannedWindow]| {
        let f = b.iter().filter(|w| w.kind == WindowKind::Forward).count();
        (f, b.len() - f)
    };
    let b1 = p.next_batch(t(1600), 8);
    assert_eq!(kinds(&b1), (7, 1), "forward left: one re-scan slot");
    b1.iter().for_each(|w| p.on_committed(w).unwrap());
    let b2 = p.next_batch(t(1600), 8);
    assert_eq!(kinds(&b2), (3, 5), "caught up: re-scans take the rest");
}

#[test]
fn dense_ranges_start_split_on_the_next_pass() {
    let mut p = Planner::new(&cfg(1000, 0, 0, &[(0, 100)], 1.0), None).unwrap();
    let b = p.next_batch(t(4000), 4);
    p.on_committed(&b[0]).unwrap();
    p.split(&b[1]).unwrap(); // [1000, 2000) is dense
    drain(&mut p, t(4000), 4);
    let passes = steady_state(&mut p, 4100, 100, 2, 8);
    let ws = &passes[0].last().unwrap().2;
    assert!(ws.contains(&Window::new(t(1000), t(1500))), "{ws:?}");
    assert!(ws
        .iter()
        .all(|w| !(w.since < t(2000) && w.before > t(1000)) || w.secs() <= 500));
}

/// A summary of a complete read of `total` rows.
pub(super) fn read_of(total: u64, complete: bool) -> ReadSummary {
    ReadSummary {
        total_count: total,
        complete,
        requests: 1,
        reread_requests: 0,
        pages: total.div_ceil(100) as u32,
    }
}

/// Runs batches at `now` like the pipeline, over data that is sparse except one second at `bulk`
/// holding 2,000 rows (threshold 1,000): a window holding it is split unless it is one second.
/// Returns the windows committed.
fn drain_with_bulk(p: &mut Planner, now: DateTime<Utc>, bulk: DateTime<Utc>) -> Vec<PlannedWindow> {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let batch = p.next_batch(now, 4);
        if batch.is_empty() {
            return all;
        }
        for w in batch {
            let holds = w.window.since <= bulk && bulk < w.window.before;
            if holds && w.window.secs() > 1 {
                p.split(&w).unwrap();
                break;
            }
            p.record_read(&w, read_of(if holds { 2_000 } else { 10 }, true))
                .unwrap();
            p.on_committed(&w).unwrap();
            all.push(w);
        }
    }
    panic!("planner never ran out of work");
}

/// The case: a bulk second above the threshold made every later re-scan crawl the
/// surrounding windows one second at a time. Now a re-scan reads the second alone and the rest of
/// the range in windows of full width, ending at its edges.
#[test]
fn a_dense_second_is_read_alone_and_rescans_do_not_crawl() {
    let day = 86_400;
    let mut c = cfg(day as u64, 0, 0, &[(0, 10)], 1.0);
    c.split_threshold = 1_000;
    let mut p = Planner::new(&c, None).unwrap();
    let bulk = t(day + 50_000);
    let backfill = drain_with_bulk(&mut p, t(3 * day), bulk);
    let second = Window::new(bulk, bulk + TimeDelta::seconds(1));
    assert!(backfill.iter().any(|w| w.window == second));
    let rescan = drain_with_bulk(&mut p, t(3 * day + 20), bulk);
    let ws: Vec<Window> = rescan
        .iter()
        .filter(|w| matches!(w.kind, WindowKind::Rescan { .. }))
        .map(|w| w.window)
        .collect();
    assert_partition(&ws, t(0), t(3 * day));
    assert!(ws.contains(&second), "{ws:?}");
    assert!(ws.len() <= 5, "{} windows: {ws:?}", ws.len());
    let cost = p.pass_costs[0];
    assert_eq!(
        (cost.windows, cost.requests),
        (ws.len() as u64, ws.len() as u64)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random splits, failed transactions and restarts from the last committed checkpoint (via
    /// JSON): the committed forward windows still cover [start, now - settle) exactly once.
    #[test]
    fn forward_coverage_survives_splits_rewinds_and_restarts(
        seed in any::<u64>(),
        window in 30u64..5000,
        settle in 0u64..100,
        lookback in 0u64..3000,
        every in 1u64..5000,
        budget in 0.0f64..1.0,
        max in 1usize..6,
    ) {
        let c = cfg(window, settle, lookback, &[(2000, every), (0, every * 3)], budget);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Planner::new(&c, None).unwrap();
        let mut last_cp: Option<Vec<u8>> = None;
        let mut fwd = Vec::new();
        let mut passes: std::collections::BTreeMap<(usize, DateTime<Utc>), (Sweep, Vec<Window>)> =
            Default::default();
        let mut now = t(0);
        for step in 0..400 {
            if step < 300 {
                now += TimeDelta::seconds(rng.random_range(0..200));
            }
            let limit = now - TimeDelta::seconds(settle as i64);
            let batch = p.next_batch(now, max);
            prop_assert!(batch.len() <= max);
            for w in batch {
                prop_assert!(w.window.before <= limit && w.window.since >= t(0));
                let r = rng.random_range(0..100);
                if step < 300 && r < 10 && w.window.secs() > 1 {
                    p.split(&w).unwrap();
                    break;
                }
                if step < 300 && r < 14 {
                    p.rewind();
                    break;
                }
                if step < 300 && r < 17 {
                    let cp = last_cp.as_deref().map(|b| Checkpoint::from_bytes(b).unwrap());
                    p = Planner::new(&c, cp).unwrap();
                    break;
                }
                if let WindowKind::Rescan { tier } = w.kind {
                    let pass = p.rescans[tier].pass.clone().unwrap();
                    passes.entry((tier, pass.started_at)).or_insert((pass.sweep, Vec::new())).1.push(w.window);
                }
                p.record_read(&w, read_of(10, r >= 30)).unwrap();
                let cp = p.checkpoint_after(&w);
                p.on_committed(&w).unwrap();
                prop_assert_eq!(p.watermark(), cp.watermark);
                last_cp = Some(cp.to_bytes());
                if w.kind == WindowKind::Forward {
                    fwd.push(w.window);
                }
            }
        }
        // Finish without faults at a fixed clock: everything due gets committed.
        loop {
            let batch = p.next_batch(now, max);
            if batch.is_empty() {
                break;
            }
            for w in batch {
                if let WindowKind::Rescan { tier } = w.kind {
                    let pass = p.rescans[tier].pass.clone().unwrap();
                    passes.entry((tier, pass.started_at)).or_insert((pass.sweep, Vec::new())).1.push(w.window);
                }
                p.on_committed(&w).unwrap();
                if w.kind == WindowKind::Forward {
                    fwd.push(w.window);
                }
            }
        }
        for ((tier, started), (sweep, mut ws)) in passes {
            prop_assert!(!p.rescans[tier].pass.as_ref().unwrap().running(), "tier {} {}", tier, started);
            ws.sort();
            assert_partition(&ws, sweep.from, sweep.until);
        }
        let limit = (now - TimeDelta::seconds(settle as i64)).max(t(0));
        assert_partition(&fwd, t(0), limit);
        prop_assert_eq!(p.watermark(), limit);
    }
}
