//! Row content, generated on the fly and deterministically from `(seed, customer, staff,
//! version)`, so the dataset only stores compact ids.
//!
//! A row is split into four groups that change independently: nickname, avatar, mobiles and
//! fields. Version `v ≥ 1` of a relation changes exactly one group, picked by hashing
//! `(seed, customer, staff, v)`; each group's value depends on how many times that group has
//! changed (its *effective version*). Every group generator returns a different canonical value
//! for consecutive effective versions, so a profile change is always visible to a differ that
//! sorts mobiles, drops null mobiles and sorts fields.
//!
//! At effective version 0 the nickname, avatar and mobiles are the customer's own (shared by all
//! its relations, as WeChat profile data is); later versions are per relation.

use std::sync::Arc;

use crate::upstream::wire::{Field, Row};

use super::pools;

const TAG_EXT: u64 = 0x6578_7469_6400_0001;
const TAG_KIND: u64 = 0x6b69_6e64_0000_0002;
const TAG_NICK: u64 = 0x6e69_636b_0000_0003;
const TAG_AVATAR: u64 = 0x6176_6174_0000_0004;
const TAG_MOBILE: u64 = 0x6d6f_6269_0000_0005;
const TAG_FIELDS: u64 = 0x6669_656c_0000_0006;
/// Marks "no staff member": customer-level values.
const NO_STAFF: u64 = u64::MAX;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The splitmix64 finalizer: a bijection on `u64` with good avalanche.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of a sequence of words.
pub(crate) fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243f_6a88_85a3_08d3, |acc, p| {
        mix(acc ^ p.wrapping_add(0x9e37_79b9_7f4a_7c15))
    })
}

/// A tiny deterministic generator (splitmix64) for content.
pub(crate) struct Gen(u64);

impl Gen {
    pub(crate) fn new(parts: &[u64]) -> Self {
        Gen(hash(parts))
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    /// Uniform-ish in `0..n` (`n > 0`; 0 when `n == 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True with probability `pct` percent.
    pub(crate) fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub(crate) fn pick<'a>(&mut self, pool: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(pool.len() as u64)).unwrap_or(0);
        pool.get(i).copied().unwrap_or("")
    }
}

/// The 32-character `externalUserId` of customer `cust`. Unique per customer: characters 8..19
/// encode a bijection of the index.
pub(crate) fn external_user_id(seed: u64, cust: u32) -> [u8; 32] {
    let mut out = [b'0'; 32];
    let mut g = Gen::new(&[seed, TAG_EXT, u64::from(cust)]);
    out[0] = b'w';
    out[1] = if g.pct(90) { b'm' } else { b'o' };
    for b in out.iter_mut().skip(2) {
        *b = BASE62[(g.next() % 62) as usize];
    }
    let mut v = mix(u64::from(cust) ^ mix(seed ^ TAG_EXT));
    for b in out.iter_mut().skip(8).take(11) {
        *b = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out
}

/// Everything needed to render one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowSpec {
    /// Customer index.
    pub cust: u32,
    /// Staff index into the sorted staff pool.
    pub staff: u16,
    /// Profile version of the relation.
    pub version: u32,
    /// Add time, seconds since the epoch.
    pub add_time: i64,
    /// Server time (seconds) from which the relation is visible; 0 for the initial dataset.
    pub visible_from: i64,
}

/// Renders rows. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Renderer {
    seed: u64,
    staff: Arc<[String]>,
}

impl Renderer {
    pub(crate) fn new(seed: u64, staff: Arc<[String]>) -> Self {
        Renderer { seed, staff }
    }

    /// The `qwUserId` of staff member `i`.
    pub(crate) fn staff_id(&self, i: u16) -> &str {
        self.staff.get(usize::from(i)).map_or("", String::as_str)
    }

    /// The `externalUserId` of customer `cust`, as a string.
    pub(crate) fn ext_id(&self, cust: u32) -> String {
        String::from_utf8_lossy(&external_user_id(self.seed, cust)).into_owned()
    }

