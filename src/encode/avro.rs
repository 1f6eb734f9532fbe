//! The codec: change events and state snapshots to framed Avro and back.
//!
//! The two schemas under `schemas/` are embedded and parsed once, in [`Codec::new`]. Encoding is
//! a hot path, so it writes the Avro binary directly (see [`super::binary`]) instead of going
//! through apache-avro's `Value` tree; the tests check every byte against apache-avro's decoder
//! and `tests/encode_interop.rs` against fastavro.

use apache_avro::types::Value;
use apache_avro::Schema;
use chrono::{DateTime, SecondsFormat, Utc};

use super::binary::{put_array, put_bool, put_len, put_long, put_opt_str, put_str, Reader};
use super::canonical_form::parsing_canonical_form;
use super::error::EncodeError;
use super::framing::{header, rabin_fingerprint, split, Framing, WriterSchema};
use crate::customer::canonical::parse_fingerprint_hex;
use crate::customer::diff::{Change, PathChange, Snapshot};
use crate::customer::model::{Customer, FieldValue, Relation};
use crate::plan::window::Window;

/// `schemas/customer_change_event.avsc`, the value schema of the events topic.
pub const EVENT_SCHEMA_JSON: &str = include_str!("../../schemas/customer_change_event.avsc");
/// `schemas/customer_snapshot.avsc`, the value schema of the state topic.
pub const SNAPSHOT_SCHEMA_JSON: &str = include_str!("../../schemas/customer_snapshot.avsc");

const EVENT_FILE: &str = "customer_change_event.avsc";
const SNAPSHOT_FILE: &str = "customer_snapshot.avsc";

/// Index of the symbols in the `EventType` enum.
const CREATED_INDEX: i64 = 1;
const UPDATED_INDEX: i64 = 2;
const DELETED_INDEX: i64 = 3;

/// Parses one embedded schema.
pub fn parse_schema(file: &'static str, json: &str) -> Result<Schema, EncodeError> {
    Schema::parse_str(json).map_err(|e| EncodeError::Schema {
        schema: file,
        detail: e.to_string(),
    })
}

/// CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form (as single-object encoding
/// writes it).
pub fn schema_fingerprint(file: &'static str, json: &str) -> Result<u64, EncodeError> {
    let pcf = parsing_canonical_form(json).map_err(|detail| EncodeError::Schema {
        schema: file,
        detail,
    })?;
    Ok(rabin_fingerprint(pcf.as_bytes()))
}

/// Encodes change events and snapshots with one framing; decodes records in either framing.
/// Build it once and share it (it is `Sync`).
#[derive(Debug, Clone)]
pub struct Codec {
    framing: Framing,
    event_schema: Schema,
    event_fp: u64,
    snapshot_fp: u64,
    event_header: Vec<u8>,
    snapshot_header: Vec<u8>,
}

impl Codec {
    /// Parses the embedded schemas and prepares the framing prefixes.
    pub fn new(framing: Framing) -> Result<Codec, EncodeError> {
        let event_schema = parse_schema(EVENT_FILE, EVENT_SCHEMA_JSON)?;
        // Parsed only to prove it is valid; encoding is hand-written.
        parse_schema(SNAPSHOT_FILE, SNAPSHOT_SCHEMA_JSON)?;
        let event_fp = schema_fingerprint(EVENT_FILE, EVENT_SCHEMA_JSON)?;
        let snapshot_fp = schema_fingerprint(SNAPSHOT_FILE, SNAPSHOT_SCHEMA_JSON)?;
        let (event_header, snapshot_header) = match framing {
            Framing::Confluent {
                event_schema_id,
                snapshot_schema_id,
            } => (
                header(WriterSchema::Id(event_schema_id)),
                header(WriterSchema::Id(snapshot_schema_id)),
            ),
            Framing::SingleObject => (
                header(WriterSchema::Fingerprint(event_fp)),
                header(WriterSchema::Fingerprint(snapshot_fp)),
            ),
        };
        Ok(Codec {
            framing,
            event_schema,
            event_fp,
            snapshot_fp,
            event_header,
            snapshot_header,
        })
    }

    /// The framing this codec writes.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// CRC-64-AVRO fingerprints of the event and snapshot schemas' Parsing Canonical Forms.
    pub fn fingerprints(&self) -> (u64, u64) {
        (self.event_fp, self.snapshot_fp)
    }

    /// Encodes a change event (framed) for the events topic.
    pub fn encode_event(
        &self,
        change: &Change,
        window: Window,
        observed_at: DateTime<Utc>,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(256 + 2 * size_hint(&change.after().customer));
        self.encode_event_into(change, window, observed_at, &mut buf)?;
        Ok(buf)
    }

