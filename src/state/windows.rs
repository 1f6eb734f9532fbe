//! What deletion needs from the state: the narrowest add-time window each relation was seen in,
//! an index of relations by that window, and the last revision of deleted customers ("graves").
//!
//! Rows carry no add time, so a relation's add time is known only to lie inside every window
//! whose read returned it. A complete read of window `W` is evidence that a relation is gone
//! only when the relation's recorded window lies inside `W` ([`WindowIndex::within`]).
//!
//! # Headers (state records)
//! * `tanma.relw`: N × 16 bytes, in the order of `tanma.rel`: the relation's window as two
//!   big-endian i64 Unix seconds `(since, before)`; `(0, 0)` when unknown. Records written
//!   before windows were kept have no such header: every window is unknown, and such a relation
//!   is never taken as gone until a read returns it again and records its window.
//! * `tanma.grave`, on a tombstone written for a DELETED event: 16 bytes, the big-endian u64
//!   revision of the DELETED event, then the big-endian u64 fingerprint of its after image. A
//!   restore keeps `key_hash(ext) → revision`, so a customer that comes back continues its
//!   revisions. Tombstones are removed by compaction after the topic's `delete.retention.ms`;
//!   a grave compacted away before a restart is forgotten (see `docs/DESIGN.md`).

use std::collections::BTreeMap;

use super::spill::REL_BYTES;
use super::table::U64Map;
use crate::plan::Window;

/// Header carrying the relations' windows (see the module doc).
pub const HEADER_RELATION_WINDOWS: &str = "tanma.relw";
/// Header of a DELETED customer's tombstone (see the module doc).
pub const HEADER_GRAVE: &str = "tanma.grave";

/// An add-time window `[since, before)` in Unix seconds, as the state keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelWindow {
    /// Inclusive start, Unix seconds.
    pub since: i64,
    /// Exclusive end, Unix seconds.
    pub before: i64,
}

impl RelWindow {
    /// Width in seconds.
    pub fn secs(&self) -> i64 {
        (self.before - self.since).max(0)
    }

    /// Whether `self` lies inside `outer`.
    pub fn inside(&self, outer: &RelWindow) -> bool {
        outer.since <= self.since && self.before <= outer.before
    }

    /// The window to keep for a relation known to lie in `old` (if known) and just returned by a
    /// read of `seen`: `seen` narrows it only when `seen` is narrower (equal widths at another
    /// alignment change nothing, so re-reads do not rewrite state records); then the
    /// intersection is kept (or `seen` if they do not overlap: the add time moved).
    pub fn narrowed(old: Option<RelWindow>, seen: RelWindow) -> RelWindow {
        match old {
            None => seen,
            Some(old) if seen.secs() >= old.secs() => old,
            Some(old) => old.cut_to(seen).unwrap_or(seen),
        }
    }

    /// The intersection with `other`, if it is not empty.
    fn cut_to(self, other: RelWindow) -> Option<RelWindow> {
        let cut = RelWindow {
            since: self.since.max(other.since),
            before: self.before.min(other.before),
        };
        (cut.secs() > 0).then_some(cut)
    }

    /// Whether `inner` lies inside this window.
    pub fn contains(&self, inner: RelWindow) -> bool {
        inner.since >= self.since && inner.before <= self.before
    }

    /// The window of a relation that a re-scan read of `read` returned (`seen`: `read` as
    /// recorded): [`RelWindow::narrowed`] when the old window lies inside `read`, else its
    /// intersection with `read`, which holds the add time too — so that the next read of
    /// `read` is evidence for the relation. Disjoint: the add time moved, `seen` wins.
    pub fn within(old: Option<RelWindow>, read: RelWindow, seen: RelWindow) -> RelWindow {
        match old {
            Some(o) if read.contains(o) => RelWindow::narrowed(Some(o), seen),
            Some(o) => o.cut_to(read).unwrap_or(seen),
            None => seen,
        }
    }

