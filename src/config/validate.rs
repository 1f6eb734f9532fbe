//! Validation: every rule, every problem listed, each naming its key.

use chrono::{DateTime, FixedOffset};
use secrecy::ExposeSecret;

use super::Config;

impl Config {
    /// Checks every cross-field rule; returns one message per problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let a = &self.api;
        if a.base_url.is_empty() {
            p.push("api.base_url: required (e.g. https://account.tanmarket.cn/apiServer)".into());
        } else if !(a.base_url.starts_with("http://") || a.base_url.starts_with("https://")) {
            p.push(format!(
                "api.base_url: must start with http:// or https://, got {:?}",
                a.base_url
            ));
        }
        if a.app_id.is_empty() {
            p.push("api.app_id: required".into());
        }
        match &a.app_key {
            None => {
                p.push("api.app_key: required; set TANMA_API__APP_KEY or api.app_key_file".into())
            }
            Some(k) if k.expose_secret().is_empty() => p.push("api.app_key: is empty".into()),
            _ => {}
        }
        if a.time_zone.parse::<chrono_tz::Tz>().is_err() {
            p.push(format!(
                "api.time_zone: unknown IANA time zone {:?}",
                a.time_zone
            ));
        }
        if a.page_size == 0 || a.page_size > 1000 {
            p.push(format!(
                "api.page_size: must be 1..=1000, got {}",
                a.page_size
            ));
        }
        if a.request_timeout_ms == 0 {
            p.push("api.request_timeout_ms: must be > 0".into());
        }
        if !(a.rate_limit_per_sec > 0.0 && a.rate_limit_per_sec.is_finite()) {
            p.push(format!(
                "api.rate_limit_per_sec: must be > 0, got {}",
                a.rate_limit_per_sec
            ));
        }
        if a.rate_limit_burst == 0 {
            p.push("api.rate_limit_burst: must be >= 1".into());
        }
        if a.max_attempts == 0 {
            p.push("api.max_attempts: must be >= 1".into());
        }
        if a.max_read_passes == 0 || a.max_read_passes > 1000 {
            p.push(format!(
                "api.max_read_passes: must be 1..=1000, got {}",
                a.max_read_passes
            ));
        }
        if a.backoff_initial_ms > a.backoff_max_ms {
            p.push("api.backoff_initial_ms: must not exceed api.backoff_max_ms".into());
        }
        let w = &self.windows;
        if DateTime::<FixedOffset>::parse_from_rfc3339(&w.start_time).is_err() {
            p.push(format!(
                "windows.start_time: not an RFC 3339 time (e.g. 2024-01-01T00:00:00+08:00): {:?}",
                w.start_time
            ));
        }
        if w.window_secs == 0 {
            p.push("windows.window_secs: must be >= 1".into());
        }
        if w.split_threshold < u64::from(a.page_size) {
            p.push(format!(
                "windows.split_threshold: must be at least api.page_size ({}), got {}",
                a.page_size, w.split_threshold
            ));
        }
        if w.concurrency == 0 || w.concurrency > 64 {
            p.push(format!(
                "windows.concurrency: must be 1..=64, got {}",
                w.concurrency
            ));
        }
        if !(0.0..=1.0).contains(&w.rescan_budget_fraction) {
            p.push(format!(
                "windows.rescan_budget_fraction: must be within 0..=1, got {}",
                w.rescan_budget_fraction
            ));
        }
        if w.delete_confirmations == 0 || w.delete_confirmations > 1000 {
            p.push(format!(
                "windows.delete_confirmations: must be 1..=1000, got {}",
                w.delete_confirmations
            ));
        }
        if !(0.0..=1.0).contains(&w.max_delete_fraction) {
            p.push(format!(
                "windows.max_delete_fraction: must be within 0..=1, got {}",
                w.max_delete_fraction
            ));
        }
        for (i, t) in w.rescan.iter().enumerate() {
            if t.every_secs == 0 {
                p.push(format!("windows.rescan[{i}].every_secs: must be >= 1"));
            }
        }
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            p.push("kafka.bootstrap_servers: required".into());
        }
        if k.transactional_id.trim().is_empty() {
            p.push("kafka.transactional_id: required".into());
        }
        if k.transaction_timeout_ms < 1000 {
            p.push("kafka.transaction_timeout_ms: must be >= 1000".into());
        }
        let protocols = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
        if !protocols.contains(&k.security_protocol.to_lowercase().as_str()) {
            p.push(format!(
                "kafka.security_protocol: one of {protocols:?}, got {:?}",
                k.security_protocol
            ));
        }
        let sasl = k.security_protocol.to_lowercase().starts_with("sasl");
        if sasl {
            match k.sasl_mechanism.as_deref() {
                Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
                other => p.push(format!(
                    "kafka.sasl_mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 required with {}, got {other:?}",
                    k.security_protocol
                )),
            }
            if k.sasl_username.is_none() {
                p.push("kafka.sasl_username: required with SASL".into());
            }
            if k.sasl_password.is_none() {
                p.push("kafka.sasl_password: required with SASL; set TANMA_KAFKA__SASL_PASSWORD or kafka.sasl_password_file".into());
            }
        }
        for key in k.properties.keys() {
            if key.contains("password") || key.starts_with("sasl.") || key == "transactional.id" {
                p.push(format!(
                    "kafka.properties.{key}: set this through its own kafka.* key, not as a pass-through property"
                ));
            }
        }
        let t = &self.topics;
        let names = [&t.events, &t.state, &t.checkpoint, &t.dead_letter];
        for (n, key) in names
            .iter()
            .zip(["events", "state", "checkpoint", "dead_letter"])
        {
            if n.is_empty()
                || n.len() > 249
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                p.push(format!("topics.{key}: not a valid topic name: {n:?}"));
            }
        }
        let mut uniq: Vec<_> = names.to_vec();
        uniq.sort();
        uniq.dedup();
        if uniq.len() != names.len() {
            p.push(
                "topics: events, state, checkpoint and dead_letter must be four different topics"
                    .into(),
            );
        }
        if t.state_delete_retention_ms == 0 {
            p.push("topics.state_delete_retention_ms: must be > 0 (how long DELETED tombstones stay readable)".into());
        }
        if t.partitions < 1 {
            p.push("topics.partitions: must be >= 1".into());
        }
        if t.replication_factor < 1 && t.replication_factor != -1 {
            p.push("topics.replication_factor: must be >= 1, or -1 for the broker default".into());
        }
        if let Some(url) = &self.schema_registry.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.push(format!(
                    "schema_registry.url: must start with http:// or https://, got {url:?}"
                ));
            }
        }
        let o = &self.ops;
        if !o.listen.is_empty() && o.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "ops.listen: not a socket address (e.g. 0.0.0.0:9464): {:?}",
                o.listen
            ));
        }
        if !["auto", "json", "text"].contains(&o.log_format.as_str()) {
            p.push(format!(
                "ops.log_format: auto, json or text, got {:?}",
                o.log_format
            ));
        }
        if o.commit_failure_timeout_secs == 0 {
            p.push("ops.commit_failure_timeout_secs: must be > 0 (seconds commits may keep failing before /health fails)".into());
        }
        p
    }
}
