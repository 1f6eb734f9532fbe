//! The schema-registry client against the real registry (`SCHEMA_REGISTRY_URL`, e.g. Apicurio's
//! `…/apis/ccompat/v7`). Fails when the variable is missing.

use std::time::Duration;

use tanma_connector::config::SchemaRegistryConfig;
use tanma_connector::encode::registry::{value_subject, DEFAULT_TIMEOUT};
use tanma_connector::encode::{
    register_schemas, Codec, Framing, RegistryClient, RegistryError, EVENT_SCHEMA_JSON,
};
use tanma_connector::error::{Classify, ErrorClass};

fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .expect("SCHEMA_REGISTRY_URL must be set (source /work/main/.infra/env)")
}

fn suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn cfg(url: String) -> SchemaRegistryConfig {
    SchemaRegistryConfig {
        url: Some(url),
        ..Default::default()
    }
}

#[tokio::test]
async fn registers_both_schemas_idempotently() {
    let s = suffix();
    let (events, state) = (
        format!("enc-test-events-{s}"),
        format!("enc-test-state-{s}"),
    );
    let f1 = register_schemas(&cfg(registry_url()), &events, &state)
        .await
        .unwrap();
    let Framing::Confluent {
        event_schema_id,
        snapshot_schema_id,
    } = f1
    else {
        panic!("expected Confluent framing, got {f1:?}");
    };
    assert_ne!(event_schema_id, snapshot_schema_id);
    // Registering again returns the same ids.
    let f2 = register_schemas(&cfg(registry_url()), &events, &state)
        .await
        .unwrap();
    assert_eq!(f1, f2);
    // The registry serves our schema under that id.
    let client = RegistryClient::new(&registry_url(), None, None, DEFAULT_TIMEOUT).unwrap();
    let text = client.schema_by_id(event_schema_id).await.unwrap();
    assert!(text.contains("CustomerChangeEvent"));
    // And the codec frames with them.
    let codec = Codec::new(f1).unwrap();
    assert_eq!(codec.framing(), f1);
}

#[tokio::test]
async fn no_url_means_single_object() {
    let f = register_schemas(&SchemaRegistryConfig::default(), "a", "b")
        .await
        .unwrap();
    assert_eq!(f, Framing::SingleObject);
}

#[tokio::test]
async fn incompatible_schema_is_fatal_and_names_the_subject() {
    let s = suffix();
    let events = format!("enc-test-incompat-{s}");
    let subject = value_subject(&events);
    let client = RegistryClient::new(&registry_url(), None, None, DEFAULT_TIMEOUT).unwrap();
    let other = r#"{"type":"record","name":"CustomerChangeEvent","namespace":"com.tanma.connector","fields":[{"name":"zzz","type":"int"}]}"#;
    client.register(&subject, other).await.unwrap();
    // Ask for BACKWARD compatibility on this subject only.
    let url = format!("{}/config/{subject}", registry_url());
    let resp = reqwest::Client::new()
        .put(url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"BACKWARD"}"#)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(!client
        .check_compatibility(&subject, EVENT_SCHEMA_JSON)
        .await
        .unwrap());
    let err = register_schemas(&cfg(registry_url()), &events, &format!("enc-test-st-{s}"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(err.to_string().contains(&subject), "{err}");
    // Registering directly is refused too (HTTP 409), with the same classification.
    let err = client
        .register(&subject, EVENT_SCHEMA_JSON)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err:?}");
}

#[tokio::test]
async fn unreachable_registry_is_retry_and_password_is_never_shown() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = SchemaRegistryConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        username: Some("user".into()),
        password: Some("hunter2-secret".to_string().into()),
        password_file: None,
    };
    let err = register_schemas(&c, "a", "b").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retry, "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    let client = RegistryClient::from_config(&c, Duration::from_secs(1))
        .unwrap()
        .unwrap();
    assert!(!format!("{client:?}").contains("hunter2"));
}

#[tokio::test]
async fn unknown_id_and_bad_url_are_fatal() {
    let client = RegistryClient::new(&registry_url(), None, None, DEFAULT_TIMEOUT).unwrap();
    let err = client.schema_by_id(u32::MAX - 7).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(RegistryClient::new("ftp://x", None, None, DEFAULT_TIMEOUT).is_err());
    assert!(RegistryClient::new("http://u:p@x", None, None, DEFAULT_TIMEOUT).is_err());
}
