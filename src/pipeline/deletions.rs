//! Deciding that a relation has ended: evidence from complete reads, confirmations, the guard.
//!
//! A read returns the relations whose add time lies in its window. Rows carry no add time, so
//! the state keeps with each relation the narrowest window it was seen in
//! ([`crate::state::windows`]). A *complete* read of window `W` (every row seen, a stable
//! `totalCount`; no rejected row, whose relation could be any) is evidence that a known
//! relation whose window lies inside `W`, and which the read did not return, is gone. Failed,
//! drifted-and-incomplete and partial reads, and windows that were split (their leaves are read
//! and judged one by one) are no evidence.
//!
//! A relation is taken as ended once it was absent from `windows.delete_confirmations`
//! complete reads in a row, counted once per unit of work (a unit's reads are one moment), with
//! no read returning it in between. The counts live in memory ([`Deletions`]) and are updated
//! only after the unit that observed them committed; a restart forgets them, which only delays a
//! deletion. The deletion itself is decided while the unit is built, against the committed
//! state, and committed in the unit's transaction like every other change.
//!
//! The guard: when the relations seen absent (pending, plus this unit's) exceed
//! `windows.max_delete_fraction` of the known relations, the unit deletes nothing (*held*):
//! a mass disappearance is more likely an API or tenant problem than real churn. The connector
//! logs it once (WARN), sets `tanma_deletions_held` to 1 and counts the held deletions in
//! `tanma_deletions_held_total`; it stays ready. Raising the fraction and restarting lets the
//! deletions through after `delete_confirmations` more reads.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::{DeletionMode, WindowsConfig};
use crate::ops::metrics::names;
use crate::plan::Window;

/// What one unit of work observed: relations returned, relations absent from complete reads.
#[derive(Debug, Default)]
pub struct Evidence {
    /// `relation_key_hash` of every relation any read of the unit returned.
    pub(crate) seen: HashSet<u64>,
    /// Relations absent from a complete read: `relation → (customer key hash, window)`.
    pub(crate) absent: HashMap<u64, (u64, Window)>,
    /// The windows of the unit's complete reads, for [`Evidence::joined_reads`].
    pub(crate) complete: Vec<Window>,
}

impl Evidence {
    /// The unions of the unit's complete reads that touch each other and join two or more
    /// reads: a relation whose window lies inside such a union (but inside none of its reads,
    /// e.g. recorded from a wider window than the split leaves a re-scan reads now) is absent
    /// from the union's reads just as well — its add time lies in one of them.
    pub(crate) fn joined_reads(&self) -> Vec<Window> {
        let mut reads = self.complete.clone();
        reads.sort_by_key(|w| (w.since, w.before));
        let mut out: Vec<(Window, usize)> = Vec::new();
        for w in reads {
            match out.last_mut() {
                Some((u, n)) if w.since <= u.before => {
                    u.before = u.before.max(w.before);
                    *n += 1;
                }
                _ => out.push((w, 1)),
            }
        }
        out.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(u, _)| u)
            .collect()
    }

    /// Records the known relations `inside` the complete read of `window` that it did not
    /// return (the read's own relations must already be in `seen`).
    pub(crate) fn complete_read(&mut self, window: Window, inside: Vec<(u64, u64)>) {
        for (rel, cust) in inside {
            if !self.seen.contains(&rel) {
                self.absent.entry(rel).or_insert((cust, window));
            }
        }
    }
}

/// Relations of one customer to remove in a unit, and the window whose read confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// `relation_key_hash`es.
    pub relations: Vec<u64>,
    /// The window of the complete read that first saw them absent in this unit.
    pub window: Window,
}

/// What a unit decided.
#[derive(Debug, Default)]
pub struct Decision {
    /// Customer key hash → relations to remove.
    pub due: BTreeMap<u64, Due>,
    /// Deletions the guard held back (0 when not held).
    pub held: usize,
    /// Relations seen absent after this unit (pending and new).
    pub absent: usize,
    /// `absent` exceeds `max_delete_fraction` of the known relations.
    pub over: bool,
}

