//! The customer aggregate: one `externalUserId` with all its follow relations.
//!
//! Values here are always in canonical form, so that an order the API gives no meaning to can
//! never show up as a change: relations sorted by `qwUserId`, mobiles sorted and de-duplicated
//! with nulls dropped, fields sorted by `(id, name)`.
//!
//! The domain knows nothing of the API's wire format: turning an API row into a [`Relation`]
//! (`Relation::from_row`) lives with the wire types, in `crate::upstream::relation`.

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
