//! Avro encoding of events and state snapshots, and schema-registry framing.
//!
//! * [`avro`]: the [`Codec`] (schemas embedded from `schemas/`, a hand-written binary encoder).
//! * [`canonical_form`]: Avro Parsing Canonical Form (for the single-object fingerprint).
//! * [`framing`]: Confluent wire format or Avro single-object encoding.
//! * [`registry`]: a small Confluent-REST schema-registry client.

pub mod avro;
pub mod binary;
pub mod canonical_form;
pub mod error;
pub mod framing;
pub mod registry;

pub use avro::{schema_fingerprint, Codec, EVENT_SCHEMA_JSON, SNAPSHOT_SCHEMA_JSON};
pub use error::EncodeError;
pub use framing::Framing;
pub use registry::{register_schemas, RegistryClient, RegistryError};
