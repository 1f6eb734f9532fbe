//! The event schema with DELETED evolves today's schema (`tests/data/customer_change_event.v1.avsc`,
//! the first version, without DELETED) with FULL compatibility, in the real registry
//! (`SCHEMA_REGISTRY_URL`; fails when it is missing): consumers still on the old schema decode
//! every new event (a DELETED reads as UNKNOWN, its after image present without relations), and
//! consumers on the new schema decode old events.

use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum, Schema};
use chrono::{DateTime, Utc};
use tanma_connector::customer::diff::{diff, remove_relations, Change};
use tanma_connector::customer::Relation;
use tanma_connector::encode::registry::{value_subject, DEFAULT_TIMEOUT};
use tanma_connector::encode::{Codec, Framing, RegistryClient, EVENT_SCHEMA_JSON};
use tanma_connector::plan::Window;

const OLD_EVENT_SCHEMA: &str = include_str!("data/customer_change_event.v1.avsc");

fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .expect("SCHEMA_REGISTRY_URL must be set (source /work/main/.infra/env)")
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
}

fn relation(qw: &str) -> Relation {
    Relation {
        qw_user_id: qw.to_string(),
        mobiles: vec!["13800000000".into()],
        nickname: Some("客户".into()),
        avatar: None,
        fields: Vec::new(),
    }
}

/// A CREATED event and the DELETED event of the same customer.
fn changes() -> (Change, Change) {
    let created = diff(None, "wm-evo", vec![relation("staff-1")], t(0)).expect("created");
    let deleted = remove_relations(created.after().clone(), &["staff-1"], t(60)).expect("deleted");
    assert_eq!(deleted.event_type(), "DELETED");
    (created, deleted)
}

/// The Avro body of a Confluent-framed record (magic byte and schema id stripped).
fn body(framed: &[u8]) -> &[u8] {
    assert_eq!(framed.first(), Some(&0), "Confluent magic byte");
    &framed[5..]
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let Value::Record(fields) = v else {
        panic!("not a record: {v:?}")
    };
    &fields.iter().find(|(n, _)| n == name).expect(name).1
}

#[tokio::test]
async fn deleted_evolves_the_event_schema_with_full_compatibility() {
    let subject = value_subject(&format!("evo-events-{:016x}", rand::random::<u64>()));
    let client = RegistryClient::new(&registry_url(), None, None, DEFAULT_TIMEOUT).expect("client");
    let old_id = client
        .register(&subject, OLD_EVENT_SCHEMA)
        .await
        .expect("old");
    let resp = reqwest::Client::new()
        .put(format!("{}/config/{subject}", registry_url()))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"FULL"}"#)
        .send()
        .await
        .expect("config");
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(client
        .check_compatibility(&subject, EVENT_SCHEMA_JSON)
        .await
        .expect("check"));
    let new_id = client
        .register(&subject, EVENT_SCHEMA_JSON)
        .await
        .expect("new schema registered under FULL");
    assert_ne!(old_id, new_id);
    // An incompatible change is refused: the check can fail.
    let revision_as_text = OLD_EVENT_SCHEMA.replacen(
        "\"name\": \"revision\",\n      \"type\": \"long\"",
        "\"name\": \"revision\",\n      \"type\": \"string\"",
        1,
    );
    assert_ne!(revision_as_text, OLD_EVENT_SCHEMA);
    assert!(!client
        .check_compatibility(&subject, &revision_as_text)
        .await
        .expect("check"));

    // The schemas as the registry serves them.
    let new_schema =
        Schema::parse_str(&client.schema_by_id(new_id).await.expect("new")).expect("parses");
    let old_schema =
        Schema::parse_str(&client.schema_by_id(old_id).await.expect("old")).expect("parses");
    let codec = Codec::new(Framing::Confluent {
        event_schema_id: new_id,
        snapshot_schema_id: new_id,
    })
    .expect("codec");
    let w = Window::new(t(-60), t(0));
    let (created, deleted) = changes();

    // A new DELETED event, read with the old schema: UNKNOWN, after present without relations.
    let bytes = codec.encode_event(&deleted, w, t(61)).expect("encode");
    let old_view = from_avro_datum(&new_schema, &mut body(&bytes), Some(&old_schema))
        .expect("old readers decode DELETED");
    assert_eq!(
        field(&old_view, "event_type"),
        &Value::Enum(0, "UNKNOWN".into())
    );
    assert_eq!(field(&old_view, "revision"), &Value::Long(2));
    assert_eq!(
        field(field(&old_view, "after"), "relations"),
        &Value::Array(vec![])
    );
    // And with the new schema: DELETED.
    let new_view = codec.decode_event_json(&bytes).expect("decodes");
    assert_eq!(new_view["event_type"], "DELETED");

    // An old event (written with the old schema) read with the new one.
    let created_bytes = codec.encode_event(&created, w, t(1)).expect("encode");
    let value = from_avro_datum(&new_schema, &mut body(&created_bytes), None).expect("value");
    let old_datum = to_avro_datum(&old_schema, value).expect("old schema writes it");
    let read = from_avro_datum(&old_schema, &mut old_datum.as_slice(), Some(&new_schema))
        .expect("new readers decode old events");
    assert_eq!(
        field(&read, "event_type"),
        &Value::Enum(1, "CREATED".into())
    );
}
