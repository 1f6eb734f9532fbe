//! Canonical form and fingerprints of the customer model.
//!
//! A fingerprint is `xxh3_64` over an unambiguous byte encoding of the canonical value: every
//! string is length-prefixed, every optional value carries a presence tag (so `None` and `""`
//! never collide), every list is count-prefixed. Two canonical values have equal fingerprints
//! exactly when they are equal (up to the negligible 64-bit collision chance).
//!
//! The encoding is part of the persisted state (fingerprints are stored in the state topic), so
//! changing it makes every customer look changed once; bump [`FINGERPRINT_VERSION`] if you do.

use xxhash_rust::xxh3::xxh3_64;

use super::model::{Customer, FieldValue, Relation};

/// Version of the byte encoding hashed by the fingerprints; mixed into every fingerprint.
pub const FINGERPRINT_VERSION: u8 = 1;

/// Separator for key hashes: `0x00` cannot occur inside the ids (they are non-empty UTF-8 text
/// without NUL in practice) and keeps `("ab","c")` apart from `("a","bc")` regardless.
const KEY_SEPARATOR: u8 = 0x00;

/// Puts a relation into canonical form in place: mobiles sorted and de-duplicated, fields
/// sorted. Relations built by [`Relation::from_row`] already are; this makes hand-built ones so.
pub fn canonicalize_relation(r: &mut Relation) {
    r.mobiles.sort_unstable();
    r.mobiles.dedup();
    r.fields.sort_unstable();
}

/// Fingerprint of one (canonical) relation.
pub fn relation_fingerprint(r: &Relation) -> u64 {
    with_buffer(|b| {
        b.extend_from_slice(&[FINGERPRINT_VERSION, b'R']);
        put_str(b, &r.qw_user_id);
        put_len(b, r.mobiles.len());
        for m in &r.mobiles {
            put_str(b, m);
        }
        put_opt(b, r.nickname.as_deref());
        put_opt(b, r.avatar.as_deref());
        put_len(b, r.fields.len());
        for f in &r.fields {
            put_field(b, f);
        }
    })
}

/// Fingerprint of a (canonical) customer: its id and its relations' fingerprints, in order.
pub fn customer_fingerprint(c: &Customer) -> u64 {
    let fps: Vec<u64> = c.relations.iter().map(relation_fingerprint).collect();
    customer_fingerprint_of(&c.external_user_id, &fps)
}

/// [`customer_fingerprint`] from the customer's id and its relations' fingerprints, in order.
pub fn customer_fingerprint_of(external_user_id: &str, relation_fingerprints: &[u64]) -> u64 {
    with_buffer(|b| {
        b.extend_from_slice(&[FINGERPRINT_VERSION, b'C']);
        put_str(b, external_user_id);
        put_len(b, relation_fingerprints.len());
        for fp in relation_fingerprints {
            b.extend_from_slice(&fp.to_le_bytes());
        }
    })
}

thread_local! {
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes into a reused per-thread buffer and hashes it in one go: one `xxh3_64` call is much
/// cheaper than the many small updates of a streaming hasher, and gives the same value.
fn with_buffer(encode: impl FnOnce(&mut Vec<u8>)) -> u64 {
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => {
            b.clear();
            encode(&mut b);
            let fp = xxh3_64(&b);
            if b.capacity() > 64 * 1024 {
                // Do not keep a one-off giant customer's buffer alive.
                *b = Vec::new();
            }
            fp
        }
        // Re-entered (cannot happen today): use a fresh buffer.
        Err(_) => {
            let mut b = Vec::new();
            encode(&mut b);
            xxh3_64(&b)
        }
    })
}

/// Hash of a customer key, for in-memory indexes.
pub fn key_hash(external_user_id: &str) -> u64 {
    xxh3_64(external_user_id.as_bytes())
}

/// Hash of a `(customer, staff member)` relation key, for in-memory indexes.
pub fn relation_key_hash(external_user_id: &str, qw_user_id: &str) -> u64 {
    with_buffer(|b| {
        b.extend_from_slice(external_user_id.as_bytes());
        b.push(KEY_SEPARATOR);
        b.extend_from_slice(qw_user_id.as_bytes());
    })
}

