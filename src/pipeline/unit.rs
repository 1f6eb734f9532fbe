//! Building one unit of work: the relations a batch of windows returned, diffed against the
//! state store, turned into the records of one Kafka transaction.
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
use crate::state::{encode_headers, RelationMeta, StateStore};
use crate::upstream::window_reader::WindowRead;

/// Header carrying the deterministic event id, so consumers can drop replays without decoding.
pub const EVENT_ID_HEADER: &str = "event_id";
/// Header carrying the event type (`CREATED` / `UPDATED`).
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
    /// Position in `staged` of each customer staged in this unit.
    staged_index: HashMap<String, usize>,
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

impl Classify for UnitError {
    fn class(&self) -> ErrorClass {
        match self {
            UnitError::BadRecord { .. } | UnitError::CorruptState { .. } => ErrorClass::Fatal,
            UnitError::State(e) => e.class(),
        }
    }
}

impl Unit {
    /// Adds one window's result to the unit. Customers already staged earlier in this unit are
    /// diffed against their staged (not yet committed) snapshot. The relations are moved into
    /// the unit's snapshots, not copied.
    pub fn add_window(&mut self, read: WindowRead, ctx: &UnitContext<'_>) -> Result<(), UnitError> {
        self.stats.relations += read.relations.len() as u64;
        for rejected in &read.rejected {
            self.dead_letter(ctx, None, read.window, &rejected.raw_json, &rejected.error)?;
        }
        let window = read.window;
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
        // Each relation's fingerprint is computed once, here (relations of a window read are
        // canonical: `Relation::from_row` makes them so).
        let fps: Vec<u64> = group.iter().map(relation_fingerprint).collect();
        // Fast path: every relation's fingerprint is already known → nothing to do.
        if staged_idx.is_none()
            && group.iter().zip(&fps).all(|(r, fp)| {
                store.relation_fingerprint(relation_key_hash(ext, &r.qw_user_id)) == Some(*fp)
            })
        {
            self.stats.unchanged += group.len() as u64;
            return Ok(());
        }
        let loaded;
        let prev_bytes: Option<&[u8]> = match staged_idx {
            Some(k) => Some(&self.staged[k].value),
            None => {
                loaded = store.load(ext)?;
                loaded.as_deref()
            }
        };
        let prev: Option<Snapshot> = match prev_bytes {
            None => None,
            Some(b) => Some(
                codec
                    .decode_snapshot(b)
                    .map_err(|e| UnitError::CorruptState {
                        external_user_id: ext.to_string(),
                        reason: e.to_string(),
                    })?,
            ),
        };
        let keyed: Vec<(u64, Relation)> = fps.into_iter().zip(group.drain(..)).collect();
        let Some((change, after_fps)) = diff_fingerprinted(prev, ext, keyed, now) else {
            self.stats.unchanged += 1;
            return Ok(());
        };
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
            .map(|(r, fingerprint)| RelationMeta {
                key_hash: relation_key_hash(ext, &r.qw_user_id),
                fingerprint,
            })
            .collect();
        let id = event_id(ext, after.revision, after.fingerprint);
        match &change {
            Change::Created { .. } => self.stats.created += 1,
            Change::Updated { .. } => self.stats.updated += 1,
        }
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
        self.records.push(OutRecord {
            topic: topics.state.clone(),
            key: ext.as_bytes().to_vec(),
            value: Some(snapshot_bytes.clone()),
            headers: encode_headers(after.fingerprint, &metas),
        });
        self.staged_index.insert(ext.to_string(), self.staged.len());
        self.staged.push(StagedState {
            external_user_id: ext.to_string(),
            value: snapshot_bytes,
            relations: metas,
        });
        Ok(())
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
