//! Wire types of `POST /api/v2/customer/qw-list-by-create-time`, shared by the client and the
//! simulator.
//!
//! Parsing is tolerant where that is harmless: every field may be null or missing, unknown fields
//! are ignored. Whether a row is usable (it must name its `externalUserId` and `qwUserId`) is
//! decided when it is turned into a [`crate::customer::Relation`], where the error can name the
//! field.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The path of the endpoint, relative to the configured base URL.
pub const LIST_BY_CREATE_TIME_PATH: &str = "/api/v2/customer/qw-list-by-create-time";

/// Request body. Serialized once, compactly, and those exact bytes are signed and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    /// Window start, inclusive, `yyyy-MM-dd HH:mm:ss` in the API's time zone.
    pub since: String,
    /// Window end, exclusive, same format.
    pub before: String,
    /// Rows per page.
    pub page_size: u32,
    /// 1-based page number.
    pub page_no: u32,
}

/// Response envelope. `code` 0 is success; a non-zero code may come with HTTP 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse<T> {
    /// Business status code.
    pub code: i64,
    /// Business status message.
    #[serde(default)]
    pub message: Option<String>,
    /// Payload; absent or null on errors.
    #[serde(default = "none")]
    pub data: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// One page of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Page {
    /// Page size the server used.
    pub page_size: Option<u32>,
    /// 1-based page number.
    pub page_no: Option<u32>,
    /// Rows in the whole window.
    pub total_count: Option<u64>,
    /// Pages in the whole window at this page size.
    pub total_page: Option<u32>,
    /// The rows of this page; null or missing means an empty page.
    pub result: Option<Vec<Row>>,
}

/// One follow relation `(externalUserId, qwUserId)` as the API sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Row {
    /// The staff member's WeCom user id.
    pub qw_user_id: Option<String>,
    /// The customer's WeCom external user id.
    pub external_user_id: Option<String>,
    /// Mobile numbers; entries may be null.
    pub mobiles: Option<Vec<Option<String>>>,
    /// WeChat nickname.
    pub wechat_nickname: Option<String>,
    /// WeChat avatar URL.
    pub wechat_avatar: Option<String>,
    /// Profile fields, built-in (`stable: true`) and custom.
    pub fields: Option<Vec<Field>>,
}

/// One profile field of a relation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Field {
    /// Field id.
    pub id: Option<i64>,
    /// Display name.
    pub name: Option<String>,
    /// External name of a custom field.
    pub outer_field: Option<String>,
    /// Value; null and "" are distinct.
    pub value: Option<String>,
    /// True for built-in fields.
    pub stable: Option<bool>,
}

/// A string of a response body, borrowed from the body unless it had to be unescaped.
///
/// `Option<Cow<str>>` never borrows with serde; this wrapper does, so the client's hot path
/// ([`PageRef`]) copies each string once, into the [`crate::customer::Relation`] it builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Borrowing twin of [`Page`], parsed by the client: its strings point into the response body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PageRef<'a> {
    /// Page size the server used.
    pub page_size: Option<u32>,
    /// 1-based page number.
    pub page_no: Option<u32>,
    /// Rows in the whole window.
    pub total_count: Option<u64>,
    /// Pages in the whole window at this page size.
    pub total_page: Option<u32>,
    /// The rows of this page; null or missing means an empty page.
    #[serde(borrow)]
    pub result: Option<Vec<RowRef<'a>>>,
}

/// Borrowing twin of [`Row`]; serializes to the same JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RowRef<'a> {
    /// The staff member's WeCom user id.
    #[serde(borrow)]
    pub qw_user_id: Option<Text<'a>>,
    /// The customer's WeCom external user id.
    #[serde(borrow)]
    pub external_user_id: Option<Text<'a>>,
    /// Mobile numbers; entries may be null.
    #[serde(borrow)]
    pub mobiles: Option<Vec<Option<Text<'a>>>>,
    /// WeChat nickname.
    #[serde(borrow)]
    pub wechat_nickname: Option<Text<'a>>,
    /// WeChat avatar URL.
    #[serde(borrow)]
    pub wechat_avatar: Option<Text<'a>>,
    /// Profile fields, built-in (`stable: true`) and custom.
    #[serde(borrow)]
    pub fields: Option<Vec<FieldRef<'a>>>,
}

/// Borrowing twin of [`Field`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldRef<'a> {
    /// Field id.
    pub id: Option<i64>,
    /// Display name.
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    /// External name of a custom field.
    #[serde(borrow)]
    pub outer_field: Option<Text<'a>>,
    /// Value; null and "" are distinct.
    #[serde(borrow)]
    pub value: Option<Text<'a>>,
    /// True for built-in fields.
    pub stable: Option<bool>,
}

fn text(s: &Option<String>) -> Option<Text<'_>> {
    s.as_deref().map(|s| Text(Cow::Borrowed(s)))
}

impl<'a> From<&'a Row> for RowRef<'a> {
    fn from(r: &'a Row) -> Self {
        RowRef {
            qw_user_id: text(&r.qw_user_id),
            external_user_id: text(&r.external_user_id),
            mobiles: r.mobiles.as_ref().map(|m| m.iter().map(text).collect()),
            wechat_nickname: text(&r.wechat_nickname),
            wechat_avatar: text(&r.wechat_avatar),
            fields: r.fields.as_ref().map(|fs| {
                fs.iter()
                    .map(|f| FieldRef {
                        id: f.id,
                        name: text(&f.name),
                        outer_field: text(&f.outer_field),
                        value: text(&f.value),
                        stable: f.stable,
                    })
                    .collect()
            }),
        }
    }
}
