//! The state volume fills up mid-run, for real: `state.dir` on a 512 KiB tmpfs (as an
//! `emptyDir` with a size limit would be), against the real broker, registry and simulator.
//! Committed units can then no longer be applied to the local state. The connector must not
//! rewind against its half-applied store: it recovers from the topics, retries while the disk
//! stays full (`/health` turns red past `ops.commit_failure_timeout_secs`), and once the volume
//! grows the stream is exact: no event id twice, nothing lost, nothing spurious.
//!
//! Needs root (it mounts a tmpfs), as `scripts/test` and CI run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::harness::{sim_config, TestEnv};
use tanma_connector::ops::Health;
use tanma_connector::pipeline::{startup, Exit, RunOptions};
use tokio_util::sync::CancellationToken;

/// A tmpfs mounted for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs at {} failed (this test needs root, as scripts/test runs in CI): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_volume_never_duplicates_or_loses_an_event() {
    let env = TestEnv::new(sim_config(77, 3_000), |c| {
        c.windows.window_secs = 86_400;
        c.ops.commit_failure_timeout_secs = 2;
    })
    .await;
    let volume = Tmpfs::mount(&env.cfg.state.dir, "512k");

    let health =
        Health::new(Duration::from_secs(600)).with_failure_deadline(Duration::from_secs(2));
    let connector = startup::build(env.cfg.clone(), health.clone())
        .await
        .expect("connector starts");
    let opts = RunOptions {
        stop_when_caught_up: true,
    };
    let run = tokio::spawn(connector.run(CancellationToken::new(), opts));

    // The spill file outgrows the volume: applying committed units fails, recovery fails too
    // while the disk is full, and /health turns red.
    support::wait_until(
        "/health to fail while the state volume is full",
        Duration::from_secs(120),
        || {
            let red = !health.is_alive();
            async move { red }
        },
    )
    .await;
    assert!(!run.is_finished(), "the run ended while the disk was full");

    volume.resize("64m");
    support::wait_until("the run to catch up", Duration::from_secs(180), || {
        let done = run.is_finished();
        async move { done }
    })
    .await;
    assert_eq!(run.await.expect("join").expect("run"), Exit::CaughtUp);
    assert!(
        health.is_alive(),
        "/health still failing after the disk has room"
    );

    let audit = env.audit().await;
    assert!(audit.clean(), "{audit:#?}");
    assert_eq!(audit.duplicated, 0, "{audit:#?}");
}
