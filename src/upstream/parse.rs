//! Parsing of the list endpoint's response body, kept apart from the HTTP client so it can be
//! tested (and fuzzed) on arbitrary bytes: it never panics, whatever it is given.

use crate::customer::{Relation, RowError};
use crate::error::excerpt;
use crate::upstream::wire::{ApiResponse, Page, PageRef};

/// Longest quote of a parser message kept in a [`ParseError`].
const DETAIL_MAX: usize = 200;

/// What a well-formed response says. `P` is the page as [`parse_response`] ([`Page`]) or
/// [`parse_relations`] ([`RelationPage`]) returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedResponse<P = Page> {
    /// `code == 0` with a page of data.
    Page(P),
    /// A non-zero business code (the caller decides whether it is fatal or transient).
    Business {
        /// The business status code.
        code: i64,
        /// The business status message, if any.
        message: Option<String>,
    },
}

/// A response body that is not what the endpoint promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of another shape (the serde message, cut short).
    #[error("not JSON of the expected shape: {detail}")]
    Shape {
        /// The parser's message.
        detail: String,
    },
    /// `code` was 0 but `data` was missing or null.
    #[error("code 0 (success) without data")]
    MissingData,
    /// `data.totalCount` was missing or null; paging cannot be trusted without it.
    #[error("data.totalCount is missing or null")]
    MissingTotalCount,
}

/// Parses a response body of the list endpoint.
///
/// `code == 0` must come with `data` and `data.totalCount`; anything else that is valid JSON of
/// the envelope's shape is returned as [`ParsedResponse::Business`].
pub fn parse_response(body: &[u8]) -> Result<ParsedResponse, ParseError> {
    let envelope: ApiResponse<Page> = serde_json::from_slice(body).map_err(shape)?;
    let total = |p: &Page| p.total_count;
    Ok(match check(envelope, total)? {
        Checked::Page(page) => ParsedResponse::Page(page),
        Checked::Business { code, message } => ParsedResponse::Business { code, message },
    })
}

/// A page whose rows were turned into relations while the body was parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationPage {
    /// Page size the server used.
    pub page_size: Option<u32>,
    /// 1-based page number.
    pub page_no: Option<u32>,
    /// Rows in the whole window (always present: checked when parsed).
    pub total_count: Option<u64>,
    /// Pages in the whole window at this page size.
    pub total_page: Option<u32>,
    /// Every row, in page order: a relation, or why the row is not one.
    pub rows: Vec<RowResult>,
}

/// One row of a [`RelationPage`].
#[derive(Debug, Clone, PartialEq)]
pub enum RowResult {
    /// A valid row: its `externalUserId` and the canonical relation.
    Relation(String, Relation),
    /// A row that is not a relation.
    Rejected {
        /// The row as JSON (re-serialized from the parsed row).
        raw_json: String,
        /// What is wrong with it.
        error: RowError,
    },
}

/// [`parse_response`] for the client's hot path: the rows are parsed borrowing from `body` and
/// turned straight into relations ([`Relation::from_row_ref`]), so each string is copied once.
/// Accepts and rejects exactly the bodies [`parse_response`] does.
pub fn parse_relations(body: &[u8]) -> Result<ParsedResponse<RelationPage>, ParseError> {
    let envelope: ApiResponse<PageRef<'_>> = serde_json::from_slice(body).map_err(shape)?;
    let total = |p: &PageRef<'_>| p.total_count;
    let page = match check(envelope, total)? {
        Checked::Page(page) => page,
        Checked::Business { code, message } => {
            return Ok(ParsedResponse::Business { code, message })
        }
    };
    let rows = page
        .result
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, row)| match Relation::from_row_ref(row, i) {
            Ok((ext, rel)) => RowResult::Relation(ext, rel),
            Err(error) => RowResult::Rejected {
                raw_json: serde_json::to_string(row).unwrap_or_default(),
                error,
            },
        })
        .collect();
    Ok(ParsedResponse::Page(RelationPage {
        page_size: page.page_size,
        page_no: page.page_no,
        total_count: page.total_count,
        total_page: page.total_page,
        rows,
    }))
}

fn shape(e: serde_json::Error) -> ParseError {
    ParseError::Shape {
        detail: excerpt(&e.to_string(), DETAIL_MAX),
    }
}

