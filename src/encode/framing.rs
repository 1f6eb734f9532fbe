//! Record framing: Confluent wire format or Avro single-object encoding.
//!
//! * Confluent: `0x00`, the schema id as 4 bytes big-endian, then the Avro binary body.
//! * Single-object: `0xC3 0x01`, the CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing
//!   Canonical Form as 8 bytes little-endian, then the Avro binary body.

use super::error::EncodeError;

/// How records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Confluent wire format, with the ids the schema registry gave the two schemas.
    Confluent {
        /// Registry id of `customer_change_event.avsc` under the events subject.
        event_schema_id: u32,
        /// Registry id of `customer_snapshot.avsc` under the state subject.
        snapshot_schema_id: u32,
    },
    /// Avro single-object encoding (no registry needed).
    SingleObject,
}

/// Which writer schema a framed record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterSchema {
    /// A Confluent schema id.
    Id(u32),
    /// A CRC-64-AVRO fingerprint.
    Fingerprint(u64),
}

impl std::fmt::Display for WriterSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterSchema::Id(id) => write!(f, "schema id {id}"),
            WriterSchema::Fingerprint(fp) => write!(f, "schema fingerprint {fp:016x}"),
        }
    }
}

/// Confluent magic byte.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// Single-object encoding marker.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

/// The framing prefix for a record written with `schema`.
pub fn header(schema: WriterSchema) -> Vec<u8> {
    match schema {
        WriterSchema::Id(id) => {
            let mut h = Vec::with_capacity(5);
            h.push(CONFLUENT_MAGIC);
            h.extend_from_slice(&id.to_be_bytes());
            h
        }
        WriterSchema::Fingerprint(fp) => {
            let mut h = Vec::with_capacity(10);
            h.extend_from_slice(&SINGLE_OBJECT_MAGIC);
            h.extend_from_slice(&fp.to_le_bytes());
            h
        }
    }
}

/// Splits a framed record into the writer schema it names and the Avro body; detects the
/// framing by its first bytes. `what` names the record kind for the error message.
pub fn split<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(WriterSchema, &'a [u8]), EncodeError> {
    let bad = || EncodeError::Framing {
        what,
        first_bytes: hex::encode(bytes.get(..bytes.len().min(10)).unwrap_or_default()),
    };
    match bytes {
        [CONFLUENT_MAGIC, a, b, c, d, body @ ..] => {
            Ok((WriterSchema::Id(u32::from_be_bytes([*a, *b, *c, *d])), body))
        }
        [0xC3, 0x01, rest @ ..] => {
            let (fp, body) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            Ok((WriterSchema::Fingerprint(u64::from_le_bytes(*fp)), body))
        }
        _ => Err(bad()),
    }
}

/// The CRC-64-AVRO empty value, from the Avro specification.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        t[i] = fp;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// CRC-64-AVRO (Rabin) fingerprint of `data`, as specified in the Avro specification
/// ("Schema Fingerprints"); apply it to a schema's Parsing Canonical Form.
pub fn rabin_fingerprint(data: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for &b in data {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::rabin::Rabin;
    use apache_avro::Schema;

    #[test]
    fn rabin_matches_apache_avro() {
        for s in [
            r#""null""#,
            r#""string""#,
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#,
        ] {
            let schema = Schema::parse_str(s).unwrap();
            let theirs = schema.fingerprint::<Rabin>().bytes;
            let ours = rabin_fingerprint(schema.canonical_form().as_bytes());
            assert_eq!(theirs, ours.to_le_bytes().to_vec(), "{s}");
        }
        // The empty input fingerprints to the spec's EMPTY constant.
        assert_eq!(rabin_fingerprint(b""), EMPTY);
    }

    #[test]
    fn split_detects_both_framings() {
        let mut c = header(WriterSchema::Id(0x0102_0304));
        c.extend_from_slice(b"body");
        assert_eq!(
            split(&c, "x").unwrap(),
            (WriterSchema::Id(0x0102_0304), &b"body"[..])
        );
        let mut s = header(WriterSchema::Fingerprint(0xdead_beef));
        s.push(7);
        assert_eq!(
            split(&s, "x").unwrap(),
            (WriterSchema::Fingerprint(0xdead_beef), &[7u8][..])
        );
        assert!(split(&[0xC3, 0x01, 1, 2], "x").is_err());
        assert!(split(&[0x00, 1], "x").is_err());
        assert!(split(b"{json}", "x").is_err());
        assert!(split(&[], "x").is_err());
    }
}
