//! Topic management: create the connector's topics when allowed, then verify the settings that
//! exactly-once restore depends on (compacted state and checkpoint, a one-partition checkpoint).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use super::client_config::{client_config, describe_creation_error};
use super::error::{acl_hint, is_authentication_code, is_fatal_code, kafka_error_class};
use super::kafka_context::{create_client, KafkaContext};
use crate::config::{KafkaConfig, TopicsConfig};
use crate::error::{Classify, ErrorClass};

/// A topic that is missing, misconfigured, or could not be created or inspected.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be created (bad configuration; secrets redacted).
    #[error("cannot create the Kafka admin client: {cause}")]
    Client {
        /// librdkafka's reason.
        cause: String,
    },
    /// The broker refused the SASL credentials (seen when the first request fails).
    #[error(
        "Kafka at {bootstrap} refused the credentials of SASL user {user:?} \
         (sasl.mechanism {mechanism}): {code}; check kafka.sasl_username, \
         kafka.sasl_mechanism and the password (TANMA_KAFKA__SASL_PASSWORD or kafka.sasl_password_file)"
    )]
    Authentication {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// `sasl.username`.
        user: String,
        /// `sasl.mechanism`.
        mechanism: String,
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
    },
    /// Reading cluster metadata failed.
    #[error("cannot read Kafka metadata ({what}): {cause}")]
    Metadata {
        /// What was being looked up.
        what: String,
        /// librdkafka's error.
        cause: KafkaError,
    },
    /// Topics are missing and `topics.create` is false.
    #[error(
        "Kafka topics {topics:?} do not exist and topics.create is false; create them \
         (state and checkpoint with cleanup.policy=compact, checkpoint with 1 partition) or set topics.create = true"
    )]
    Missing {
        /// The missing topics.
        topics: Vec<String>,
    },
    /// The broker refused an admin request as a whole.
    #[error("Kafka admin request {op} failed: {cause}")]
    Admin {
        /// The request.
        op: &'static str,
        /// librdkafka's error.
        cause: KafkaError,
    },
    /// The broker refused to create one topic.
    #[error("cannot create Kafka topic {topic:?}: {code}{}", acl_hint(*.code))]
    Create {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The broker could not describe one topic's configuration.
    #[error(
        "cannot read the configuration of Kafka topic {topic:?}: {code}{}",
        acl_hint(*.code)
    )]
    Describe {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The broker described no configuration at all for a topic: it does not exist (yet) or the
    /// principal may not describe its configuration.
    #[error(
        "the broker returned no configuration for Kafka topic {topic:?}: the topic is gone or the \
         connector's principal lacks DescribeConfigs on it (docs/OPERATIONS.md lists the ACLs it needs)"
    )]
    NoConfig {
        /// The topic.
        topic: String,
    },
    /// A topic has the wrong `cleanup.policy`.
    #[error(
        "Kafka topic {topic:?} ({role}) has cleanup.policy={found:?} but needs cleanup.policy={needed}; \
         fix it with kafka-configs --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy={needed}"
    )]
    CleanupPolicy {
        /// The topic.
        topic: String,
        /// Its role: `state` or `checkpoint`.
        role: &'static str,
        /// The policy it has.
        found: String,
        /// The policy it needs.
        needed: &'static str,
    },
    /// A topic has the wrong number of partitions.
    #[error("Kafka topic {topic:?} ({role}) has {found} partitions but needs exactly {needed}")]
    Partitions {
        /// The topic.
        topic: String,
        /// Its role.
        role: &'static str,
        /// Partitions found.
        found: usize,
        /// Partitions needed.
        needed: usize,
    },
    /// A blocking call could not complete (its task panicked or the runtime is shutting down).
    #[error("blocking Kafka call {op} did not complete: {detail}")]
    Runtime {
        /// The call.
        op: &'static str,
        /// What happened to the task.
        detail: String,
    },
}

