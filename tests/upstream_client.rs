//! The API client against a scripted mock server: signing, each fault kind, classification,
//! the rate limit, and that the app key never leaks.

mod upstream_support;

use std::time::{Duration, Instant};

use serde_json::json;
use tanma_connector::error::{Classify, ErrorClass};
use tanma_connector::upstream::wire::ListRequest;
use tanma_connector::upstream::{ApiClient, ApiError};
use upstream_support::{api_config, row, serve, Reply, APP_ID, APP_KEY};

fn request(page_no: u32) -> ListRequest {
    ListRequest {
        since: "2024-01-01 08:00:00".into(),
        before: "2024-01-01 09:00:00".into(),
        page_size: 10,
        page_no,
    }
}

fn ok_page() -> Reply {
    Reply::page(1, 10, 2, vec![row(0, "a"), row(1, "b")])
}

#[tokio::test]
async fn signs_exactly_the_bytes_it_sends() {
    let mock = serve(|_, _| ok_page()).await;
    let client = ApiClient::new(&api_config(&mock.base_url)).unwrap();
    let page = client.list_page(&request(1)).await.unwrap();
    assert_eq!(page.total_count, Some(2));
    assert_eq!(page.result.unwrap().len(), 2);

    let got = mock.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(r.sign_ok, "server-side signature check failed");
    assert_eq!(r.body, serde_json::to_vec(&request(1)).unwrap());
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        !text.contains('\n') && !text.contains(": ") && !text.contains(", "),
        "not compact: {text}"
    );
    assert_eq!(r.headers.get("appId").unwrap(), APP_ID);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert!(
        r.headers.get("appKey").is_none(),
        "appKey header sent by default"
    );
    let ts: i64 = r.headers["timestamp"].to_str().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - ts).abs() < 60_000,
        "timestamp {ts} is not now ({now}) in ms"
    );
}

#[tokio::test]
async fn app_key_header_only_when_configured() {
    let mock = serve(|_, _| ok_page()).await;
    let mut cfg = api_config(&mock.base_url);
    cfg.send_app_key_header = true;
    ApiClient::new(&cfg)
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap();
    assert_eq!(mock.received()[0].headers.get("appKey").unwrap(), APP_KEY);
}

