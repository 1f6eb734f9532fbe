//! Building one unit of work: the relations a batch of windows returned, diffed against the
//! state store, turned into the records of one Kafka transaction; then the relations the
//! unit's complete reads show as ended ([`super::deletions`], applied in `unit_delete.rs`).
//!
//! Pure with respect to Kafka: reads the state store, writes nothing. What it stages is applied
//! to the store only after the transaction commits ([`StagedState`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::config::BadRecordPolicy;
use crate::customer::canonical::{relation_fingerprint, relation_key_hash};
use crate::customer::diff::{diff_fingerprinted, event_id, Change, Snapshot};
use crate::customer::Relation;
use crate::encode::Codec;
use crate::error::{Classify, ErrorClass};
use crate::plan::Window;
use crate::publish::OutRecord;
use crate::state::{encode_headers, RelWindow, RelationMeta, StateStore, WindowGrid};
use crate::upstream::window_reader::WindowRead;

use super::deletions::{Decision, Deletions, Evidence};

/// Header carrying the deterministic event id, so consumers can drop replays without decoding.
pub const EVENT_ID_HEADER: &str = "event_id";
/// Header carrying the event type (`CREATED` / `UPDATED` / `DELETED`).
pub const EVENT_TYPE_HEADER: &str = "event_type";
/// Header of a dead letter carrying the fingerprint of its content ([`dead_letter_fingerprint`]),
/// 8 bytes big-endian: a row is dead-lettered once per distinct content.
pub const DEAD_LETTER_FP_HEADER: &str = "tanma.row_fp";

/// Fingerprints of the contents already dead-lettered (committed).
pub type DeadLetters = HashSet<u64>;

/// The fingerprint of a dead letter's content: its raw row (or record) as JSON. Not the error
/// text, which names the page the row happened to be on.
pub fn dead_letter_fingerprint(raw_json: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(raw_json.as_bytes())
}

/// Topic names a unit of work writes to.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Change events.
    pub events: String,
    /// Compacted customer snapshots.
    pub state: String,
    /// Dead letters.
    pub dead_letter: String,
}

impl From<&crate::config::TopicsConfig> for Topics {
    fn from(t: &crate::config::TopicsConfig) -> Self {
        Topics {
            events: t.events.clone(),
            state: t.state.clone(),
            dead_letter: t.dead_letter.clone(),
        }
    }
}

/// What building a unit reads: the committed state, the codec, where records go, the
/// bad-record policy and the observation time.
#[derive(Clone, Copy)]
pub struct UnitContext<'a> {
    /// Last committed snapshots.
    pub store: &'a StateStore,
    /// Avro codec.
    pub codec: &'a Codec,
    /// Topic names.
    pub topics: &'a Topics,
    /// Dead-letter or stop.
    pub policy: BadRecordPolicy,
    /// Contents already dead-lettered: not sent again.
    pub dead_lettered: &'a DeadLetters,
    /// Observation time of this unit.
    pub now: DateTime<Utc>,
    /// Confirmation counts of ended relations; `None`: nothing is ever deleted.
    pub deletions: Option<&'a Deletions>,
    /// How narrow windows are recorded with the relations they returned.
    pub grid: WindowGrid,
}

/// A snapshot to record in the state store once its transaction has committed.
#[derive(Debug)]
pub struct StagedState {
    /// The customer.
    pub external_user_id: String,
    /// Encoded snapshot, exactly as written to the state topic.
    pub value: Vec<u8>,
    /// Relation index entries of the snapshot.
    pub relations: Vec<RelationMeta>,
    /// `Some(revision of the DELETED event)`: a tombstone was written; the customer is
    /// forgotten and its revision kept (`value` and `relations` are empty).
    pub buried: Option<u64>,
}

/// What one window contributed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnitStats {
    /// Relations read.
    pub relations: u64,
    /// Relations whose content was already known.
    pub unchanged: u64,
    /// CREATED events.
    pub created: u64,
    /// UPDATED events.
    pub updated: u64,
    /// DELETED events.
    pub deleted: u64,
    /// Relations removed because they ended.
    pub relations_ended: u64,
    /// State records rewritten without an event: a relation's window narrowed.
    pub rewindowed: u64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Bad rows not sent again: their content was dead-lettered before.
    pub dead_letters_repeated: u64,
}

