//! Avro encoding of events and state snapshots, and schema-registry framing.
//!
//! * [`avro`]: the [`Codec`] (schemas embedded from `schemas/`, a hand-written binary encoder).
//! * [`framing`]: Confluent wire format or Avro single-object encoding.
//! * [`registry`]: a small Confluent-REST schema-registry client.

pub mod avro;
pub mod binary;
pub mod error;
pub mod framing;
pub mod registry;

pub use avro::{Codec, EVENT_SCHEMA_JSON, SNAPSHOT_SCHEMA_JSON};
pub use error::EncodeError;
pub use framing::Framing;
pub use registry::{register_schemas, RegistryClient, RegistryError};
