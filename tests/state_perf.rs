//! Figures for the state store: restore throughput and index memory. Ignored by default; run
//!
//! ```sh
//! cargo test --release --test state_perf -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `restore_throughput` needs `KAFKA_BOOTSTRAP_SERVERS` (and fails without it).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use tanma_connector::state::{encode_headers, restore, RelationMeta, StateStore};

const VALUE_BYTES: usize = 600;

fn base_config() -> ClientConfig {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .expect("KAFKA_BOOTSTRAP_SERVERS must be set (source /work/main/.infra/env)");
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system, all threads) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// A value that looks like an encoded snapshot: mostly varied bytes, some repetition.
fn value_for(i: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(VALUE_BYTES);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < VALUE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(VALUE_BYTES);
    v
}

fn relations_for(ext: &str) -> [RelationMeta; 2] {
    let h = |qw: &str| xxhash_rust::xxh3::xxh3_64(format!("{ext}\u{1f}{qw}").as_bytes());
    [
        RelationMeta {
            key_hash: h("zhangsan"),
            fingerprint: h("fp1"),
            window: None,
        },
        RelationMeta {
            key_hash: h("lisi"),
            fingerprint: h("fp2"),
            window: None,
        },
    ]
}

fn ext_for(i: u64) -> String {
    format!("wmQ8hUDQAA{i:012}xYz")
}

const RECORDS: u64 = 200_000;
/// Set in the child process that produces the topic, so that the producer's buffers do not
/// inflate the parent's RSS figures.
const PRODUCE_ENV: &str = "STATE_PERF_PRODUCE_TOPIC";

fn produce(topic: &str) {
    let producer: BaseProducer = base_config()
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()
        .expect("producer");
    for i in 0..RECORDS {
        let ext = ext_for(i);
        let value = value_for(i);
        let mut headers = OwnedHeaders::new();
        for (k, v) in encode_headers(i, &relations_for(&ext)) {
            headers = headers.insert(Header {
                key: &k,
                value: Some(&v),
            });
        }
        let mut record = BaseRecord::<str, [u8]>::to(topic)
            .key(ext.as_str())
            .payload(value.as_slice())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "performance figures; run explicitly"]
async fn restore_throughput() {
    if let Ok(topic) = std::env::var(PRODUCE_ENV) {
        // Child mode: only produce.
        tokio::task::spawn_blocking(move || produce(&topic))
            .await
            .expect("producer thread");
        return;
    }
    let topic = format!("state-perf-{:016x}", rand::random::<u64>());
    let admin: AdminClient<DefaultClientContext> = base_config().create().expect("admin");
    let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    for r in admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create")
    {
        r.expect("created");
    }
    let produced = Instant::now();
    let exe = std::env::current_exe().expect("test binary");
    let status = tokio::process::Command::new(exe)
        .args(["--ignored", "--exact", "restore_throughput", "--nocapture"])
        .env(PRODUCE_ENV, &topic)
        .status()
        .await
        .expect("spawn producer process");
    assert!(status.success(), "producer process failed: {status}");
    println!("produced {RECORDS} records in {:?}", produced.elapsed());

    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = StateStore::open(dir.path()).expect("open");
    let (rss_before, _) = rss();
    let cpu_before = cpu_time();
    let stats = restore(
        base_config(),
        &topic,
        &mut store,
        Duration::from_secs(60),
        |_, _| {},
    )
    .await
    .expect("restore");
    let cpu = cpu_time().saturating_sub(cpu_before);
    let (rss_after, hwm) = rss();
    assert_eq!(stats.records, RECORDS);
    assert_eq!(stats.customers, RECORDS as usize);
    let ext = ext_for(4242);
    assert_eq!(store.load(&ext).expect("load"), Some(value_for(4242)));
    let secs = stats.elapsed.as_secs_f64();
    let sizes = store.stats();
    println!(
        "restore: {} records, {:.1} MB in {:.2} s wall = {:.0} records/s, {:.1} MB/s; process CPU {:.2} s = {:.0} records per CPU-second; index {} bytes ({:.1} B/customer), spill {} bytes; RSS {} -> {} MB (peak {} MB)",
        stats.records,
        stats.bytes as f64 / 1e6,
        secs,
        stats.records as f64 / secs,
        stats.bytes as f64 / 1e6 / secs,
        cpu.as_secs_f64(),
        stats.records as f64 / cpu.as_secs_f64().max(0.01),
        sizes.index_bytes,
        sizes.index_bytes as f64 / sizes.customers as f64,
        sizes.spill_bytes,
        rss_before >> 20,
        rss_after >> 20,
        hwm >> 20,
    );
    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .expect("delete topic");
}

#[test]
#[ignore = "memory figures; run explicitly"]
fn index_memory_for_a_million_customers() {
    const CUSTOMERS: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (rss_before, _) = rss();
    let mut store = StateStore::open(dir.path()).expect("open");
    let started = Instant::now();
    for i in 0..CUSTOMERS {
        let ext = ext_for(i);
        store
            .apply(&ext, &value_for(i), &relations_for(&ext))
            .expect("apply");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time();
    let (rss_after, hwm) = rss();
    let sizes = store.stats();
    assert_eq!(sizes.customers, CUSTOMERS as usize);
    assert_eq!(sizes.relations, 2 * CUSTOMERS as usize);
    let ext = ext_for(777_777);
    assert_eq!(store.load(&ext).expect("load"), Some(value_for(777_777)));
    println!(
        "1M customers (2 relations, {VALUE_BYTES} B values): applied in {:.2} s ({:.2} s CPU); index {} bytes = {:.1} B/customer; RSS {} -> {} MB (+{:.1} B/customer), peak {} MB; spill {} MB",
        elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        sizes.index_bytes,
        sizes.index_bytes as f64 / CUSTOMERS as f64,
        rss_before >> 20,
        rss_after >> 20,
        (rss_after.saturating_sub(rss_before)) as f64 / CUSTOMERS as f64,
        hwm >> 20,
        sizes.spill_bytes >> 20,
    );
    // 16-byte slots at >= 57 % fill: at most ~28 B per entry, 3 entries per customer.
    assert!(sizes.index_bytes as f64 / (CUSTOMERS as f64) < 90.0);
}