/// The in-memory confirmation counts and the guard's state.
#[derive(Debug)]
pub struct Deletions {
    mode: DeletionMode,
    confirmations: u32,
    max_fraction: f64,
    /// Relation → complete reads in a row (in distinct committed units) it was absent from.
    pending: HashMap<u64, u32>,
    held: bool,
}

impl Deletions {
    /// Counts for `cfg` (`deletions`, `delete_confirmations`, `max_delete_fraction`).
    pub fn new(cfg: &WindowsConfig) -> Deletions {
        Deletions {
            mode: cfg.deletions,
            confirmations: cfg.delete_confirmations.max(1),
            max_fraction: cfg.max_delete_fraction,
            pending: HashMap::new(),
            held: false,
        }
    }

    /// Whether deletions are emitted at all.
    pub fn enabled(&self) -> bool {
        self.mode == DeletionMode::Emit
    }

    /// Whether the guard held the last unit that had deletions due.
    pub fn held(&self) -> bool {
        self.held
    }

    /// Relations absent at least once and not seen since.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets every count (after a recovery: the next reads count again).
    pub fn reset(&mut self) {
        self.pending.clear();
    }

    /// Decides a unit's deletions from its evidence and the committed counts; `known` is the
    /// number of known relations. Pure: a unit rebuilt after a failed commit decides the same.
    pub fn decide(&self, ev: &Evidence, known: usize) -> Decision {
        let mut d = Decision::default();
        if !self.enabled() {
            return d;
        }
        // Iterate the smaller side: `pending` can be large while deletions are held.
        let pending_seen = if ev.seen.len() < self.pending.len() {
            ev.seen
                .iter()
                .filter(|r| self.pending.contains_key(r))
                .count()
        } else {
            self.pending.keys().filter(|r| ev.seen.contains(r)).count()
        };
        let new = ev
            .absent
            .keys()
            .filter(|r| !ev.seen.contains(r) && !self.pending.contains_key(r));
        d.absent = self.pending.len() - pending_seen + new.count();
        let mut due = 0usize;
        for (rel, (cust, window)) in &ev.absent {
            if ev.seen.contains(rel) {
                continue;
            }
            let count = self.pending.get(rel).copied().unwrap_or(0) + 1;
            if count >= self.confirmations {
                due += 1;
                let e = d.due.entry(*cust).or_insert_with(|| Due {
                    relations: Vec::new(),
                    window: *window,
                });
                e.relations.push(*rel);
                e.window = e.window.min(*window);
            }
        }
        for e in d.due.values_mut() {
            e.relations.sort_unstable();
        }
        d.over = d.absent as f64 > self.max_fraction * known as f64;
        if due > 0 && d.over {
            d.held = due;
            d.due.clear();
        }
        d
    }

