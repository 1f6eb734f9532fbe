//! The customer aggregate: one `externalUserId` with all its follow relations.
//!
//! Values here are always in canonical form, so that an order the API gives no meaning to can
//! never show up as a change: relations sorted by `qwUserId`, mobiles sorted and de-duplicated
//! with nulls dropped, fields sorted by `(id, name)`.

use crate::upstream::wire::{Row, RowRef, Text};

/// One follow relation (the customer as one staff member sees it), in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    /// The staff member's WeCom user id; never empty.
    pub qw_user_id: String,
    /// Mobile numbers, sorted, de-duplicated, without nulls.
    pub mobiles: Vec<String>,
    /// WeChat nickname.
    pub nickname: Option<String>,
    /// WeChat avatar URL.
    pub avatar: Option<String>,
    /// Profile fields sorted by `(id, name)`.
    pub fields: Vec<FieldValue>,
}

/// One profile field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldValue {
    /// Field id.
    pub id: i64,
    /// Display name.
    pub name: Option<String>,
    /// External name of a custom field.
    pub outer_field: Option<String>,
    /// Value; null and "" are distinct.
    pub value: Option<String>,
    /// True for built-in fields (a null `stable` reads as false).
    pub stable: bool,
}

/// A customer: one `externalUserId` and its relations sorted by `qw_user_id` (unique).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Customer {
    /// The customer's WeCom external user id; the Kafka key.
    pub external_user_id: String,
    /// Follow relations, sorted by `qw_user_id`, at most one per staff member.
    pub relations: Vec<Relation>,
}

/// A row that cannot be turned into a relation without guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {index} of the page: {field} {problem}")]
pub struct RowError {
    /// Position of the row in its page.
    pub index: usize,
    /// Path of the offending field, e.g. `externalUserId` or `fields[2].id`.
    pub field: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Relation {
    /// Validates and canonicalizes one API row. Returns the row's `externalUserId` with the
    /// relation. `index` is the row's position in its page, for the error message.
    pub fn from_row(row: &Row, index: usize) -> Result<(String, Relation), RowError> {
        Relation::from_row_ref(&RowRef::from(row), index)
    }

    /// [`Relation::from_row`] for a row borrowed from a response body: every string is copied
    /// exactly once, into the relation.
    pub fn from_row_ref(row: &RowRef<'_>, index: usize) -> Result<(String, Relation), RowError> {
        let err = |field: String, problem| RowError {
            index,
            field,
            problem,
        };
        let owned = |t: &Option<Text<'_>>| t.as_ref().map(|t| t.as_str().to_owned());
        let ext = match row.external_user_id.as_ref().map(Text::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            Some(_) => return Err(err("externalUserId".into(), "is empty")),
            None => return Err(err("externalUserId".into(), "is missing or null")),
        };
        let qw = match row.qw_user_id.as_ref().map(Text::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            Some(_) => return Err(err("qwUserId".into(), "is empty")),
            None => return Err(err("qwUserId".into(), "is missing or null")),
        };
        let mut mobiles: Vec<String> = row
            .mobiles
            .iter()
            .flatten()
            .flatten()
            .map(|m| m.as_str().to_owned())
            .collect();
        mobiles.sort_unstable();
        mobiles.dedup();
        let mut fields = Vec::with_capacity(row.fields.as_ref().map_or(0, Vec::len));
        for (i, f) in row.fields.iter().flatten().enumerate() {
            let id =
                f.id.ok_or_else(|| err(format!("fields[{i}].id"), "is missing or null"))?;
            fields.push(FieldValue {
                id,
                name: owned(&f.name),
                outer_field: owned(&f.outer_field),
                value: owned(&f.value),
                stable: f.stable.unwrap_or(false),
            });
        }
        fields.sort_unstable();
        Ok((
            ext,
            Relation {
                qw_user_id: qw,
                mobiles,
                nickname: owned(&row.wechat_nickname),
                avatar: owned(&row.wechat_avatar),
                fields,
            },
        ))
    }
}

impl Customer {
    /// Inserts or replaces the relation with the same `qw_user_id`, keeping the order.
    /// Returns the relation it replaced, if any.
    pub fn upsert(&mut self, relation: Relation) -> Option<Relation> {
        match self
            .relations
            .binary_search_by(|r| r.qw_user_id.cmp(&relation.qw_user_id))
        {
            Ok(i) => Some(std::mem::replace(&mut self.relations[i], relation)),
            Err(i) => {
                self.relations.insert(i, relation);
                None
            }
        }
    }
}
