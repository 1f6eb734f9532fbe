//! Micro-benchmarks of the connector's per-relation hot path, on realistic data: the rows come
//! from the built-in simulator (the same content generator the end-to-end benchmark uses).
//!
//! ```sh
//! cargo bench --bench hot_path                 # everything
//! cargo bench --bench hot_path -- parse        # one group
//! ```
//!
//! Groups: `parse` (one 100-row page body → `Page`, and rows → canonical relations), `fingerprint`
//! (relation, customer), `diff` (created, unchanged, updated), `avro` (event, snapshot, decode),
//! `unit` (a whole 100-relation window against an empty store = backfill, and against a store
//! that already knows it = re-scan of unchanged data), `state` (applying one snapshot to the
//! store, the restore path). Record sizes are printed once, for `scripts/bench`'s broker ceiling.

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tanma_connector::config::BadRecordPolicy;
use tanma_connector::customer::canonical::{relation_fingerprint, relation_key_hash};
use tanma_connector::customer::{customer_fingerprint, diff, Change, Customer, Relation, Snapshot};
use tanma_connector::encode::{Codec, Framing};
use tanma_connector::pipeline::unit::{Topics, Unit, UnitContext};
use tanma_connector::plan::Window;
use tanma_connector::sim::{SimConfig, SimHandle};
use tanma_connector::state::{RelationMeta, StateStore};
use tanma_connector::upstream::parse::{parse_relations, parse_response, ParsedResponse};
use tanma_connector::upstream::window_reader::WindowRead;
use tanma_connector::upstream::wire::{ApiResponse, Page, Row};

/// Rows per page, as the connector requests by default.
const PAGE: usize = 100;

/// Everything the benchmarks share, built once.
struct Fixture {
    /// A 100-row page body exactly as the API (simulator) would serialize it.
    page_body: Vec<u8>,
    /// The rows of that page.
    rows: Vec<Row>,
    /// The rows as `(externalUserId, canonical relation)`, in the window reader's order.
    relations: Vec<(String, Relation)>,
    /// A customer with two relations (the median customer has 1–2).
    customer: Customer,
    window: Window,
    now: DateTime<Utc>,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let truth = rt.block_on(async {
        let sim = SimHandle::start(
            SimConfig::for_tests(42, 2_000),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("simulator starts");
        let truth = sim.control().truth();
        sim.shutdown().await;
        truth
    });
    let rows: Vec<Row> = truth.into_iter().take(PAGE).map(|t| t.row).collect();
    assert_eq!(rows.len(), PAGE, "simulator gave fewer than {PAGE} rows");
    let body = ApiResponse {
        code: 0,
        message: Some("success".into()),
        data: Some(Page {
            page_size: Some(PAGE as u32),
            page_no: Some(1),
            total_count: Some(PAGE as u64),
            total_page: Some(1),
            result: Some(rows.clone()),
        }),
    };
    let page_body = serde_json::to_vec(&body).expect("serialize page");
    let mut relations: Vec<(String, Relation)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| Relation::from_row(r, i).expect("simulator rows are valid"))
        .collect();
    // The window reader hands relations over sorted by (externalUserId, qwUserId).
    relations.sort_by(|a, b| (&a.0, &a.1.qw_user_id).cmp(&(&b.0, &b.1.qw_user_id)));
    let mut two = relations.iter().take(2).map(|(_, r)| r.clone());
    let (mut r1, mut r2) = (two.next().expect("row"), two.next().expect("row"));
    r1.qw_user_id = "staff-a".into();
    r2.qw_user_id = "staff-b".into();
    let customer = Customer {
        external_user_id: relations[0].0.clone(),
        relations: vec![r1, r2],
    };
    let t = |s| Utc.timestamp_opt(s, 0).single().expect("time");
    Fixture {
        page_body,
        rows,
        relations,
        customer,
        window: Window::new(t(1_704_067_200), t(1_704_088_800)),
        now: t(1_760_000_000),
    }
}

