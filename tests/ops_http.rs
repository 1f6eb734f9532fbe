//! The ops server over real HTTP on 127.0.0.1:0: metrics scrape, liveness, readiness, shutdown.

use std::time::Duration;

use tanma_connector::ops::metrics::{self, names};
use tanma_connector::ops::{serve, Health};
use tokio_util::sync::CancellationToken;

#[path = "support/wait.rs"]
mod wait;

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("ops server reachable");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

#[tokio::test]
async fn metrics_endpoint_shows_described_counters_and_buckets() {
    let handle = metrics::install().expect("recorder installs");
    // Idempotent.
    metrics::install().expect("second install returns the same handle");
    let token = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        handle,
        Health::new(Duration::from_secs(60)),
        token.clone(),
    )
    .await
    .expect("binds");
    assert_ne!(server.local_addr.port(), 0, "the real port is reported");

    ::metrics::counter!(names::EVENTS_TOTAL, "type" => "CREATED").increment(3);
    ::metrics::counter!(names::EVENTS_TOTAL, "type" => "UPDATED").increment(1);
    ::metrics::histogram!(names::KAFKA_COMMIT_DURATION_SECONDS).record(0.03);
    ::metrics::gauge!(names::WATERMARK_LAG_SECONDS).set(42.0);

    let url = format!("http://{}/metrics", server.local_addr);
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let body = resp.text().await.unwrap();

    assert!(body.contains("# TYPE tanma_events_total counter"), "{body}");
    assert!(
        body.contains("# HELP tanma_events_total Change events"),
        "{body}"
    );
    assert!(
        body.contains("tanma_events_total{type=\"CREATED\"} 3"),
        "{body}"
    );
    assert!(
        body.contains("tanma_events_total{type=\"UPDATED\"} 1"),
        "{body}"
    );
    // Explicit buckets: a real histogram, 0.03 s falls in le=0.05 but not le=0.025.
    assert!(
        body.contains("# TYPE tanma_kafka_commit_duration_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("tanma_kafka_commit_duration_seconds_bucket{le=\"0.025\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("tanma_kafka_commit_duration_seconds_bucket{le=\"0.05\"} 1"),
        "{body}"
    );
    assert!(body.contains("tanma_watermark_lag_seconds 42"), "{body}");
    // Health::new publishes tanma_ready 0.
    assert!(body.contains("tanma_ready 0"), "{body}");

    token.cancel();
    let joined = tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("server stops after cancellation");
    assert!(matches!(joined, Ok(Ok(()))), "{joined:?}");
}

#[tokio::test]
async fn health_turns_503_when_beats_stop_and_recovers() {
    let handle = metrics::install().unwrap();
    let health = Health::new(Duration::from_millis(300));
    let token = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        handle,
        health.clone(),
        token.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/health", server.local_addr);

    health.beat();
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    // No more beats: must go 503 once the deadline passes.
    let url2 = url.clone();
    wait::wait_until(
        "/health to turn 503 without beats",
        Duration::from_secs(5),
        || {
            let url = url2.clone();
            async move { get(&url).await.0 == 503 }
        },
    )
    .await;
    assert!(!health.is_alive());
    let (_, body) = get(&url).await;
    assert!(body.contains("\"status\":\"stalled\""), "{body}");

    health.beat();
    assert_eq!(get(&url).await.0, 200, "a beat makes it healthy again");
    token.cancel();
}

#[tokio::test]
async fn ready_goes_from_503_with_reason_to_200_and_back_on_shutdown() {
    let handle = metrics::install().unwrap();
    let health = Health::new(Duration::from_secs(60));
    let token = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        handle,
        health.clone(),
        token.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/ready", server.local_addr);

    let (status, body) = get(&url).await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["reason"], "starting");

    health.set_ready(false, "restoring state");
    let (status, body) = get(&url).await;
    assert_eq!(status, 503);
    assert!(body.contains("restoring state"), "{body}");

    health.set_ready(true, "state restored, broker reachable");
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    assert!(health.readiness().0);

    let (status, _) = get(&format!("http://{}/nope", server.local_addr)).await;
    assert_eq!(status, 404);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("server stops")
        .expect("task joins")
        .expect("clean stop");
    assert!(
        reqwest::get(&url).await.is_err(),
        "listener is closed after shutdown"
    );
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let handle = metrics::install().unwrap();
    let token = CancellationToken::new();
    let first = serve(
        "127.0.0.1:0".parse().unwrap(),
        handle.clone(),
        Health::new(Duration::from_secs(1)),
        token.clone(),
    )
    .await
    .unwrap();
    let err = serve(
        first.local_addr,
        handle,
        Health::new(Duration::from_secs(1)),
        token.clone(),
    )
    .await
    .expect_err("port already in use");
    let msg = err.to_string();
    assert!(msg.contains(&first.local_addr.to_string()), "{msg}");
    use tanma_connector::error::{Classify, ErrorClass};
    assert_eq!(err.class(), ErrorClass::Fatal);
    token.cancel();
}

/// The compose healthcheck speaks raw HTTP/1.0 through bash's /dev/tcp; the server must answer it.
#[tokio::test]
async fn answers_plain_http_1_0_like_the_compose_healthcheck() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let handle = metrics::install().unwrap();
    let health = Health::new(Duration::from_secs(60));
    health.set_ready(true, "ok");
    let token = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        handle,
        health,
        token.clone(),
    )
    .await
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(server.local_addr)
        .await
        .unwrap();
    s.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("HTTP/1.0 response ends with the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.contains(" 200 "), "{first}");
    token.cancel();
}