    fn from_pair((since, before): (i64, i64)) -> Option<RelWindow> {
        (before > since).then_some(RelWindow { since, before })
    }
}

/// Cells `[origin + k·quantum, origin + (k+1)·quantum)` on which narrow windows are recorded.
///
/// At the live edge relations are read in windows of a few seconds, a few relations each;
/// recording each such window would cost an index entry (about 90 bytes) per relation. A window
/// that returned fewer than [`WindowGrid::SHARED_BELOW`] relations and is narrower than a cell and
/// inside one is recorded as the cell instead: it still contains the add time (a wider recorded
/// window only makes evidence rarer, never wrong), and relations added in the same cell share
/// one entry. Windows with more rows (the leaves of a split range among them) are recorded as
/// read. The grid starts at `windows.start_time` with cells of `window_secs / 8`, so a re-scan
/// window (`window_secs` wide) contains most cells whatever its alignment, and a tier over
/// everything, aligned like the forward windows, contains every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowGrid {
    /// Start of cell 0, Unix seconds.
    pub origin: i64,
    /// Cell width, seconds (1: windows are recorded as read).
    pub quantum: i64,
}

impl Default for WindowGrid {
    fn default() -> Self {
        WindowGrid {
            origin: 0,
            quantum: 1,
        }
    }
}

impl WindowGrid {
    /// Reads returning this many relations or more have their window recorded as read.
    pub const SHARED_BELOW: usize = 16;

    /// The grid for windows of `window_secs` starting at `origin`.
    pub fn new(origin: i64, window_secs: u64) -> WindowGrid {
        WindowGrid {
            origin,
            quantum: i64::try_from(window_secs / 8).unwrap_or(i64::MAX).max(1),
        }
    }

    /// The window to record for a read of `w` that returned `relations` (see the type's doc).
    pub fn record(&self, w: RelWindow, relations: usize) -> RelWindow {
        if w.secs() >= self.quantum || relations >= Self::SHARED_BELOW {
            return w;
        }
        let cell = (w.since - self.origin).div_euclid(self.quantum);
        let since = self.origin + cell * self.quantum;
        let before = since + self.quantum;
        if w.before <= before {
            RelWindow { since, before }
        } else {
            w
        }
    }
}

impl From<Window> for RelWindow {
    fn from(w: Window) -> Self {
        RelWindow {
            since: w.since.timestamp(),
            before: w.before.timestamp(),
        }
    }
}