fn snapshot(f: &Fixture) -> Snapshot {
    Snapshot {
        customer: f.customer.clone(),
        revision: 3,
        fingerprint: customer_fingerprint(&f.customer),
        updated_at: f.now,
    }
}

/// The customer with one profile field value changed in its first relation.
fn changed_relations(f: &Fixture) -> Vec<Relation> {
    let mut rels = f.customer.relations.clone();
    match rels[0].fields.first_mut() {
        Some(field) => field.value = Some("changed".into()),
        None => rels[0].nickname = Some("changed".into()),
    }
    rels
}

fn bench_parse(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(PAGE as u64));
    g.bench_function("parse_response_100_rows", |b| {
        b.iter(|| {
            let parsed = parse_response(black_box(&f.page_body)).expect("parses");
            assert!(matches!(parsed, ParsedResponse::Page(_)));
            parsed
        })
    });
    // What the client does since the borrowed parser: body → relations in one step.
    g.bench_function("parse_relations_100_rows", |b| {
        b.iter(|| {
            let parsed = parse_relations(black_box(&f.page_body)).expect("parses");
            assert!(matches!(parsed, ParsedResponse::Page(_)));
            parsed
        })
    });
    g.bench_function("rows_to_relations_100", |b| {
        b.iter(|| {
            black_box(&f.rows)
                .iter()
                .enumerate()
                .map(|(i, r)| Relation::from_row(r, i).expect("valid"))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

fn bench_fingerprint(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("fingerprint");
    let rel = &f.relations[0].1;
    g.throughput(Throughput::Elements(1));
    g.bench_function("relation", |b| {
        b.iter(|| relation_fingerprint(black_box(rel)))
    });
    g.bench_function("relation_key_hash", |b| {
        b.iter(|| relation_key_hash(black_box(&f.relations[0].0), black_box(&rel.qw_user_id)))
    });
    g.bench_function("customer_2_relations", |b| {
        b.iter(|| customer_fingerprint(black_box(&f.customer)))
    });
    g.finish();
}

fn bench_diff(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("diff");
    let prev = snapshot(f);
    let ext = f.customer.external_user_id.as_str();
    let changed = changed_relations(f);
    g.throughput(Throughput::Elements(1));
    g.bench_function("created_2_relations", |b| {
        b.iter_batched(
            || f.customer.relations.clone(),
            |rels| diff(None, ext, rels, f.now).expect("created"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("unchanged_2_relations", |b| {
        b.iter_batched(
            || f.customer.relations.clone(),
            |rels| assert!(diff(Some(&prev), ext, rels, f.now).is_none()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("updated_one_field", |b| {
        b.iter_batched(
            || changed.clone(),
            |rels| diff(Some(&prev), ext, rels, f.now).expect("updated"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_avro(c: &mut Criterion, f: &Fixture) {
    let codec = Codec::new(Framing::Confluent {
        event_schema_id: 1,
        snapshot_schema_id: 2,
    })
    .expect("codec");
    let prev = snapshot(f);
    let ext = f.customer.external_user_id.as_str();
    let created = diff(None, ext, f.customer.relations.clone(), f.now).expect("created");
    let updated = diff(Some(&prev), ext, changed_relations(f), f.now).expect("updated");
    let snap_bytes = codec.encode_snapshot(&prev).expect("encode");
    let sizes = [
        (
            "event_created",
            codec.encode_event(&created, f.window, f.now),
        ),
        (
            "event_updated",
            codec.encode_event(&updated, f.window, f.now),
        ),
    ];
    for (name, bytes) in sizes {
        eprintln!("record size {name}: {} B", bytes.expect("encode").len());
    }
    eprintln!("record size snapshot: {} B", snap_bytes.len());

    let mut g = c.benchmark_group("avro");
    g.throughput(Throughput::Elements(1));
    for (name, change) in [
        ("encode_event_created", &created),
        ("encode_event_updated", &updated),
    ] {
        g.bench_function(name, |b| {
            let mut buf = Vec::with_capacity(4096);
            b.iter(|| {
                buf.clear();
                codec
                    .encode_event_into(black_box(change), f.window, f.now, &mut buf)
                    .expect("encode");
                buf.len()
            })
        });
    }
    g.bench_function("encode_snapshot", |b| {
        b.iter(|| codec.encode_snapshot(black_box(&prev)).expect("encode"))
    });
    g.bench_function("decode_snapshot", |b| {
        b.iter(|| {
            codec
                .decode_snapshot(black_box(&snap_bytes))
                .expect("decode")
        })
    });
    g.finish();
    let _ = matches!(created, Change::Created { .. });
}

fn window_read(f: &Fixture) -> WindowRead {
    WindowRead {
        window: f.window,
        total_count: f.relations.len() as u64,
        relations: f.relations.clone(),
        rejected: Vec::new(),
        requests: 1,
        reread_requests: 0,
        pages: 1,
        drift_rereads: 0,
        complete: true,
    }
}

fn bench_unit(c: &mut Criterion, f: &Fixture) {
    let codec = Codec::new(Framing::SingleObject).expect("codec");
    let topics = Topics {
        events: "events".into(),
        state: "state".into(),
        dead_letter: "dlq".into(),
    };
    let read = window_read(f);
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = StateStore::open(&dir.path().join("empty")).expect("store");
    let mut known = StateStore::open(&dir.path().join("known")).expect("store");
    let mut seed = Unit::default();
    let no_dead_letters = Default::default();
    let seed_ctx = UnitContext {
        store: &known,
        codec: &codec,
        topics: &topics,
        policy: BadRecordPolicy::Stop,
        dead_lettered: &no_dead_letters,
        now: f.now,
        deletions: None,
        grid: Default::default(),
    };
    seed.add_window(read.clone(), &seed_ctx).expect("unit");
    for s in &seed.staged {
        known
            .apply(&s.external_user_id, &s.value, &s.relations)
            .expect("apply");
    }

    let mut g = c.benchmark_group("unit");
    g.throughput(Throughput::Elements(read.relations.len() as u64));
    type Case<'a> = (&'a str, &'a StateStore, fn(&Unit) -> bool);
    let cases: [Case<'_>; 2] = [
        ("backfill_window_100_relations", &empty, |u| {
            u.stats.created > 0
        }),
        ("rescan_unchanged_window_100_relations", &known, |u| {
            u.stats.created + u.stats.updated == 0
        }),
    ];
    for (name, store, expected) in cases {
        let ctx = UnitContext {
            store,
            codec: &codec,
            topics: &topics,
            policy: BadRecordPolicy::Stop,
            dead_lettered: &no_dead_letters,
            now: f.now,
            deletions: None,
            grid: Default::default(),
        };
        g.bench_function(name, |b| {
            // The read is moved into the unit: each iteration gets a copy (not timed).
            b.iter_batched(
                || read.clone(),
                |read| {
                    let mut u = Unit::default();
                    u.add_window(black_box(read), &ctx).expect("unit");
                    assert!(expected(&u), "{name}");
                    u
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(1));
    let s = &seed.staged[0];
    let metas: Vec<RelationMeta> = s.relations.clone();
    let mut store = StateStore::open(&dir.path().join("apply")).expect("store");
    let mut n = 0u64;
    g.bench_function("apply_snapshot_new_customer", |b| {
        b.iter(|| {
            n += 1;
            let key = format!("wm{n:030}");
            store.apply(&key, &s.value, &metas).expect("apply");
        })
    });
    g.finish();
    eprintln!(
        "state store after the apply benchmark: {} customers, index {} B",
        store.customers(),
        store.stats().index_bytes
    );
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    bench_parse(c, &f);
    bench_fingerprint(c, &f);
    bench_diff(c, &f);
    bench_avro(c, &f);
    bench_unit(c, &f);
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(hot_path);
