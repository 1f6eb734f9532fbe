use super::*;

fn behind(done_secs: u64, total_secs: u64, customers: u64) -> Status {
    Status {
        done_secs,
        total_secs,
        caught_up: false,
        customers,
        watermark_lag: Duration::from_secs(total_secs - done_secs.min(total_secs)),
    }
}

fn caught_up(customers: u64) -> Status {
    Status {
        done_secs: 100,
        total_secs: 100,
        caught_up: true,
        customers,
        watermark_lag: Duration::from_secs(4),
    }
}

#[test]
fn eta_from_average_rate() {
    let mut r = Rate::default();
    let t0 = Instant::now();
    assert_eq!(r.eta(t0, 100, 1000), None);
    // 100 s of add-time per second of wall time, 800 left: 8 s.
    let eta = r.eta(t0 + Duration::from_secs(1), 200, 1000);
    assert_eq!(eta.map(|d| d.as_secs()), Some(8));
}

#[test]
fn logs_at_most_once_per_interval() {
    let p = Progress::logging(Duration::from_secs(3600));
    assert!(p.update(&behind(10, 100, 1)), "first update logs");
    assert!(
        !p.update(&behind(20, 100, 2)),
        "second update within the interval is quiet"
    );
    let p = Progress::logging(Duration::ZERO);
    assert!(p.update(&behind(10, 100, 1)));
    assert!(p.update(&behind(20, 100, 2)));
    p.finish();
    p.finish();
}

#[test]
fn catching_up_switches_to_the_status_line_at_once() {
    let p = Progress::logging(Duration::from_secs(3600));
    assert!(p.update(&behind(10, 100, 1)));
    assert!(!p.update(&behind(20, 100, 1)));
    // A new phase logs its first line at once, then at the phase's interval.
    assert!(p.update(&caught_up(5)), "caught up: first status line");
    assert!(!p.update(&caught_up(5)));
    assert_eq!(p.lock().phase, Phase::CaughtUp);
    // Falling behind again brings the backfill report back.
    assert!(p.update(&behind(30, 100, 5)));
    assert_eq!(p.lock().phase, Phase::Backfill);
}

#[test]
fn nothing_is_reported_after_finish() {
    let p = Progress::logging(Duration::ZERO);
    assert!(p.update(&caught_up(3)));
    p.finish();
    assert!(!p.update(&caught_up(3)), "updates after finish are ignored");
    assert!(!p.update(&behind(1, 100, 3)));
    let g = p.lock();
    assert_eq!(g.phase, Phase::Finished);
    assert!(g.bar.is_none());
}

#[test]
fn percent_is_bounded() {
    assert_eq!(percent(0, 0), 100.0);
    assert_eq!(percent(1, 3), 33.3);
    let p = Progress::disabled();
    assert!(!p.update(&behind(500, 100, 0)));
    assert_eq!(p.lock().status.done_secs, 100, "done is clamped to total");
}

#[test]
fn events_per_minute_count_only_the_last_minute() {
    let mut t = Tally::new();
    let t0 = Instant::now();
    assert_eq!(
        t.activity(t0),
        Activity {
            events_last_minute: 0,
            since_last_commit: None
        }
    );
    t.record(t0, 7);
    t.record(t0 + Duration::from_secs(30), 5);
    // A commit without events still counts as a commit.
    t.record(t0 + Duration::from_secs(40), 0);
    let a = t.activity(t0 + Duration::from_secs(45));
    assert_eq!(a.events_last_minute, 12);
    assert_eq!(a.since_last_commit, Some(Duration::from_secs(5)));
    let a = t.activity(t0 + Duration::from_secs(75));
    assert_eq!(
        a.events_last_minute, 5,
        "the first commit is over a minute old"
    );
    assert_eq!(a.since_last_commit, Some(Duration::from_secs(35)));
}

#[test]
fn the_tally_keeps_one_entry_per_second() {
    let mut t = Tally::new();
    let t0 = Instant::now();
    for i in 0..10_000u64 {
        t.record(t0 + Duration::from_micros(i * 100), 1);
    }
    assert_eq!(t.recent.len(), 1);
    assert_eq!(
        t.activity(t0 + Duration::from_secs(2)).events_last_minute,
        10_000
    );
}

#[test]
fn the_status_line_reads_well() {
    let activity = Activity {
        events_last_minute: 12,
        since_last_commit: Some(Duration::from_secs(3)),
    };
    assert_eq!(since_commit(&activity), "last commit 3s ago");
    assert_eq!(
        caught_up_details(&caught_up(20_004), &activity),
        "12 events/min · watermark lag 4s · 20004 customers"
    );
    let none = Activity {
        events_last_minute: 0,
        since_last_commit: None,
    };
    assert_eq!(since_commit(&none), "no commit yet");
    assert_eq!(short(Duration::from_secs(59)), "59s");
    assert_eq!(short(Duration::from_secs(187)), "3m07s");
    assert_eq!(short(Duration::from_secs(5 * 3600 + 125)), "5h02m");
}

#[test]
fn every_template_parses() {
    for t in [
        BAR_TEMPLATE,
        BAR_DONE_TEMPLATE,
        BAR_STOPPED_TEMPLATE,
        LIVE_TEMPLATE,
    ] {
        assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
    }
}
