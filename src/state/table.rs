//! A compact `u64 → u64` hash table for keys that are already hashes.
//!
//! `std::collections::HashMap<u64, u64>` costs 17 bytes per bucket and rounds its bucket count
//! up to a power of two at a load factor of 7/8, so one million entries can occupy two million
//! buckets (34 MB). This table stores 16-byte slots in a single allocation whose size is not
//! rounded to a power of two (the home slot is found by multiply-shift range reduction), probes
//! linearly, deletes by backward shift (no tombstones) and grows by 1.5×, which keeps it between
//! roughly 57 % and 85 % full.
//!
//! Keys are expected to be well-mixed 64-bit hashes (xxh3); they are still multiplied by an odd
//! constant before range reduction so that a weak hash does not cluster. Key `0` marks an empty
//! slot, so an entry with key `0` is kept aside in its own field.

/// Maximum fill before the table grows, as a fraction `NUM / DEN`.
const MAX_LOAD_NUM: usize = 17;
const MAX_LOAD_DEN: usize = 20;
/// Smallest slot count once the table holds anything.
const MIN_SLOTS: usize = 16;
/// Multiplier of Fibonacci hashing (2^64 / φ, odd).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// An open-addressing `u64 → u64` map with 16 bytes per slot.
#[derive(Debug, Default, Clone)]
pub struct U64Map {
    /// `(key, value)` slots; `key == 0` is an empty slot.
    slots: Vec<(u64, u64)>,
    /// The value of key `0`, which cannot live in `slots`.
    zero: Option<u64>,
    /// Entries in `slots` (not counting `zero`).
    len: usize,
}

impl U64Map {
    /// An empty map; allocates on first insert.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len + usize::from(self.zero.is_some())
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the slot array.
    pub fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u64, u64)>()
    }

    /// Drops every entry and frees the slot array.
    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.zero = None;
        self.len = 0;
    }

    /// The value stored under `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        if key == 0 {
            return self.zero;
        }
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = home(key, n);
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

    /// Stores `value` under `key`, returning the previous value.
    pub fn insert(&mut self, key: u64, value: u64) -> Option<u64> {
        if key == 0 {
            return self.zero.replace(value);
        }
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.grow();
        }
        let previous = insert_slot(&mut self.slots, key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        if key == 0 {
            return self.zero.take();
        }
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = home(key, n);
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
            let h = home(k, n);
            // Distance from home to the current slot, and from the hole to the current slot.
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

    /// Calls `f` with every entry; `f` may replace the value in place.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(u64, &mut u64)) {
        if let Some(v) = self.zero.as_mut() {
            f(0, v);
        }
        for (k, v) in self.slots.iter_mut() {
            if *k != 0 {
                f(*k, v);
            }
        }
    }

    fn grow(&mut self) {
        let n = self.slots.len();
        let new_n = (n + n / 2).max(MIN_SLOTS);
        let mut slots = vec![(0u64, 0u64); new_n];
        for &(k, v) in self.slots.iter() {
            if k != 0 {
                insert_slot(&mut slots, k, v);
            }
        }
        self.slots = slots;
    }
}

/// Inserts into a table known to have a free slot.
fn insert_slot(slots: &mut [(u64, u64)], key: u64, value: u64) -> Option<u64> {
    let n = slots.len();
    let mut i = home(key, n);
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

/// Home slot of `key` in a table of `n` slots (multiply-shift range reduction).
#[inline]
fn home(key: u64, n: usize) -> usize {
    let mixed = key.wrapping_mul(MIX);
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

    proptest! {
        // Small key space so that collisions of home slots, wrap-around and re-inserts happen.
        #[test]
        fn behaves_like_hashmap(ops in proptest::collection::vec((0u8..3, 0u64..64, any::<u64>()), 0..400)) {
            let mut m = U64Map::new();
            let mut reference = HashMap::new();
            for (op, key, value) in ops {
                // Spread keys over the whole u64 range but keep many in the same home slots.
                let key = key.wrapping_mul(0x0100_0000_0000_0001) >> (key % 3);
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
