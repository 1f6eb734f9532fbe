//! The client's and reader's metrics, with their exact names and labels. One test in this
//! binary, so the global recorder sees only its own traffic.

mod upstream_support;

use metrics_exporter_prometheus::PrometheusBuilder;
use tanma_connector::plan::Window;
use tanma_connector::upstream::wire::ListRequest;
use tanma_connector::upstream::{ApiClient, WindowReader};
use upstream_support::{api_config, page_of, row, serve, Reply};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn requests_retries_waits_and_drift_are_counted() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();

    // 503, then 429, then malformed, then 1003, then ok: one of each retry reason.
    let mock = serve(|n, req: &ListRequest| match n {
        0 => Reply::raw(503, b"busy".to_vec()),
        1 => Reply::raw(429, b"slow".to_vec()),
        2 => Reply::raw(200, b"{".to_vec()),
        3 => Reply::code(1003, "expired"),
        _ => page_of(&[row(0, "a")], req),
    })
    .await;
    let cfg = api_config(&mock.base_url);
    let client = ApiClient::new(&cfg).unwrap();
    let req = ListRequest {
        since: "2024-01-01 08:00:00".into(),
        before: "2024-01-01 09:00:00".into(),
        page_size: 10,
        page_no: 1,
    };
    client.list_page(&req).await.unwrap();

    // A signature failure.
    let bad = serve(|_, _| Reply::code(1002, "bad")).await;
    let _ = ApiClient::new(&api_config(&bad.base_url))
        .unwrap()
        .list_page(&req)
        .await
        .unwrap_err();

    // One drift re-read: the total changes after the first request.
    let drift = serve(|n, req: &ListRequest| {
        let rows: Vec<_> = (0..if n == 0 { 15 } else { 16 })
            .map(|i| row(i, "x"))
            .collect();
        page_of(&rows, req)
    })
    .await;
    let dcfg = api_config(&drift.base_url);
    let since = chrono::DateTime::from_timestamp(1_704_067_200, 0).unwrap();
    let w = Window::new(since, since + chrono::Duration::hours(1));
    WindowReader::new(ApiClient::new(&dcfg).unwrap(), &dcfg)
        .read(w, 1000)
        .await
        .unwrap();

    let text = handle.render();
    let req_total = |o: &str| {
        value(
            &text,
            &format!("tanma_api_requests_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(req_total("http_5xx"), 1.0);
    assert_eq!(req_total("http_429"), 1.0);
    assert_eq!(req_total("malformed"), 1.0);
    assert_eq!(req_total("clock_skew"), 1.0);
    assert_eq!(req_total("signature"), 1.0);
    // 1 from the client test, 2 + 1 from the drifting window (its second pass is complete after
    // page 1: with page 2 of the first pass, every row under the new total was seen).
    assert_eq!(req_total("ok"), 4.0);
    for reason in ["http_5xx", "http_429", "malformed", "clock_skew"] {
        assert_eq!(
            value(
                &text,
                &format!("tanma_api_retries_total{{reason=\"{reason}\"}}")
            ),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(value(&text, "tanma_window_drift_rereads_total"), 1.0);
    assert_eq!(value(&text, "tanma_window_reread_requests_total"), 1.0);
    assert!(!text.contains("tanma_window_incomplete_reads_total 1"));
    assert_eq!(
        value(&text, "tanma_api_request_duration_seconds_count"),
        9.0
    );
    assert_eq!(value(&text, "tanma_api_rate_limit_wait_seconds_count"), 9.0);
}
