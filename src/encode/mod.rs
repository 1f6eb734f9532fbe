//! Avro encoding of events and state snapshots, and schema-registry framing.