    /// Effective versions of the four groups (nickname, avatar, mobiles, fields) at `version`.
    fn effective(&self, s: &RowSpec) -> [u64; 4] {
        let mut eff = [0u64; 4];
        for v in 1..=u64::from(s.version) {
            let g = hash(&[
                self.seed,
                TAG_KIND,
                u64::from(s.cust),
                u64::from(s.staff),
                v,
            ]) % 4;
            if let Some(e) = eff.get_mut(g as usize) {
                *e += 1;
            }
        }
        eff
    }

    /// Seed words for a group: customer-level at effective version 0, per relation after.
    fn group(&self, tag: u64, s: &RowSpec, eff: u64) -> [u64; 5] {
        let staff = if eff == 0 {
            NO_STAFF
        } else {
            u64::from(s.staff)
        };
        [self.seed, tag, u64::from(s.cust), staff, eff]
    }

    /// Renders the row exactly as the API serves it.
    pub(crate) fn row(&self, s: &RowSpec) -> Row {
        let [e_nick, e_avatar, e_mobile, e_fields] = self.effective(s);
        let mobiles = self.mobiles(s, e_mobile);
        let phone = mobiles
            .as_ref()
            .and_then(|m| m.iter().flatten().next().cloned());
        Row {
            qw_user_id: Some(self.staff_id(s.staff).to_string()),
            external_user_id: Some(self.ext_id(s.cust)),
            mobiles,
            wechat_nickname: self.nickname(s, e_nick),
            wechat_avatar: self.avatar(s, e_avatar),
            fields: Some(self.fields(s, e_fields, phone)),
        }
    }

    fn nickname(&self, s: &RowSpec, eff: u64) -> Option<String> {
        let n = pools::nickname_count();
        let h = hash(&[self.seed, TAG_NICK, u64::from(s.cust)]);
        // About 4 % null and 3 % empty nicknames at first.
        let base = match (h >> 32) % 100 {
            0..4 => pools::NICK_NULL,
            4..7 => pools::NICK_EMPTY,
            _ => h % n,
        };
        let step =
            1 + hash(&[self.seed, TAG_NICK, u64::from(s.cust), u64::from(s.staff)]) % (n - 1);
        // Consecutive effective versions differ because 0 < step < n.
        let i = (base + (eff % n) * step) % n;
        pools::nickname(i)
    }

    fn avatar(&self, s: &RowSpec, eff: u64) -> Option<String> {
        let base = hash(&[self.seed, TAG_AVATAR, u64::from(s.cust)]);
        // Never null twice in a row; two non-null URLs differ by their hash.
        if (base % 10 + eff) % 10 == 0 {
            return None;
        }
        let mut g = Gen::new(&self.group(TAG_AVATAR, s, eff));
        let mut path = String::with_capacity(60);
        for _ in 0..54 {
            path.push(char::from(BASE62[(g.next() % 62) as usize]));
        }
        Some(format!("http://wx.qlogo.cn/mmhead/{path}/0"))
    }

    fn mobiles(&self, s: &RowSpec, eff: u64) -> Option<Vec<Option<String>>> {
        let base = hash(&[self.seed, TAG_MOBILE, u64::from(s.cust)]);
        // The number of non-null mobiles differs between consecutive effective versions.
        let n = (base % 4 + eff) % 4;
        let mut g = Gen::new(&self.group(TAG_MOBILE, s, eff));
        if n == 0 && g.pct(40) {
            return if g.pct(50) { None } else { Some(Vec::new()) };
        }
        let mut out = Vec::with_capacity(4);
        for _ in 0..n {
            let prefix = ["13", "15", "17", "18", "19"][(g.next() % 5) as usize];
            out.push(Some(format!("{prefix}{:09}", g.next() % 1_000_000_000)));
        }
        if g.pct(10) {
            let at = usize::try_from(g.below(out.len() as u64 + 1)).unwrap_or(0);
            out.insert(at.min(out.len()), None);
        }
        Some(out)
    }

