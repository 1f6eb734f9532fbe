//! `check-config --offline` against the real binary: it builds the librdkafka client
//! configurations without contacting anything, so an unknown property or a codec librdkafka was
//! built without is reported there (exit 2, naming the property), and every compression codec
//! users configure (gzip, snappy, lz4, zstd) is accepted. Nothing listens on the bootstrap
//! address used there: a connection attempt could not succeed, and none is needed.
//! Then each codec through the connector's transactional producer and the real broker.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tanma_connector::publish::{ensure_topics, OutRecord, TransactionalProducer};

const APP_KEY: &str = "offline-check-app-key";

/// Runs `check-config --offline` on a JSON config with `properties` as kafka.properties;
/// fails the test if it runs longer than 60 s.
fn check_offline(properties: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let props: serde_json::Map<String, serde_json::Value> = properties
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let config = serde_json::json!({
        "api": {"base_url": "http://127.0.0.1:9/apiServer", "app_id": "offline"},
        "kafka": {"bootstrap_servers": "127.0.0.1:9", "properties": props},
        "state": {"dir": dir.path().join("state")},
        "ops": {"listen": ""}
    });
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tanma-connector"))
        .args(["check-config", "--offline", "--config"])
        .arg(&path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TANMA_API__APP_KEY", APP_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("check-config --offline ran longer than 60 s with {properties:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out: Output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(APP_KEY), "the app key was printed:\n{text}");
    (out.status.code(), text)
}

#[test]
fn every_configured_compression_codec_is_built_in() {
    for codec in ["zstd", "lz4", "snappy", "gzip", "none"] {
        let (code, text) = check_offline(&[("compression.type", codec)]);
        assert_eq!(code, Some(0), "compression.type={codec}:\n{text}");
        assert!(text.contains("offline: nothing contacted"), "{text}");
    }
}

#[test]
fn unknown_property_is_refused_and_named() {
    let (code, text) = check_offline(&[("lingr.ms", "5")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("lingr.ms"),
        "the property is not named:\n{text}"
    );
    assert!(text.contains("producer client configuration"), "{text}");
}

#[test]
fn invalid_value_is_refused_and_named() {
    let (code, text) = check_offline(&[("compression.type", "brotli")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("compression.type") && text.contains("brotli"),
        "{text}"
    );
    // A property valid on its own, but refused for the whole configuration by librdkafka's
    // checks at client creation: acks=0 contradicts the idempotent transactional producer.
    let (code, text) = check_offline(&[("acks", "0")]);
    assert_eq!(code, Some(2), "acks=0 passed:\n{text}");
    assert!(text.contains("acks"), "{text}");
}

#[test]
fn producer_only_properties_do_not_fail_the_consumer() {
    // The same kafka.properties reach consumers; a producer property is ignored there.
    let (code, text) = check_offline(&[("linger.ms", "50"), ("batch.size", "1000000")]);
    assert_eq!(code, Some(0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_compresses_through_the_transactional_producer_and_the_broker() {
    let infra = support::infra().await;
    let topics = support::topics_config("codecs", 1);
    for codec in ["zstd", "lz4", "snappy", "gzip"] {
        let mut cfg = support::kafka_config(infra, &support::unique(&format!("codec-{codec}")));
        cfg.properties
            .insert("compression.type".into(), codec.to_string());
        ensure_topics(&cfg, &topics).await.expect("ensure topics");
        let producer = TransactionalProducer::new(&cfg)
            .await
            .unwrap_or_else(|e| panic!("producer with compression.type={codec}: {e}"));
        // Repetitive values, so that a batch is actually compressed.
        let records: Vec<OutRecord> = (0..20)
            .map(|i| OutRecord {
                topic: topics.events.clone(),
                key: format!("{codec}-{i}").into_bytes(),
                value: Some(format!("{codec} {}", "payload ".repeat(50)).into_bytes()),
                headers: vec![],
            })
            .collect();
        producer
            .commit(records)
            .await
            .unwrap_or_else(|e| panic!("commit with compression.type={codec}: {e}"));
        producer.close().await;
    }
    let read = support::read_all(
        &infra.bootstrap,
        &topics.events,
        "read_committed",
        Duration::from_secs(30),
    )
    .await;
    for codec in ["zstd", "lz4", "snappy", "gzip"] {
        let prefix = format!("{codec} payload");
        let n = read
            .iter()
            .filter(|r| {
                r.value
                    .as_deref()
                    .is_some_and(|v| v.starts_with(prefix.as_bytes()))
            })
            .count();
        assert_eq!(n, 20, "{codec}: {n} of 20 records read back");
    }
}
