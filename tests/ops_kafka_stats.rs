//! Real librdkafka statistics from the shared broker reach the `tanma_kafka_*` metrics.
//!
//! Needs `KAFKA_BOOTSTRAP_SERVERS` (fails without it). With `OPS_CAPTURE_STATS=FILE` set, the
//! last statistics document is also written to FILE (how `tests/data/ops_librdkafka_stats.json` was
//! captured).

#[path = "support/wait.rs"]
mod wait;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tanma_connector::ops::metrics::{self, record_librdkafka_stats_raw};

#[derive(Clone, Default)]
struct StatsContext {
    last: Arc<Mutex<Vec<u8>>>,
}

impl ClientContext for StatsContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Err(e) = record_librdkafka_stats_raw(statistics) {
            eprintln!("statistics not recorded: {e}");
        }
        if let Ok(mut last) = self.last.lock() {
            *last = statistics.to_vec();
        }
    }
}

impl ProducerContext for StatsContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

fn metric(body: &str, key: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_statistics_become_metrics() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .expect("KAFKA_BOOTSTRAP_SERVERS must be set (source /work/main/.infra/env)");
    let handle = metrics::install().unwrap();
    let suffix: u64 = rand::random();
    let topic = format!("ops-stats-{suffix:x}");
    // The shared broker does not auto-create topics.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic request");
    for r in created {
        r.map_err(|(t, e)| format!("{t}: {e}"))
            .expect("topic created");
    }
    let ctx = StatsContext::default();
    let producer: ThreadedProducer<StatsContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("statistics.interval.ms", "100")
        .set("linger.ms", "0")
        .create_with_context(ctx.clone())
        .expect("producer");
    const N: usize = 5;
    for i in 0..N {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to(&topic).key(&key).payload("v"))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    let producer = tokio::task::spawn_blocking(move || {
        producer.flush(Duration::from_secs(30)).map(|_| producer)
    })
    .await
    .unwrap()
    .expect("flush");

    let key = format!("tanma_kafka_topic_tx_messages_total{{topic=\"{topic}\"}}");
    let (handle, key) = (&handle, &key);
    let body = wait::poll_until(Duration::from_secs(20), || async move {
        let body = handle.render();
        let rtt_seen = body
            .lines()
            .any(|l| l.starts_with("tanma_kafka_broker_rtt_avg_seconds{"));
        (metric(&body, key) == Some(N as f64) && rtt_seen).then_some(body)
    })
    .await
    .unwrap_or_else(|| handle.render());
    assert_eq!(metric(&body, key), Some(N as f64), "{body}");
    assert!(
        metric(&body, "tanma_kafka_tx_bytes_total").unwrap_or(0.0) > 0.0,
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("tanma_kafka_broker_rtt_avg_seconds{")),
        "{body}"
    );
    if let Ok(path) = std::env::var("OPS_CAPTURE_STATS") {
        let last = ctx.last.lock().unwrap().clone();
        std::fs::write(&path, last).unwrap();
    }
    drop(producer);
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
