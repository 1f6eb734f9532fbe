//! The customer model, its canonical form and fingerprint, and the diff that turns a window's
//! relations into CREATED / UPDATED changes.

pub mod model;

pub use model::{Customer, FieldValue, Relation, RowError};
