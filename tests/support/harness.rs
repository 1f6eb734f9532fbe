//! End-to-end harness: an in-process simulator, a connector configuration with unique topics
//! and transactional id, the connector run in-process or as the real binary, and an audit of
//! the committed events against the simulator's truth.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tanma_connector::commands::verify::{audit_events_topic, fetch_truth, read_events, Audit};
use tanma_connector::config::{Config, RescanTier};
use tanma_connector::encode::Codec;
use tanma_connector::ops::Health;
use tanma_connector::pipeline::{startup, Exit, PipelineError, RunOptions};
use tanma_connector::sim::{SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

use super::{infra, poll_until, topics_config, unique, Infra};

/// App id and key the harness's simulator accepts.
pub const APP_ID: &str = "e2e-app";
/// The simulator's shared secret (test value).
pub const APP_KEY: &str = "e2e-secret-key-5d41402abc";

/// One end-to-end test's world.
pub struct TestEnv {
    /// Kafka and registry.
    pub infra: &'static Infra,
    /// The simulator, in this process.
    pub sim: SimHandle,
    /// The connector's configuration (unique topics, transactional id, state dir).
    pub cfg: Config,
    /// Temporary directory for state and logs.
    pub dir: tempfile::TempDir,
}

/// Start-up sequence plus the main loop, in this process.
async fn run_connector(
    cfg: Config,
    token: CancellationToken,
    opts: RunOptions,
) -> Result<Exit, PipelineError> {
    let connector = startup::build(cfg, Health::new(Duration::from_secs(600))).await?;
    connector.run(token, opts).await
}

/// A simulator config for tests: `customers` customers over 30 days from 2024-01-01, no
/// mutations, the harness's credentials.
pub fn sim_config(seed: u64, customers: u32) -> SimConfig {
    let mut c = SimConfig::for_tests(seed, customers);
    c.app_id = APP_ID.into();
    c.app_key = APP_KEY.into();
    c
}

impl TestEnv {
    /// Starts the simulator and builds a connector config pointing at it, with unique names.
    /// `tweak` may adjust the config (it is re-validated).
    pub async fn new(sim: SimConfig, tweak: impl FnOnce(&mut Config)) -> TestEnv {
        let infra = infra().await;
        let start = sim.start;
        let sim = SimHandle::start(sim, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = unique("e2e");
        let mut cfg = Config::default();
        cfg.api.base_url = sim.base_url();
        cfg.api.app_id = APP_ID.into();
        cfg.api.app_key = Some(SecretString::from(APP_KEY.to_string()));
        cfg.api.rate_limit_per_sec = 2000.0;
        cfg.api.rate_limit_burst = 50;
        cfg.api.request_timeout_ms = 5000;
        cfg.api.backoff_initial_ms = 20;
        cfg.api.backoff_max_ms = 500;
        cfg.windows.start_time = start.to_rfc3339();
        cfg.windows.window_secs = 7 * 86_400;
        cfg.windows.split_threshold = 500;
        cfg.windows.settle_lag_secs = 1;
        cfg.windows.poll_interval_ms = 200;
        cfg.windows.lookback_secs = 600;
        cfg.windows.rescan = vec![RescanTier {
            max_age_secs: 0,
            every_secs: 365 * 86_400,
        }];
        cfg.kafka = super::kafka_config(infra, &format!("{prefix}-txn"));
        cfg.topics = topics_config(&prefix, 3);
        cfg.schema_registry.url = Some(infra.registry_url.clone());
        cfg.state.dir = dir.path().join("state");
        cfg.state.restore_timeout_ms = 60_000;
        cfg.ops.listen = String::new();
        cfg.ops.progress = false;
        tweak(&mut cfg);
        let problems = cfg.validate();
        assert!(problems.is_empty(), "test config invalid: {problems:?}");
        TestEnv {
            infra,
            sim,
            cfg,
            dir,
        }
    }

    /// Runs the connector in this process until nothing is due, then returns.
    pub async fn run_until_caught_up(&self) -> Exit {
        let opts = RunOptions {
            stop_when_caught_up: true,
        };
        run_connector(self.cfg.clone(), CancellationToken::new(), opts)
            .await
            .expect("connector runs")
    }

    /// Starts the connector in this process in the background; cancel the token to stop it.
    pub fn spawn(
        &self,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<Result<Exit, PipelineError>>,
    ) {
        let token = CancellationToken::new();
        let run = run_connector(self.cfg.clone(), token.clone(), RunOptions::default());
        (token, tokio::spawn(run))
    }

    /// The environment that configures the real binary like `self.cfg` (no config file).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let c = &self.cfg;
        let rescan = c
            .windows
            .rescan
            .iter()
            .map(|t| {
                format!(
                    "{{max_age_secs={}, every_secs={}}}",
                    t.max_age_secs, t.every_secs
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut v = vec![
            ("TANMA_API__BASE_URL", c.api.base_url.clone()),
            ("TANMA_API__APP_ID", c.api.app_id.clone()),
            ("TANMA_API__APP_KEY", APP_KEY.to_string()),
            (
                "TANMA_API__RATE_LIMIT_PER_SEC",
                c.api.rate_limit_per_sec.to_string(),
            ),
            (
                "TANMA_API__RATE_LIMIT_BURST",
                c.api.rate_limit_burst.to_string(),
            ),
            (
                "TANMA_API__REQUEST_TIMEOUT_MS",
                c.api.request_timeout_ms.to_string(),
            ),
            (
                "TANMA_API__BACKOFF_INITIAL_MS",
                c.api.backoff_initial_ms.to_string(),
            ),
            (
                "TANMA_API__BACKOFF_MAX_MS",
                c.api.backoff_max_ms.to_string(),
            ),
            ("TANMA_WINDOWS__START_TIME", c.windows.start_time.clone()),
            (
                "TANMA_WINDOWS__WINDOW_SECS",
                c.windows.window_secs.to_string(),
            ),
            (
                "TANMA_WINDOWS__SPLIT_THRESHOLD",
                c.windows.split_threshold.to_string(),
            ),
            (
                "TANMA_WINDOWS__SETTLE_LAG_SECS",
                c.windows.settle_lag_secs.to_string(),
            ),
            (
                "TANMA_WINDOWS__POLL_INTERVAL_MS",
                c.windows.poll_interval_ms.to_string(),
            ),
            (
                "TANMA_WINDOWS__LOOKBACK_SECS",
                c.windows.lookback_secs.to_string(),
            ),
            (
                "TANMA_WINDOWS__CONCURRENCY",
                c.windows.concurrency.to_string(),
            ),
            ("TANMA_WINDOWS__RESCAN", format!("[{rescan}]")),
            (
                "TANMA_KAFKA__BOOTSTRAP_SERVERS",
                c.kafka.bootstrap_servers.clone(),
            ),
            (
                "TANMA_KAFKA__TRANSACTIONAL_ID",
                c.kafka.transactional_id.clone(),
            ),
            (
                "TANMA_KAFKA__TRANSACTION_TIMEOUT_MS",
                c.kafka.transaction_timeout_ms.to_string(),
            ),
            ("TANMA_TOPICS__EVENTS", c.topics.events.clone()),
            ("TANMA_TOPICS__STATE", c.topics.state.clone()),
            ("TANMA_TOPICS__CHECKPOINT", c.topics.checkpoint.clone()),
            ("TANMA_TOPICS__DEAD_LETTER", c.topics.dead_letter.clone()),
            ("TANMA_TOPICS__PARTITIONS", c.topics.partitions.to_string()),
            ("TANMA_STATE__DIR", c.state.dir.display().to_string()),
            ("TANMA_OPS__LISTEN", c.ops.listen.clone()),
            ("TANMA_OPS__LOG_FORMAT", "json".to_string()),
            ("TANMA_OPS__PROGRESS", "false".to_string()),
        ];
        if let Some(url) = &c.schema_registry.url {
            v.push(("TANMA_SCHEMA_REGISTRY__URL", url.clone()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Starts the real `tanma-connector run` binary with [`TestEnv::env_vars`]; its stderr goes
    /// to `<dir>/connector-<n>.log`.
    pub fn spawn_binary(&self, n: u32) -> (tokio::process::Child, PathBuf) {
        let log = self.dir.path().join(format!("connector-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tanma-connector"));
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env_vars())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        (cmd.spawn().expect("connector binary starts"), log)
    }

    /// The codec readers use for this config.
    pub async fn codec(&self) -> Codec {
        match tanma_connector::commands::reader_codec(&self.cfg).await {
            Ok(c) => c,
            Err(e) => panic!("codec: {e}"),
        }
    }

    /// Every committed event, decoded to JSON (read_committed, to the end of the topic).
    pub async fn events(&self) -> Vec<Value> {
        let cfg = self.cfg.clone();
        let codec = self.codec().await;
        tokio::task::spawn_blocking(move || read_events(&cfg, &codec, Duration::from_secs(60)))
            .await
            .expect("join")
            .expect("events readable")
    }

    /// Polls the committed events until `pred` holds; panics naming `what` after `deadline`.
    pub async fn wait_events(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let pred = &pred;
        let found = poll_until(deadline, || async move {
            let events = self.events().await;
            pred(&events).then_some(events)
        })
        .await;
        match found {
            Some(events) => events,
            None => panic!(
                "timed out after {deadline:?} waiting for {what} ({} events)",
                self.events().await.len()
            ),
        }
    }

    /// Audits the committed events against the simulator's truth (streaming, as `verify` does).
    pub async fn audit(&self) -> Audit {
        let truth = fetch_truth(&self.sim.base_url()).await.expect("truth");
        let cfg = self.cfg.clone();
        let codec = self.codec().await;
        tokio::task::spawn_blocking(move || {
            audit_events_topic(&cfg, &codec, &truth, Duration::from_secs(60))
        })
        .await
        .expect("join")
        .expect("events readable")
        .audit
    }

    /// Waits until the audit is clean; panics with the last audit after `deadline`.
    pub async fn wait_clean(&self, deadline: Duration) -> Audit {
        let found = poll_until(deadline, || async move {
            let audit = self.audit().await;
            audit.clean().then_some(audit)
        })
        .await;
        match found {
            Some(audit) => audit,
            None => panic!(
                "audit not clean after {deadline:?}: {:#?}",
                self.audit().await
            ),
        }
    }
}
