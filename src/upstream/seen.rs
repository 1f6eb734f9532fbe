//! What one window read has seen across its passes: every relation (the latest content winning)
//! and every rejected row, each tagged with the pass and the *epoch* it was last seen in.
//!
//! An epoch is a stretch of the read during which every page reported the same `totalCount`; a
//! page with another total starts a new one. The read is *complete* as soon as the distinct
//! relations plus the distinct rejected rows seen in the current epoch equal its `totalCount`:
//! then every row the window held while the total stood still has been seen, in whatever order
//! the pages brought them. Rows seen only in earlier epochs may have been removed meanwhile; a
//! complete read leaves them out.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::window_reader::RejectedRow;
use crate::customer::canonical::relation_key_hash;
use crate::customer::Relation;

/// Which of the rows seen to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// Everything seen in any pass (an incomplete read: never fewer rows than were seen).
    All,
    /// What the current epoch saw (a read completed by the union of its passes).
    Epoch,
    /// What the current pass saw (a pass whose pages agreed).
    Pass,
}

struct SeenRow {
    ext: String,
    relation: Relation,
    epoch: u32,
    pass: u32,
}

struct SeenRejected {
    row: RejectedRow,
    epoch: u32,
    pass: u32,
}

/// The rows seen by one window read; see the module docs.
#[derive(Default)]
pub(crate) struct Seen {
    rows: Vec<SeenRow>,
    /// Position in `rows` by relation key hash (a colliding key falls back to a scan).
    index: HashMap<u64, usize>,
    rejected: Vec<SeenRejected>,
    /// Position in `rejected` by hash of the raw JSON.
    rejected_index: HashMap<u64, usize>,
    epoch: u32,
    epoch_total: Option<u64>,
    /// Distinct relations and rejected rows seen in the current epoch.
    epoch_seen: u64,
    pass: u32,
}

impl Seen {
    /// A new pass starts.
    pub(crate) fn start_pass(&mut self) {
        self.pass += 1;
    }

    /// A page reported `total`: a different total than the current epoch's starts a new epoch.
    pub(crate) fn page_total(&mut self, total: u64) {
        if self.epoch_total != Some(total) {
            self.epoch += 1;
            self.epoch_total = Some(total);
            self.epoch_seen = 0;
        }
    }

    /// `totalCount` of the current epoch (0 before the first page).
    pub(crate) fn total(&self) -> u64 {
        self.epoch_total.unwrap_or(0)
    }

    /// True when the current epoch has seen as many distinct rows as its `totalCount`.
    pub(crate) fn complete(&self) -> bool {
        self.epoch_total == Some(self.epoch_seen)
    }

    /// Distinct relations seen in any pass.
    pub(crate) fn relations(&self) -> usize {
        self.rows.len()
    }

    /// Takes a relation; returns true if the current pass had already seen it.
    pub(crate) fn relation(&mut self, ext: String, relation: Relation) -> bool {
        let hash = relation_key_hash(&ext, &relation.qw_user_id);
        let same = |r: &SeenRow| r.ext == ext && r.relation.qw_user_id == relation.qw_user_id;
        let at = match self.index.get(&hash) {
            Some(&at) if self.rows.get(at).is_some_and(same) => Some(at),
            Some(_) => self.rows.iter().position(same),
            None => None,
        };
        let Some(at) = at else {
            self.index.entry(hash).or_insert(self.rows.len());
            self.rows.push(SeenRow {
                ext,
                relation,
                epoch: self.epoch,
                pass: self.pass,
            });
            self.epoch_seen += 1;
            return false;
        };
        let (epoch, pass) = (self.epoch, self.pass);
        let Some(row) = self.rows.get_mut(at) else {
            return false;
        };
        let again = row.pass == pass;
        if row.epoch != epoch {
            self.epoch_seen += 1;
        }
        // The later copy wins.
        row.relation = relation;
        row.epoch = epoch;
        row.pass = pass;
        again
    }