enum Checked<P> {
    Page(P),
    Business { code: i64, message: Option<String> },
}

fn check<P>(
    envelope: ApiResponse<P>,
    total_count: impl Fn(&P) -> Option<u64>,
) -> Result<Checked<P>, ParseError> {
    if envelope.code != 0 {
        return Ok(Checked::Business {
            code: envelope.code,
            message: envelope.message,
        });
    }
    let page = envelope.data.ok_or(ParseError::MissingData)?;
    if total_count(&page).is_none() {
        return Err(ParseError::MissingTotalCount);
    }
    Ok(Checked::Page(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let body = br#"{"code":0,"message":"success","data":{"pageSize":10,"pageNo":1,"totalCount":1,
            "result":[{"qwUserId":"q","externalUserId":"e","mobiles":["159"],"wechatNickname":"n",
            "wechatAvatar":null,"fields":[{"id":680,"name":"x","outerField":null,"value":null,"stable":true}]}],
            "totalPage":1}}"#;
        match parse_response(body).unwrap() {
            ParsedResponse::Page(p) => {
                assert_eq!(p.total_count, Some(1));
                assert_eq!(p.result.unwrap().len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn business_code_and_errors() {
        assert_eq!(
            parse_response(br#"{"code":1002,"message":"sign error"}"#).unwrap(),
            ParsedResponse::Business {
                code: 1002,
                message: Some("sign error".into())
            }
        );
        assert_eq!(
            parse_response(br#"{"code":0,"data":null}"#),
            Err(ParseError::MissingData)
        );
        assert_eq!(
            parse_response(br#"{"code":0,"data":{"result":[]}}"#),
            Err(ParseError::MissingTotalCount)
        );
        assert!(matches!(
            parse_response(b"<html>502</html>"),
            Err(ParseError::Shape { .. })
        ));
        assert!(matches!(
            parse_response(br#"{"code":0,"data":{"totalCount":-1}}"#),
            Err(ParseError::Shape { .. })
        ));
        assert!(matches!(
            parse_response(br#"{"message":"no code"}"#),
            Err(ParseError::Shape { .. })
        ));
    }

    #[test]
    fn relations_parser_agrees_with_the_owned_one() {
        // Escaped strings cannot be borrowed; they must still come through, unescaped.
        let body = br#"{"code":0,"data":{"pageSize":10,"pageNo":1,"totalCount":3,"totalPage":1,"result":[
            {"qwUserId":"q","externalUserId":"e\u0041","mobiles":["2",null,"1","2"],"wechatNickname":"\u5f20\"x\"",
             "fields":[{"id":9,"value":""},{"id":1,"name":"n","outerField":null,"stable":true}]},
            {"qwUserId":"","externalUserId":"e2"},
            {"qwUserId":"q","externalUserId":"e3","fields":[{"name":"no id"}]}]}}"#;
        let owned = match parse_response(body).unwrap() {
            ParsedResponse::Page(p) => p,
            other => panic!("unexpected {other:?}"),
        };
        let page = match parse_relations(body).unwrap() {
            ParsedResponse::Page(p) => p,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(page.total_count, Some(3));
        let rows = owned.result.unwrap();
        assert_eq!(rows.len(), page.rows.len());
        for (i, (row, got)) in rows.iter().zip(&page.rows).enumerate() {
            match (Relation::from_row(row, i), got) {
                (Ok((e1, r1)), RowResult::Relation(e2, r2)) => {
                    assert_eq!((&e1, &r1), (e2, r2));
                }
                (Err(e1), RowResult::Rejected { raw_json, error }) => {
                    assert_eq!(&e1, error);
                    assert_eq!(raw_json, &serde_json::to_string(row).unwrap());
                }
                (a, b) => panic!("row {i}: {a:?} vs {b:?}"),
            }
        }
        match &page.rows[0] {
            RowResult::Relation(ext, r) => {
                assert_eq!(ext, "eA");
                assert_eq!(r.nickname.as_deref(), Some("张\"x\""));
                assert_eq!(r.mobiles, vec!["1".to_string(), "2".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        for bad in [
            &br#"{"code":0,"data":{"result":[]}}"#[..],
            b"<html>",
            br#"{"code":0,"data":null}"#,
        ] {
            assert_eq!(parse_relations(bad).err(), parse_response(bad).err());
        }
    }
}
