//! librdkafka statistics → `tanma_kafka_*` metrics, from a captured statistics document.

use tanma_connector::ops::metrics::{self, record_librdkafka_stats};

const FIXTURE: &str = include_str!("data/ops_librdkafka_stats.json");

fn line_value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn statistics_become_kafka_metrics() {
    let handle = metrics::install().unwrap();
    let doc: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    record_librdkafka_stats(FIXTURE).expect("captured statistics parse");
    let body = handle.render();

    let top = |k: &str| doc[k].as_f64().unwrap();
    assert_eq!(
        line_value(&body, "tanma_kafka_tx_bytes_total"),
        Some(top("tx_bytes"))
    );
    assert_eq!(
        line_value(&body, "tanma_kafka_rx_bytes_total"),
        Some(top("rx_bytes"))
    );
    assert_eq!(
        line_value(&body, "tanma_kafka_tx_requests_total"),
        Some(top("tx"))
    );
    assert_eq!(
        line_value(&body, "tanma_kafka_tx_messages_total"),
        Some(top("txmsgs"))
    );
    assert_eq!(
        line_value(&body, "tanma_kafka_msg_queue_messages"),
        Some(top("msg_cnt"))
    );
    assert!(
        body.contains("# HELP tanma_kafka_tx_bytes_total Bytes sent"),
        "{body}"
    );

    // Per topic: the sum of the real partitions' txmsgs.
    let topics = doc["topics"].as_object().unwrap();
    assert!(!topics.is_empty(), "fixture has a topic");
    for (name, t) in topics {
        let sum: f64 = t["partitions"]
            .as_object()
            .unwrap()
            .values()
            .filter(|p| p["partition"].as_i64().unwrap() >= 0)
            .map(|p| p["txmsgs"].as_f64().unwrap())
            .sum();
        let key = format!("tanma_kafka_topic_tx_messages_total{{topic=\"{name}\"}}");
        assert_eq!(line_value(&body, &key), Some(sum), "{body}");
    }

    // Per broker: only real brokers (node id >= 0) with RTT samples, in seconds.
    for (name, b) in doc["brokers"].as_object().unwrap() {
        let key = format!("tanma_kafka_broker_rtt_avg_seconds{{broker=\"{name}\"}}");
        let node = b["nodeid"].as_i64().unwrap();
        let cnt = b["rtt"]["cnt"].as_i64().unwrap_or(0);
        if node >= 0 && cnt > 0 {
            let want = b["rtt"]["avg"].as_f64().unwrap() / 1e6;
            assert_eq!(line_value(&body, &key), Some(want), "{body}");
        } else {
            assert_eq!(line_value(&body, &key), None, "{name} must be skipped");
        }
    }
}

#[test]
fn garbage_statistics_are_an_error_not_a_panic() {
    metrics::install().unwrap();
    let err = record_librdkafka_stats("{\"tx\": \"many\"").unwrap_err();
    assert!(err.to_string().contains("librdkafka statistics"), "{err}");
    // Unknown and missing fields are fine.
    record_librdkafka_stats("{\"future_field\": 1}").unwrap();
}

#[test]
fn bootstrap_brokers_and_unassigned_partitions_are_skipped() {
    let handle = metrics::install().unwrap();
    let doc = r#"{
      "brokers": {
        "boot:9092/bootstrap": {"nodeid": -1, "rtt": {"avg": 5000, "cnt": 3}},
        "b1:9092/7": {"nodeid": 7, "rtt": {"avg": 2500, "cnt": 4}},
        "b2:9092/8": {"nodeid": 8, "rtt": {"avg": 0, "cnt": 0}}
      },
      "topics": {"ops-skip-t": {"partitions": {
        "0": {"partition": 0, "txmsgs": 4},
        "1": {"partition": 1, "txmsgs": 6},
        "-1": {"partition": -1, "txmsgs": 100}
      }}}
    }"#;
    record_librdkafka_stats(doc).unwrap();
    let body = handle.render();
    assert_eq!(
        line_value(
            &body,
            "tanma_kafka_topic_tx_messages_total{topic=\"ops-skip-t\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        line_value(
            &body,
            "tanma_kafka_broker_rtt_avg_seconds{broker=\"b1:9092/7\"}"
        ),
        Some(0.0025)
    );
    assert!(!body.contains("boot:9092/bootstrap"), "{body}");
    assert!(!body.contains("b2:9092/8"), "no samples, no gauge: {body}");
}
