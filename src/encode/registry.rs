//! A small Confluent-REST schema-registry client (also works with Apicurio's `ccompat/v7` API).
//!
//! At start the connector registers its two value schemas under `<topic>-value`
//! (TopicNameStrategy) and frames records with the ids it gets back. An incompatible schema
//! stops the process with a message naming the subject; an unreachable registry is retried.
//! The basic-auth password never appears in logs, errors or `Debug` output.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::avro::{parse_schema, EVENT_SCHEMA_JSON, SNAPSHOT_SCHEMA_JSON};
use super::framing::Framing;
use crate::config::SchemaRegistryConfig;
use crate::error::{excerpt, Classify, ErrorClass};

/// Per-request timeout used by [`register_schemas`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// An error talking to the schema registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configured URL is unusable, or the HTTP client cannot be built.
    #[error("schema registry: bad configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// The registry could not be reached or did not answer in time.
    #[error("schema registry unreachable during {op}: {source}")]
    Unreachable {
        /// The operation (`register subject x`, …).
        op: String,
        /// The transport error (without the URL).
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("schema registry: {op} failed with HTTP {status}: {body}")]
    Status {
        /// The operation.
        op: String,
        /// HTTP status.
        status: u16,
        /// Excerpt of the response body.
        body: String,
    },
    /// The schema is incompatible with what the subject already holds.
    #[error(
        "schema registry: the connector's schema is incompatible with the latest version of \
         subject {subject:?} under its compatibility rule; evolve the schema compatibly or \
         use new topics ({detail})"
    )]
    Incompatible {
        /// The subject.
        subject: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry's answer is not what the API promises.
    #[error("schema registry: {op}: unexpected response: {detail}")]
    BadResponse {
        /// The operation.
        op: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl Classify for RegistryError {
    fn class(&self) -> ErrorClass {
        match self {
            RegistryError::Unreachable { .. } => ErrorClass::Retry,
            RegistryError::Status { status, .. }
                if *status >= 500 || *status == StatusCode::TOO_MANY_REQUESTS.as_u16() =>
            {
                ErrorClass::Retry
            }
            _ => ErrorClass::Fatal,
        }
    }
}

/// A Confluent-REST registry client.
pub struct RegistryClient {
    base: Url,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<SecretString>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base.as_str())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RegistryClient {
    /// A client for `url` (e.g. `http://registry:8081` or `…/apis/ccompat/v7`).
    pub fn new(
        url: &str,
        username: Option<String>,
        password: Option<SecretString>,
        timeout: Duration,
    ) -> Result<Self, RegistryError> {
        let base = Url::parse(url).map_err(|e| RegistryError::Config {
            detail: format!("schema_registry.url: {e}"),
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(RegistryError::Config {
                detail: "schema_registry.url: must be an http:// or https:// URL".into(),
            });
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(RegistryError::Config {
                detail: "schema_registry.url: put credentials in schema_registry.username / \
                         password, not in the URL"
                    .into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RegistryError::Config {
                detail: format!("HTTP client: {e}"),
            })?;
        Ok(RegistryClient {
            base,
            http,
            username,
            password,
        })
    }

    /// A client from the `[schema_registry]` config; `None` when no URL is configured.
    pub fn from_config(
        cfg: &SchemaRegistryConfig,
        timeout: Duration,
    ) -> Result<Option<Self>, RegistryError> {
        cfg.url
            .as_deref()
            .map(|u| Self::new(u, cfg.username.clone(), cfg.password.clone(), timeout))
            .transpose()
    }

    fn url(&self, segments: &[&str]) -> Result<Url, RegistryError> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .map_err(|()| RegistryError::Config {
                detail: "schema_registry.url cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(u)
    }

    async fn call(
        &self,
        op: &str,
        method: reqwest::Method,
        url: Url,
        body: Option<String>,
    ) -> Result<(StatusCode, String), RegistryError> {
        let mut req = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(b);
        }
        if let Some(user) = &self.username {
            req = req.basic_auth(user, self.password.as_ref().map(|p| p.expose_secret()));
        }
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            op: op.to_string(),
            source: e.without_url(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        tracing::debug!(op, status = status.as_u16(), "Schema registry answered.");
        Ok((status, text))
    }

    fn status_error(op: &str, status: StatusCode, body: &str) -> RegistryError {
        RegistryError::Status {
            op: op.to_string(),
            status: status.as_u16(),
            body: excerpt(body, 300),
        }
    }

    fn parse(op: &str, body: &str) -> Result<serde_json::Value, RegistryError> {
        serde_json::from_str(body).map_err(|e| RegistryError::BadResponse {
            op: op.to_string(),
            detail: format!("{e}: {}", excerpt(body, 200)),
        })
    }

    /// Registers `schema_json` under `subject` (`POST /subjects/{subject}/versions`) and returns
    /// its id; registering an identical schema again returns the same id.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let op = format!("register subject {subject}");
        let body = json!({ "schema": schema_json, "schemaType": "AVRO" }).to_string();
        let url = self.url(&["subjects", subject, "versions"])?;
        let (status, text) = self
            .call(&op, reqwest::Method::POST, url, Some(body))
            .await?;
        if status == StatusCode::CONFLICT {
            return Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                detail: excerpt(&text, 300),
            });
        }
        if !status.is_success() {
            return Err(Self::status_error(&op, status, &text));
        }
        let v = Self::parse(&op, &text)?;
        v.get("id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::BadResponse {
                op,
                detail: format!("no u32 \"id\" in {}", excerpt(&text, 200)),
            })
    }

    /// Whether `schema_json` is compatible with the latest version of `subject`
    /// (`POST /compatibility/subjects/{subject}/versions/latest`); a subject that does not
    /// exist yet (404) is compatible.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<bool, RegistryError> {
        let op = format!("check compatibility of subject {subject}");
        let body = json!({ "schema": schema_json, "schemaType": "AVRO" }).to_string();
        let url = self.url(&["compatibility", "subjects", subject, "versions", "latest"])?;
        let (status, text) = self
            .call(&op, reqwest::Method::POST, url, Some(body))
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(true);
        }
        if !status.is_success() {
            return Err(Self::status_error(&op, status, &text));
        }
        Self::parse(&op, &text)?
            .get("is_compatible")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| RegistryError::BadResponse {
                op,
                detail: format!("no boolean \"is_compatible\" in {}", excerpt(&text, 200)),
            })
    }

    /// The schema text registered under `id` (`GET /schemas/ids/{id}`).
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let op = format!("fetch schema id {id}");
        let url = self.url(&["schemas", "ids", &id.to_string()])?;
        let (status, text) = self.call(&op, reqwest::Method::GET, url, None).await?;
        if !status.is_success() {
            return Err(Self::status_error(&op, status, &text));
        }
        Self::parse(&op, &text)?
            .get("schema")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| RegistryError::BadResponse {
                op,
                detail: format!("no string \"schema\" in {}", excerpt(&text, 200)),
            })
    }

    /// Checks compatibility, registers, and verifies that the id the registry returned names
    /// a schema with the same Parsing Canonical Form as ours.
    pub async fn ensure(
        &self,
        subject: &str,
        file: &'static str,
        schema_json: &str,
    ) -> Result<u32, RegistryError> {
        if !self.check_compatibility(subject, schema_json).await? {
            return Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                detail: "compatibility check returned is_compatible=false".into(),
            });
        }
        let id = self.register(subject, schema_json).await?;
        let theirs = self.schema_by_id(id).await?;
        let bad = |detail: String| RegistryError::BadResponse {
            op: format!("verify schema id {id} of subject {subject}"),
            detail,
        };
        let ours = parse_schema(file, schema_json).map_err(|e| bad(e.to_string()))?;
        let theirs = apache_avro::Schema::parse_str(&theirs).map_err(|e| bad(e.to_string()))?;
        if ours.canonical_form() != theirs.canonical_form() {
            return Err(bad(format!("the registry's schema differs from {file}")));
        }
        tracing::info!(subject, schema_id = id, "Registered Avro schema.");
        Ok(id)
    }
}

/// The `TopicNameStrategy` value subject of `topic`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Registers the event and snapshot schemas under `<events_topic>-value` and
/// `<state_topic>-value` and returns the Confluent framing with their ids; without a configured
/// registry URL, returns [`Framing::SingleObject`].
pub async fn register_schemas(
    cfg: &SchemaRegistryConfig,
    events_topic: &str,
    state_topic: &str,
) -> Result<Framing, RegistryError> {
    let Some(client) = RegistryClient::from_config(cfg, DEFAULT_TIMEOUT)? else {
        return Ok(Framing::SingleObject);
    };
    let event_schema_id = client
        .ensure(
            &value_subject(events_topic),
            "customer_change_event.avsc",
            EVENT_SCHEMA_JSON,
        )
        .await?;
    let snapshot_schema_id = client
        .ensure(
            &value_subject(state_topic),
            "customer_snapshot.avsc",
            SNAPSHOT_SCHEMA_JSON,
        )
        .await?;
    Ok(Framing::Confluent {
        event_schema_id,
        snapshot_schema_id,
    })
}
