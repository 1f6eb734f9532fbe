//! `tanma-connector tail` and `tanma-connector state`: read what the connector committed.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::encode::Codec;
use crate::publish::{
    client_config, create_client, read_to_end_blocking, KafkaContext, ReadOptions,
};

/// Options of `tail`.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// Stop after this many events.
    pub max: Option<u64>,
    /// Stop when no event arrived for this long (None: follow forever).
    pub idle_timeout: Option<Duration>,
    /// Start at the end of the topic instead of the beginning.
    pub from_end: bool,
}

fn consumer(
    cfg: &Config,
    topic: &str,
    from_end: bool,
) -> Result<BaseConsumer<KafkaContext>, String> {
    let mut cc = client_config(&cfg.kafka);
    cc.set("group.id", format!("tanma-inspect-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer<KafkaContext> = create_client(&cc).map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("topic {topic}: {e}"))?;
    let parts = md
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if parts == 0 {
        return Err(format!("topic {topic} does not exist"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(
            topic,
            p,
            if from_end {
                Offset::End
            } else {
                Offset::Beginning
            },
        )
        .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Prints decoded events as JSON lines on stdout (read_committed). Blocking: run it on a
/// blocking thread. Returns the number of events printed.
pub fn tail(cfg: &Config, codec: &Codec, opts: TailOptions) -> Result<u64, String> {
    let c = consumer(cfg, &cfg.topics.events, opts.from_end)?;
    let mut n = 0u64;
    let mut last = Instant::now();
    let stdout = std::io::stdout();
    loop {
        if opts.max.is_some_and(|m| n >= m) {
            return Ok(n);
        }
        if opts.idle_timeout.is_some_and(|t| last.elapsed() > t) {
            return Ok(n);
        }
        let Some(msg) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.map_err(|e| e.to_string())?;
        last = Instant::now();
        let line = match msg.payload().map(|p| codec.decode_event_json(p)) {
            Some(Ok(v)) => v.to_string(),
            Some(Err(e)) => {
                serde_json::json!({"undecodable": e.to_string(), "offset": msg.offset()})
                    .to_string()
            }
            None => continue,
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").is_err() {
            return Ok(n);
        }
        n += 1;
    }
}

/// Finds the latest committed snapshot of `external_user_id` in the state topic and returns it
/// as JSON. Blocking.
pub fn state(
    cfg: &Config,
    codec: &Codec,
    external_user_id: &str,
) -> Result<Option<serde_json::Value>, String> {
    let timeout = Duration::from_millis(cfg.state.restore_timeout_ms);
    let mut latest: Option<Vec<u8>> = None;
    read_to_end_blocking(
        &client_config(&cfg.kafka),
        &cfg.topics.state,
        &ReadOptions::committed(timeout),
        |_| {},
        |r| {
            if r.key() == Some(external_user_id.as_bytes()) {
                latest = r.value().map(<[u8]>::to_vec);
            }
            Ok::<(), std::convert::Infallible>(())
        },
    )
    .map_err(|e| e.to_string())?;
    match latest {
        None => Ok(None),
        Some(bytes) => {
            let s = codec.decode_snapshot(&bytes).map_err(|e| e.to_string())?;
            Ok(Some(serde_json::json!({
                "external_user_id": s.customer.external_user_id,
                "revision": s.revision,
                "fingerprint": crate::customer::canonical::fingerprint_hex(s.fingerprint),
                "updated_at": s.updated_at.to_rfc3339(),
                "relations": s.customer.relations.iter().map(crate::customer::diff::relation_json).collect::<Vec<_>>(),
            })))
        }
    }
}
