//! Request signing: `sign` = lowercase hex SHA-256 of `appId + timestamp + body + appKey`.
//!
//! Plain SHA-256 over the concatenation, not HMAC. `body` is exactly the bytes sent. The same
//! function verifies signatures in the simulator.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Computes the request signature over exactly the bytes that will be sent.
pub fn sign(app_id: &str, timestamp_ms: &str, body: &[u8], app_key: &SecretString) -> String {
    sign_parts(&[
        app_id.as_bytes(),
        timestamp_ms.as_bytes(),
        body,
        app_key.expose_secret().as_bytes(),
    ])
}

/// Lowercase hex SHA-256 of the concatenation of `parts`.
pub fn sign_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Compares two signatures in constant time (for the simulator's check).
pub fn signatures_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The push-message vector from Tanma's documentation: sha256("zc_test" + "1" +
    /// "1596681164807" + "zc_test").
    #[test]
    fn push_signature_vector() {
        assert_eq!(
            sign_parts(&[b"zc_test", b"1", b"1596681164807", b"zc_test"]),
            "317672b4685d9b8bafe1794390e31209aed5cef912683292fed94a69085919d3"
        );
    }

    /// A request vector of our own: the body bytes are part of the signed message.
    #[test]
    fn request_signature_covers_body() {
        let key = SecretString::from("secret-key".to_string());
        let body = br#"{"since":"2024-01-01 00:00:00","before":"2024-01-01 01:00:00","pageSize":100,"pageNo":1}"#;
        let s = sign("app-1", "1700000000000", body, &key);
        assert_eq!(
            s,
            sign_parts(&[b"app-1", b"1700000000000", body, b"secret-key"])
        );
        assert_eq!(s.len(), 64);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(s, sign("app-1", "1700000000000", b"{}", &key));
        assert!(signatures_equal(&s, &s.clone()));
        assert!(!signatures_equal(&s, &s[..63]));
    }
}