impl TopicError {
    /// The topic is not (yet) in the metadata of the broker that answered, or was `created`
    /// just now and its settings have not reached that broker yet.
    fn not_yet_visible(&self, created: &[String]) -> bool {
        match self {
            TopicError::Describe {
                code: RDKafkaErrorCode::UnknownTopicOrPartition,
                ..
            }
            | TopicError::Partitions { found: 0, .. } => true,
            TopicError::CleanupPolicy { topic, .. }
            | TopicError::Partitions { topic, .. }
            | TopicError::NoConfig { topic } => created.contains(topic),
            _ => false,
        }
    }
}

impl Classify for TopicError {
    fn class(&self) -> ErrorClass {
        match self {
            TopicError::Metadata { cause, .. } | TopicError::Admin { cause, .. } => {
                kafka_error_class(cause)
            }
            TopicError::Create { code, .. } | TopicError::Describe { code, .. } => {
                if is_fatal_code(*code)
                    || matches!(
                        code,
                        RDKafkaErrorCode::PolicyViolation
                            | RDKafkaErrorCode::InvalidConfig
                            | RDKafkaErrorCode::InvalidReplicationFactor
                            | RDKafkaErrorCode::InvalidPartitions
                    )
                {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::Retry
                }
            }
            TopicError::Client { .. }
            | TopicError::Authentication { .. }
            | TopicError::Missing { .. }
            | TopicError::NoConfig { .. }
            | TopicError::CleanupPolicy { .. }
            | TopicError::Partitions { .. }
            | TopicError::Runtime { .. } => ErrorClass::Fatal,
        }
    }
}

/// One topic the connector needs, and how it must look.
struct Spec<'a> {
    name: &'a str,
    role: &'static str,
    policy: &'static str,
    partitions: i32,
    /// `delete.retention.ms` to create it with (the state topic: how long tombstones of
    /// DELETED customers stay readable), if any.
    delete_retention_ms: Option<String>,
}

fn specs(topics: &TopicsConfig) -> [Spec<'_>; 4] {
    [
        Spec {
            name: &topics.events,
            role: "events",
            policy: "delete",
            partitions: topics.partitions,
            delete_retention_ms: None,
        },
        Spec {
            name: &topics.state,
            role: "state",
            policy: "compact",
            partitions: topics.partitions,
            delete_retention_ms: Some(topics.state_delete_retention_ms.to_string()),
        },
        Spec {
            name: &topics.checkpoint,
            role: "checkpoint",
            policy: "compact",
            partitions: 1,
            delete_retention_ms: None,
        },
        Spec {
            name: &topics.dead_letter,
            role: "dead letter",
            policy: "delete",
            partitions: 1,
            delete_retention_ms: None,
        },
    ]
}

/// Creates missing topics when `topics.create` (events: delete, `partitions`; state: compact,
/// `partitions`, `delete.retention.ms` = `topics.state_delete_retention_ms`; checkpoint: compact, 1 partition; dead letter: delete, 1 partition; all with
/// `replication_factor`), then verifies that state and checkpoint are `cleanup.policy=compact`
/// and that the checkpoint has exactly one partition.
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &TopicsConfig) -> Result<(), TopicError> {
    let admin = Admin::new(cfg)?;
    let result = ensure_with(&admin, topics).await;
    admin.close().await;
    result
}

async fn ensure_with(admin: &Admin, topics: &TopicsConfig) -> Result<(), TopicError> {
    let specs = specs(topics);
    let existing = admin.partition_counts().await?;
    let missing: Vec<&Spec<'_>> = specs
        .iter()
        .filter(|s| !existing.contains_key(s.name))
        .collect();
    let mut created = Vec::new();
    if !missing.is_empty() {
        if !topics.create {
            return Err(TopicError::Missing {
                topics: missing.iter().map(|s| s.name.to_string()).collect(),
            });
        }
        admin.create(&missing, topics.replication_factor).await?;
        created = missing.iter().map(|s| s.name.to_string()).collect();
    }
    admin.verify(&specs, &created).await
}

