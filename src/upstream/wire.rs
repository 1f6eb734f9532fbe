//! Wire types of `POST /api/v2/customer/qw-list-by-create-time`, shared by the client and the
//! simulator.
//!
//! Parsing is tolerant where that is harmless: every field may be null or missing, unknown fields
//! are ignored. Whether a row is usable (it must name its `externalUserId` and `qwUserId`) is
//! decided when it is turned into a [`crate::customer::Relation`], where the error can name the
//! field.

use serde::{Deserialize, Serialize};

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