    /// Takes a rejected row (the same raw JSON seen again counts once).
    pub(crate) fn rejected(&mut self, row: RejectedRow) {
        let hash = xxh3_64(row.raw_json.as_bytes());
        let same = |r: &SeenRejected| r.row.raw_json == row.raw_json;
        let at = match self.rejected_index.get(&hash) {
            Some(&at) if self.rejected.get(at).is_some_and(same) => Some(at),
            Some(_) => self.rejected.iter().position(same),
            None => None,
        };
        let (epoch, pass) = (self.epoch, self.pass);
        match at.and_then(|at| self.rejected.get_mut(at)) {
            Some(r) => {
                if r.epoch != epoch {
                    self.epoch_seen += 1;
                }
                *r = SeenRejected { row, epoch, pass };
            }
            None => {
                self.rejected_index
                    .entry(hash)
                    .or_insert(self.rejected.len());
                self.rejected.push(SeenRejected { row, epoch, pass });
                self.epoch_seen += 1;
            }
        }
    }

    /// The relations (sorted by externalUserId, qwUserId) and rejected rows (sorted) of `which`.
    pub(crate) fn take(self, which: Which) -> (Vec<(String, Relation)>, Vec<RejectedRow>) {
        let keep = |epoch: u32, pass: u32| match which {
            Which::All => true,
            Which::Epoch => epoch == self.epoch,
            Which::Pass => pass == self.pass,
        };
        let mut relations: Vec<(String, Relation)> = self
            .rows
            .into_iter()
            .filter(|r| keep(r.epoch, r.pass))
            .map(|r| (r.ext, r.relation))
            .collect();
        relations.sort_unstable_by(|x, y| (&x.0, &x.1.qw_user_id).cmp(&(&y.0, &y.1.qw_user_id)));
        let mut rejected: Vec<RejectedRow> = self
            .rejected
            .into_iter()
            .filter(|r| keep(r.epoch, r.pass))
            .map(|r| r.row)
            .collect();
        rejected.sort();
        (relations, rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(qw: &str, nick: &str) -> Relation {
        Relation {
            qw_user_id: qw.into(),
            mobiles: Vec::new(),
            nickname: Some(nick.into()),
            avatar: None,
            fields: Vec::new(),
        }
    }

    #[test]
    fn a_union_of_passes_completes_an_epoch_and_a_new_total_starts_over() {
        let mut s = Seen::default();
        s.start_pass();
        s.page_total(3);
        assert!(!s.relation("a".into(), rel("q", "1")));
        assert!(!s.relation("b".into(), rel("q", "1")));
        // The same row again in the same pass: a repeat.
        assert!(s.relation("a".into(), rel("q", "2")));
        assert!(!s.complete());
        s.start_pass();
        assert!(!s.relation("a".into(), rel("q", "3")));
        s.rejected(RejectedRow {
            raw_json: "{}".into(),
            error: "x".into(),
        });
        assert!(
            s.complete(),
            "two relations and a rejected row for a total of 3"
        );
        // The total changes: everything must be seen again under the new total.
        s.page_total(2);
        assert!(!s.complete());
        s.relation("b".into(), rel("q", "2"));
        s.relation("c".into(), rel("q", "1"));
        assert!(s.complete());
        let (epoch, rejected) = s.take(Which::Epoch);
        let keys: Vec<&str> = epoch.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
        assert!(rejected.is_empty());
    }

    #[test]
    fn all_keeps_every_row_latest_content_and_pass_only_this_pass() {
        let two_passes = || {
            let mut s = Seen::default();
            s.start_pass();
            s.page_total(3);
            s.relation("a".into(), rel("q", "old"));
            s.relation("c".into(), rel("q", "1"));
            s.start_pass();
            s.relation("b".into(), rel("q", "1"));
            s.relation("a".into(), rel("q", "new"));
            s
        };
        let (all, _) = two_passes().take(Which::All);
        let keys: Vec<&str> = all.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(all[0].1.nickname.as_deref(), Some("new"));
        let (pass, _) = two_passes().take(Which::Pass);
        let keys: Vec<&str> = pass.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(two_passes().complete());
    }
}
