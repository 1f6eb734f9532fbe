//! Shared fixtures and proptest strategies for the `encode_*` tests.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use tanma_connector::customer::{FieldValue, Relation};

/// A fixed, whole-millisecond instant.
pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(secs * 1000 + 123).unwrap()
}

/// A field.
pub fn field(id: i64, name: &str, value: Option<&str>, stable: bool) -> FieldValue {
    FieldValue {
        id,
        name: Some(name.into()),
        outer_field: if stable { None } else { Some(format!("f{id}")) },
        value: value.map(Into::into),
        stable,
    }
}

/// A relation with Chinese and emoji text, a null and an empty value.
pub fn relation(qw: &str) -> Relation {
    Relation {
        qw_user_id: qw.into(),
        mobiles: vec!["13800000000".into(), "13900000000".into()],
        nickname: Some("张三 🐼".into()),
        avatar: None,
        fields: vec![
            field(1, "电话", Some("13800000000"), true),
            field(2, "备注", Some(""), true),
            field(680, "职位", None, false),
            field(681, "爱好", Some("登山 ⛰️ and \"quotes\"\n"), false),
        ],
    }
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[a-z张三🐼]{1,6}".prop_map(Some),
    ]
}

prop_compose! {
    /// Any field (ids from a small range so that collisions are exercised).
    pub fn any_field()(id in 0i64..6, name in opt_text(), outer in opt_text(),
                       value in opt_text(), stable in any::<bool>()) -> FieldValue {
        FieldValue { id, name, outer_field: outer, value, stable }
    }
}

prop_compose! {
    /// Any canonical relation for `qw`.
    pub fn any_relation_for(qw: String)(
        mut mobiles in proptest::collection::vec("1[0-9]{3}", 0..4),
        nickname in opt_text(), avatar in opt_text(),
        fields in proptest::collection::btree_map(0i64..6, any_field(), 0..5),
    ) -> Relation {
        mobiles.sort();
        mobiles.dedup();
        let mut fields: Vec<FieldValue> =
            fields.into_iter().map(|(id, f)| FieldValue { id, ..f }).collect();
        fields.sort();
        Relation { qw_user_id: qw.clone(), mobiles, nickname, avatar, fields }
    }
}

/// Any list of relations with distinct qw_user_ids (canonical, sorted).
pub fn any_relations() -> impl Strategy<Value = Vec<Relation>> {
    proptest::collection::btree_set("u[0-9]{1,2}", 1..5)
        .prop_flat_map(|qws| qws.into_iter().map(any_relation_for).collect::<Vec<_>>())
}