#[tokio::test]
async fn wrong_key_is_rejected_by_server_and_fatal() {
    let mock = serve(|_, _| ok_page()).await;
    let mut cfg = api_config(&mock.base_url);
    cfg.app_key = Some("not-the-key".to_string().into());
    let err = ApiClient::new(&cfg)
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::SignatureRejected { code: 1002, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    let msg = err.to_string();
    assert!(
        msg.contains("api.app_id") && msg.contains("TANMA_API__APP_KEY"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-key"), "{msg}");
    assert_eq!(mock.count(), 1, "1002 must not be retried");
}

#[tokio::test]
async fn server_error_then_success_with_fresh_signatures() {
    let mock = serve(|n, _| match n {
        0 => Reply::raw(503, b"busy".to_vec()),
        1 => Reply::raw(500, b"oops".to_vec()),
        _ => ok_page(),
    })
    .await;
    let client = ApiClient::new(&api_config(&mock.base_url)).unwrap();
    client.list_page(&request(1)).await.unwrap();
    let got = mock.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.sign_ok));
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "body must be the same bytes"
    );
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let mock = serve(|n, _| match n {
        0 => Reply::raw(429, b"slow down".to_vec()).header("retry-after", "1"),
        _ => ok_page(),
    })
    .await;
    let client = ApiClient::new(&api_config(&mock.base_url)).unwrap();
    let started = Instant::now();
    client.list_page(&request(1)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(mock.count(), 2);
    assert!(
        elapsed >= Duration::from_millis(990),
        "waited only {elapsed:?}"
    );
}

#[tokio::test]
async fn slow_response_times_out_and_exhausts_as_retry() {
    let mock = serve(|_, _| ok_page().delayed(Duration::from_secs(3))).await;
    let mut cfg = api_config(&mock.base_url);
    cfg.request_timeout_ms = 150;
    cfg.max_attempts = 2;
    let started = Instant::now();
    let err = ApiClient::new(&cfg)
        .unwrap()
        .list_page(&request(4))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match &err {
        ApiError::Exhausted {
            attempts, reason, ..
        } => {
            assert_eq!((*attempts, *reason), (2, "timeout"));
        }
        other => panic!("expected Exhausted, got {other}"),
    }
    assert_eq!(err.class(), ErrorClass::Retry);
    assert!(
        err.to_string()
            .contains("page 4 of window [2024-01-01 08:00:00"),
        "{err}"
    );
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn connection_refused_is_transport_and_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = api_config(&format!("http://{addr}"));
    cfg.max_attempts = 3;
    let err = ApiClient::new(&cfg)
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Exhausted {
                attempts: 3,
                reason: "transport",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_json_retried_then_reported_with_excerpt() {
    let mock = serve(|_, _| Reply::raw(200, b"<html>gateway says hi</html>".to_vec())).await;
    let err = ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Malformed { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retry);
    let msg = err.to_string();
    assert!(msg.contains("<html>gateway says hi"), "{msg}");
    assert!(
        msg.contains("page 2 of window [2024-01-01 08:00:00, 2024-01-01 09:00:00)"),
        "{msg}"
    );
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn malformed_then_success_and_null_data_is_malformed() {
    let mock = serve(|n, _| match n {
        0 => Reply::json(200, json!({"code": 0, "message": "success", "data": null})),
        1 => Reply::json(200, json!({"code": 0, "data": {"totalCount": "many"}})),
        _ => ok_page(),
    })
    .await;
    ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap();
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn clock_skew_then_success() {
    let mock = serve(|n, _| match n {
        0 => Reply::code(1003, "timestamp expired"),
        _ => ok_page(),
    })
    .await;
    ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap();
    let got = mock.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.sign_ok));
}

#[tokio::test]
async fn clock_skew_forever_is_fatal_and_says_how_far() {
    let server_time = chrono::Utc::now() + chrono::Duration::seconds(300);
    let date = server_time.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let mock =
        serve(move |_, _| Reply::code(1003, "timestamp expired").header("date", date.clone()))
            .await;
    let err = ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::ClockSkew { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    let msg = err.to_string();
    assert!(
        msg.contains("local clock") && msg.contains("behind"),
        "{msg}"
    );
    assert!(
        msg.contains("299 s") || msg.contains("300 s") || msg.contains("301 s"),
        "{msg}"
    );
    // The first attempt plus clock_skew_attempts (2) fresh ones.
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn configured_fatal_code_stops_unknown_code_retries() {
    let mock = serve(|_, _| Reply::code(4001, "quota exhausted")).await;
    let mut cfg = api_config(&mock.base_url);
    cfg.fatal_codes = vec![4001];
    let err = ApiClient::new(&cfg)
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::FatalCode { code: 4001, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert_eq!(mock.count(), 1);

    let mock = serve(|_, _| Reply::code(4001, "quota exhausted")).await;
    let err = ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Exhausted {
                attempts: 4,
                reason: "business_error",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(mock.count(), 4);
}

#[tokio::test]
async fn client_errors_are_fatal_and_signature_codes_in_4xx_are_recognised() {
    let mock = serve(|_, _| Reply::raw(404, b"no such endpoint".to_vec())).await;
    let err = ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert_eq!(mock.count(), 1);

    let mock = serve(|_, _| Reply::json(401, json!({"code": 1002, "message": "bad sign"}))).await;
    let err = ApiClient::new(&api_config(&mock.base_url))
        .unwrap()
        .list_page(&request(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::SignatureRejected { .. }), "{err}");
}

#[tokio::test]
async fn oversize_body_stops_with_clear_error() {
    let big = format!(
        r#"{{"code":0,"data":{{"totalCount":1,"pad":"{}"}}}}"#,
        "x".repeat(300_000)
    );
    for streamed in [false, true] {
        let body = big.clone().into_bytes();
        let mock = serve(move |_, _| {
            let r = Reply::raw(200, body.clone());
            if streamed {
                r.streamed()
            } else {
                r
            }
        })
        .await;
        let mut cfg = api_config(&mock.base_url);
        cfg.max_response_bytes = 64 * 1024;
        let err = ApiClient::new(&cfg)
            .unwrap()
            .list_page(&request(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApiError::ResponseTooLarge { limit: 65536, .. }),
            "streamed={streamed}: {err}"
        );
        assert!(err.to_string().contains("api.max_response_bytes"));
        // The same body fits under a larger cap.
        cfg.max_response_bytes = 1024 * 1024;
        ApiClient::new(&cfg)
            .unwrap()
            .list_page(&request(1))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rate_limit_is_shared_by_clones() {
    let mock = serve(|_, _| ok_page()).await;
    let mut cfg = api_config(&mock.base_url);
    cfg.rate_limit_per_sec = 10.0;
    cfg.rate_limit_burst = 1;
    let a = ApiClient::new(&cfg).unwrap();
    let b = a.clone();
    let started = Instant::now();
    let (ra, rb) = tokio::join!(
        async {
            for _ in 0..3 {
                a.list_page(&request(1)).await?;
            }
            Ok::<_, ApiError>(())
        },
        async {
            for _ in 0..3 {
                b.list_page(&request(1)).await?;
            }
            Ok::<_, ApiError>(())
        }
    );
    ra.unwrap();
    rb.unwrap();
    // 6 requests at 10/s with a burst of 1: at least 5 intervals of 100 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
    assert_eq!(mock.count(), 6);
}

#[tokio::test]
async fn construction_errors_name_their_key() {
    let mut cfg = api_config("http://127.0.0.1:9");
    cfg.app_key = None;
    let err = ApiClient::new(&cfg).unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Config {
                key: "api.app_key",
                ..
            }
        ),
        "{err}"
    );

    let mut cfg = api_config("http://127.0.0.1:9");
    cfg.time_zone = "Mars/Olympus".into();
    let err = ApiClient::new(&cfg).unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Config {
                key: "api.time_zone",
                ..
            }
        ),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let mut cfg = api_config("https://127.0.0.1:9");
    cfg.ca_file = Some(ca);
    let err = ApiClient::new(&cfg).unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Config {
                key: "api.ca_file",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);

    let mut cfg = api_config("ftp://127.0.0.1:9");
    cfg.base_url = "ftp://example".into();
    assert!(ApiClient::new(&cfg).is_err());
}

/// The key must not appear in Debug output, error messages or Debug of errors, on any path.
#[tokio::test]
async fn app_key_never_appears_in_output() {
    let mock = serve(|n, _| match n % 6 {
        0 => Reply::code(1002, "sign error"),
        1 => Reply::code(1003, "expired"),
        2 => Reply::raw(200, b"not json".to_vec()),
        3 => Reply::raw(400, b"bad request".to_vec()),
        4 => Reply::raw(503, b"busy".to_vec()),
        _ => Reply::code(4001, "quota"),
    })
    .await;
    let mut cfg = api_config(&mock.base_url);
    cfg.send_app_key_header = true;
    cfg.max_attempts = 1;
    cfg.malformed_attempts = 1;
    cfg.clock_skew_attempts = 0;
    cfg.fatal_codes = vec![4001];
    let client = ApiClient::new(&cfg).unwrap();
    let mut outputs = vec![format!("{client:?}"), format!("{cfg:?}")];
    for _ in 0..6 {
        let err = client.list_page(&request(1)).await.unwrap_err();
        outputs.push(err.to_string());
        outputs.push(format!("{err:?}"));
    }
    // A key that is not a valid header value, with the header enabled.
    let mut bad = cfg.clone();
    bad.app_key = Some(format!("{APP_KEY}\n").into());
    let err = ApiClient::new(&bad).unwrap_err();
    outputs.push(err.to_string());
    outputs.push(format!("{err:?}"));
    assert_eq!(mock.count(), 6);
    for out in &outputs {
        assert!(!out.contains(APP_KEY), "key leaked in: {out}");
    }
    assert!(outputs[0].contains("redacted"), "{}", outputs[0]);
}
