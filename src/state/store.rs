//! The state store: a compact in-memory index over the spill file.

use std::path::Path;

use std::collections::HashMap;

use super::error::StateError;
use super::spill::{unpack, Spill, REL_BYTES};
use super::table::U64Map;
use super::windows::{encode_windows, RelWindow, WindowIndex, HEADER_RELATION_WINDOWS};
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
    /// The narrowest add-time window the relation was seen in (`None`: unknown).
    pub window: Option<RelWindow>,
}

/// The headers of a state record: `tanma.fp`, `tanma.rel`, then `tanma.relw` (see the module
/// doc and [`super::windows`]).
pub fn encode_headers(fingerprint: u64, relations: &[RelationMeta]) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            HEADER_FINGERPRINT.to_string(),
            fingerprint.to_be_bytes().to_vec(),
        ),
        (HEADER_RELATIONS.to_string(), encode_relations(relations)),
        (
            HEADER_RELATION_WINDOWS.to_string(),
            encode_windows(relations.iter().map(|r| r.window)),
        ),
    ]
}

/// `relations` in spill layout ([`super::spill`]: key hash, fingerprint, window).
pub fn spill_relations(relations: &[RelationMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(relations.len() * REL_BYTES);
    for r in relations {
        out.extend_from_slice(&r.key_hash.to_be_bytes());
        out.extend_from_slice(&r.fingerprint.to_be_bytes());
        let (s, b) = r.window.map_or((0, 0), |w| (w.since, w.before));
        out.extend_from_slice(&s.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }
    out
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
                    window: None,
                }
            })
            .collect(),
    )
}

/// Parses a `tanma.fp` header value; `None` unless it is exactly 8 bytes.
pub fn decode_fingerprint(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// A customer's committed entry, read back from the spill file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The customer.
    pub external_user_id: String,
    /// The encoded snapshot, as written to the state topic.
    pub value: Vec<u8>,
    /// Its relations, with their windows.
    pub relations: Vec<RelationMeta>,
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
    /// Relations by their narrowest window.
    windows: WindowIndex,
    /// `key_hash(ext)` → revision of the DELETED event of customers deleted and not back.
    graves: HashMap<u64, u64>,
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
            windows: WindowIndex::default(),
            graves: HashMap::new(),
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
            windows: WindowIndex::default(),
            graves: HashMap::new(),
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
        self.windows.clear();
        self.graves.clear();
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

    /// The narrowest window this relation was seen in (`None`: unknown, or not known at all).
    pub fn relation_window(&self, relation_key_hash: u64) -> Option<RelWindow> {
        self.windows.window(relation_key_hash)
    }

    /// Every known `(relation_key_hash, customer key_hash)` whose window lies inside `w`.
    pub fn relations_within(&self, w: RelWindow) -> Vec<(u64, u64)> {
        self.windows.within(w)
    }

    /// The revision of the DELETED event of a customer deleted and not seen since.
    pub fn grave(&self, external_user_id: &str) -> Option<u64> {
        self.graves.get(&key_hash(external_user_id)).copied()
    }

    /// Customers deleted and not seen since (as far as this process knows).
    pub fn graves(&self) -> usize {
        self.graves.len()
    }

    /// The committed entry of the customer with key hash `customer`.
    pub fn load_by_hash(&self, customer: u64) -> Result<Option<StoredEntry>, StateError> {
        let Some(loc) = self.customers.get(customer) else {
            return Ok(None);
        };
        let entry = self.spill.read(loc)?;
        let ext = String::from_utf8_lossy(entry.ext()).into_owned();
        if key_hash(&ext) != customer {
            return Err(StateError::CorruptSpill {
                path: self.spill.path().to_path_buf(),
                offset: unpack(loc).0,
                reason: format!("entry does not belong to key hash {customer:016x}"),
            });
        }
        let relations = metas_of(&entry);
        Ok(Some(StoredEntry {
            external_user_id: ext,
            value: entry.into_value(),
            relations,
        }))
    }

    /// The committed snapshot bytes and relations of a customer.
    pub fn load_entry(&self, external_user_id: &str) -> Result<Option<StoredEntry>, StateError> {
        let Some(loc) = self.customers.get(key_hash(external_user_id)) else {
            return Ok(None);
        };
        let entry = self.spill.read(loc)?;
        self.check_owner(loc, entry.ext(), external_user_id)?;
        let relations = metas_of(&entry);
        Ok(Some(StoredEntry {
            external_user_id: external_user_id.to_string(),
            value: entry.into_value(),
            relations,
        }))
    }

    /// Sizes of the index and spill.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            customers: self.customers.len(),
            relations: self.relations.len(),
            index_bytes: self.customers.allocated_bytes()
                + self.relations.allocated_bytes()
                + self.windows.allocated_bytes(),
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
        self.apply_raw(external_user_id, value, &spill_relations(relations))
    }

    /// [`StateStore::apply`] with the relations in spill layout ([`spill_relations`]; length a
    /// multiple of 32).
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
        let mut old_windows = HashMap::new();
        if let Some((old_loc, entry)) = previous {
            for (rk, _, w) in entry.relation_windows() {
                self.relations.remove(rk);
                old_windows.insert(rk, w);
            }
            self.live_bytes = self.live_bytes.saturating_sub(unpack(old_loc).1 as u64);
        }
        for c in relations.chunks_exact(REL_BYTES) {
            let rk = super::spill::be_u64(&c[..8]);
            self.relations.insert(rk, super::spill::be_u64(&c[8..16]));
            let w = (
                super::spill::be_u64(&c[16..24]) as i64,
                super::spill::be_u64(&c[24..32]) as i64,
            );
            // Only relations that moved touch the window index.
            if old_windows.remove(&rk) != Some(w) {
                self.windows.insert(rk, kh, w);
            }
        }
        for rk in old_windows.into_keys() {
            self.windows.remove(rk);
        }
        self.graves.remove(&kh);
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
            self.windows.remove(rk);
        }
        Ok(())
    }

    /// A DELETED customer's tombstone was committed: forgets the customer (as
    /// [`StateStore::remove`]) and remembers the revision of its DELETED event.
    pub fn bury(&mut self, external_user_id: &str, revision: u64) {
        self.remove(external_user_id);
        self.graves.insert(key_hash(external_user_id), revision);
    }

    /// [`StateStore::bury`] reporting a spill read failure (restore).
    pub(crate) fn bury_checked(
        &mut self,
        external_user_id: &str,
        revision: u64,
    ) -> Result<(), StateError> {
        self.graves.insert(key_hash(external_user_id), revision);
        self.remove_checked(external_user_id)
    }

    /// Empties the store and starts a new empty spill file.
    pub fn reset(&mut self) -> Result<(), StateError> {
        self.customers.clear();
        self.relations.clear();
        self.windows.clear();
        self.graves.clear();
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

/// The relations of a spill entry.
fn metas_of(entry: &super::spill::SpillEntry) -> Vec<RelationMeta> {
    entry
        .relation_windows()
        .map(|(key_hash, fingerprint, (since, before))| RelationMeta {
            key_hash,
            fingerprint,
            window: (before > since).then_some(RelWindow { since, before }),
        })
        .collect()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
