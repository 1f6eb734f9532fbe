//! librdkafka's log lines and client errors reach `tracing` at deliberate levels: creating the
//! topics, a transactional commit, a state restore and a checkpoint read against the real broker
//! (every partition read to the end, so every one reports partition EOF) log no ERROR, and
//! librdkafka says nothing above INFO. The EOF reports must be there, at DEBUG (before the
//! client context mapped levels, each was an ERROR).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tanma_connector::publish::{
    client_config, ensure_topics, read_latest, OutRecord, TransactionalProducer,
};
use tanma_connector::state::{encode_headers, restore, RelationMeta, StateStore};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// One captured log event.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    message: String,
}

/// Keeps every event (all levels, all targets) of the process.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        if let Ok(mut events) = self.0.lock() {
            events.push(Captured {
                level: *event.metadata().level(),
                target: event.metadata().target().to_string(),
                message,
            });
        }
    }
}

fn state_record(topic: &str, ext: &str, value: Option<&str>) -> OutRecord {
    let meta = [RelationMeta {
        key_hash: xxhash_rust::xxh3::xxh3_64(ext.as_bytes()),
        fingerprint: 7,
        window: None,
    }];
    OutRecord {
        topic: topic.to_string(),
        key: ext.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
        headers: if value.is_some() {
            encode_headers(1, &meta)
        } else {
            Vec::new()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_to_the_end_logs_no_errors() {
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(capture.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let infra = support::infra().await;
    let topics = support::topics_config("loglevels", 3);
    let mut kafka = support::kafka_config(infra, &support::unique("loglevels-txn"));
    // A consumer property the producer ignores (librdkafka warns: expected, so DEBUG), and
    // short fetch waits, so that partition EOF arrives while the reads still poll.
    kafka
        .properties
        .insert("fetch.wait.max.ms".into(), "10".into());
    ensure_topics(&kafka, &topics).await.expect("topics");
    let producer = TransactionalProducer::new(&kafka).await.expect("producer");
    let mut records: Vec<OutRecord> = (0..20)
        .map(|i| state_record(&topics.state, &format!("wm{i}"), Some("snapshot")))
        .collect();
    records.push(state_record(&topics.state, "wm3", None));
    records.push(OutRecord {
        topic: topics.checkpoint.clone(),
        key: kafka.transactional_id.as_bytes().to_vec(),
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
    });
    producer.commit(records).await.expect("commit");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("store");
    let stats = restore(
        client_config(&kafka),
        &topics.state,
        &mut store,
        Duration::from_secs(30),
        |_, _| {},
    )
    .await
    .expect("restore");
    assert_eq!(stats.records, 21);
    assert_eq!(stats.customers, 19);
    let checkpoint = read_latest(
        &kafka,
        &topics.checkpoint,
        &kafka.transactional_id,
        Duration::from_secs(30),
    )
    .await
    .expect("checkpoint read");
    assert_eq!(checkpoint.as_deref(), Some(&b"{}"[..]));
    producer.close().await;
    drop(store);

    let events = capture.0.lock().expect("capture").clone();
    let loud: Vec<&Captured> = events
        .iter()
        .filter(|e| e.level == Level::ERROR || (e.target == "librdkafka" && e.level <= Level::WARN))
        .collect();
    assert!(loud.is_empty(), "unexpected loud log events: {loud:#?}");
    let eof = events
        .iter()
        .filter(|e| e.target == "librdkafka" && e.message.contains("end of partition"))
        .collect::<Vec<_>>();
    assert!(
        !eof.is_empty(),
        "no partition EOF was reported at all: {:#?}",
        events
            .iter()
            .filter(|e| e.target == "librdkafka")
            .collect::<Vec<_>>()
    );
    assert!(
        eof.iter().all(|e| e.level == Level::DEBUG),
        "partition EOF not at DEBUG: {eof:#?}"
    );
}