    /// Like [`Codec::encode_event`], appending to `buf` (which is left as it was on error).
    pub fn encode_event_into(
        &self,
        change: &Change,
        window: Window,
        observed_at: DateTime<Utc>,
        buf: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let start = buf.len();
        let r = self.put_event(change, window, observed_at, buf);
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }

    fn put_event(
        &self,
        change: &Change,
        window: Window,
        observed_at: DateTime<Utc>,
        buf: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let after = change.after();
        let ext = after.customer.external_user_id.as_str();
        buf.extend_from_slice(&self.event_header);
        put_str(buf, &change.event_id());
        let (index, before, changes): (i64, Option<&Snapshot>, &[PathChange]) = match change {
            Change::Created { .. } => (CREATED_INDEX, None, &[]),
            Change::Updated {
                before, changes, ..
            } => (UPDATED_INDEX, Some(before), changes),
            Change::Deleted {
                before, changes, ..
            } => (DELETED_INDEX, Some(before), changes),
        };
        put_long(buf, index);
        put_str(buf, ext);
        put_long(buf, revision(ext, after.revision)?);
        put_long(buf, observed_at.timestamp_millis());
        put_long(buf, window.since.timestamp_millis());
        put_long(buf, window.before.timestamp_millis());
        match before {
            None => put_long(buf, 0),
            Some(b) => {
                put_long(buf, 1);
                put_snapshot(buf, b)?;
            }
        }
        put_snapshot(buf, after)?;
        put_array(buf, changes, |buf, c| {
            put_str(buf, &c.path);
            put_opt_str(buf, c.old_value.as_deref());
            put_opt_str(buf, c.new_value.as_deref());
            Ok(())
        })
    }

    /// Encodes a snapshot (framed) for the state topic.
    pub fn encode_snapshot(&self, snapshot: &Snapshot) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(64 + size_hint(&snapshot.customer));
        buf.extend_from_slice(&self.snapshot_header);
        put_snapshot(&mut buf, snapshot)?;
        Ok(buf)
    }

    /// Decodes a state-topic record written in either framing.
    pub fn decode_snapshot(&self, bytes: &[u8]) -> Result<Snapshot, EncodeError> {
        let what = "snapshot";
        let (writer, body) = split(bytes, what)?;
        self.check_writer(writer, what, self.snapshot_fp, |f| match f {
            Framing::Confluent {
                snapshot_schema_id, ..
            } => Some(snapshot_schema_id),
            Framing::SingleObject => None,
        })?;
        let mut r = Reader::new(body, what);
        let s = read_snapshot(&mut r)?;
        r.finish()?;
        Ok(s)
    }

    /// Decodes an events-topic record written in either framing to JSON, for display: unions
    /// as their plain value, the enum as its symbol, timestamps as RFC 3339 (UTC, millis).
    pub fn decode_event_json(&self, bytes: &[u8]) -> Result<serde_json::Value, EncodeError> {
        let what = "event";
        let (writer, body) = split(bytes, what)?;
        self.check_writer(writer, what, self.event_fp, |f| match f {
            Framing::Confluent {
                event_schema_id, ..
            } => Some(event_schema_id),
            Framing::SingleObject => None,
        })?;
        let mut rest = body;
        let value =
            apache_avro::from_avro_datum(&self.event_schema, &mut rest, None).map_err(|e| {
                EncodeError::Malformed {
                    what,
                    offset: 0,
                    problem: e.to_string(),
                }
            })?;
        if !rest.is_empty() {
            return Err(EncodeError::Malformed {
                what,
                offset: body.len() - rest.len(),
                problem: format!("{} trailing bytes", rest.len()),
            });
        }
        Ok(value_to_json(value))
    }

    fn check_writer(
        &self,
        writer: WriterSchema,
        what: &'static str,
        fp: u64,
        id_of: impl Fn(Framing) -> Option<u32>,
    ) -> Result<(), EncodeError> {
        let id = id_of(self.framing);
        let ok = match writer {
            WriterSchema::Fingerprint(f) => f == fp,
            WriterSchema::Id(i) => id == Some(i),
        };
        if ok {
            return Ok(());
        }
        let fp_text = WriterSchema::Fingerprint(fp).to_string();
        Err(EncodeError::UnknownSchema {
            what,
            found: writer.to_string(),
            expected: match id {
                Some(i) => format!("{} or {fp_text}", WriterSchema::Id(i)),
                None => fp_text,
            },
        })
    }
}

