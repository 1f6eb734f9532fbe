//! SASL over TLS with ACLs, as on managed and operator-run Kafka (MSK, Confluent Cloud,
//! Strimzi): the connector works end to end with SCRAM-SHA-512 and with PLAIN under exactly the
//! ACLs docs/OPERATIONS.md lists; a wrong password, and a principal lacking any one of those ACLs
//! (Write, Create, DescribeConfigs, Read on the topics; Write on the transactional id), each stop
//! it with a clear fatal error (exit code 4) that names what is missing and shows no secret.
//!
//! Needs the SASL_SSL listener and the users that `scripts/infra/infra.sh` creates
//! (`KAFKA_SASL_*`, set by `source .infra/env`). Their ACLs hold for names under the prefixes
//! `KAFKA_SASL_{EVENTS,STATE,CHECKPOINT,DLQ,TXN}_PREFIX`, so every test names its topics and
//! transactional id under them. Results are read back over the plaintext listener (a super user).

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use support::harness::{sim_config, TestEnv};
use tanma_connector::commands::exit_code_for;
use tanma_connector::commands::verify::{audit, fetch_truth, read_events};
use tanma_connector::config::{Config, KafkaConfig, TopicsConfig};
use tanma_connector::error::{Classify, ErrorClass};
use tanma_connector::ops::Health;
use tanma_connector::pipeline::{startup, PipelineError, RunOptions};
use tokio_util::sync::CancellationToken;

/// Exit code of a Kafka error retrying cannot fix (README, "Exit codes").
const KAFKA_FATAL: i32 = 4;

/// What `infra.sh` exports about its SASL_SSL listener.
struct Sasl {
    bootstrap: String,
    ca: PathBuf,
    prefix: Prefixes,
}

/// Name prefixes under which the SASL users hold their ACLs.
struct Prefixes {
    events: String,
    state: String,
    checkpoint: String,
    dlq: String,
    txn: String,
}

/// A variable `infra.sh` sets; a missing one fails the test (never a skip).
fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs the broker's SASL_SSL listener and its users; start \
             local infrastructure with `{}` (the Docker fixture has no SASL listener)",
            support::START_HINT
        ),
    }
}

fn sasl() -> Sasl {
    Sasl {
        bootstrap: var("KAFKA_SASL_BOOTSTRAP_SERVERS"),
        ca: PathBuf::from(var("KAFKA_SASL_CA")),
        prefix: Prefixes {
            events: var("KAFKA_SASL_EVENTS_PREFIX"),
            state: var("KAFKA_SASL_STATE_PREFIX"),
            checkpoint: var("KAFKA_SASL_CHECKPOINT_PREFIX"),
            dlq: var("KAFKA_SASL_DLQ_PREFIX"),
            txn: var("KAFKA_SASL_TXN_PREFIX"),
        },
    }
}

/// User name and password of one of `infra.sh`'s users (`connector`, `nowrite`, `notxn`).
fn user(role: &str) -> (String, String) {
    let role = role.to_ascii_uppercase();
    (
        var(&format!("KAFKA_SASL_{role}_USER")),
        var(&format!("KAFKA_SASL_{role}_PASSWORD")),
    )
}

/// A SASL_SSL client configuration for `user` with `mechanism`, and a fresh transactional id.
fn sasl_kafka(s: &Sasl, mechanism: &str, user: &str, password: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: s.bootstrap.clone(),
        transactional_id: support::unique(&format!("{}c", s.prefix.txn)),
        transaction_timeout_ms: 10_000,
        operation_timeout_ms: 15_000,
        security_protocol: "sasl_ssl".into(),
        sasl_mechanism: Some(mechanism.into()),
        sasl_username: Some(user.into()),
        sasl_password: Some(SecretString::from(password.to_string())),
        ssl_ca_location: Some(s.ca.clone()),
        ..KafkaConfig::default()
    }
}

/// Fresh topic names, each under the prefix of its role.
fn sasl_topics(s: &Sasl) -> TopicsConfig {
    let id = support::unique("t");
    TopicsConfig {
        events: format!("{}{id}", s.prefix.events),
        state: format!("{}{id}", s.prefix.state),
        checkpoint: format!("{}{id}", s.prefix.checkpoint),
        dead_letter: format!("{}{id}", s.prefix.dlq),
        ..support::topics_config("unused", 3)
    }
}

/// A harness world whose connector talks SASL_SSL as `role` with `mechanism`.
async fn sasl_env(seed: u64, mechanism: &str, role: &str, password: Option<&str>) -> TestEnv {
    let s = sasl();
    let (name, right) = user(role);
    let kafka = sasl_kafka(&s, mechanism, &name, password.unwrap_or(&right));
    let topics = sasl_topics(&s);
    TestEnv::new(sim_config(seed, 60), move |cfg: &mut Config| {
        cfg.kafka = kafka;
        cfg.topics = topics;
    })
    .await
}

/// Start-up and run in this process until caught up (or the first error).
async fn run(cfg: Config) -> Result<(), PipelineError> {
    let connector = startup::build(cfg, Health::new(Duration::from_secs(600))).await?;
    let opts = RunOptions {
        stop_when_caught_up: true,
    };
    connector
        .run(CancellationToken::new(), opts)
        .await
        .map(drop)
}

/// Runs the connector and returns its error, which must come within two minutes.
async fn run_err(env: &TestEnv) -> PipelineError {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(120), run(env.cfg.clone()))
        .await
        .expect("the connector must stop, not retry forever");
    let err = result.expect_err("the connector must not run under these credentials");
    eprintln!("stopped after {:?}: {err}", started.elapsed());
    err
}

