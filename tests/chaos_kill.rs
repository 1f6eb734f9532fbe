//! The kill test: the real connector binary, killed with SIGKILL at random points (during
//! start-up and state restore, and in the middle of committing) at least 10 times during
//! backfill plus live mutations (new, late and changed relations; no removals, the connector does
//! not emit deletions), against the real broker, registry and simulator. After the last restart
//! the committed events must equal the changes in the simulator's truth — none missing, none
//! twice, none spurious — and the state topic's latest snapshot of every customer must equal
//! the truth.
//!
//! The random points come from a seed printed at the start; `CHAOS_KILL_SEED=<n>` replays one.

mod support;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::harness::{sim_config, TestEnv};
use support::poll_until;
use tanma_connector::commands::verify::{audit_all, audit_state, fetch_truth, read_state};
use tanma_connector::config::{Config, RescanTier};
use tanma_connector::publish::client_config;
use tanma_connector::sim::MutationRates;

/// Kills of the connector before the final run.
const KILLS: u32 = 10;

/// Sum of the checkpoint topic's high watermarks: grows with every committed (or aborted)
/// transaction of the connector.
async fn checkpoint_end(cfg: &Config) -> i64 {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&cfg.kafka)
            .set("group.id", "chaos-kill-watermarks")
            .create()
            .expect("consumer");
        let topic = &cfg.topics.checkpoint;
        // Missing until the first run created it.
        let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
            return 0;
        };
        let parts = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        (0..parts)
            .filter_map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).ok())
            .map(|(_, high)| high)
            .sum()
    })
    .await
    .expect("join")
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Panics with the connector's log if it exited by itself (it must only die by our SIGKILL).
fn assert_running(child: &mut tokio::process::Child, log: &std::path::Path, round: u32) {
    if let Some(status) = child.try_wait().expect("try_wait") {
        panic!(
            "connector run {round} exited by itself with {status}; log {}:\n{}",
            log.display(),
            tail(log)
        );
    }
}

/// Waits up to 30 s for the checkpoint topic to grow past `before` (a commit of this run), while
/// checking that the connector is still running. True once it has.
async fn wait_committed(
    cfg: &Config,
    before: i64,
    child: &mut tokio::process::Child,
    log: &std::path::Path,
    round: u32,
) -> bool {
    let child = std::cell::RefCell::new(child);
    let child = &child;
    poll_until(Duration::from_secs(30), || async move {
        assert_running(&mut child.borrow_mut(), log, round);
        (checkpoint_end(cfg).await > before).then_some(())
    })
    .await
    .is_some()
}

async fn sigkill(child: &mut tokio::process::Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let seed = std::env::var("CHAOS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("chaos_kill seed {seed} (replay with CHAOS_KILL_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let mut sim = sim_config(seed % 1000, 2_000);
    sim.mutations = MutationRates {
        new_per_sec: 15.0,
        late_per_sec: 5.0,
        changed_per_sec: 20.0,
        removed_per_sec: 0.0,
        // Late relations anywhere since the start: found only by re-scans of old windows.
        late_lookback_secs: 0,
    };
    let env = TestEnv::new(sim, |c| {
        // Re-read everything every few seconds so that changes and late relations in old
        // windows become UPDATED events while the kills go on.
        c.windows.rescan = vec![RescanTier {
            max_age_secs: 0,
            every_secs: 4,
        }];
    })
    .await;

    let started = Instant::now();
    let mut committed_rounds = 0;
    for round in 0..KILLS {
        let before = checkpoint_end(&env.cfg).await;
        let (mut child, log) = env.spawn_binary(round);
        // Half of the kills at a random point of start-up / restore / first batches; the other
        // half only once this instance has committed, at a random point after that.
        // (Alternating, not a coin flip: a coin could leave fewer than half the kills mid-work.)
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..2_500))).await;
        } else {
            let committed = wait_committed(&env.cfg, before, &mut child, &log, round).await;
            assert!(
                committed,
                "connector run {round} committed nothing within 30 s; log:\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        }
        assert_running(&mut child, &log, round);
        sigkill(&mut child).await;
        if checkpoint_end(&env.cfg).await > before {
            committed_rounds += 1;
        }
    }
    eprintln!(
        "{KILLS} kills in {:?}; {committed_rounds} runs had committed before their kill",
        started.elapsed()
    );
    assert!(
        committed_rounds >= KILLS / 2,
        "only {committed_rounds} of {KILLS} runs committed anything: the kills did not hit work"
    );

    // The last run: a little more live traffic, then the truth stands still and the connector
    // must converge on it.
    let (mut child, log) = env.spawn_binary(KILLS);
    let before = checkpoint_end(&env.cfg).await;
    let committed = wait_committed(&env.cfg, before, &mut child, &log, KILLS).await;
    assert!(committed, "final run committed nothing");
    env.sim.control().pause();
    let audit = env.wait_clean(Duration::from_secs(60)).await;
    assert_running(&mut child, &log, KILLS);
    eprintln!("audit after the last restart: {audit:?}");
    assert_eq!(audit.created as usize, audit.truth_customers);
    assert!(
        audit.updated > 0,
        "no UPDATED events: the mutations were not exercised"
    );
    let stats = env.sim.control().stats();
    eprintln!("simulator: {stats:?}");

    // The state topic: latest snapshot of every customer equals the truth and the last event.
    let truth = fetch_truth(&env.sim.base_url()).await.expect("truth");
    let events = env.events().await;
    let codec = env.codec().await;
    let cfg = env.cfg.clone();
    let state = tokio::task::spawn_blocking(move || {
        read_state(&cfg, &codec, Duration::from_secs(60)).expect("state topic readable")
    })
    .await
    .expect("join");
    let latest = audit_all(&truth, &events).latest_revisions;
    let st = audit_state(&truth, &state, &latest);
    assert!(st.clean(), "state topic differs from the truth: {st:#?}");
    assert_eq!(st.snapshots, truth.len());
    sigkill(&mut child).await;
    eprintln!("chaos_kill done in {:?}", started.elapsed());
}
