//! The Avro codec against apache-avro's own encoder/decoder, both framings, error cases, speed.

mod encode_support;

use apache_avro::types::Value;
use apache_avro::Schema;
use encode_support::{any_relations, relation, t};
use proptest::prelude::*;
use tanma_connector::customer::{diff, fingerprint_hex, Change, Relation, Snapshot};
use tanma_connector::encode::canonical_form::parsing_canonical_form;
use tanma_connector::encode::framing::rabin_fingerprint;
use tanma_connector::encode::{
    Codec, EncodeError, Framing, EVENT_SCHEMA_JSON, SNAPSHOT_SCHEMA_JSON,
};
use tanma_connector::plan::window::Window;

const CONFLUENT: Framing = Framing::Confluent {
    event_schema_id: 7,
    snapshot_schema_id: 0x0102_0304,
};

fn schemas() -> (Schema, Schema) {
    (
        Schema::parse_str(EVENT_SCHEMA_JSON).unwrap(),
        Schema::parse_str(SNAPSHOT_SCHEMA_JSON).unwrap(),
    )
}

fn window() -> Window {
    Window::new(t(1000), t(1060))
}

fn opt(s: &Option<String>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
    }
}

fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn relation_value(r: &Relation) -> Value {
    rec(vec![
        ("qw_user_id", Value::String(r.qw_user_id.clone())),
        (
            "mobiles",
            Value::Array(r.mobiles.iter().cloned().map(Value::String).collect()),
        ),
        ("wechat_nickname", opt(&r.nickname)),
        ("wechat_avatar", opt(&r.avatar)),
        (
            "fields",
            Value::Array(
                r.fields
                    .iter()
                    .map(|f| {
                        rec(vec![
                            ("id", Value::Long(f.id)),
                            ("name", opt(&f.name)),
                            ("outer_field", opt(&f.outer_field)),
                            ("value", opt(&f.value)),
                            ("stable", Value::Boolean(f.stable)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

fn snapshot_value(s: &Snapshot) -> Value {
    rec(vec![
        (
            "external_user_id",
            Value::String(s.customer.external_user_id.clone()),
        ),
        ("revision", Value::Long(s.revision as i64)),
        ("fingerprint", Value::String(fingerprint_hex(s.fingerprint))),
        (
            "updated_at",
            Value::TimestampMillis(s.updated_at.timestamp_millis()),
        ),
        (
            "relations",
            Value::Array(s.customer.relations.iter().map(relation_value).collect()),
        ),
    ])
}

fn event_value(c: &Change, w: Window, observed: chrono::DateTime<chrono::Utc>) -> Value {
    let (sym, before, changes) = match c {
        Change::Created { .. } => (
            (1, "CREATED"),
            Value::Union(0, Box::new(Value::Null)),
            vec![],
        ),
        Change::Updated {
            before, changes, ..
        }
        | Change::Deleted {
            before, changes, ..
        } => (
            if matches!(c, Change::Deleted { .. }) {
                (3, "DELETED")
            } else {
                (2, "UPDATED")
            },
            Value::Union(1, Box::new(snapshot_value(before))),
            changes
                .iter()
                .map(|p| {
                    rec(vec![
                        ("path", Value::String(p.path.clone())),
                        ("old_value", opt(&p.old_value)),
                        ("new_value", opt(&p.new_value)),
                    ])
                })
                .collect(),
        ),
    };
    let a = c.after();
    rec(vec![
        ("event_id", Value::String(c.event_id())),
        ("event_type", Value::Enum(sym.0, sym.1.to_string())),
        (
            "external_user_id",
            Value::String(a.customer.external_user_id.clone()),
        ),
        ("revision", Value::Long(a.revision as i64)),
        (
            "observed_at",
            Value::TimestampMillis(observed.timestamp_millis()),
        ),
        (
            "window_since",
            Value::TimestampMillis(w.since.timestamp_millis()),
        ),
        (
            "window_before",
            Value::TimestampMillis(w.before.timestamp_millis()),
        ),
        ("before", before),
        ("after", snapshot_value(a)),
        ("changes", Value::Array(changes)),
    ])
}

/// A CREATED and an UPDATED change with Chinese/emoji text, nulls and empty arrays.
fn sample_changes() -> Vec<Change> {
    let mut bare = relation("b");
    bare.mobiles.clear();
    bare.fields.clear();
    bare.nickname = None;
    let created = diff(None, "wm_客户_🐼", vec![relation("a"), bare], t(1)).unwrap();
    let mut a = relation("a");
    a.fields[2].value = Some("经理".into());
    a.avatar = Some("https://x/a.png".into());
    let updated = diff(
        Some(created.after()),
        "wm_客户_🐼",
        vec![a, relation("c")],
        t(2),
    )
    .unwrap();
    vec![created, updated]
}

fn assert_matches_apache(codec: &Codec, header_len: usize, c: &Change) {
    let (event_schema, snapshot_schema) = schemas();
    let bytes = codec.encode_event(c, window(), t(5)).unwrap();
    let body = &bytes[header_len..];
    let expected = event_value(c, window(), t(5));
    let theirs = apache_avro::to_avro_datum(&event_schema, expected.clone()).unwrap();
    assert_eq!(body, &theirs[..], "event bytes equal apache-avro's");
    let decoded = apache_avro::from_avro_datum(&event_schema, &mut &body[..], None).unwrap();
    assert_eq!(decoded, expected);

    let snap = codec.encode_snapshot(c.after()).unwrap();
    let theirs = apache_avro::to_avro_datum(&snapshot_schema, snapshot_value(c.after())).unwrap();
    assert_eq!(
        &snap[header_len..],
        &theirs[..],
        "snapshot bytes equal apache-avro's"
    );
    assert_eq!(&codec.decode_snapshot(&snap).unwrap(), c.after());
}

#[test]
fn event_schema_inlines_exactly_the_snapshot_schema() {
    let event: serde_json::Value = serde_json::from_str(EVENT_SCHEMA_JSON).unwrap();
    let before = event["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "before")
        .unwrap();
    let inlined = Schema::parse_str(&before["type"][1].to_string()).unwrap();
    let (_, snapshot) = schemas();
    assert_eq!(inlined.canonical_form(), snapshot.canonical_form());
}

#[test]
fn confluent_framing_matches_apache_avro() {
    let codec = Codec::new(CONFLUENT).unwrap();
    for c in sample_changes() {
        let bytes = codec.encode_event(&c, window(), t(5)).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
        let snap = codec.encode_snapshot(c.after()).unwrap();
        assert_eq!(&snap[..5], &[0, 1, 2, 3, 4]);
        assert_matches_apache(&codec, 5, &c);
    }
}

#[test]
fn single_object_framing_matches_apache_avro_and_the_spec() {
    let codec = Codec::new(Framing::SingleObject).unwrap();
    let (efp, sfp) = codec.fingerprints();
    let pcf = |s| parsing_canonical_form(s).unwrap();
    assert_eq!(efp, rabin_fingerprint(pcf(EVENT_SCHEMA_JSON).as_bytes()));
    assert_eq!(sfp, rabin_fingerprint(pcf(SNAPSHOT_SCHEMA_JSON).as_bytes()));
    // The timestamps are plain "long" in the canonical form (logicalType is stripped).
    assert!(pcf(EVENT_SCHEMA_JSON).contains(r#"{"name":"observed_at","type":"long"}"#));
    for c in sample_changes() {
        let bytes = codec.encode_event(&c, window(), t(5)).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(&bytes[2..10], &efp.to_le_bytes());
        assert_matches_apache(&codec, 10, &c);
    }
}

#[test]
fn decoding_accepts_either_framing_and_checks_the_schema() {
    let conf = Codec::new(CONFLUENT).unwrap();
    let single = Codec::new(Framing::SingleObject).unwrap();
    let other = Codec::new(Framing::Confluent {
        event_schema_id: 8,
        snapshot_schema_id: 9,
    })
    .unwrap();
    let c = &sample_changes()[1];
    let s_conf = conf.encode_snapshot(c.after()).unwrap();
    let s_single = single.encode_snapshot(c.after()).unwrap();
    assert_eq!(&conf.decode_snapshot(&s_single).unwrap(), c.after());
    assert_eq!(&other.decode_snapshot(&s_single).unwrap(), c.after());
    assert!(matches!(
        other.decode_snapshot(&s_conf),
        Err(EncodeError::UnknownSchema { .. })
    ));
    assert!(matches!(
        single.decode_snapshot(&s_conf),
        Err(EncodeError::UnknownSchema { .. })
    ));
    // An event is not a snapshot.
    let e_single = single.encode_event(c, window(), t(5)).unwrap();
    assert!(matches!(
        single.decode_snapshot(&e_single),
        Err(EncodeError::UnknownSchema { .. })
    ));
    // Corruption: truncated, trailing bytes, unknown framing.
    for cut in [3, 11, s_single.len() / 2, s_single.len() - 1] {
        assert!(
            single.decode_snapshot(&s_single[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut long = s_single.clone();
    long.push(0);
    assert!(matches!(
        single.decode_snapshot(&long),
        Err(EncodeError::Malformed { .. })
    ));
    assert!(matches!(
        single.decode_snapshot(b"{\"a\":1}"),
        Err(EncodeError::Framing { .. })
    ));
    assert!(single
        .decode_event_json(&e_single[..e_single.len() - 1])
        .is_err());
}

#[test]
fn event_json_for_tail() {
    let codec = Codec::new(CONFLUENT).unwrap();
    let c = &sample_changes()[1];
    let j = codec
        .decode_event_json(&codec.encode_event(c, window(), t(5)).unwrap())
        .unwrap();
    assert_eq!(j["event_type"], "UPDATED");
    assert_eq!(j["external_user_id"], "wm_客户_🐼");
    assert_eq!(j["revision"], 2);
    assert_eq!(j["observed_at"], "1970-01-01T00:00:05.123Z");
    assert_eq!(j["window_since"], "1970-01-01T00:16:40.000Z");
    assert_eq!(j["before"]["revision"], 1);
    assert_eq!(j["after"]["relations"][0]["wechat_nickname"], "张三 🐼");
    assert_eq!(
        j["after"]["relations"][0]["wechat_avatar"],
        "https://x/a.png"
    );
    assert_eq!(j["changes"][0]["path"], "relations[a].wechat_avatar");
    assert_eq!(j["changes"][0]["old_value"], "null");
    assert_eq!(j["event_id"], c.event_id());
}

#[test]
fn revision_out_of_range_names_the_record() {
    let codec = Codec::new(Framing::SingleObject).unwrap();
    let mut c = sample_changes().remove(0);
    if let Change::Created { after } = &mut c {
        after.revision = u64::MAX;
    }
    let err = codec.encode_event(&c, window(), t(5)).unwrap_err();
    assert_eq!(err.bad_record_key(), Some("wm_客户_🐼"));
    let mut buf = vec![1, 2];
    assert!(codec
        .encode_event_into(&c, window(), t(5), &mut buf)
        .is_err());
    assert_eq!(buf, vec![1, 2], "buffer restored on error");
}

/// Encoding speed for a typical UPDATED event (3 relations × 12 fields, before + after).
/// Figures are printed; the bound is loose so an unoptimised debug build passes.
#[test]
fn encode_speed() {
    let rels: Vec<Relation> = ["u1", "u2", "u3"]
        .iter()
        .map(|q| {
            let mut r = relation(q);
            for i in 0..8 {
                r.fields.push(encode_support::field(
                    700 + i,
                    "自定义字段",
                    Some("某个比较长的值 value"),
                    false,
                ));
            }
            r
        })
        .collect();
    let created = diff(
        None,
        "wmABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        rels.clone(),
        t(1),
    )
    .unwrap();
    let mut changed = rels[1].clone();
    changed.nickname = Some("新昵称".into());
    let c = diff(
        Some(created.after()),
        "wmABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        vec![changed],
        t(2),
    )
    .unwrap();
    let codec = Codec::new(CONFLUENT).unwrap();
    let n = 20_000u32;
    let start = std::time::Instant::now();
    let mut total = 0usize;
    for _ in 0..n {
        total += codec.encode_event(&c, window(), t(5)).unwrap().len();
    }
    let ours = start.elapsed() / n;
    let (event_schema, _) = schemas();
    let value = event_value(&c, window(), t(5));
    let m = 2_000u32;
    let start = std::time::Instant::now();
    for _ in 0..m {
        total += apache_avro::to_avro_datum(&event_schema, value.clone())
            .unwrap()
            .len();
    }
    let theirs = start.elapsed() / m;
    println!(
        "encode_event: {:.2} µs/event ({} bytes); apache-avro to_avro_datum from a ready Value: {:.2} µs",
        ours.as_secs_f64() * 1e6,
        total / (n + m) as usize,
        theirs.as_secs_f64() * 1e6
    );
    let snap = codec.encode_snapshot(c.after()).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert_eq!(codec.decode_snapshot(&snap).unwrap().revision, 2);
    }
    println!(
        "decode_snapshot: {:.2} µs/snapshot ({} bytes)",
        (start.elapsed() / n).as_secs_f64() * 1e6,
        snap.len()
    );
    assert!(ours < std::time::Duration::from_micros(200), "{ours:?}");
}

proptest! {
    #[test]
    fn any_snapshot_and_event_match_apache_avro(rels in any_relations(), rels2 in any_relations()) {
        let created = diff(None, "wm1", rels, t(1)).unwrap();
        let codec = Codec::new(Framing::SingleObject).unwrap();
        assert_matches_apache(&codec, 10, &created);
        if let Some(updated) = diff(Some(created.after()), "wm1", rels2, t(2)) {
            assert_matches_apache(&codec, 10, &updated);
        }
    }
}
