#![allow(dead_code)]
//! Helpers for the operations tests: the real binary with extra environment, signals, exit
//! waits, `/metrics` parsing.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::support::harness::TestEnv;
use crate::support::poll_until;

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let addr = l.local_addr().expect("local addr");
    format!("{addr}")
}

/// Starts `tanma-connector run` configured like `env.cfg` plus `extra` environment; stderr goes
/// to `<dir>/connector-<n>.log`.
pub fn spawn_run(
    env: &TestEnv,
    n: u32,
    extra: &[(&str, String)],
) -> (tokio::process::Child, std::path::PathBuf) {
    let log = env.dir.path().join(format!("connector-{n}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tanma-connector"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.env_vars())
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
    (cmd.spawn().expect("connector binary starts"), log)
}

/// Sends `signal` (`TERM`, `INT`) to the child.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("child still running");
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for the child to exit; panics with its log after `deadline`.
pub async fn wait_exit(
    child: &mut tokio::process::Child,
    deadline: Duration,
    log: &std::path::Path,
) -> ExitStatus {
    match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => status.expect("wait for the child"),
        Err(_) => {
            let _ = child.start_kill();
            panic!(
                "connector did not exit within {deadline:?}; log:\n{}",
                tail_of(log)
            )
        }
    }
}

/// The last 40 lines of a log file.
pub fn tail_of(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// GET `http://addr/path`: status and body; `None` while nothing listens.
pub async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

/// Polls `/metrics` until `pred` holds; panics naming `what` (with the log) after `deadline`.
pub async fn wait_metrics(
    addr: &str,
    what: &str,
    deadline: Duration,
    log: &std::path::Path,
    pred: impl Fn(&str) -> bool,
) -> String {
    let pred = &pred;
    let found = poll_until(deadline, || async move {
        match get(addr, "/metrics").await {
            Some((200, body)) if pred(&body) => Some(body),
            _ => None,
        }
    })
    .await;
    if let Some(body) = found {
        return body;
    }
    let last = get(addr, "/metrics").await.map(|(_, b)| b);
    panic!(
        "timed out after {deadline:?} waiting for {what}; last /metrics:\n{}\nlog:\n{}",
        last.unwrap_or_default(),
        tail_of(log)
    );
}

/// Polls `path` until it answers `status`; panics after `deadline`.
pub async fn wait_status(
    addr: &str,
    path: &str,
    status: u16,
    deadline: Duration,
    log: &std::path::Path,
) {
    let answered = poll_until(deadline, || async move {
        get(addr, path)
            .await
            .filter(|(s, _)| *s == status)
            .map(|_| ())
    })
    .await;
    if answered.is_none() {
        let last = get(addr, path).await;
        panic!(
            "{path} did not answer {status} within {deadline:?} (last: {last:?}); log:\n{}",
            tail_of(log)
        );
    }
}

/// Sum of every series of `name` in a Prometheus text body (`None` when absent).
pub fn metric_sum(body: &str, name: &str) -> Option<f64> {
    metric_where(body, name, "")
}

/// Sum of the series of `name` whose labels contain `label` (e.g. `outcome="ok"`).
pub fn metric_where(body: &str, name: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let labels = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((labels, _)) => labels,
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ""
        } else {
            continue;
        };
        if !labels.contains(label) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