    /// The unit that produced `ev` and `d` committed: updates the counts, the guard's state,
    /// its log line and metrics.
    pub fn committed(&mut self, ev: &Evidence, d: &Decision) {
        if !self.enabled() {
            return;
        }
        if ev.seen.len() < self.pending.len() {
            for r in &ev.seen {
                self.pending.remove(r);
            }
        } else {
            self.pending.retain(|r, _| !ev.seen.contains(r));
        }
        let deleted: HashSet<u64> = d
            .due
            .values()
            .flat_map(|e| e.relations.iter().copied())
            .collect();
        for rel in ev.absent.keys() {
            if ev.seen.contains(rel) {
                continue;
            }
            if deleted.contains(rel) {
                self.pending.remove(rel);
            } else {
                let c = self.pending.entry(*rel).or_insert(0);
                *c = (*c + 1).min(self.confirmations);
            }
        }
        metrics::counter!(names::RELATIONS_ENDED_TOTAL).increment(deleted.len() as u64);
        metrics::gauge!(names::RELATIONS_ABSENT).set(self.pending.len() as f64);
        if d.held > 0 {
            metrics::counter!(names::DELETIONS_HELD_TOTAL).increment(d.held as u64);
            if !self.held {
                tracing::warn!(
                    would_delete = d.held,
                    absent = d.absent,
                    max_delete_fraction = self.max_fraction,
                    "Deletions held: more relations look ended than windows.max_delete_fraction \
                     of the known ones allows; nothing is deleted. If they really ended, raise \
                     windows.max_delete_fraction and restart."
                );
            }
            self.held = true;
        } else if self.held && !d.over {
            tracing::info!(
                absent = d.absent,
                "Deletions no longer held: the relations seen absent are within windows.max_delete_fraction."
            );
            self.held = false;
        }
        metrics::gauge!(names::DELETIONS_HELD).set(if self.held { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn span(a: i64, b: i64) -> Window {
        let t = |s| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        Window::new(t(a), t(b))
    }

    #[test]
    fn complete_reads_that_touch_are_joined() {
        let ev = Evidence {
            complete: vec![span(100, 200), span(0, 100), span(300, 400), span(150, 250)],
            ..Evidence::default()
        };
        // [0,100)+[100,200)+[150,250) join; [300,400) stands alone and is judged by itself.
        assert_eq!(ev.joined_reads(), vec![span(0, 250)]);
        assert!(Evidence::default().joined_reads().is_empty());
    }

    fn w() -> Window {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Window::new(t, t + chrono::Duration::seconds(60))
    }

    fn cfg(confirmations: u32, fraction: f64) -> WindowsConfig {
        WindowsConfig {
            delete_confirmations: confirmations,
            max_delete_fraction: fraction,
            ..WindowsConfig::default()
        }
    }

    fn absent(rels: &[u64]) -> Evidence {
        let mut ev = Evidence::default();
        ev.complete_read(w(), rels.iter().map(|r| (*r, r / 10)).collect());
        ev
    }

    #[test]
    fn two_units_in_a_row_confirm_and_a_sighting_resets() {
        let mut d = Deletions::new(&cfg(2, 1.0));
        let ev = absent(&[11, 21]);
        let first = d.decide(&ev, 100);
        assert!(first.due.is_empty());
        d.committed(&ev, &first);
        // 21 is seen again: its count starts over.
        let mut ev = absent(&[11, 21]);
        ev.seen.insert(21);
        ev.absent.retain(|r, _| *r != 21);
        let second = d.decide(&ev, 100);
        assert_eq!(second.due.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(second.due[&1].relations, vec![11]);
        d.committed(&ev, &second);
        assert_eq!(d.pending(), 0);
        // A failed commit decides the same again: deciding is pure.
        let ev = absent(&[21]);
        assert!(d.decide(&ev, 100).due.is_empty());
        assert!(d.decide(&ev, 100).due.is_empty());
    }

    #[test]
    fn the_guard_holds_a_mass_disappearance() {
        let mut d = Deletions::new(&cfg(2, 0.05));
        let rels: Vec<u64> = (10..20).collect();
        let ev = absent(&rels);
        let first = d.decide(&ev, 100);
        d.committed(&ev, &first);
        let second = d.decide(&ev, 100);
        assert!(second.due.is_empty(), "held");
        assert_eq!((second.held, second.absent), (10, 10));
        d.committed(&ev, &second);
        assert!(d.held());
        // Within the fraction: deleted.
        let second = d.decide(&ev, 1000);
        assert_eq!(second.due.len(), 1);
    }

    #[test]
    fn off_decides_nothing() {
        let d = Deletions::new(&WindowsConfig {
            deletions: DeletionMode::Off,
            delete_confirmations: 1,
            ..WindowsConfig::default()
        });
        assert!(d.decide(&absent(&[11]), 10).due.is_empty());
    }
}
