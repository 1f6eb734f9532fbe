//! The simulated dataset: compact relation records plus an index sorted by
//! `(addTime, externalUserId, qwUserId)` for `O(log n)` window lookups.
//!
//! Per relation only ids are stored (customer, staff, add time, version, visibility); rows are
//! rendered on demand by [`super::content::Renderer`]. About 32 bytes per relation, 4 per index
//! entry and 32 per customer.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::content::{external_user_id, Renderer, RowSpec};
use super::SimConfig;

/// One follow relation, compactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rel {
    /// Add time, seconds since the epoch.
    pub add_time: i64,
    /// Server time (seconds) from which the relation is visible; 0 for the initial dataset.
    pub visible_from: i64,
    /// Customer index.
    pub cust: u32,
    /// Profile version.
    pub version: u32,
    /// Staff index.
    pub staff: u16,
    /// No longer served.
    pub removed: bool,
}

impl Rel {
    pub(crate) fn spec(&self) -> RowSpec {
        RowSpec {
            cust: self.cust,
            staff: self.staff,
            version: self.version,
            add_time: self.add_time,
            visible_from: self.visible_from,
        }
    }
}

/// The dataset.
pub(crate) struct Dataset {
    pub(crate) seed: u64,
    pub(crate) renderer: Renderer,
    staff_count: u16,
    /// `externalUserId` bytes per customer (for ordering).
    ext: Vec<[u8; 32]>,
    rels: Vec<Rel>,
    /// Relations of the initial customers are contiguous: `cust_first[c]..cust_first[c + 1]`.
    cust_first: Vec<u32>,
    /// Relations added later, by customer.
    extra: HashMap<u32, Vec<u32>>,
    /// Ids of visible relations, sorted by `(add_time, ext, staff)`.
    index: Vec<u32>,
}

/// Generates a staff pool of `n` unique ids, sorted (so staff index order is `qwUserId` order).
fn staff_pool(rng: &mut ChaCha8Rng, n: u16) -> Vec<String> {
    const PINYIN: &[&str] = &[
        "ZhangWei",
        "LiNa",
        "WangFang",
        "LiuYang",
        "ChenJie",
        "YangMin",
        "HuangLei",
        "ZhaoJing",
        "WuTao",
        "ZhouQiang",
        "SunLi",
        "MaChao",
    ];
    let mut set = std::collections::BTreeSet::new();
    while set.len() < usize::from(n) {
        let id = if rng.random_range(0..100) < 70 {
            let mut s = String::with_capacity(32);
            for _ in 0..32 {
                s.push(char::from(
                    b"0123456789abcdef"[rng.random_range(0..16usize)],
                ));
            }
            s
        } else {
            let p = PINYIN[rng.random_range(0..PINYIN.len())];
            format!("{p}{}", rng.random_range(0..1000))
        };
        set.insert(id);
    }
    set.into_iter().collect()
}

/// Adds the bulk imports of `cfg.bulk`: new customers whose relations all share a few add-time
/// seconds. Drawn from their own generator, so the rest of the dataset does not change.
fn push_bulk(
    cfg: &SimConfig,
    staff_count: u16,
    ext: &mut Vec<[u8; 32]>,
    rels: &mut Vec<Rel>,
    cust_first: &mut Vec<u32>,
) {
    let bulk = cfg.bulk;
    if bulk.seconds == 0 || bulk.rows == 0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6275_6c6b_0000_0007);
    let start = cfg.start.timestamp();
    let span = (cfg.end.timestamp() - start).max(1);
    let wanted = usize::try_from(i64::from(bulk.seconds).min(span)).unwrap_or(0);
    let mut seconds = std::collections::BTreeSet::new();
    while seconds.len() < wanted {
        seconds.insert(start + rng.random_range(0..span));
    }
    let staff = |rng: &mut ChaCha8Rng| {
        // Skewed like the rest of the dataset: a few staff members import most customers.
        let x: f64 = rng.random();
        (((x * x) * f64::from(staff_count)) as u16).min(staff_count - 1)
    };
    for add_time in seconds {
        let mut left = bulk.rows;
        while left > 0 {
            let cust = ext.len() as u32;
            ext.push(external_user_id(cfg.seed, cust));
            cust_first.push(rels.len() as u32);
            let first = staff(&mut rng);
            let mut followers = vec![first];
            // One in five imported customers comes with a second staff member.
            if left >= 2 && rng.random_range(0..100) < 20 {
                let other = u32::from(first) + 1 + rng.random_range(0..u32::from(staff_count) - 1);
                followers.push((other % u32::from(staff_count)) as u16);
            }
            for s in followers {
                left -= 1;
                rels.push(Rel {
                    add_time,
                    visible_from: 0,
                    cust,
                    version: 0,
                    staff: s,
                    removed: false,
                });
            }
        }
    }
}