/// The records of one transaction (without the checkpoint) and the state to apply after commit.
#[derive(Debug, Default)]
pub struct Unit {
    /// Events, then state records, then dead letters, in a deterministic order.
    pub records: Vec<OutRecord>,
    /// State to apply after commit, in order.
    pub staged: Vec<StagedState>,
    /// Counts.
    pub stats: UnitStats,
    /// Fingerprints of the dead letters in `records`, to remember once committed.
    pub dead_lettered: Vec<u64>,
    /// What the unit's reads showed about ended relations (committed to [`Deletions`] after
    /// the transaction).
    pub evidence: Evidence,
    /// The deletions decided (see [`Unit::finish`]).
    pub decision: Decision,
    /// Position in `staged` of each customer staged in this unit.
    pub(super) staged_index: HashMap<String, usize>,
    /// Relations returned by the read being added.
    read_rows: usize,
    /// Whether the read being added is a re-scan (or retry) read: see [`Unit::set_rescan`].
    rescan: bool,
}

/// A unit of work could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// A record could not be encoded and the policy is to stop.
    #[error("customer {external_user_id}: cannot encode: {reason} (topics.on_bad_record = stop)")]
    BadRecord {
        /// The customer.
        external_user_id: String,
        /// Why.
        reason: String,
    },
    /// The state store failed (local disk).
    #[error("state store: {0}")]
    State(#[from] crate::state::StateError),
    /// A stored snapshot could not be decoded: the state topic holds something we did not write.
    #[error("customer {external_user_id}: stored snapshot cannot be decoded: {reason}")]
    CorruptState {
        /// The customer.
        external_user_id: String,
        /// Why.
        reason: String,
    },
}

/// Decodes a customer's previous snapshot.
pub(super) fn decode_prev(
    ctx: &UnitContext<'_>,
    ext: &str,
    bytes: &[u8],
) -> Result<Snapshot, UnitError> {
    ctx.codec
        .decode_snapshot(bytes)
        .map_err(|e| UnitError::CorruptState {
            external_user_id: ext.to_string(),
            reason: e.to_string(),
        })
}

impl Classify for UnitError {
    fn class(&self) -> ErrorClass {
        match self {
            UnitError::BadRecord { .. } | UnitError::CorruptState { .. } => ErrorClass::Fatal,
            UnitError::State(e) => e.class(),
        }
    }
}

impl Unit {
    /// Marks the reads added next as re-scan (or retry) reads, or not. A re-scan read that
    /// returns a relation makes the relation's window lie inside the read's window (the
    /// intersection; its add time lies in both): re-scan reads are the evidence of absence, and
    /// one whose window does not contain the relation's window can never be. Forward and
    /// lookback reads only narrow it (their windows slide every cycle; cutting to each would
    /// rewrite the state of every relation at their edge every cycle).
    pub fn set_rescan(&mut self, rescan: bool) {
        self.rescan = rescan;
    }

    /// Adds one window's result to the unit. Customers already staged earlier in this unit are
    /// diffed against their staged (not yet committed) snapshot. The relations are moved into
    /// the unit's snapshots, not copied.
    pub fn add_window(&mut self, read: WindowRead, ctx: &UnitContext<'_>) -> Result<(), UnitError> {
        self.stats.relations += read.relations.len() as u64;
        for rejected in &read.rejected {
            self.dead_letter(ctx, None, read.window, &rejected.raw_json, &rejected.error)?;
        }
        let window = read.window;
        // Only a complete read without rejected rows (whose relation could be any) shows that
        // a relation it did not return is gone.
        let evidence = read.complete && read.rejected.is_empty();
        self.read_rows = read.relations.len();
        let mut rels = read.relations.into_iter().peekable();
        let mut group: Vec<Relation> = Vec::new();
        while let Some((ext, first)) = rels.next() {
            group.clear();
            group.push(first);
            while let Some((_, r)) = rels.next_if(|(e, _)| *e == ext) {
                group.push(r);
            }
            self.add_customer(&ext, &mut group, window, ctx)?;
        }
        if evidence && ctx.deletions.is_some_and(Deletions::enabled) {
            // After the read's own relations were recorded as seen.
            let inside = ctx.store.relations_within(RelWindow::from(window));
            self.evidence.complete_read(window, inside);
            self.evidence.complete.push(window);
        }
        Ok(())
    }

