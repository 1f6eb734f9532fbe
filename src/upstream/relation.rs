//! From the API's wire rows to the domain's [`Relation`]: validation and canonical form.
//!
//! This lives with the wire types, not in [`crate::customer`], so that the domain does not depend
//! on the API's wire format (the dependency runs one way: `upstream` → `customer`).

use crate::customer::{FieldValue, Relation, RowError};
use crate::upstream::wire::{Row, RowRef, Text};

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