/// The number of partitions of `topic`, or `None` if it does not exist.
pub async fn partition_count(cfg: &KafkaConfig, topic: &str) -> Result<Option<usize>, TopicError> {
    let admin = Admin::new(cfg)?;
    let counts = admin.partition_counts().await;
    admin.close().await;
    Ok(counts?.get(topic).copied())
}

/// Longest wait for a refused login when diagnosing a failed first request.
const LOGIN_PROBE_WAIT: Duration = Duration::from_secs(10);

/// The admin client and the timeouts of its calls.
struct Admin {
    client: Arc<AdminClient<KafkaContext>>,
    timeout: Duration,
    /// The SASL login, for [`refused_login`] (`None` without SASL).
    login: Option<Arc<Login>>,
}

/// A SASL login: the client configuration (which holds the password) and, for messages, who
/// logs in where.
struct Login {
    config: ClientConfig,
    bootstrap: String,
    user: String,
    mechanism: String,
}

impl Admin {
    fn new(cfg: &KafkaConfig) -> Result<Self, TopicError> {
        let config: ClientConfig = client_config(cfg);
        let client = create_client(&config).map_err(|e| TopicError::Client {
            cause: describe_creation_error(&e),
        })?;
        let sasl = cfg
            .security_protocol
            .to_ascii_lowercase()
            .starts_with("sasl");
        let login = sasl.then(|| {
            Arc::new(Login {
                config: config.clone(),
                bootstrap: cfg.bootstrap_servers.clone(),
                user: cfg.sasl_username.clone().unwrap_or_default(),
                mechanism: cfg.sasl_mechanism.clone().unwrap_or_default(),
            })
        });
        Ok(Self {
            client: Arc::new(client),
            timeout: Duration::from_millis(cfg.operation_timeout_ms.max(1)),
            login,
        })
    }

    /// Drops the client on a blocking thread (librdkafka's destroy joins its threads).
    async fn close(self) {
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().operation_timeout(Some(self.timeout))
    }

