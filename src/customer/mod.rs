//! The customer model, its canonical form and fingerprint, and the diff that turns a window's
//! relations into CREATED / UPDATED changes.

pub mod canonical;
pub mod diff;
pub mod model;

pub use canonical::{
    customer_fingerprint, fingerprint_hex, key_hash, relation_fingerprint, relation_key_hash,
};
pub use diff::{diff, diff_fingerprinted, event_id, Change, PathChange, Snapshot};
pub use model::{Customer, FieldValue, Relation, RowError};
