//! The state store: a compact in-memory index over the spill file.

use std::path::Path;

use super::error::StateError;
use super::spill::{unpack, Spill};
use super::table::U64Map;
use crate::ops::metrics::names;

/// Header carrying the customer fingerprint: 8 bytes, big-endian u64.
pub const HEADER_FINGERPRINT: &str = "tanma.fp";
/// Header carrying the relations: N × 16 bytes (big-endian relation key hash, then fingerprint).
pub const HEADER_RELATIONS: &str = "tanma.rel";

/// Dead spill bytes tolerated before [`StateStore::apply`] compacts the spill file, unless
/// live bytes are larger.
pub const DEFAULT_COMPACT_MIN_DEAD_BYTES: u64 = 256 << 20;

/// The contract hash of a customer key: `xxh3_64(external_user_id.as_bytes())`.
pub fn key_hash(external_user_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(external_user_id.as_bytes())
}

/// One follow relation of a customer, as the state record's `tanma.rel` header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelationMeta {
    /// `relation_key_hash(externalUserId, qwUserId)` (computed by `customer::canonical`).
    pub key_hash: u64,
    /// Fingerprint of the relation's canonical form.
    pub fingerprint: u64,
}

/// The headers of a state record: `tanma.fp` then `tanma.rel` (see the module doc).
pub fn encode_headers(fingerprint: u64, relations: &[RelationMeta]) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            HEADER_FINGERPRINT.to_string(),
            fingerprint.to_be_bytes().to_vec(),
        ),
        (HEADER_RELATIONS.to_string(), encode_relations(relations)),
    ]
}

/// The `tanma.rel` header value for `relations`.
pub fn encode_relations(relations: &[RelationMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(relations.len() * 16);
    for r in relations {
        out.extend_from_slice(&r.key_hash.to_be_bytes());
        out.extend_from_slice(&r.fingerprint.to_be_bytes());
    }
    out
}

/// Parses a `tanma.rel` header value; `None` if its length is not a multiple of 16.
pub fn decode_relations(bytes: &[u8]) -> Option<Vec<RelationMeta>> {
    if bytes.len() % 16 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| {
                let (k, f) = c.split_at(8);
                RelationMeta {
                    key_hash: super::spill::be_u64(k),
                    fingerprint: super::spill::be_u64(f),
                }
            })
            .collect(),
    )
}

/// Parses a `tanma.fp` header value; `None` unless it is exactly 8 bytes.
pub fn decode_fingerprint(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// Tuning of a [`StateStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Compact the spill file once its dead bytes exceed both this and the live bytes.
    pub compact_min_dead_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compact_min_dead_bytes: DEFAULT_COMPACT_MIN_DEAD_BYTES,
        }
    }
}

/// Sizes of the store, for metrics and capacity planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Customers held.
    pub customers: usize,
    /// Relations held.
    pub relations: usize,
    /// Heap bytes of the two index tables.
    pub index_bytes: usize,
    /// Bytes of the spill file (live and dead entries).
    pub spill_bytes: u64,
    /// Bytes of the spill file that belong to current entries.
    pub live_bytes: u64,
}

/// What the connector believes each customer looks like, as last committed to Kafka.
///
/// RAM holds two hash tables keyed by 64-bit hashes (about 16–28 bytes per entry); the snapshot
/// bytes live in the spill file and are read back only for customers that changed.
#[derive(Debug)]
pub struct StateStore {
    /// `key_hash(ext)` → packed spill location of the customer's entry.
    customers: U64Map,
    /// `relation_key_hash` → relation fingerprint.
    relations: U64Map,
    spill: Spill,
    /// Sum of the lengths of the entries `customers` points at.
    live_bytes: u64,
    options: StoreOptions,
}