    /// Partition counts of every topic in the cluster (metadata of all topics, so that the
    /// lookup never auto-creates one). A failure that may be a refused SASL login is checked
    /// with [`refused_login`].
    async fn partition_counts(&self) -> Result<BTreeMap<String, usize>, TopicError> {
        let client = Arc::clone(&self.client);
        let timeout = self.timeout;
        let login = self.login.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_metadata(None, timeout)
                .map_err(|cause| {
                    let refused = match &login {
                        Some(l) if kafka_error_class(&cause) != ErrorClass::Fatal => {
                            refused_login(l, timeout.min(LOGIN_PROBE_WAIT))
                        }
                        _ => None,
                    };
                    refused.unwrap_or(TopicError::Metadata {
                        what: "all topics".into(),
                        cause,
                    })
                })
        })
        .await
        .map_err(|e| TopicError::Runtime {
            op: "fetch_metadata",
            detail: e.to_string(),
        })??;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }

    async fn create(&self, missing: &[&Spec<'_>], replication: i32) -> Result<(), TopicError> {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|s| {
                let topic =
                    NewTopic::new(s.name, s.partitions, TopicReplication::Fixed(replication))
                        .set("cleanup.policy", s.policy);
                match &s.delete_retention_ms {
                    Some(ms) => topic.set("delete.retention.ms", ms),
                    None => topic,
                }
            })
            .collect();
        let results = self
            .client
            .create_topics(&new_topics, &self.options())
            .await
            .map_err(|cause| TopicError::Admin {
                op: "create_topics",
                cause,
            })?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic = %topic, "created Kafka topic"),
                // Created meanwhile by someone else: verified below like any existing topic.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(TopicError::Create { topic, code }),
            }
        }
        Ok(())
    }

    /// Checks cleanup policies and the checkpoint's partition count. A topic just created may
    /// not be known to the answering broker yet, or be described with default settings for a
    /// moment: such answers are retried until the timeout.
    async fn verify(&self, specs: &[Spec<'_>], created: &[String]) -> Result<(), TopicError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.verify_once(specs).await {
                Err(e) if e.not_yet_visible(created) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn verify_once(&self, specs: &[Spec<'_>]) -> Result<(), TopicError> {
        let compacted: Vec<&Spec<'_>> = specs.iter().filter(|s| s.policy == "compact").collect();
        let resources: Vec<ResourceSpecifier<'_>> = compacted
            .iter()
            .map(|s| ResourceSpecifier::Topic(s.name))
            .collect();
        let results = self
            .client
            .describe_configs(&resources, &self.options())
            .await
            .map_err(|cause| TopicError::Admin {
                op: "describe_configs",
                cause,
            })?;
        for (spec, result) in compacted.iter().zip(results) {
            let resource = result.map_err(|code| TopicError::Describe {
                topic: spec.name.to_string(),
                code,
            })?;
            // rdkafka drops the per-resource error (unknown topic, authorization): an answer
            // without a single entry is the sign of one.
            if resource.entries.is_empty() {
                return Err(TopicError::NoConfig {
                    topic: spec.name.to_string(),
                });
            }
            let found = resource
                .get("cleanup.policy")
                .and_then(|e| e.value.clone())
                .unwrap_or_else(|| "delete".into());
            let mut policies: Vec<&str> = found.split(',').map(str::trim).collect();
            policies.sort_unstable();
            policies.dedup();
            if policies != [spec.policy] {
                return Err(TopicError::CleanupPolicy {
                    topic: spec.name.to_string(),
                    role: spec.role,
                    found,
                    needed: spec.policy,
                });
            }
        }
        let counts = self.partition_counts().await?;
        for spec in specs.iter().filter(|s| s.role == "checkpoint") {
            let found = counts.get(spec.name).copied().unwrap_or(0);
            if found != 1 {
                return Err(TopicError::Partitions {
                    topic: spec.name.to_string(),
                    role: spec.role,
                    found,
                    needed: 1,
                });
            }
        }
        Ok(())
    }
}

/// librdkafka reports a refused SASL login only as an event on the client's main queue, which
/// the admin client never serves: its request just fails with a transport error or a timeout.
/// So after such a failure a consumer (whose queue is served here) connects with the same
/// configuration; the authentication error it reports within `wait` is returned, `None` if it
/// gets metadata or sees no such error.
fn refused_login(login: &Login, wait: Duration) -> Option<TopicError> {
    let probe: BaseConsumer<KafkaContext> = create_client(&login.config).ok()?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if probe
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return None;
        }
        while let Some(event) = probe.poll(Duration::ZERO) {
            let code = event.err().and_then(|e| e.rdkafka_error_code());
            if let Some(code) = code.filter(|c| is_authentication_code(*c)) {
                return Some(TopicError::Authentication {
                    bootstrap: login.bootstrap.clone(),
                    user: login.user.clone(),
                    mechanism: login.mechanism.clone(),
                    code,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_follow_the_brief() {
        let t = TopicsConfig::default();
        let s = specs(&t);
        let by_role: BTreeMap<&str, (&str, i32)> = s
            .iter()
            .map(|s| (s.role, (s.policy, s.partitions)))
            .collect();
        assert_eq!(by_role["events"], ("delete", t.partitions));
        assert_eq!(by_role["state"], ("compact", t.partitions));
        assert_eq!(by_role["checkpoint"], ("compact", 1));
        assert_eq!(by_role["dead letter"], ("delete", 1));
    }

    #[test]
    fn misconfiguration_is_fatal_and_named() {
        let e = TopicError::CleanupPolicy {
            topic: "my.state".into(),
            role: "state",
            found: "delete".into(),
            needed: "compact",
        };
        assert_eq!(e.class(), ErrorClass::Fatal);
        let text = e.to_string();
        assert!(text.contains("my.state") && text.contains("delete") && text.contains("compact"));
    }
}