/// The `tanma.relw` header value for `windows` (unknown = `(0, 0)`).
pub fn encode_windows(windows: impl Iterator<Item = Option<RelWindow>>) -> Vec<u8> {
    let mut out = Vec::new();
    for w in windows {
        let (s, b) = w.map_or((0, 0), |w| (w.since, w.before));
        out.extend_from_slice(&s.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }
    out
}

/// The `tanma.grave` header value.
pub fn encode_grave(revision: u64, fingerprint: u64) -> Vec<u8> {
    let mut out = revision.to_be_bytes().to_vec();
    out.extend_from_slice(&fingerprint.to_be_bytes());
    out
}

/// Parses a `tanma.grave` header: `(revision, fingerprint)`; `None` unless 16 bytes.
pub fn decode_grave(bytes: &[u8]) -> Option<(u64, u64)> {
    let a: [u8; 16] = bytes.try_into().ok()?;
    let (r, f) = a.split_at(8);
    Some((
        u64::from_be_bytes(r.try_into().ok()?),
        u64::from_be_bytes(f.try_into().ok()?),
    ))
}

/// Joins a `tanma.rel` header (N × 16) and an optional `tanma.relw` header (N × 16) into the
/// spill layout (N × 32). Errors name what is wrong.
pub fn join_relation_headers(rel: &[u8], windows: Option<&[u8]>) -> Result<Vec<u8>, String> {
    if rel.len() % 16 != 0 {
        return Err(format!(
            "header tanma.rel is {} bytes, not a multiple of 16",
            rel.len()
        ));
    }
    if let Some(w) = windows {
        if w.len() != rel.len() {
            return Err(format!(
                "header {HEADER_RELATION_WINDOWS} is {} bytes, but tanma.rel is {}",
                w.len(),
                rel.len()
            ));
        }
    }
    let mut out = Vec::with_capacity(rel.len() / 16 * REL_BYTES);
    for (i, c) in rel.chunks_exact(16).enumerate() {
        out.extend_from_slice(c);
        match windows.and_then(|w| w.get(i * 16..i * 16 + 16)) {
            Some(w) => out.extend_from_slice(w),
            None => out.extend_from_slice(&[0u8; 16]),
        }
    }
    Ok(out)
}

/// Relations by their narrowest window: `relation → window` and `window → [(relation,
/// customer)]`, both keyed by 64-bit hashes. About 16 bytes per relation in the window lists
/// plus a `u64 → u64` slot per relation (see `docs/DESIGN.md`, "State without every snapshot in
/// RAM").
#[derive(Debug, Default)]
pub struct WindowIndex {
    /// `relation_key_hash → slot index + 1`.
    of: U64Map,
    /// `(since, before) → slot index`, ordered for range queries.
    by_window: BTreeMap<(i64, i64), u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

#[derive(Debug, Default)]
struct Slot {
    window: (i64, i64),
    /// `(relation_key_hash, customer key_hash)`.
    members: Vec<(u64, u64)>,
}

impl WindowIndex {
    /// The window recorded for a relation.
    pub fn window(&self, relation: u64) -> Option<RelWindow> {
        let slot = self.of.get(relation)?;
        let s = self
            .slots
            .get(usize::try_from(slot).ok()?.checked_sub(1)?)?;
        RelWindow::from_pair(s.window)
    }

    /// Records `relation` of `customer` in `window` (unknown windows are not indexed).
    pub fn insert(&mut self, relation: u64, customer: u64, window: (i64, i64)) {
        self.remove(relation);
        if RelWindow::from_pair(window).is_none() {
            return;
        }
        let idx = match self.by_window.get(&window) {
            Some(i) => *i,
            None => {
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.slots.push(Slot::default());
                        u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                if let Some(s) = self.slots.get_mut(i as usize) {
                    s.window = window;
                }
                self.by_window.insert(window, i);
                i
            }
        };
        if let Some(s) = self.slots.get_mut(idx as usize) {
            s.members.push((relation, customer));
            self.of.insert(relation, u64::from(idx) + 1);
        }
    }

    /// Forgets `relation`.
    pub fn remove(&mut self, relation: u64) {
        let Some(slot) = self.of.remove(relation) else {
            return;
        };
        let idx = (slot as usize).saturating_sub(1);
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        if let Some(pos) = s.members.iter().position(|(r, _)| *r == relation) {
            s.members.swap_remove(pos);
        }
        if s.members.is_empty() {
            self.by_window.remove(&s.window);
            s.members = Vec::new();
            self.free.push(idx as u32);
        } else if s.members.capacity() > 64 && s.members.len() < s.members.capacity() / 4 {
            s.members.shrink_to_fit();
        }
    }

    /// Every `(relation, customer)` whose window lies inside `w`.
    pub fn within(&self, w: RelWindow) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (&(_, before), &idx) in self
            .by_window
            .range((w.since, i64::MIN)..(w.before, i64::MIN))
        {
            if before <= w.before {
                if let Some(s) = self.slots.get(idx as usize) {
                    out.extend_from_slice(&s.members);
                }
            }
        }
        out
    }

    /// Relations indexed.
    pub fn len(&self) -> usize {
        self.of.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the index.
    pub fn clear(&mut self) {
        *self = WindowIndex::default();
    }

    /// Heap bytes held (approximate for the ordered map).
    pub fn allocated_bytes(&self) -> usize {
        self.of.allocated_bytes()
            + self
                .slots
                .iter()
                .map(|s| s.members.capacity() * 16 + std::mem::size_of::<Slot>())
                .sum::<usize>()
            + self.by_window.len() * 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(since: i64, before: i64) -> RelWindow {
        RelWindow { since, before }
    }

    #[test]
    fn narrowing_only_by_narrower_windows() {
        assert_eq!(RelWindow::narrowed(None, w(0, 100)), w(0, 100));
        // Same width elsewhere: unchanged (no rewrite churn).
        assert_eq!(RelWindow::narrowed(Some(w(0, 100)), w(50, 150)), w(0, 100));
        // Narrower: the intersection.
        assert_eq!(RelWindow::narrowed(Some(w(0, 100)), w(90, 120)), w(90, 100));
        // Narrower and disjoint: the add time moved, the new window wins.
        assert_eq!(
            RelWindow::narrowed(Some(w(0, 100)), w(200, 210)),
            w(200, 210)
        );
    }

    #[test]
    fn a_rescan_read_puts_the_window_inside_its_own() {
        // Straddling the re-scan read's edge: cut to the part inside it.
        assert_eq!(
            RelWindow::within(Some(w(50, 150)), w(100, 200), w(100, 200)),
            w(100, 150)
        );
        // Already inside: only narrowed (no rewrite by a wider read).
        assert_eq!(
            RelWindow::within(Some(w(120, 150)), w(100, 200), w(100, 200)),
            w(120, 150)
        );
        assert_eq!(RelWindow::within(None, w(0, 10), w(0, 10)), w(0, 10));
        assert_eq!(
            RelWindow::within(Some(w(300, 400)), w(0, 10), w(0, 10)),
            w(0, 10),
            "disjoint: the add time moved"
        );
    }

    #[test]
    fn narrow_windows_are_recorded_as_their_cell() {
        let g = WindowGrid::new(1000, 800);
        assert_eq!(g.quantum, 100);
        assert_eq!(g.record(w(1105, 1110), 1), w(1100, 1200));
        assert_eq!(g.record(w(995, 1000), 1), w(900, 1000), "before the origin");
        // Straddling a cell edge, as wide as a cell, or holding many rows: as read.
        assert_eq!(g.record(w(1195, 1205), 1), w(1195, 1205));
        assert_eq!(g.record(w(1150, 1250), 1), w(1150, 1250));
        assert_eq!(g.record(w(1105, 1110), 16), w(1105, 1110));
        assert_eq!(WindowGrid::default().record(w(5, 6), 1), w(5, 6));
    }

    #[test]
    fn index_finds_relations_inside_a_window() {
        let mut ix = WindowIndex::default();
        ix.insert(1, 10, (0, 100));
        ix.insert(2, 10, (50, 60));
        ix.insert(3, 30, (90, 200));
        ix.insert(4, 40, (0, 0));
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.window(4), None);
        let mut got = ix.within(w(0, 100));
        got.sort();
        assert_eq!(got, vec![(1, 10), (2, 10)]);
        assert_eq!(ix.within(w(40, 70)), vec![(2, 10)]);
        ix.insert(1, 10, (10, 20));
        assert_eq!(ix.window(1), Some(w(10, 20)));
        ix.remove(2);
        assert_eq!(ix.within(w(0, 100)), vec![(1, 10)]);
        assert_eq!(ix.by_window.len(), 2, "empty windows are freed");
    }

    #[test]
    fn headers_join_and_graves() {
        let rel: Vec<u8> = (0u8..32).collect();
        let joined = join_relation_headers(&rel, None).unwrap();
        assert_eq!(joined.len(), 64);
        let wins = encode_windows([Some(w(5, 9)), None].into_iter());
        let joined = join_relation_headers(&rel, Some(&wins)).unwrap();
        assert_eq!(&joined[16..32], &wins[..16]);
        assert!(join_relation_headers(&rel[..15], None).is_err());
        assert!(join_relation_headers(&rel, Some(&wins[..16])).is_err());
        assert_eq!(decode_grave(&encode_grave(7, 9)), Some((7, 9)));
        assert_eq!(decode_grave(&[0; 15]), None);
    }
}
