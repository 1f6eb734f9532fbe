//! The subcommands behind the `tanma-connector` binary, kept in the library so that they can be
//! tested; `main.rs` only parses arguments and maps results to exit codes.

pub mod check;
pub mod inspect;
pub mod run;
pub mod verify;

use crate::error::{Classify, ErrorClass};

/// Process exit codes. Distinct per cause so that operators and supervisors can tell them apart.
pub mod exit_code {
    /// Clean exit (including a graceful shutdown).
    pub const OK: i32 = 0;
    /// Unexpected internal error.
    pub const INTERNAL: i32 = 1;
    /// The configuration is invalid; nothing was written to Kafka.
    pub const CONFIG: i32 = 2;
    /// The Tanma API refused us for good (signature, clock, fatal business code).
    pub const UPSTREAM_FATAL: i32 = 3;
    /// Kafka refused us for good (fenced, authorization, misconfigured topic, schema).
    pub const KAFKA_FATAL: i32 = 4;
    /// `check-config` found problems reaching the API or the broker.
    pub const CHECK_FAILED: i32 = 5;
}

/// A codec able to decode what the connector wrote: with a schema registry configured, the
/// Confluent ids of our schemas are looked up (registering them if they are missing, which is
/// idempotent); otherwise single-object encoding.
pub async fn reader_codec(cfg: &crate::config::Config) -> Result<crate::encode::Codec, String> {
    let framing = match &cfg.schema_registry.url {
        Some(_) => crate::encode::register_schemas(
            &cfg.schema_registry,
            &cfg.topics.events,
            &cfg.topics.state,
        )
        .await
        .map_err(|e| e.to_string())?,
        None => crate::encode::Framing::SingleObject,
    };
    crate::encode::Codec::new(framing).map_err(|e| e.to_string())
}

/// Maps a pipeline error to the process exit code.
pub fn exit_code_for(e: &crate::pipeline::PipelineError) -> i32 {
    use crate::pipeline::PipelineError as P;
    if e.class() != ErrorClass::Fatal {
        return exit_code::INTERNAL;
    }
    match e {
        P::Api(_) => exit_code::UPSTREAM_FATAL,
        _ => exit_code::KAFKA_FATAL,
    }
}