    fn add_customer(
        &mut self,
        ext: &str,
        group: &mut Vec<Relation>,
        window: Window,
        ctx: &UnitContext<'_>,
    ) -> Result<(), UnitError> {
        let UnitContext {
            store,
            codec,
            topics,
            now,
            ..
        } = *ctx;
        let staged_idx = self.staged_index.get(ext).copied();
        // Each relation's fingerprint and key hash are computed once, here (relations of a
        // window read are canonical: `Relation::from_row` makes them so).
        let fps: Vec<u64> = group.iter().map(relation_fingerprint).collect();
        let khs: Vec<u64> = group
            .iter()
            .map(|r| relation_key_hash(ext, &r.qw_user_id))
            .collect();
        if ctx.deletions.is_some_and(Deletions::enabled) {
            self.evidence.seen.extend(khs.iter().copied());
        }
        let read_in = RelWindow::from(window);
        let seen_in = ctx.grid.record(read_in, self.read_rows);
        // Fast path: every relation's fingerprint is already known, and its window is known
        // and no wider than this one → nothing to do.
        if staged_idx.is_none()
            && khs.iter().zip(&fps).all(|(kh, fp)| {
                store.relation_fingerprint(*kh) == Some(*fp)
                    && store.relation_window(*kh).is_some_and(|w| {
                        if self.rescan {
                            read_in.contains(w)
                        } else {
                            seen_in.secs() >= w.secs()
                        }
                    })
            })
        {
            self.stats.unchanged += group.len() as u64;
            return Ok(());
        }
        let loaded;
        let (prev_bytes, prev_metas): (Option<&[u8]>, Vec<RelationMeta>) = match staged_idx {
            Some(k) => (
                Some(&self.staged[k].value),
                self.staged[k].relations.clone(),
            ),
            None => {
                loaded = store.load_entry(ext)?;
                match &loaded {
                    Some(e) => (Some(e.value.as_slice()), e.relations.clone()),
                    None => (None, Vec::new()),
                }
            }
        };
        let prev: Option<Snapshot> = match prev_bytes {
            None => None,
            Some(b) => Some(decode_prev(ctx, ext, b)?),
        };
        let prev_fp = prev.as_ref().map(|p| p.fingerprint);
        // The window each relation is known to lie in after this read.
        let window_of = |kh: u64| {
            let old = prev_metas
                .iter()
                .find(|m| m.key_hash == kh)
                .and_then(|m| m.window);
            if khs.contains(&kh) && self.rescan {
                Some(RelWindow::within(old, read_in, seen_in))
            } else if khs.contains(&kh) {
                Some(RelWindow::narrowed(old, seen_in))
            } else {
                old
            }
        };
        let keyed: Vec<(u64, Relation)> = fps.into_iter().zip(group.drain(..)).collect();
        let Some((mut change, after_fps)) = diff_fingerprinted(prev, ext, keyed, now) else {
            // Same content; a narrower window is still worth a state record (no event).
            let metas: Vec<RelationMeta> = prev_metas
                .iter()
                .map(|m| RelationMeta {
                    window: window_of(m.key_hash),
                    ..*m
                })
                .collect();
            if metas == prev_metas {
                self.stats.unchanged += 1;
                return Ok(());
            }
            let value = prev_bytes.map(<[u8]>::to_vec).unwrap_or_default();
            self.stats.rewindowed += 1;
            self.stage(topics, ext, value, prev_fp.unwrap_or_default(), metas);
            return Ok(());
        };
        if let (Change::Created { after }, None) = (&mut change, staged_idx) {
            // Back after DELETED: the revisions continue.
            if let Some(last) = store.grave(ext) {
                after.revision = last.saturating_add(1);
            }
        }
        let after = change.after();
        let encoded = codec
            .encode_event(&change, window, now)
            .and_then(|ev| codec.encode_snapshot(after).map(|snap| (ev, snap)));
        let (event_bytes, snapshot_bytes) = match encoded {
            Ok(v) => v,
            Err(e) => {
                let raw = serde_json::json!({
                    "externalUserId": ext,
                    "relations": format!("{:?}", after.customer.relations),
                })
                .to_string();
                return self.dead_letter(ctx, Some(ext), window, &raw, &e.to_string());
            }
        };
        let metas: Vec<RelationMeta> = after
            .customer
            .relations
            .iter()
            .zip(after_fps)
            .map(|(r, fingerprint)| {
                let key_hash = relation_key_hash(ext, &r.qw_user_id);
                RelationMeta {
                    key_hash,
                    fingerprint,
                    window: window_of(key_hash),
                }
            })
            .collect();
        self.push_event(topics, &change, event_bytes);
        let fingerprint = after.fingerprint;
        self.stage(topics, ext, snapshot_bytes, fingerprint, metas);
        Ok(())
    }

