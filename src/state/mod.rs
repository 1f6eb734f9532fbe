//! The diff state: what the connector believes each customer looks like, restored from the
//! compacted state topic.
//!
//! ```text
//!  state topic (compacted, source of truth)
//!      │ restore at start: read_committed, from the beginning to the end offsets captured first
//!      ▼
//!  ┌───────────────────────── StateStore ─────────────────────────┐
//!  │ RAM   customers: key_hash(ext) → spill location (u64 → u64)    │
//!  │       relations: relation_key_hash → relation fingerprint       │
//!  │ disk  spill file: latest entry per customer (append-only cache) │
//!  └─────────────────────────────────────────────────────────────────┘
//!      ▲ apply / remove after each successful Kafka commit
//! ```
//!
//! # State record contract
//!
//! The pipeline writes, and [`restore`] reads, records of the compacted state topic as follows:
//!
//! * **key**: the customer's `externalUserId`, UTF-8.
//! * **value**: the encoded `CustomerSnapshot`, opaque to this module (kept byte for byte and
//!   returned by [`StateStore::load`]). A null value (tombstone) removes the customer.
//! * **header `tanma.fp`**: 8 bytes, the customer fingerprint as a big-endian u64 (required on
//!   non-tombstones; checked, not stored).
//! * **header `tanma.rel`**: N × 16 bytes, one per follow relation: the big-endian u64
//!   `relation_key_hash(externalUserId, qwUserId)`, then the big-endian u64 relation
//!   fingerprint. Required on non-tombstones (empty for a customer with no relation).
//! * **header `tanma.relw`** (optional): N × 16 bytes, each relation's narrowest add-time window;
//!   absent on records written before windows were kept ([`windows`]).
//! * **header `tanma.grave`** (tombstones of DELETED customers): the DELETED revision and
//!   fingerprint, so a customer that comes back continues its revisions ([`windows`]).
//!
//! [`encode_headers`] builds both headers. The customer key hash used by the index is
//! `key_hash(ext) = xxh3_64(ext.as_bytes())` ([`key_hash`]); relation key hashes are taken as
//! given. A record that breaks the contract stops the restore with a Fatal
//! [`StateError::InvalidRecord`] naming its partition and offset.
//!
//! # Memory
//!
//! The index holds no strings: two open-addressing `u64 → u64` tables ([`table::U64Map`],
//! 16-byte slots, 68–85 % full, 64 shards that grow one at a time), i.e. about 19–24 bytes per
//! customer plus the same per relation (measured: 63 B per customer with two relations), plus
//! the window index deletion needs ([`windows::WindowIndex`]: about 40 B per relation).
//! Snapshots live in the spill file under `state.dir` (entry layout in [`spill`]), read back with
//! positioned reads only for customers that changed. The file is a cache: replaced when the
//! store opens, deleted when it drops, compacted when dead entries dominate.
//!
//! # Restore
//!
//! Modelled on Materialize's progress restore: end offsets come from a read_uncommitted client
//! (with read_committed, ListOffsets answers the last stable offset), then a read_committed
//! `BaseConsumer` assigned to every partition from the beginning reads until each partition's
//! position reaches its end. Positions, not message offsets, decide, because commit/abort
//! markers and aborted batches advance the position without yielding a message. PartitionEOF
//! means "check positions, keep going"; no progress for the restore timeout is a Retry error. The
//! consumer loop runs on a blocking thread.
//!
//! # Errors
//!
//! [`StateError`] classifies: local spill I/O and stalls are Retry (the cache is rebuilt on
//! restore); a missing state topic, a contract-breaking record or an oversized snapshot are
//! Fatal; client errors are classified by their code.

pub mod error;
pub mod restore;
pub mod spill;
pub mod store;
pub mod table;
pub mod windows;

pub use error::StateError;
pub use restore::{restore, RestoreStats};
pub use store::{
    decode_fingerprint, decode_relations, encode_headers, encode_relations, key_hash,
    spill_relations, RelationMeta, StateStore, StoreOptions, StoreStats, StoredEntry,
    HEADER_FINGERPRINT, HEADER_RELATIONS,
};
pub use windows::{
    decode_grave, encode_grave, join_relation_headers, RelWindow, WindowGrid, HEADER_GRAVE,
    HEADER_RELATION_WINDOWS,
};
