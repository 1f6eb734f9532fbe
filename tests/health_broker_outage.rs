//! `/health` tells the truth about a broker outage: with windows pending, it turns red once
//! commits have kept failing for `ops.commit_failure_timeout_secs`, and green again after the
//! broker returns; the stream is exact afterwards. The test runs its own broker and registry
//! (`scripts/infra/infra.sh`, on free ports) so that it can stop and start the broker.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::harness::{sim_config, TestEnv};
use tanma_connector::ops::Health;
use tanma_connector::pipeline::{startup, Exit, RunOptions};
use tokio_util::sync::CancellationToken;

/// A broker and registry of this test's own, stopped on drop.
struct OwnInfra {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn infra_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/infra/infra.sh")
}

impl OwnInfra {
    fn start(dir: &Path) -> OwnInfra {
        let ports = [
            "TANMA_KAFKA_PORT",
            "TANMA_CONTROLLER_PORT",
            "TANMA_KAFKA_TLS_PORT",
            "TANMA_REGISTRY_PORT",
            "TANMA_REGISTRY_MGMT_PORT",
        ];
        let mut env: Vec<(String, String)> = ports
            .iter()
            .map(|k| (k.to_string(), free_port().to_string()))
            .collect();
        env.push(("TANMA_INFRA_DIR".into(), dir.display().to_string()));
        let this = OwnInfra {
            dir: dir.to_path_buf(),
            env,
        };
        this.run("start");
        this
    }

    fn run(&self, verb: &str) {
        let out = Command::new(infra_sh())
            .arg(verb)
            .envs(self.env.iter().cloned())
            .output()
            .expect("infra.sh runs");
        assert!(
            out.status.success(),
            "infra.sh {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `KAFKA_BOOTSTRAP_SERVERS` from the env file `start` wrote.
    fn bootstrap(&self) -> String {
        let env = std::fs::read_to_string(self.dir.join("env")).expect("infra env file");
        env.lines()
            .find_map(|l| l.strip_prefix("export KAFKA_BOOTSTRAP_SERVERS="))
            .expect("KAFKA_BOOTSTRAP_SERVERS in the env file")
            .to_string()
    }
}

impl Drop for OwnInfra {
    fn drop(&mut self) {
        let _ = Command::new(infra_sh())
            .arg("stop")
            .envs(self.env.iter().cloned())
            .output();
    }
}

// Phase timings go to stderr (shown when it fails): on an idle 2-core machine red comes ~5 s
// after `stop-kafka` and green ~30 s after `start-kafka`; once, on a machine at load ~15 with six
// builds running, green took over 180 s, hence the generous deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_red_during_a_broker_outage_and_green_after() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let own = OwnInfra::start(&dir.path().join("infra"));
    let bootstrap = own.bootstrap();
    let env = TestEnv::new(sim_config(91, 20_000), |c| {
        c.kafka.bootstrap_servers = bootstrap.clone();
        c.kafka.operation_timeout_ms = 5_000;
        c.kafka.transaction_timeout_ms = 10_000;
        c.schema_registry.url = None;
        c.windows.window_secs = 3_600;
        // Slow enough that windows are still pending when the broker goes away.
        c.api.rate_limit_per_sec = 40.0;
        c.api.rate_limit_burst = 5;
        c.ops.commit_failure_timeout_secs = 3;
    })
    .await;

    let health =
        Health::new(Duration::from_secs(600)).with_failure_deadline(Duration::from_secs(3));
    let connector = startup::build(env.cfg.clone(), health.clone())
        .await
        .expect("connector starts");
    let token = CancellationToken::new();
    let run = tokio::spawn(connector.run(token.clone(), RunOptions::default()));

    support::wait_until("first events", Duration::from_secs(120), || {
        let (bootstrap, topic) = (bootstrap.clone(), env.cfg.topics.events.clone());
        async move {
            !support::read_all(
                &bootstrap,
                &topic,
                "read_committed",
                Duration::from_secs(30),
            )
            .await
            .is_empty()
        }
    })
    .await;
    assert!(health.is_alive(), "/health red before the outage");

    let t = std::time::Instant::now();
    own.run("stop-kafka");
    eprintln!("broker stopped after {:?}", t.elapsed());
    support::wait_until(
        "/health to fail while the broker is away",
        Duration::from_secs(120),
        || {
            let red = !health.is_alive();
            async move { red }
        },
    )
    .await;
    eprintln!("/health red after {:?}", t.elapsed());
    assert!(!run.is_finished(), "the run ended during the outage");

    own.run("start-kafka");
    eprintln!("broker started again after {:?}", t.elapsed());
    support::wait_until(
        "/health to recover once the broker is back",
        Duration::from_secs(150),
        || {
            let done = health.is_alive() || run.is_finished();
            async move { done }
        },
    )
    .await;
    if run.is_finished() {
        panic!("the run ended after the broker came back: {:?}", run.await);
    }
    eprintln!("/health green after {:?}", t.elapsed());

    token.cancel();
    let exit = run.await.expect("join").expect("run");
    assert_eq!(exit, Exit::Shutdown);
    let audit = env.audit().await;
    assert_eq!(audit.duplicated, 0, "{audit:#?}");
    assert_eq!(audit.spurious, 0, "{audit:#?}");
}