    /// Adds the event of `change` to the records and counts it.
    pub(super) fn push_event(&mut self, topics: &Topics, change: &Change, event_bytes: Vec<u8>) {
        match change {
            Change::Created { .. } => self.stats.created += 1,
            Change::Updated { .. } => self.stats.updated += 1,
            Change::Deleted { .. } => self.stats.deleted += 1,
        }
        let after = change.after();
        let ext = &after.customer.external_user_id;
        let id = event_id(ext, after.revision, after.fingerprint);
        self.records.push(OutRecord {
            topic: topics.events.clone(),
            key: ext.as_bytes().to_vec(),
            value: Some(event_bytes),
            headers: vec![
                (EVENT_ID_HEADER.to_string(), id.into_bytes()),
                (
                    EVENT_TYPE_HEADER.to_string(),
                    change.event_type().as_bytes().to_vec(),
                ),
            ],
        });
    }

    /// Adds a state record of `ext` and stages it for after the commit.
    pub(super) fn stage(
        &mut self,
        topics: &Topics,
        ext: &str,
        value: Vec<u8>,
        fingerprint: u64,
        metas: Vec<RelationMeta>,
    ) {
        self.records.push(OutRecord {
            topic: topics.state.clone(),
            key: ext.as_bytes().to_vec(),
            value: Some(value.clone()),
            headers: encode_headers(fingerprint, &metas),
        });
        self.staged_index.insert(ext.to_string(), self.staged.len());
        self.staged.push(StagedState {
            external_user_id: ext.to_string(),
            value,
            relations: metas,
            buried: None,
        });
    }

    fn dead_letter(
        &mut self,
        ctx: &UnitContext<'_>,
        ext: Option<&str>,
        window: Window,
        raw_json: &str,
        error: &str,
    ) -> Result<(), UnitError> {
        let topics = ctx.topics;
        if ctx.policy == BadRecordPolicy::Stop {
            return Err(UnitError::BadRecord {
                external_user_id: ext.unwrap_or("<unknown>").to_string(),
                reason: error.to_string(),
            });
        }
        let fp = dead_letter_fingerprint(raw_json);
        if ctx.dead_lettered.contains(&fp) || self.dead_lettered.contains(&fp) {
            tracing::debug!(external_user_id = ext, %window, "Bad record already dead-lettered; not sent again.");
            self.stats.dead_letters_repeated += 1;
            return Ok(());
        }
        tracing::warn!(external_user_id = ext, %window, error, "Record sent to the dead-letter topic.");
        self.stats.dead_letters += 1;
        self.dead_lettered.push(fp);
        let value = serde_json::json!({
            "error": error,
            "window": { "since": window.since, "before": window.before },
            "raw": raw_json,
        });
        self.records.push(OutRecord {
            topic: topics.dead_letter.clone(),
            key: ext.map(|e| e.as_bytes().to_vec()).unwrap_or_default(),
            value: Some(value.to_string().into_bytes()),
            headers: vec![
                ("error".to_string(), error.as_bytes().to_vec()),
                (DEAD_LETTER_FP_HEADER.to_string(), fp.to_be_bytes().to_vec()),
            ],
        });
        Ok(())
    }
}