/// A fingerprint as 16 lowercase hex characters (the form stored in Avro records).
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// Parses the 16-hex-character form written by [`fingerprint_hex`].
pub fn parse_fingerprint_hex(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn put_len(b: &mut Vec<u8>, n: usize) {
    b.extend_from_slice(&(n as u64).to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_len(b, s.len());
    b.extend_from_slice(s.as_bytes());
}

fn put_opt(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => b.push(0),
        Some(s) => {
            b.push(1);
            put_str(b, s);
        }
    }
}

fn put_field(b: &mut Vec<u8>, f: &FieldValue) {
    b.extend_from_slice(&f.id.to_le_bytes());
    put_opt(b, f.name.as_deref());
    put_opt(b, f.outer_field.as_deref());
    put_opt(b, f.value.as_deref());
    b.push(u8::from(f.stable));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(qw: &str) -> Relation {
        Relation {
            qw_user_id: qw.into(),
            mobiles: vec!["138".into()],
            nickname: Some("n".into()),
            avatar: None,
            fields: vec![FieldValue {
                id: 1,
                name: Some("电话".into()),
                outer_field: None,
                value: Some(String::new()),
                stable: true,
            }],
        }
    }

    #[test]
    fn none_and_empty_differ_everywhere() {
        let a = rel("u");
        let mut b = a.clone();
        b.avatar = Some(String::new());
        assert_ne!(relation_fingerprint(&a), relation_fingerprint(&b));
        let mut c = a.clone();
        c.fields[0].value = None;
        assert_ne!(relation_fingerprint(&a), relation_fingerprint(&c));
        let mut d = a.clone();
        d.fields[0].outer_field = Some(String::new());
        assert_ne!(relation_fingerprint(&a), relation_fingerprint(&d));
    }

    #[test]
    fn boundaries_are_unambiguous() {
        let mut a = rel("u");
        a.mobiles = vec!["ab".into(), "c".into()];
        let mut b = rel("u");
        b.mobiles = vec!["a".into(), "bc".into()];
        assert_ne!(relation_fingerprint(&a), relation_fingerprint(&b));
        // Nickname moved into avatar.
        let mut c = rel("u");
        c.nickname = None;
        c.avatar = Some("n".into());
        assert_ne!(relation_fingerprint(&rel("u")), relation_fingerprint(&c));
        assert_ne!(relation_key_hash("ab", "c"), relation_key_hash("a", "bc"));
    }

    #[test]
    fn customer_fingerprint_covers_id_and_relations() {
        let c1 = Customer {
            external_user_id: "wm1".into(),
            relations: vec![rel("a"), rel("b")],
        };
        let mut c2 = c1.clone();
        c2.external_user_id = "wm2".into();
        assert_ne!(customer_fingerprint(&c1), customer_fingerprint(&c2));
        let mut c3 = c1.clone();
        c3.relations.pop();
        assert_ne!(customer_fingerprint(&c1), customer_fingerprint(&c3));
        assert_eq!(customer_fingerprint(&c1), customer_fingerprint(&c1.clone()));
    }

    #[test]
    fn canonicalize_sorts_and_dedups() {
        let mut r = rel("u");
        r.mobiles = vec!["2".into(), "1".into(), "2".into()];
        let f = r.fields[0].clone();
        r.fields = vec![FieldValue { id: 9, ..f.clone() }, f];
        canonicalize_relation(&mut r);
        assert_eq!(r.mobiles, vec!["1".to_string(), "2".to_string()]);
        assert_eq!(r.fields[0].id, 1);
    }

    /// The encoding is persisted (fingerprints live in the state topic): these values were
    /// computed independently (Python `xxhash.xxh3_64` over the bytes the module documentation
    /// describes) and must never change without a [`FINGERPRINT_VERSION`] bump.
    #[test]
    fn fingerprints_are_pinned() {
        assert_eq!(relation_fingerprint(&rel("u")), 0xe4c6_40fa_c19f_2cd6);
        let c = Customer {
            external_user_id: "wm1".into(),
            relations: vec![rel("a"), rel("b")],
        };
        assert_eq!(customer_fingerprint(&c), 0xeca1_bd99_037a_0cd5);
        assert_eq!(relation_key_hash("wm1", "u1"), 0x31a2_3377_434b_3928);
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(fingerprint_hex(0xab), "00000000000000ab");
        assert_eq!(
            parse_fingerprint_hex(&fingerprint_hex(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_fingerprint_hex("xyz"), None);
    }
}
