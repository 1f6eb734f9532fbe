//! A compact `u64 → u64` hash table for keys that are already hashes.
//!
//! `std::collections::HashMap<u64, u64>` costs 17 bytes per bucket and rounds its bucket count
//! up to a power of two at a load factor of 7/8, so one million entries can occupy two million
//! buckets (34 MB). This table stores 16-byte slots in a single allocation whose size is not
//! rounded to a power of two (the home slot is found by multiply-shift range reduction), probes
//! linearly, deletes by backward shift (no tombstones) and grows by 1.25×, which keeps it between
//! roughly 68 % and 85 % full. It is split into 64 shards (by the top bits of the mixed key) that
//! grow one at a time, so a growth step briefly needs 1/64 of the table twice instead of the
//! whole table twice: no peak of old plus new table at a million entries.
//!
//! Keys are expected to be well-mixed 64-bit hashes (xxh3); they are still multiplied by an odd
//! constant before range reduction so that a weak hash does not cluster. Key `0` marks an empty
//! slot, so an entry with key `0` is kept aside in its own field.

/// Maximum fill before a shard grows, as a fraction `NUM / DEN`.
const MAX_LOAD_NUM: usize = 17;
const MAX_LOAD_DEN: usize = 20;
/// Growth of a full shard, as a fraction `NUM / DEN`.
const GROW_NUM: usize = 5;
const GROW_DEN: usize = 4;
/// Smallest slot count of a shard once it holds anything.
const MIN_SLOTS: usize = 16;
/// log2 of the number of shards.
const SHARD_BITS: u32 = 6;
/// Multiplier of Fibonacci hashing (2^64 / φ, odd).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// An open-addressing `u64 → u64` map with 16 bytes per slot.
#[derive(Debug, Clone)]
pub struct U64Map {
    shards: Vec<Shard>,
    /// The value of key `0`, which cannot live in a shard (0 marks an empty slot).
    zero: Option<u64>,
}

impl Default for U64Map {
    fn default() -> Self {
        Self {
            shards: vec![Shard::default(); 1 << SHARD_BITS],
            zero: None,
        }
    }
}

impl U64Map {
    /// An empty map; shards allocate on first insert.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum::<usize>() + usize::from(self.zero.is_some())
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the slot arrays.
    pub fn allocated_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.slots.capacity() * std::mem::size_of::<(u64, u64)>())
            .sum()
    }

    /// Drops every entry and frees the slot arrays.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The value stored under `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        if key == 0 {
            return self.zero;
        }
        let (shard, mixed) = locate(key);
        self.shards.get(shard)?.get(key, mixed)
    }

    /// Stores `value` under `key`, returning the previous value.
    pub fn insert(&mut self, key: u64, value: u64) -> Option<u64> {
        if key == 0 {
            return self.zero.replace(value);
        }
        let (shard, mixed) = locate(key);
        self.shards.get_mut(shard)?.insert(key, mixed, value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        if key == 0 {
            return self.zero.take();
        }
        let (shard, mixed) = locate(key);
        self.shards.get_mut(shard)?.remove(key, mixed)
    }

    /// Calls `f` with every entry, in a fixed order while the map is not modified; `f` may
    /// replace the value in place.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(u64, &mut u64)) {
        if let Some(v) = self.zero.as_mut() {
            f(0, v);
        }
        for shard in self.shards.iter_mut() {
            for (k, v) in shard.slots.iter_mut() {
                if *k != 0 {
                    f(*k, v);
                }
            }
        }
    }
}

/// Shard index and the mixed key whose low bits pick the home slot.
#[inline]
fn locate(key: u64) -> (usize, u64) {
    let mixed = key.wrapping_mul(MIX);
    ((mixed >> (64 - SHARD_BITS)) as usize, mixed << SHARD_BITS)
}

/// One linear-probing table.
#[derive(Debug, Default, Clone)]
struct Shard {
    /// `(key, value)` slots; `key == 0` is an empty slot.
    slots: Vec<(u64, u64)>,
    len: usize,
}

