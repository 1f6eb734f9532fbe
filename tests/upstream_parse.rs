//! Property tests: the response parser never panics, and a well-formed page round-trips.

use proptest::prelude::*;
use tanma_connector::upstream::wire::{ApiResponse, Field, Page, Row};
use tanma_connector::upstream::{parse_response, ParsedResponse};

fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(".{0,12}")
}

fn field() -> impl Strategy<Value = Field> {
    (
        proptest::option::of(any::<i64>()),
        opt_string(),
        opt_string(),
        opt_string(),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(id, name, outer_field, value, stable)| Field {
            id,
            name,
            outer_field,
            value,
            stable,
        })
}

fn row() -> impl Strategy<Value = Row> {
    (
        opt_string(),
        opt_string(),
        proptest::option::of(proptest::collection::vec(opt_string(), 0..3)),
        opt_string(),
        opt_string(),
        proptest::option::of(proptest::collection::vec(field(), 0..3)),
    )
        .prop_map(|(q, e, mobiles, n, a, fields)| Row {
            qw_user_id: q,
            external_user_id: e,
            mobiles,
            wechat_nickname: n,
            wechat_avatar: a,
            fields,
        })
}

fn page() -> impl Strategy<Value = Page> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        any::<u64>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(proptest::collection::vec(row(), 0..4)),
    )
        .prop_map(|(page_size, page_no, total, total_page, result)| Page {
            page_size,
            page_no,
            total_count: Some(total),
            total_page,
            result,
        })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_response(&body);
    }

    #[test]
    fn never_panics_on_json_like_text(body in r#"[{}\[\]",:0-9a-zA-Z\- ]{0,200}"#) {
        let _ = parse_response(body.as_bytes());
    }

    #[test]
    fn never_panics_on_mutated_valid_page(p in page(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = serde_json::to_vec(&ApiResponse { code: 0, message: None, data: Some(p) }).unwrap();
        let i = cut.index(body.len());
        body[i] = byte;
        let _ = parse_response(&body);
        body.truncate(i);
        let _ = parse_response(&body);
    }

    #[test]
    fn valid_page_round_trips(p in page()) {
        let body = serde_json::to_vec(&ApiResponse { code: 0, message: Some("success".into()), data: Some(p.clone()) }).unwrap();
        prop_assert_eq!(parse_response(&body).unwrap(), ParsedResponse::Page(p));
    }

    #[test]
    fn non_zero_codes_are_business(code in any::<i64>().prop_filter("non-zero", |c| *c != 0), msg in opt_string()) {
        let body = serde_json::to_vec(&ApiResponse::<Page> { code, message: msg.clone(), data: None }).unwrap();
        prop_assert_eq!(parse_response(&body).unwrap(), ParsedResponse::Business { code, message: msg });
    }
}