fn revision(ext: &str, rev: u64) -> Result<i64, EncodeError> {
    i64::try_from(rev).map_err(|_| EncodeError::Record {
        external_user_id: ext.to_string(),
        field: "revision",
        problem: format!("{rev} does not fit an Avro long"),
    })
}

/// A rough byte count of a customer's encoding, to size buffers.
fn size_hint(c: &Customer) -> usize {
    c.relations
        .iter()
        .map(|r| {
            48 + r.qw_user_id.len()
                + r.mobiles.iter().map(|m| m.len() + 2).sum::<usize>()
                + r.nickname.as_ref().map_or(0, String::len)
                + r.avatar.as_ref().map_or(0, String::len)
                + r.fields
                    .iter()
                    .map(|f| {
                        16 + f.name.as_ref().map_or(0, String::len)
                            + f.outer_field.as_ref().map_or(0, String::len)
                            + f.value.as_ref().map_or(0, String::len)
                    })
                    .sum::<usize>()
        })
        .sum::<usize>()
        + 64
        + c.external_user_id.len()
}

fn put_snapshot(buf: &mut Vec<u8>, s: &Snapshot) -> Result<(), EncodeError> {
    let ext = s.customer.external_user_id.as_str();
    put_str(buf, ext);
    put_long(buf, revision(ext, s.revision)?);
    put_len(buf, 16);
    let mut hex = [0u8; 16];
    // Writing 8 bytes as 16 hex chars into a 16-byte buffer cannot fail.
    let _ = hex::encode_to_slice(s.fingerprint.to_be_bytes(), &mut hex);
    buf.extend_from_slice(&hex);
    put_long(buf, s.updated_at.timestamp_millis());
    put_array(buf, &s.customer.relations, |buf, r| {
        put_str(buf, &r.qw_user_id);
        put_array(buf, &r.mobiles, |buf, m| {
            put_str(buf, m);
            Ok(())
        })?;
        put_opt_str(buf, r.nickname.as_deref());
        put_opt_str(buf, r.avatar.as_deref());
        put_array(buf, &r.fields, |buf, f| {
            put_long(buf, f.id);
            put_opt_str(buf, f.name.as_deref());
            put_opt_str(buf, f.outer_field.as_deref());
            put_opt_str(buf, f.value.as_deref());
            put_bool(buf, f.stable);
            Ok(())
        })
    })
}

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

fn read_snapshot(r: &mut Reader<'_>) -> Result<Snapshot, EncodeError> {
    let external_user_id = r.str()?.to_string();
    let rev = r.long()?;
    let revision = u64::try_from(rev).map_err(|_| r.error(format!("negative revision {rev}")))?;
    let fp_text = r.str()?;
    let fingerprint = parse_fingerprint_hex(fp_text)
        .ok_or_else(|| r.error(format!("fingerprint {fp_text:?} is not 16 hex chars")))?;
    let millis = r.long()?;
    let updated_at = DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| r.error(format!("updated_at {millis} out of range")))?;
    let relations = r.array(|r| {
        Ok(Relation {
            qw_user_id: r.str()?.to_string(),
            mobiles: r.array(|r| r.str().map(str::to_string))?,
            nickname: opt(r.opt_str()?),
            avatar: opt(r.opt_str()?),
            fields: r.array(|r| {
                Ok(FieldValue {
                    id: r.long()?,
                    name: opt(r.opt_str()?),
                    outer_field: opt(r.opt_str()?),
                    value: opt(r.opt_str()?),
                    stable: r.bool()?,
                })
            })?,
        })
    })?;
    Ok(Snapshot {
        customer: Customer {
            external_user_id,
            relations,
        },
        revision,
        fingerprint,
        updated_at,
    })
}

fn millis_json(ms: i64) -> serde_json::Value {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        None => ms.into(),
    }
}

/// An apache-avro value as plain JSON (unions unwrapped, timestamps as RFC 3339).
fn value_to_json(v: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => b.into(),
        Value::Int(i) => i.into(),
        Value::Long(i) => i.into(),
        Value::Float(f) => f.into(),
        Value::Double(f) => f.into(),
        Value::String(s) => s.into(),
        Value::Enum(_, sym) => sym.into(),
        Value::Union(_, inner) => value_to_json(*inner),
        Value::Array(items) => J::Array(items.into_iter().map(value_to_json).collect()),
        Value::Record(fields) => J::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, value_to_json(v)))
                .collect(),
        ),
        Value::Map(m) => J::Object(m.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()),
        Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => millis_json(ms),
        other => J::String(format!("{other:?}")),
    }
}