impl Shard {
    fn get(&self, key: u64, mixed: u64) -> Option<u64> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = home(mixed, n);
        // The load factor is below 1, so an empty slot always ends the probe.
        loop {
            let (k, v) = self.slots.get(i).copied()?;
            if k == key {
                return Some(v);
            }
            if k == 0 {
                return None;
            }
            i = next(i, n);
        }
    }

    fn insert(&mut self, key: u64, mixed: u64, value: u64) -> Option<u64> {
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.grow();
        }
        let previous = insert_slot(&mut self.slots, key, mixed, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    fn remove(&mut self, key: u64, mixed: u64) -> Option<u64> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = home(mixed, n);
        let removed = loop {
            let (k, v) = self.slots.get(i).copied()?;
            if k == key {
                break v;
            }
            if k == 0 {
                return None;
            }
            i = next(i, n);
        };
        // Backward-shift deletion: pull later members of the probe run into the hole when their
        // home position allows it, so lookups never need tombstones.
        let mut hole = i;
        let mut j = next(i, n);
        while let Some((k, v)) = self.slots.get(j).copied() {
            if k == 0 {
                break;
            }
            let h = home(locate(k).1, n);
            // The entry may move back iff the hole lies between its home and its slot.
            if distance(h, j, n) >= distance(hole, j, n) {
                if let Some(slot) = self.slots.get_mut(hole) {
                    *slot = (k, v);
                }
                hole = j;
            }
            j = next(j, n);
        }
        if let Some(slot) = self.slots.get_mut(hole) {
            *slot = (0, 0);
        }
        self.len -= 1;
        Some(removed)
    }

    fn grow(&mut self) {
        let n = self.slots.len();
        let new_n = (n * GROW_NUM / GROW_DEN).max(MIN_SLOTS);
        let mut slots = vec![(0u64, 0u64); new_n];
        for &(k, v) in self.slots.iter() {
            if k != 0 {
                insert_slot(&mut slots, k, locate(k).1, v);
            }
        }
        self.slots = slots;
    }
}

/// Inserts into a table known to have a free slot.
fn insert_slot(slots: &mut [(u64, u64)], key: u64, mixed: u64, value: u64) -> Option<u64> {
    let n = slots.len();
    let mut i = home(mixed, n);
    for _ in 0..n {
        match slots.get_mut(i) {
            Some(slot) if slot.0 == key => return Some(std::mem::replace(&mut slot.1, value)),
            Some(slot) if slot.0 == 0 => {
                *slot = (key, value);
                return None;
            }
            _ => i = next(i, n),
        }
    }
    // Unreachable while the load factor stays below 1; nothing to overwrite.
    None
}

/// Home slot of a mixed key in a table of `n` slots (multiply-shift range reduction).
#[inline]
fn home(mixed: u64, n: usize) -> usize {
    ((u128::from(mixed) * n as u128) >> 64) as usize
}

#[inline]
fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

/// Forward distance from slot `from` to slot `to`, wrapping around.
#[inline]
fn distance(from: usize, to: usize, n: usize) -> usize {
    if to >= from {
        to - from
    } else {
        to + n - from
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn insert_get_remove() {
        let mut m = U64Map::new();
        assert_eq!(m.get(7), None);
        assert_eq!(m.insert(7, 70), None);
        assert_eq!(m.insert(0, 1), None);
        assert_eq!(m.insert(7, 71), Some(70));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(7), Some(71));
        assert_eq!(m.get(0), Some(1));
        assert_eq!(m.remove(7), Some(71));
        assert_eq!(m.remove(7), None);
        assert_eq!(m.remove(0), Some(1));
        assert!(m.is_empty());
    }

    #[test]
    fn stays_compact() {
        let mut m = U64Map::new();
        for k in 1..=100_000u64 {
            m.insert(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()), k);
        }
        assert_eq!(m.len(), 100_000);
        // At most 16 bytes / (17/20 × 2/3) ≈ 28 bytes per entry after a 1.5× growth.
        assert!(
            m.allocated_bytes() <= 100_000 * 29,
            "{}",
            m.allocated_bytes()
        );
        for k in 1..=100_000u64 {
            assert_eq!(m.get(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes())), Some(k));
        }
    }

    /// 64 distinct keys that all fall in shard 0.
    fn same_shard_keys() -> Vec<u64> {
        (1u64..).filter(|&k| locate(k).0 == 0).take(64).collect()
    }

    proptest! {
        // Small key space so that collisions of home slots, wrap-around and re-inserts happen.
        #[test]
        fn behaves_like_hashmap(ops in proptest::collection::vec((0u8..3, 0u64..64, any::<u64>()), 0..400)) {
            let mut m = U64Map::new();
            let mut reference = HashMap::new();
            for (op, key, value) in ops {
                // Keys of one shard, so that probe runs, wrap-around and backward shifts happen.
                let key = same_shard_keys()[key as usize];
                match op {
                    0 | 1 => prop_assert_eq!(m.insert(key, value), reference.insert(key, value)),
                    _ => prop_assert_eq!(m.remove(key), reference.remove(&key)),
                }
                prop_assert_eq!(m.len(), reference.len());
            }
            for (k, v) in &reference {
                prop_assert_eq!(m.get(*k), Some(*v));
            }
            let mut seen = 0;
            m.for_each_mut(|k, v| { seen += 1; assert_eq!(reference.get(&k), Some(&*v)); });
            prop_assert_eq!(seen, reference.len());
        }
    }
}