impl Dataset {
    /// Builds the dataset of `cfg` deterministically from its seed.
    pub(crate) fn generate(cfg: &SimConfig) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let staff_count = cfg.staff.max(3);
        let staff: Arc<[String]> = staff_pool(&mut rng, staff_count).into();
        let renderer = Renderer::new(cfg.seed, staff);
        let n = cfg.customers;
        let start = cfg.start.timestamp();
        let span = (cfg.end.timestamp() - start).max(1);
        let tz = cfg.time_zone;
        // A few campaign bursts: many relations added within ten minutes.
        let bursts: Vec<i64> = (0..5).map(|_| start + rng.random_range(0..span)).collect();
        let mut ext = Vec::with_capacity(n as usize);
        let mut rels = Vec::with_capacity(n as usize * 2);
        let mut cust_first = Vec::with_capacity(n as usize + 1);
        for c in 0..n {
            ext.push(external_user_id(cfg.seed, c));
            cust_first.push(rels.len() as u32);
            let k = match rng.random_range(0..100) {
                0..50 => 1,
                50..85 => 2,
                _ => 3,
            };
            let mut taken = [u16::MAX; 3];
            for slot in 0..k {
                let staff = loop {
                    // Skewed: a few staff members follow many customers.
                    let x: f64 = rng.random();
                    let s = ((x * x) * f64::from(staff_count)) as u16;
                    let s = s.min(staff_count - 1);
                    if !taken.contains(&s) {
                        break s;
                    }
                };
                taken[slot] = staff;
                let add_time = if rng.random_range(0..100) < 2 {
                    let b = bursts[rng.random_range(0..bursts.len())];
                    (b + rng.random_range(0..600)).min(start + span - 1)
                } else {
                    let mut t = start + rng.random_range(0..span);
                    // Fewer adds at night, local time.
                    let hour = chrono::DateTime::from_timestamp(t, 0)
                        .map(|d| chrono::Timelike::hour(&d.with_timezone(&tz)))
                        .unwrap_or(12);
                    if !(8..22).contains(&hour) && rng.random_range(0..100) < 70 {
                        t = start + rng.random_range(0..span);
                    }
                    t
                };
                rels.push(Rel {
                    add_time,
                    visible_from: 0,
                    cust: c,
                    version: 0,
                    staff,
                    removed: false,
                });
            }
        }
        push_bulk(cfg, staff_count, &mut ext, &mut rels, &mut cust_first);
        cust_first.push(rels.len() as u32);
        let mut index: Vec<u32> = (0..rels.len() as u32).collect();
        {
            let key = |i: &u32| {
                let r = &rels[*i as usize];
                (r.add_time, &ext[r.cust as usize], r.staff)
            };
            index.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
        }
        Dataset {
            seed: cfg.seed,
            renderer,
            staff_count,
            ext,
            rels,
            cust_first,
            extra: HashMap::new(),
            index,
        }
    }

    /// Number of customers ever created.
    pub(crate) fn customers(&self) -> usize {
        self.ext.len()
    }

    /// Size of the staff pool.
    pub(crate) fn staff_count(&self) -> u16 {
        self.staff_count
    }

    /// Number of visible relations.
    pub(crate) fn visible(&self) -> usize {
        self.index.len()
    }

    /// Number of relations ever created.
    pub(crate) fn relations_total(&self) -> usize {
        self.rels.len()
    }

    pub(crate) fn rel(&self, id: u32) -> Option<&Rel> {
        self.rels.get(id as usize)
    }

    fn cmp_rel(&self, a: &Rel, b: &Rel) -> Ordering {
        let ea = self.ext.get(a.cust as usize);
        let eb = self.ext.get(b.cust as usize);
        (a.add_time, ea, a.staff).cmp(&(b.add_time, eb, b.staff))
    }

    /// Index positions `[lo, hi)` of relations with `since <= add_time < before` (seconds).
    pub(crate) fn window(&self, since: i64, before: i64) -> (usize, usize) {
        let at = |i: &u32| self.rels.get(*i as usize).map_or(i64::MAX, |r| r.add_time);
        let lo = self.index.partition_point(|i| at(i) < since);
        let hi = self.index.partition_point(|i| at(i) < before).max(lo);
        (lo, hi)
    }

    /// Relation ids at index positions `range`.
    pub(crate) fn index_slice(&self, lo: usize, hi: usize) -> &[u32] {
        self.index.get(lo..hi).unwrap_or(&[])
    }

    /// Row specs of every visible relation, in index order.
    pub(crate) fn snapshot(&self) -> Vec<RowSpec> {
        self.index
            .iter()
            .filter_map(|i| self.rel(*i).map(Rel::spec))
            .collect()
    }

    /// Ids of every relation of customer `cust`, removed ones included.
    pub(crate) fn relations_of(&self, cust: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let c = cust as usize;
        if let (Some(a), Some(b)) = (self.cust_first.get(c), self.cust_first.get(c + 1)) {
            out.extend(*a..*b);
        }
        if let Some(more) = self.extra.get(&cust) {
            out.extend_from_slice(more);
        }
        out
    }

    /// Customer index of an `externalUserId` (linear scan; for test control only).
    pub(crate) fn find_customer(&self, external_user_id: &str) -> Option<u32> {
        let wanted = external_user_id.as_bytes();
        self.ext
            .iter()
            .position(|e| e.as_slice() == wanted)
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Staff index of a `qwUserId`.
    pub(crate) fn find_staff(&self, qw_user_id: &str) -> Option<u16> {
        (0..self.staff_count).find(|i| self.renderer.staff_id(*i) == qw_user_id)
    }

    /// A uniformly chosen visible relation.
    pub(crate) fn random_visible(&self, rng: &mut ChaCha8Rng) -> Option<u32> {
        if self.index.is_empty() {
            return None;
        }
        self.index
            .get(rng.random_range(0..self.index.len()))
            .copied()
    }

    /// Adds a relation for a random customer (or a new one) with `add_time`, visible from
    /// `now`. Returns its id.
    pub(crate) fn add_relation(&mut self, rng: &mut ChaCha8Rng, add_time: i64, now: i64) -> u32 {
        let existing = !self.ext.is_empty() && rng.random_range(0..100) < 50;
        if existing {
            let cust = rng.random_range(0..self.ext.len()) as u32;
            let following: Vec<u16> = self
                .relations_of(cust)
                .iter()
                .filter_map(|i| self.rel(*i))
                .filter(|r| !r.removed)
                .map(|r| r.staff)
                .collect();
            if following.len() < 3 {
                for _ in 0..16 {
                    let s = rng.random_range(0..self.staff_count);
                    if !following.contains(&s) {
                        return self.insert(cust, s, add_time, now);
                    }
                }
            }
        }
        let cust = self.new_customer();
        let staff = rng.random_range(0..self.staff_count);
        self.insert(cust, staff, add_time, now)
    }

    /// Adds a relation for a given customer and staff member. `None` if that pair is already
    /// visible.
    pub(crate) fn add_relation_for(
        &mut self,
        cust: u32,
        staff: u16,
        add_time: i64,
        now: i64,
    ) -> Option<u32> {
        let dup = self
            .relations_of(cust)
            .iter()
            .filter_map(|i| self.rel(*i))
            .any(|r| !r.removed && r.staff == staff);
        (!dup).then(|| self.insert(cust, staff, add_time, now))
    }

    fn new_customer(&mut self) -> u32 {
        let c = self.ext.len() as u32;
        self.ext.push(external_user_id(self.seed, c));
        c
    }

    fn insert(&mut self, cust: u32, staff: u16, add_time: i64, now: i64) -> u32 {
        let id = self.rels.len() as u32;
        let rel = Rel {
            add_time,
            visible_from: now,
            cust,
            version: 0,
            staff,
            removed: false,
        };
        self.rels.push(rel);
        self.extra.entry(cust).or_default().push(id);
        let pos = self.index.partition_point(|i| {
            self.rels
                .get(*i as usize)
                .is_some_and(|r| self.cmp_rel(r, &rel) == Ordering::Less)
        });
        self.index.insert(pos, id);
        id
    }

    /// Bumps the profile version of relation `id`; false if it is not visible.
    pub(crate) fn change(&mut self, id: u32) -> bool {
        match self.rels.get_mut(id as usize) {
            Some(r) if !r.removed => {
                r.version = r.version.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// Removes relation `id` from what the API serves; false if it was not visible.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        let Some(rel) = self.rels.get(id as usize).copied() else {
            return false;
        };
        if rel.removed {
            return false;
        }
        let pos = self.index.partition_point(|i| {
            self.rels
                .get(*i as usize)
                .is_some_and(|r| self.cmp_rel(r, &rel) == Ordering::Less)
        });
        if self.index.get(pos) != Some(&id) {
            return false;
        }
        self.index.remove(pos);
        if let Some(r) = self.rels.get_mut(id as usize) {
            r.removed = true;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(d: &Dataset) -> bool {
        d.index.windows(2).all(|w| {
            let (a, b) = (d.rels[w[0] as usize], d.rels[w[1] as usize]);
            d.cmp_rel(&a, &b) == Ordering::Less
        })
    }

    #[test]
    fn bulk_seconds_hold_their_rows_and_leave_the_rest_alone() {
        let plain = SimConfig::for_tests(5, 500);
        let mut cfg = plain.clone();
        cfg.bulk = crate::sim::BulkImports {
            seconds: 3,
            rows: 1_500,
        };
        let base = Dataset::generate(&plain);
        let d = Dataset::generate(&cfg);
        assert!(ordered(&d));
        assert_eq!(d.visible(), base.visible() + 4_500);
        // The regular customers are unchanged.
        assert_eq!(&d.rels[..base.rels.len()], &base.rels[..]);
        let mut per_second = std::collections::BTreeMap::<i64, u32>::new();
        for r in &d.rels[base.rels.len()..] {
            *per_second.entry(r.add_time).or_default() += 1;
        }
        assert_eq!(per_second.len(), 3);
        assert!(per_second.values().all(|n| *n == 1_500), "{per_second:?}");
        for (t, _) in per_second {
            let (lo, hi) = d.window(t, t + 1);
            assert!(hi - lo >= 1_500);
        }
        // Deterministic from the seed.
        let again = Dataset::generate(&cfg);
        assert_eq!(again.index, d.index);
    }

    #[test]
    fn mutations_keep_the_index_sorted_and_windows_exact() {
        let cfg = SimConfig::for_tests(5, 2_000);
        let mut d = Dataset::generate(&cfg);
        assert!(ordered(&d));
        let n0 = d.visible();
        assert!((2_000..=6_000).contains(&n0));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let start = cfg.start.timestamp();
        let end = cfg.end.timestamp();
        for i in 0..300 {
            let at = start + rng.random_range(0..end - start);
            d.add_relation(&mut rng, at, end + i);
            if let Some(id) = d.random_visible(&mut rng) {
                assert!(d.remove(id));
                assert!(!d.remove(id), "a removed relation cannot be removed again");
                assert!(!d.change(id));
            }
        }
        assert!(ordered(&d));
        assert_eq!(d.visible(), n0);
        // Window counts agree with a linear scan.
        for _ in 0..50 {
            let a = start + rng.random_range(0..end - start);
            let b = a + rng.random_range(0..86_400 * 3);
            let (lo, hi) = d.window(a, b);
            let scan = d
                .rels
                .iter()
                .filter(|r| !r.removed && r.add_time >= a && r.add_time < b)
                .count();
            assert_eq!(hi - lo, scan);
        }
        // At most one visible relation per (customer, staff).
        let mut seen = std::collections::HashSet::new();
        assert!(d.index.iter().all(|i| {
            let r = d.rels[*i as usize];
            seen.insert((r.cust, r.staff))
        }));
    }
}