    fn fields(&self, s: &RowSpec, eff: u64, phone: Option<String>) -> Vec<Field> {
        let mut cg = Gen::new(&self.group(TAG_FIELDS, s, eff));
        let mut rg = Gen::new(&[
            self.seed,
            TAG_FIELDS,
            u64::from(s.cust),
            u64::from(s.staff),
            eff,
        ]);
        // null / "" / text, mostly text or null.
        let text = |g: &mut Gen, pool: &[&str], pct_text: u64| -> Option<String> {
            let r = g.below(100);
            if r < pct_text {
                Some(g.pick(pool).to_string())
            } else if r < pct_text + 10 {
                Some(String::new())
            } else {
                None
            }
        };
        let company = text(&mut cg, pools::COMPANIES, 40);
        let name = if cg.pct(50) {
            Some(format!(
                "{}{}",
                cg.pick(pools::SURNAMES),
                cg.pick(pools::GIVEN)
            ))
        } else {
            None
        };
        let gender = text(&mut cg, pools::GENDERS, 70);
        let describe = if eff == 0 {
            text(&mut rg, pools::PHRASES, 30)
        } else {
            // Distinct per effective version by construction.
            Some(format!("{}（第{eff}次跟进）", rg.pick(pools::PHRASES)))
        };
        let stage = text(&mut rg, pools::STAGES, 50);
        let intent = text(&mut rg, pools::INTENTS, 50);
        let source = text(&mut rg, pools::SOURCES, 70);
        let job = text(&mut cg, pools::JOBS, 30);
        let age = if cg.pct(40) {
            Some((18 + cg.below(60)).to_string())
        } else if cg.pct(15) {
            Some(String::new())
        } else {
            None
        };
        let level = text(&mut cg, pools::LEVELS, 25);
        let remark = text(&mut rg, pools::PHRASES, 20);
        let builtin = [
            phone, company, describe, stage, intent, source, name, gender,
        ];
        let custom = [job, age, level, remark];
        let mut out = Vec::with_capacity(builtin.len() + custom.len());
        for ((id, label), value) in pools::BUILTIN_FIELDS.iter().zip(builtin) {
            out.push(Field {
                id: Some(*id),
                name: Some((*label).to_string()),
                outer_field: None,
                value,
                stable: Some(true),
            });
        }
        for ((id, label, outer), value) in pools::CUSTOM_FIELDS.iter().zip(custom) {
            out.push(Field {
                id: Some(*id),
                name: Some((*label).to_string()),
                outer_field: Some((*outer).to_string()),
                value,
                stable: Some(false),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::Relation;

    fn renderer() -> Renderer {
        let staff: Vec<String> = (0..10).map(|i| format!("staff{i:02}")).collect();
        Renderer::new(7, staff.into())
    }

    #[test]
    fn external_ids_are_unique_and_32_chars() {
        let mut seen = std::collections::HashSet::new();
        for c in 0..50_000u32 {
            let id = external_user_id(7, c);
            assert!(id.iter().all(u8::is_ascii_alphanumeric));
            assert!(seen.insert(id), "duplicate id for customer {c}");
        }
    }

    #[test]
    fn every_version_changes_the_canonical_relation() {
        let r = renderer();
        for cust in 0..300u32 {
            let mut prev: Option<Relation> = None;
            for version in 0..12u32 {
                let spec = RowSpec {
                    cust,
                    staff: (cust % 10) as u16,
                    version,
                    add_time: 0,
                    visible_from: 0,
                };
                let row = r.row(&spec);
                assert_eq!(row, r.row(&spec), "rendering is deterministic");
                let (_, rel) = Relation::from_row(&row, 0).unwrap();
                if let Some(p) = &prev {
                    assert_ne!(p, &rel, "customer {cust} version {version} did not change");
                }
                prev = Some(rel);
            }
        }
    }

    #[test]
    fn relations_of_one_customer_share_profile_at_version_zero() {
        let r = renderer();
        let a = r.row(&RowSpec {
            cust: 3,
            staff: 1,
            version: 0,
            add_time: 0,
            visible_from: 0,
        });
        let b = r.row(&RowSpec {
            cust: 3,
            staff: 2,
            version: 0,
            add_time: 0,
            visible_from: 0,
        });
        assert_eq!(a.wechat_nickname, b.wechat_nickname);
        assert_eq!(a.mobiles, b.mobiles);
        assert_ne!(a.qw_user_id, b.qw_user_id);
    }
}
