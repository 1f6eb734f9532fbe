//! The end of a unit of work: the relations its complete reads showed as ended
//! ([`super::deletions`]) become UPDATED events (the customer keeps other relations) or DELETED
//! events plus a state tombstone (its last relation ended), in the same transaction.

use crate::customer::canonical::relation_key_hash;
use crate::customer::diff::{remove_relations, Change};
use crate::publish::OutRecord;
use crate::state::{encode_grave, RelationMeta, HEADER_GRAVE};

use super::deletions::Due;
use super::unit::{decode_prev, StagedState, Unit, UnitContext, UnitError};

impl Unit {
    /// Decides, after every window of the unit was added, which known relations ended, and
    /// adds their events and state records. Call once, last.
    pub fn finish(&mut self, ctx: &UnitContext<'_>) -> Result<(), UnitError> {
        let Some(deletions) = ctx.deletions else {
            return Ok(());
        };
        if deletions.enabled() {
            for union in self.evidence.joined_reads() {
                let inside = ctx
                    .store
                    .relations_within(crate::state::RelWindow::from(union));
                self.evidence.complete_read(union, inside);
            }
        }
        self.decision = deletions.decide(&self.evidence, ctx.store.relations());
        let due = std::mem::take(&mut self.decision.due);
        let mut applied = std::collections::BTreeMap::new();
        for (customer, d) in due {
            if self.end_relations(ctx, customer, &d)? {
                applied.insert(customer, d);
            }
        }
        // What was not applied (already gone) is not counted as deleted.
        self.decision.due = applied;
        Ok(())
    }

    /// Removes `d.relations` from the customer with key hash `customer`; false if none of them
    /// is in its snapshot any more.
    fn end_relations(
        &mut self,
        ctx: &UnitContext<'_>,
        customer: u64,
        d: &Due,
    ) -> Result<bool, UnitError> {
        let Some(stored) = ctx.store.load_by_hash(customer)? else {
            return Ok(false);
        };
        let ext = stored.external_user_id;
        let (bytes, metas) = match self.staged_index.get(&ext) {
            Some(&k) => (
                self.staged[k].value.clone(),
                self.staged[k].relations.clone(),
            ),
            None => (stored.value, stored.relations),
        };
        if bytes.is_empty() {
            return Ok(false);
        }
        let prev = decode_prev(ctx, &ext, &bytes)?;
        let ended: Vec<&str> = prev
            .customer
            .relations
            .iter()
            .map(|r| r.qw_user_id.as_str())
            .filter(|qw| d.relations.contains(&relation_key_hash(&ext, qw)))
            .collect();
        let ended_n = ended.len() as u64;
        let Some(change) = remove_relations(prev.clone(), &ended, ctx.now) else {
            return Ok(false);
        };
        let event = ctx
            .codec
            .encode_event(&change, d.window, ctx.now)
            .map_err(|e| UnitError::BadRecord {
                external_user_id: ext.clone(),
                reason: e.to_string(),
            })?;
        self.stats.relations_ended += ended_n;
        self.push_event(ctx.topics, &change, event);
        let after = change.after();
        tracing::debug!(external_user_id = %ext, ended = ended_n, event_type = change.event_type(),
            window = %d.window, "Relations ended.");
        match &change {
            Change::Deleted { .. } => {
                self.records.push(OutRecord {
                    topic: ctx.topics.state.clone(),
                    key: ext.as_bytes().to_vec(),
                    value: None,
                    headers: vec![(
                        HEADER_GRAVE.to_string(),
                        encode_grave(after.revision, after.fingerprint),
                    )],
                });
                self.staged_index.insert(ext.clone(), self.staged.len());
                self.staged.push(StagedState {
                    external_user_id: ext,
                    value: Vec::new(),
                    relations: Vec::new(),
                    buried: Some(after.revision),
                });
            }
            _ => {
                let value = ctx
                    .codec
                    .encode_snapshot(after)
                    .map_err(|e| UnitError::BadRecord {
                        external_user_id: ext.clone(),
                        reason: e.to_string(),
                    })?;
                let kept: Vec<RelationMeta> = metas
                    .into_iter()
                    .filter(|m| !d.relations.contains(&m.key_hash))
                    .collect();
                let fingerprint = after.fingerprint;
                self.stage(ctx.topics, &ext, value, fingerprint, kept);
            }
        }
        Ok(true)
    }
}
