//! The CLI against the real binary, the real broker and registry: `check-config` (good config,
//! invalid config, unreachable API and broker), `tail --max N`, `state <id>`, `--help`.

mod ops_support;
mod support;

use std::process::Output;
use std::time::Duration;

use support::harness::{sim_config, TestEnv, APP_KEY};
use tanma_connector::pipeline::Exit;

/// Runs the binary with `args`, configured by `env` (a `TestEnv`'s variables plus overrides);
/// fails the test if it runs longer than `deadline`.
async fn cli(args: &[&str], env: &[(String, String)], deadline: Duration) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tanma-connector"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .kill_on_drop(true);
    match tokio::time::timeout(deadline, cmd.output()).await {
        Ok(out) => out.expect("binary runs"),
        Err(_) => panic!("tanma-connector {args:?} ran longer than {deadline:?}"),
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with(env: &TestEnv, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = env
        .env_vars()
        .into_iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .collect();
    v.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_passes_fails_and_lists_every_problem() {
    let env = TestEnv::new(sim_config(21, 50), |_| {}).await;

    // Good configuration: the API and the broker answer.
    let out = cli(&["check-config"], &env.env_vars(), Duration::from_secs(60)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:{stdout}\nstderr:{stderr}"
    );
    assert!(
        stdout.contains("the API and the broker answered"),
        "{stdout}"
    );

    // Several invalid values: exit 2, each one named by its key.
    let bad = with(
        &env,
        &[
            ("TANMA_API__APP_ID", ""),
            ("TANMA_WINDOWS__WINDOW_SECS", "0"),
            ("TANMA_KAFKA__TRANSACTION_TIMEOUT_MS", "5"),
            ("TANMA_KAFKA__SECURITY_PROTOCOL", "carrier_pigeon"),
        ],
    );
    let out = cli(&["check-config"], &bad, Duration::from_secs(30)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:{stdout}\nstderr:{stderr}"
    );
    for key in [
        "api.app_id",
        "windows.window_secs",
        "kafka.transaction_timeout_ms",
        "kafka.security_protocol",
    ] {
        assert!(stderr.contains(key), "{key} not listed:\n{stderr}");
    }
    assert!(
        stderr.lines().filter(|l| l.starts_with("  - ")).count() >= 4,
        "{stderr}"
    );
    assert!(!stderr.contains(APP_KEY) && !stdout.contains(APP_KEY));

    // A value of the wrong type: exit 2, naming the key and what was found. (Type errors stop
    // the loading, so value checks of the other keys are not reported alongside.)
    let out = cli(
        &["check-config"],
        &with(&env, &[("TANMA_TOPICS__PARTITIONS", "many")]),
        Duration::from_secs(30),
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("topics.partitions") && stderr.contains("\"many\""),
        "{stderr}"
    );

    // Nothing answers: exit 5, both problems listed, readable, without the key.
    let closed = ops_support::free_addr();
    let unreachable = with(
        &env,
        &[
            ("TANMA_API__BASE_URL", &format!("http://{closed}")),
            ("TANMA_API__MAX_ATTEMPTS", "2"),
            ("TANMA_KAFKA__BOOTSTRAP_SERVERS", &closed),
            ("TANMA_KAFKA__OPERATION_TIMEOUT_MS", "3000"),
        ],
    );
    let out = cli(&["check-config"], &unreachable, Duration::from_secs(60)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout:{stdout}\nstderr:{stderr}"
    );
    let api_line = stderr.lines().find(|l| l.contains("- api ("));
    let kafka_line = stderr.lines().find(|l| l.contains("- kafka ("));
    assert!(
        api_line.is_some_and(|l| l.contains(&closed)),
        "no API problem naming {closed}:\n{stderr}"
    );
    assert!(
        kafka_line.is_some_and(|l| l.contains(&closed)),
        "no broker problem naming {closed}:\n{stderr}"
    );
    assert!(!stderr.contains(APP_KEY) && !stdout.contains(APP_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_n_decoded_events_and_state_prints_the_snapshot() {
    let env = TestEnv::new(sim_config(22, 200), |_| {}).await;
    assert_eq!(env.run_until_caught_up().await, Exit::CaughtUp);
    let events = env.events().await;
    assert!(events.len() >= 200, "{} events", events.len());

    let out = cli(
        &["tail", "--max", "7"],
        &env.env_vars(),
        Duration::from_secs(60),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    for e in &lines {
        assert_eq!(e["event_type"], "CREATED", "{e}");
        assert!(e["external_user_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        assert!(e.get("undecodable").is_none(), "{e}");
    }

    // `state` prints the latest snapshot, equal to the latest after-image.
    let id = lines[0]["external_user_id"].as_str().unwrap_or_default();
    let latest = events
        .iter()
        .filter(|e| e["external_user_id"] == id)
        .max_by_key(|e| e["revision"].as_i64())
        .expect("an event for the id");
    let out = cli(&["state", id], &env.env_vars(), Duration::from_secs(60)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:{stderr}");
    let snap: serde_json::Value = serde_json::from_str(&stdout).expect("snapshot JSON");
    assert_eq!(snap["external_user_id"], id);
    assert_eq!(snap["revision"], latest["revision"], "{snap}\n{latest}");
    assert_eq!(
        snap["relations"], latest["after"]["relations"],
        "snapshot differs from the latest after-image"
    );

    let out = cli(
        &["state", "no-such-customer"],
        &env.env_vars(),
        Duration::from_secs(60),
    )
    .await;
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("no snapshot for no-such-customer"),
        "{stderr}"
    );
}

#[tokio::test]
async fn every_subcommand_has_help() {
    for (sub, expect) in [
        ("run", "--config"),
        ("sim", "--customers"),
        ("check-config", "--config"),
        ("tail", "--max"),
        ("state", "<EXTERNAL_USER_ID>"),
        ("verify", "--sim-url"),
    ] {
        let out = cli(&[sub, "--help"], &[], Duration::from_secs(10)).await;
        let (stdout, _) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{sub} --help");
        assert!(
            stdout.contains(&format!("Usage: tanma-connector {sub}")),
            "{sub}: {stdout}"
        );
        assert!(stdout.contains(expect), "{sub} --help lacks {expect}");
    }
    let out = cli(&["--help"], &[], Duration::from_secs(10)).await;
    let (stdout, _) = text(&out);
    for sub in ["run", "sim", "check-config", "tail", "state", "verify"] {
        assert!(stdout.contains(sub), "{sub} not in --help:\n{stdout}");
    }
    let out = cli(&["no-such-command"], &[], Duration::from_secs(10)).await;
    assert_eq!(out.status.code(), Some(2));
}
