//! Errors of the Avro codec.

use crate::error::{Classify, ErrorClass};

/// An error encoding or decoding an event or snapshot.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// An embedded schema does not parse or is inconsistent: a bug in this build.
    #[error("embedded Avro schema {schema} is invalid: {detail}")]
    Schema {
        /// Which schema (`customer_change_event.avsc` or `customer_snapshot.avsc`).
        schema: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// One record cannot be encoded; the pipeline may dead-letter it by its key.
    #[error("customer {external_user_id}: cannot encode {field}: {problem}")]
    Record {
        /// The record's key.
        external_user_id: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The framing prefix is neither Confluent (0x00) nor single-object (0xC3 0x01).
    #[error("{what}: unknown framing, record starts with {first_bytes}")]
    Framing {
        /// What was being decoded (`event` or `snapshot`).
        what: &'static str,
        /// The first bytes, hex.
        first_bytes: String,
    },
    /// The record names a writer schema this codec does not have.
    #[error("{what}: written with {found}, expected {expected}")]
    UnknownSchema {
        /// What was being decoded.
        what: &'static str,
        /// The schema id or fingerprint found in the framing.
        found: String,
        /// The one this codec accepts.
        expected: String,
    },
    /// The Avro body is malformed.
    #[error("{what}: malformed Avro at byte {offset}: {problem}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Byte offset in the Avro body (after the framing).
        offset: usize,
        /// What is wrong.
        problem: String,
    },
}

impl EncodeError {
    /// The key of the record that could not be encoded, if the error is about one record
    /// (the pipeline may then dead-letter that record instead of stopping).
    pub fn bad_record_key(&self) -> Option<&str> {
        match self {
            EncodeError::Record {
                external_user_id, ..
            } => Some(external_user_id),
            _ => None,
        }
    }
}

impl Classify for EncodeError {
    /// Everything is `Fatal` for the codec: no retry can change the bytes. A
    /// [`EncodeError::Record`] error may be dead-lettered by the caller instead
    /// (see [`EncodeError::bad_record_key`]).
    fn class(&self) -> ErrorClass {
        ErrorClass::Fatal
    }
}
