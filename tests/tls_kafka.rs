//! TLS to Kafka: with the broker's CA the connector's producer and admin work over the TLS
//! listener; with another CA they fail closed (nothing is written, a clear error is returned).
//!
//! Needs the TLS listener that `scripts/infra/infra.sh` starts: `KAFKA_TLS_BOOTSTRAP_SERVERS` and
//! `KAFKA_TLS_CA` (set by `source .infra/env`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tanma_connector::config::KafkaConfig;
use tanma_connector::publish::{ensure_topics, OutRecord, TransactionalProducer};

fn tls_env() -> (String, PathBuf) {
    let get = |k: &str| match std::env::var(k) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{k} is not set: this test needs the broker's TLS listener; start local infrastructure \
             with `{}` (the Docker fixture has no TLS listener)",
            support::START_HINT
        ),
    };
    (
        get("KAFKA_TLS_BOOTSTRAP_SERVERS"),
        PathBuf::from(get("KAFKA_TLS_CA")),
    )
}

fn tls_config(bootstrap: &str, ca: &Path, txn: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: bootstrap.to_string(),
        transactional_id: txn.to_string(),
        transaction_timeout_ms: 10_000,
        operation_timeout_ms: 8_000,
        security_protocol: "ssl".into(),
        ssl_ca_location: Some(ca.to_path_buf()),
        ..KafkaConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_admin_work_over_tls_with_the_right_ca() {
    let infra = support::infra().await;
    let (bootstrap, ca) = tls_env();
    let cfg = tls_config(&bootstrap, &ca, &support::unique("tls-ok"));
    let topics = support::topics_config("tls-ok", 1);
    ensure_topics(&cfg, &topics).await.expect("admin over TLS");
    let producer = TransactionalProducer::new(&cfg)
        .await
        .expect("init_transactions over TLS");
    producer
        .commit(vec![OutRecord {
            topic: topics.events.clone(),
            key: b"k".to_vec(),
            value: Some(b"over tls".to_vec()),
            headers: Vec::new(),
        }])
        .await
        .expect("commit over TLS");
    producer.close().await;
    // Read back over the plaintext listener: the record really reached the broker.
    let records = support::read_all(
        &infra.bootstrap,
        &topics.events,
        "read_committed",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_closed() {
    let _ = support::infra().await;
    let (bootstrap, _) = tls_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong_ca = dir.path().join("other-ca.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not-the-broker-ca", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&wrong_ca)
        .output()
        .expect("openssl runs");
    assert!(status.status.success(), "openssl: {status:?}");
    let txn = support::unique("tls-bad");
    let cfg = tls_config(&bootstrap, &wrong_ca, &txn);
    let started = Instant::now();
    let err = match TransactionalProducer::new(&cfg).await {
        Ok(_) => panic!("a producer trusting another CA must not reach the broker"),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failing closed took {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(!msg.is_empty());
    eprintln!("wrong CA: {msg}");
    // Admin calls fail closed as well: no topic can be created through an untrusted broker.
    let topics = support::topics_config("tls-bad", 1);
    assert!(
        ensure_topics(&cfg, &topics).await.is_err(),
        "admin with the wrong CA must fail too"
    );
}
