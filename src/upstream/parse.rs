//! Parsing of the list endpoint's response body, kept apart from the HTTP client so it can be
//! tested (and fuzzed) on arbitrary bytes: it never panics, whatever it is given.

use crate::error::excerpt;
use crate::upstream::wire::{ApiResponse, Page};

/// Longest quote of a parser message kept in a [`ParseError`].
const DETAIL_MAX: usize = 200;

/// What a well-formed response says.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedResponse {
    /// `code == 0` with a page of data.
    Page(Page),
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
    let envelope: ApiResponse<Page> =
        serde_json::from_slice(body).map_err(|e| ParseError::Shape {
            detail: excerpt(&e.to_string(), DETAIL_MAX),
        })?;
    if envelope.code != 0 {
        return Ok(ParsedResponse::Business {
            code: envelope.code,
            message: envelope.message,
        });
    }
    let page = envelope.data.ok_or(ParseError::MissingData)?;
    if page.total_count.is_none() {
        return Err(ParseError::MissingTotalCount);
    }
    Ok(ParsedResponse::Page(page))
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
}