/// Asserts the connector's error is fatal (exit code 4), names one of `names` and points to the
/// ACL list.
fn assert_fatal_naming(err: &PipelineError, names: &[&str]) {
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert_eq!(exit_code_for(err), KAFKA_FATAL, "{err}");
    let msg = err.to_string();
    assert!(
        names.iter().any(|n| msg.contains(n)),
        "the error names one of {names:?}: {msg}"
    );
    assert!(
        msg.contains("ACL"),
        "the error says an ACL is missing: {msg}"
    );
}

/// The committed events, read over the plaintext listener, audited against the simulator.
async fn assert_clean_backfill(env: &TestEnv) {
    let mut cfg = env.cfg.clone();
    cfg.kafka = support::kafka_config(env.infra, "unused-reader");
    let codec = env.codec().await;
    let events =
        tokio::task::spawn_blocking(move || read_events(&cfg, &codec, Duration::from_secs(60)))
            .await
            .expect("join")
            .expect("events readable over the plaintext listener");
    assert!(!events.is_empty(), "no committed events");
    let truth = fetch_truth(&env.sim.base_url()).await.expect("truth");
    let report = audit(&truth, &events);
    assert!(report.clean(), "{report:#?}");
}

/// A backfill, then a restart, which reads the checkpoint and restores the state over SASL (the
/// first start finds both topics empty and reads nothing): the ACLs suffice for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_backfill_and_restart_commit_every_event_once() {
    let env = sasl_env(41, "SCRAM-SHA-512", "connector", None).await;
    run(env.cfg.clone()).await.expect("backfill over SASL_SSL");
    assert_clean_backfill(&env).await;
    run(env.cfg.clone()).await.expect("restart over SASL_SSL");
    assert_clean_backfill(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_backfill_commits_every_event() {
    let env = sasl_env(42, "PLAIN", "connector", None).await;
    run(env.cfg.clone()).await.expect("backfill over SASL_SSL");
    assert_clean_backfill(&env).await;
}

/// The real binary with a wrong password: exit code 4, a log that says authentication failed,
/// and neither the wrong nor the right password anywhere in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_closed_with_exit_code_4() {
    let wrong = "wrong-password-0f1e2d3c";
    let env = sasl_env(43, "SCRAM-SHA-512", "connector", Some(wrong)).await;
    let k = &env.cfg.kafka;
    let log = env.dir.path().join("connector.log");
    let started = Instant::now();
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_tanma-connector"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.env_vars())
        .env("TANMA_KAFKA__SECURITY_PROTOCOL", &k.security_protocol)
        .env(
            "TANMA_KAFKA__SASL_MECHANISM",
            k.sasl_mechanism.as_deref().unwrap_or(""),
        )
        .env(
            "TANMA_KAFKA__SASL_USERNAME",
            k.sasl_username.as_deref().unwrap_or(""),
        )
        .env("TANMA_KAFKA__SASL_PASSWORD", wrong)
        .env(
            "TANMA_KAFKA__SSL_CA_LOCATION",
            k.ssl_ca_location.as_ref().expect("ca"),
        )
        .env("TANMA_KAFKA__OPERATION_TIMEOUT_MS", "15000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(120), status)
        .await
        .expect("the connector must stop, not retry forever")
        .expect("the connector runs");
    let text = std::fs::read_to_string(&log).expect("log");
    eprintln!("stopped after {:?}:\n{text}", started.elapsed());
    assert_eq!(status.code(), Some(KAFKA_FATAL), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("authentication"),
        "the log says authentication failed: {text}"
    );
    let (_, right) = user("connector");
    assert!(
        !text.contains(wrong) && !text.contains(&right),
        "a password in the log: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_on_the_events_topic_is_fatal_and_names_it() {
    let env = sasl_env(44, "SCRAM-SHA-512", "nowrite", None).await;
    let err = run_err(&env).await;
    assert_fatal_naming(&err, &[&env.cfg.topics.events]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transactional_id_rights_is_fatal_and_names_the_id() {
    let env = sasl_env(45, "PLAIN", "notxn", None).await;
    let err = run_err(&env).await;
    assert_fatal_naming(&err, &[&env.cfg.kafka.transactional_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_create_rights_is_fatal_and_names_a_topic() {
    let env = sasl_env(46, "SCRAM-SHA-512", "nocreate", None).await;
    let err = run_err(&env).await;
    let t = &env.cfg.topics;
    assert_fatal_naming(&err, &[&t.events, &t.state, &t.checkpoint, &t.dead_letter]);
}

/// Without DescribeConfigs the broker describes the new compacted topics with no entries at all
/// (rdkafka drops the per-topic error): that must not read as `cleanup.policy=delete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_describe_configs_rights_is_fatal_and_names_the_topic() {
    let mut env = sasl_env(47, "PLAIN", "nodescribe", None).await;
    // A topic just created is re-described until this timeout before the error is final.
    env.cfg.kafka.operation_timeout_ms = 5_000;
    let err = run_err(&env).await;
    let t = &env.cfg.topics;
    assert_fatal_naming(&err, &[&t.state, &t.checkpoint]);
    assert!(err.to_string().contains("DescribeConfigs"), "{err}");
}

/// Read is needed only once there is something to read: the first start finds the checkpoint
/// and state topics empty; the restart must read them and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_rights_is_fatal_at_the_restart_and_names_the_topic() {
    let env = sasl_env(48, "SCRAM-SHA-512", "noread", None).await;
    run(env.cfg.clone())
        .await
        .expect("the first start reads nothing");
    let err = run_err(&env).await;
    assert_fatal_naming(&err, &[&env.cfg.topics.checkpoint]);
}