impl StateStore {
    /// An empty store with a fresh spill file `dir/state.spill` (any previous one is replaced).
    /// One store per directory: two stores sharing a directory would replace each other's file.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`StateStore::open`] with explicit options.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<StateStore, StateError> {
        Ok(StateStore {
            customers: U64Map::new(),
            relations: U64Map::new(),
            spill: Spill::create(dir)?,
            live_bytes: 0,
            options,
        })
    }

    /// An empty stand-in sharing the spill path, which opens no file (used while the real
    /// store is moved to a blocking thread).
    pub(crate) fn detached(&self) -> StateStore {
        StateStore {
            customers: U64Map::new(),
            relations: U64Map::new(),
            spill: self.spill.detached(),
            live_bytes: 0,
            options: self.options,
        }
    }

    /// Empties the store and lets go of the spill file without deleting it: the path now
    /// belongs to another store (a cancelled restore's stand-in).
    pub(crate) fn abandon(&mut self) {
        self.customers.clear();
        self.relations.clear();
        self.live_bytes = 0;
        self.spill.disown();
    }

    /// Whether a snapshot of this customer was committed.
    pub fn contains(&self, external_user_id: &str) -> bool {
        self.customers.get(key_hash(external_user_id)).is_some()
    }

    /// Number of customers held.
    pub fn customers(&self) -> usize {
        self.customers.len()
    }

    /// Number of relations held.
    pub fn relations(&self) -> usize {
        self.relations.len()
    }

    /// The fingerprint last committed for this relation.
    pub fn relation_fingerprint(&self, relation_key_hash: u64) -> Option<u64> {
        self.relations.get(relation_key_hash)
    }

    /// Sizes of the index and spill.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            customers: self.customers.len(),
            relations: self.relations.len(),
            index_bytes: self.customers.allocated_bytes() + self.relations.allocated_bytes(),
            spill_bytes: self.spill.len(),
            live_bytes: self.live_bytes,
        }
    }

    /// Sets the diff state's gauges (customers tracked, relations, index and spill bytes); call it
    /// once per committed unit of work rather than per customer.
    pub fn emit_gauges(&self) {
        let sizes = self.stats();
        metrics::gauge!(names::CUSTOMERS_TRACKED).set(sizes.customers as f64);
        metrics::gauge!(names::STATE_RELATIONS).set(sizes.relations as f64);
        metrics::gauge!(names::STATE_INDEX_BYTES).set(sizes.index_bytes as f64);
        metrics::gauge!(names::STATE_SPILL_BYTES).set(sizes.spill_bytes as f64);
    }

    /// The encoded snapshot bytes last committed for this customer.
    pub fn load(&self, external_user_id: &str) -> Result<Option<Vec<u8>>, StateError> {
        let Some(loc) = self.customers.get(key_hash(external_user_id)) else {
            return Ok(None);
        };
        let entry = self.spill.read(loc)?;
        self.check_owner(loc, entry.ext(), external_user_id)?;
        Ok(Some(entry.into_value()))
    }

    /// Records a committed snapshot (called only after the Kafka commit succeeded).
    ///
    /// Relations the customer had before and that are absent from `relations` are forgotten.
    /// On error the store is unchanged.
    pub fn apply(
        &mut self,
        external_user_id: &str,
        value: &[u8],
        relations: &[RelationMeta],
    ) -> Result<(), StateError> {
        self.apply_raw(external_user_id, value, &encode_relations(relations))
    }

    /// [`StateStore::apply`] with the relations in `tanma.rel` layout (length a multiple of 16).
    pub(crate) fn apply_raw(
        &mut self,
        external_user_id: &str,
        value: &[u8],
        relations: &[u8],
    ) -> Result<(), StateError> {
        let kh = key_hash(external_user_id);
        // Read the previous entry first: every fallible step happens before any mutation.
        let previous = match self.customers.get(kh) {
            Some(loc) => {
                let entry = self.spill.read(loc)?;
                self.check_owner(loc, entry.ext(), external_user_id)?;
                Some((loc, entry))
            }
            None => None,
        };
        let loc = self.spill.append(kh, external_user_id, relations, value)?;
        if let Some((old_loc, entry)) = previous {
            for (rk, _) in entry.relations() {
                self.relations.remove(rk);
            }
            self.live_bytes = self.live_bytes.saturating_sub(unpack(old_loc).1 as u64);
        }
        for c in relations.chunks_exact(16) {
            let (k, f) = c.split_at(8);
            self.relations
                .insert(super::spill::be_u64(k), super::spill::be_u64(f));
        }
        self.customers.insert(kh, loc);
        self.live_bytes += unpack(loc).1 as u64;
        self.maybe_compact()
    }

    /// Forgets a customer and its relations (a tombstone was committed).
    ///
    /// If the customer's relations cannot be read back from the spill file they stay in the
    /// relation index (a warning is logged); the customer itself is always removed.
    pub fn remove(&mut self, external_user_id: &str) {
        if let Err(e) = self.remove_checked(external_user_id) {
            tracing::warn!(error = %e, "Could not read a removed customer's relations back from the spill file; they stay indexed.");
            metrics::counter!(names::STATE_SPILL_ERRORS_TOTAL).increment(1);
        }
    }

    /// [`StateStore::remove`] reporting a spill read failure.
    pub(crate) fn remove_checked(&mut self, external_user_id: &str) -> Result<(), StateError> {
        let kh = key_hash(external_user_id);
        let Some(loc) = self.customers.remove(kh) else {
            return Ok(());
        };
        self.live_bytes = self.live_bytes.saturating_sub(unpack(loc).1 as u64);
        let entry = self.spill.read(loc)?;
        for (rk, _) in entry.relations() {
            self.relations.remove(rk);
        }
        Ok(())
    }

    /// Empties the store and starts a new empty spill file.
    pub fn reset(&mut self) -> Result<(), StateError> {
        self.customers.clear();
        self.relations.clear();
        self.live_bytes = 0;
        self.spill.reset()
    }

    /// Writes buffered spill bytes to the file.
    pub fn flush(&mut self) -> Result<(), StateError> {
        self.spill.flush()
    }

    /// Rewrites the spill file with only the live entries once dead bytes dominate.
    fn maybe_compact(&mut self) -> Result<(), StateError> {
        let dead = self.spill.len().saturating_sub(self.live_bytes);
        if dead > self.options.compact_min_dead_bytes && dead > self.live_bytes {
            self.compact()?;
        }
        Ok(())
    }

    /// Copies live entries to a fresh spill file and swaps it in. On error the store keeps
    /// its current file and index.
    pub fn compact(&mut self) -> Result<(), StateError> {
        let started = std::time::Instant::now();
        let before = self.spill.len();
        let dir = self
            .spill
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let tmp_dir = dir.join("compacting");
        let mut fresh = Spill::create(&tmp_dir)?;
        // Pass 1: copy entries in table order; nothing in the index changes yet.
        let mut copy_err = None;
        let spill = &self.spill;
        self.customers.for_each_mut(|_, loc| {
            if copy_err.is_none() {
                if let Err(e) = spill.read_raw(*loc).and_then(|b| fresh.append_raw(&b)) {
                    copy_err = Some(e);
                }
            }
        });
        if let Some(e) = copy_err {
            return Err(e);
        }
        fresh.flush()?;
        // Move the fresh file over the old path, then adopt it.
        std::fs::rename(fresh.path(), self.spill.path()).map_err(|source| StateError::Spill {
            path: self.spill.path().to_path_buf(),
            action: "rename compacted file",
            source,
        })?;
        let fresh = fresh.relocated(self.spill.path().to_path_buf());
        // Pass 2: same order, so each entry's new offset is the running sum of lengths.
        let mut offset = 0u64;
        self.customers.for_each_mut(|_, loc| {
            let len = unpack(*loc).1;
            *loc = super::spill::pack(offset, len);
            offset += len as u64;
        });
        let old = std::mem::replace(&mut self.spill, fresh);
        // The old file's path now names the fresh file: forget it without deleting.
        old.forget();
        let _ = std::fs::remove_dir(&tmp_dir);
        tracing::info!(
            before_bytes = before,
            after_bytes = self.spill.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Compacted the state spill file."
        );
        metrics::counter!(names::STATE_SPILL_COMPACTIONS_TOTAL).increment(1);
        Ok(())
    }

    fn check_owner(
        &self,
        loc: u64,
        stored: &[u8],
        external_user_id: &str,
    ) -> Result<(), StateError> {
        if stored == external_user_id.as_bytes() {
            return Ok(());
        }
        Err(StateError::CorruptSpill {
            path: self.spill.path().to_path_buf(),
            offset: unpack(loc).0,
            reason: format!(
                "entry belongs to another customer (key hash {:016x} collision or corruption)",
                key_hash(external_user_id)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(key_hash: u64, fingerprint: u64) -> RelationMeta {
        RelationMeta {
            key_hash,
            fingerprint,
        }
    }

    #[test]
    fn apply_load_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(dir.path()).unwrap();
        assert!(!s.contains("wm1"));
        assert_eq!(s.load("wm1").unwrap(), None);
        s.apply("wm1", b"v1", &[rel(11, 1), rel(12, 2)]).unwrap();
        s.apply("wm2", b"other", &[rel(21, 3)]).unwrap();
        assert!(s.contains("wm1"));
        assert_eq!(s.customers(), 2);
        assert_eq!(s.load("wm1").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(s.relation_fingerprint(12), Some(2));
        // A new version drops relation 12, changes 11, adds 13.
        s.apply("wm1", b"v2-longer", &[rel(11, 9), rel(13, 4)])
            .unwrap();
        assert_eq!(s.load("wm1").unwrap().as_deref(), Some(&b"v2-longer"[..]));
        assert_eq!(s.relation_fingerprint(11), Some(9));
        assert_eq!(s.relation_fingerprint(12), None);
        assert_eq!(s.relation_fingerprint(13), Some(4));
        assert_eq!(s.relations(), 3);
        s.remove("wm1");
        assert!(!s.contains("wm1"));
        assert_eq!(s.relation_fingerprint(11), None);
        assert_eq!(s.relation_fingerprint(13), None);
        assert_eq!(s.relation_fingerprint(21), Some(3));
        assert_eq!(s.customers(), 1);
        s.remove("absent");
        let stats = s.stats();
        assert_eq!(stats.live_bytes, (2 + 3 + 4 + 16 + 5) as u64);
    }

    #[test]
    fn compaction_keeps_every_live_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateStore::open_with(
            dir.path(),
            StoreOptions {
                compact_min_dead_bytes: 64 << 10,
            },
        )
        .unwrap();
        // Rewrite 200 customers many times: dead bytes pile up and trigger compactions.
        for round in 0..30u64 {
            for c in 0..200u64 {
                let ext = format!("wm{c}");
                let value = format!("{ext}-round-{round}-{}", "x".repeat(100));
                s.apply(&ext, value.as_bytes(), &[rel(c + 1, round)])
                    .unwrap();
            }
        }
        let stats = s.stats();
        assert!(
            stats.spill_bytes <= 2 * stats.live_bytes + (64 << 10),
            "spill not compacted: {stats:?}"
        );
        for c in 0..200u64 {
            let ext = format!("wm{c}");
            let want = format!("{ext}-round-29-{}", "x".repeat(100));
            assert_eq!(s.load(&ext).unwrap().as_deref(), Some(want.as_bytes()));
            assert_eq!(s.relation_fingerprint(c + 1), Some(29));
        }
        s.flush().unwrap();
        let on_disk = std::fs::metadata(dir.path().join("state.spill"))
            .unwrap()
            .len();
        assert_eq!(on_disk, s.stats().spill_bytes);
        assert!(!dir.path().join("compacting").exists());
    }

    #[test]
    fn headers_round_trip() {
        let rels = [rel(1, u64::MAX), rel(u64::MAX - 1, 7)];
        let h = encode_headers(0x0102_0304_0506_0708, &rels);
        assert_eq!(h[0].0, HEADER_FINGERPRINT);
        assert_eq!(h[0].1, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(h[1].0, HEADER_RELATIONS);
        assert_eq!(h[1].1.len(), 32);
        assert_eq!(decode_relations(&h[1].1).unwrap(), rels);
        assert_eq!(decode_fingerprint(&h[0].1), Some(0x0102_0304_0506_0708));
        assert_eq!(decode_relations(&[0; 15]), None);
        assert_eq!(decode_fingerprint(&[0; 7]), None);
    }

    #[test]
    fn key_hash_is_xxh3_of_the_utf8_bytes() {
        assert_eq!(key_hash("wmABC"), xxhash_rust::xxh3::xxh3_64(b"wmABC"));
    }
}
