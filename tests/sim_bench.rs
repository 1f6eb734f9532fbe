//! Size and speed of a 1,000,000-customer simulator. Ignored (slow); run with
//! `cargo test --test sim_bench -- --ignored --nocapture`. Prints figures, asserts no timings.

mod sim_support;

use std::time::Instant;

use chrono::Duration;
use rand::{Rng, SeedableRng};
use sim_support::{local, start};
use tanma_connector::sim::SimConfig;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: 1M customers, prints figures"]
async fn one_million_customers() {
    let before = rss_mb();
    let started = Instant::now();
    let cfg = SimConfig::for_tests(1, 1_000_000);
    let (s, e) = (cfg.start, cfg.end);
    let (sim, c) = start(cfg).await;
    let gen = started.elapsed();
    let after = rss_mb();
    let stats = sim.control().stats();
    println!(
        "dataset: {} customers, {} relations, generated in {:.2?}, RSS {:.0} MB -> {:.0} MB (+{:.0} MB)",
        stats.customers, stats.relations, gen, before, after, after - before
    );

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let span = (e - s).num_seconds();
    let mut lat = Vec::new();
    for i in 0..2000 {
        // A random one-hour window (≈ 2,800 relations), a random page of 100 within it; every
        // tenth request pages deep into the whole span.
        let (since, before, page) = if i % 10 == 0 {
            (s, e, rng.random_range(1..20_000u32))
        } else {
            let t = s + Duration::seconds(rng.random_range(0..span - 3600));
            (t, t + Duration::hours(1), rng.random_range(1..=20u32))
        };
        let (ls, lb) = (local(since, c.tz), local(before, c.tz));
        let t0 = Instant::now();
        let r = c.request(&ls, &lb, 100, page).await;
        lat.push(t0.elapsed());
        assert_eq!(r.api().code, 0);
    }
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "100-row pages over HTTP (client-measured, sequential, {} requests): p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}",
        lat.len(),
        pct(50),
        pct(90),
        pct(99),
        lat[lat.len() - 1]
    );
    let t0 = Instant::now();
    let truth = sim.control().truth();
    println!(
        "in-process truth of {} rows rendered in {:.2?}, RSS now {:.0} MB",
        truth.len(),
        t0.elapsed(),
        rss_mb()
    );
    assert_eq!(truth.len() as u64, stats.relations);
}
