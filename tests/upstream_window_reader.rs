//! The window reader against a scripted mock: paging, the request budget, splitting, drift
//! detection and re-reads, rejected rows.

mod upstream_support;

use std::sync::{Arc, Mutex};

use chrono::DateTime;
use serde_json::{json, Value};
use tanma_connector::plan::Window;
use tanma_connector::upstream::wire::ListRequest;
use tanma_connector::upstream::{ApiClient, WindowOutcome, WindowRead, WindowReader};
use upstream_support::{api_config, page_of, row, serve, Mock, Reply};

/// The rows of `req`'s page of `all`.
fn page_rows(all: &[Value], req: &ListRequest) -> Vec<Value> {
    let size = req.page_size as usize;
    all.iter()
        .skip((req.page_no as usize - 1) * size)
        .take(size)
        .cloned()
        .collect()
}

fn window(secs: i64) -> Window {
    let since = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    Window::new(since, since + chrono::Duration::seconds(secs))
}

fn reader(mock: &Mock) -> WindowReader {
    let cfg = api_config(&mock.base_url);
    WindowReader::new(ApiClient::new(&cfg).unwrap(), &cfg)
}

fn complete(o: WindowOutcome) -> WindowRead {
    match o {
        WindowOutcome::Complete(r) => r,
        other => panic!("expected Complete, got {other:?}"),
    }
}

fn dataset(n: usize) -> Vec<Value> {
    (0..n).map(|i| row(i, "v1")).collect()
}

fn keys(r: &WindowRead) -> Vec<(String, String)> {
    r.relations
        .iter()
        .map(|(e, rel)| (e.clone(), rel.qw_user_id.clone()))
        .collect()
}

fn expected_keys(n: usize) -> Vec<(String, String)> {
    let mut k: Vec<_> = (0..n)
        .map(|i| (format!("ext-{:05}", i / 2), format!("qw-{}", i % 2)))
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn reads_every_page_with_minimum_requests() {
    for (n, pages) in [(95usize, 10u32), (100, 10), (1, 1), (10, 1), (11, 2)] {
        let rows = dataset(n);
        // Serve the rows in an order that is not the sorted one.
        let mut shuffled = rows.clone();
        shuffled.reverse();
        let mock = serve(move |_, req| page_of(&shuffled, req)).await;
        let r = complete(reader(&mock).read(window(3600), 1000).await.unwrap());
        assert_eq!(r.total_count, n as u64);
        assert_eq!(keys(&r), expected_keys(n), "n={n}");
        assert_eq!(r.requests, pages, "n={n}");
        assert_eq!(mock.count() as u32, pages, "n={n}");
        let page_nos: Vec<u32> = mock.received().iter().map(|x| x.req.page_no).collect();
        assert_eq!(page_nos, (1..=pages).collect::<Vec<_>>());
        assert!(r.complete && r.drift_rereads == 0 && r.rejected.is_empty());
        assert_eq!((r.reread_requests, r.pages.max(1)), (0, pages));
        // The time zone conversion reached the wire.
        let first = &mock.received()[0].req;
        assert_eq!(
            (first.since.as_str(), first.before.as_str()),
            ("2024-01-01 08:00:00", "2024-01-01 09:00:00")
        );
    }
}

#[tokio::test]
async fn empty_window_costs_one_request() {
    let mock = serve(|_, req| page_of(&[], req)).await;
    let r = complete(reader(&mock).read(window(60), 1000).await.unwrap());
    assert_eq!((r.total_count, r.requests, r.relations.len()), (0, 1, 0));
    assert_eq!(mock.count(), 1);
}

#[tokio::test]
async fn too_large_window_stops_after_first_page_unless_one_second() {
    let rows = Arc::new(dataset(95));
    let r2 = rows.clone();
    let mock = serve(move |_, req| page_of(&r2, req)).await;
    match reader(&mock).read(window(2), 50).await.unwrap() {
        WindowOutcome::TooLarge {
            window: w,
            total_count,
        } => {
            assert_eq!((w, total_count), (window(2), 95));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.count(), 1);
    // A one-second window cannot be split: read it whole.
    let r = complete(reader(&mock).read(window(1), 50).await.unwrap());
    assert_eq!(r.relations.len(), 95);
}

#[tokio::test]
async fn rejected_rows_are_kept_with_their_error_and_count_towards_total() {
    let mut rows = dataset(12);
    rows[3] = json!({"qwUserId": "qw-x", "externalUserId": null, "wechatNickname": "broken"});
    rows[11]["fields"] = json!([{"id": null, "name": "no id"}]);
    let mock = serve(move |_, req| page_of(&rows, req)).await;
    let r = complete(reader(&mock).read(window(60), 1000).await.unwrap());
    assert_eq!(r.relations.len(), 10);
    assert_eq!(r.rejected.len(), 2);
    assert!(
        r.complete && r.drift_rereads == 0,
        "rejected rows are not drift"
    );
    let errors: Vec<&str> = r.rejected.iter().map(|x| x.error.as_str()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("page 1") && e.contains("externalUserId")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("page 2") && e.contains("fields[0].id")),
        "{errors:?}"
    );
    assert!(r.rejected.iter().any(|x| x.raw_json.contains("broken")));
}

/// A live data set that the handler may change between requests.
fn live(rows: Vec<Value>) -> Arc<Mutex<Vec<Value>>> {
    Arc::new(Mutex::new(rows))
}

#[tokio::test]
async fn insert_during_read_changes_total_and_is_reread() {
    let data = live(dataset(30));
    let d = data.clone();
    // After page 1 of the first pass, a new relation sorts to the front: pages shift.
    let mock = serve(move |n, req: &ListRequest| {
        let mut rows = d.lock().unwrap();
        if n == 1 {
            rows.insert(0, row(30, "new"));
        }
        page_of(&rows, req)
    })
    .await;
    let r = complete(reader(&mock).read(window(60), 1000).await.unwrap());
    assert_eq!(r.drift_rereads, 1);
    assert!(r.complete);
    assert_eq!(keys(&r), expected_keys(31));
    // First pass: 3 pages planned (+1 after the total grew). Pages 2-4 of it and page 1 of the
    // second pass saw all 31 rows under the new total: the read is complete there.
    assert_eq!((r.requests, r.reread_requests), (5, 1));
}

#[tokio::test]
async fn duplicate_across_pages_is_reread() {
    let rows = dataset(25);
    let mock = serve(move |n, req: &ListRequest| {
        if n == 1 {
            // Page 2 of the first pass repeats the last row of page 1 and drops one of its own,
            // as when a row before it was deleted and another added at the end.
            let mut shifted = rows.clone();
            shifted.remove(0);
            shifted.push(row(99, "late"));
            shifted.truncate(25);
            return page_of(&shifted, req);
        }
        page_of(&rows, req)
    })
    .await;
    let r = complete(reader(&mock).read(window(60), 1000).await.unwrap());
    assert_eq!(r.drift_rereads, 1);
    assert!(r.complete);
    assert_eq!(keys(&r), expected_keys(25));
    // The first pass missed row 10 only; page 2 of the second pass brought it.
    assert_eq!(r.requests, 5);
}

#[tokio::test]
async fn missing_rows_are_reread() {
    let rows = dataset(25);
    let mock = serve(move |n, req: &ListRequest| {
        let reply = page_of(&rows, req);
        if n == 2 {
            // The last page of the first pass comes back short; totalCount still says 25.
            let short: Vec<Value> = rows[20..24].to_vec();
            return Reply::page(req.page_no, req.page_size, 25, short);
        }
        reply
    })
    .await;
    let r = complete(reader(&mock).read(window(60), 1000).await.unwrap());
    assert_eq!((r.drift_rereads, r.complete), (1, true));
    assert_eq!(keys(&r), expected_keys(25));
}

#[tokio::test]
async fn empty_page_before_the_end_is_drift() {
    let rows = dataset(25);
    let mock = serve(move |n, req: &ListRequest| {
        if n == 1 {
            return Reply::page(2, 10, 25, vec![]);
        }
        page_of(&rows, req)
    })
    .await;
    let r = complete(reader(&mock).read(window(60), 1000).await.unwrap());
    assert_eq!((r.drift_rereads, r.complete), (1, true));
    assert_eq!(keys(&r), expected_keys(25));
    // The first pass stopped at the empty page 2: 2 + 3 requests.
    assert_eq!(r.requests, 5);
}

#[tokio::test]
async fn persistent_drift_returns_union_of_everything_seen_latest_wins() {
    let data = live(dataset(20));
    let d = data.clone();
    // The last request whose page carried relation 5.
    let last_seen = Arc::new(Mutex::new(None::<usize>));
    let ls = last_seen.clone();
    // Every request inserts a new relation at the front and renames relation 5.
    let mock = serve(move |n, req: &ListRequest| {
        let mut rows = d.lock().unwrap();
        let pos = rows
            .iter()
            .position(|r| r["externalUserId"] == "ext-00002" && r["qwUserId"] == "qw-1")
            .unwrap();
        rows[pos]["wechatNickname"] = json!(format!("v{n}"));
        rows.insert(0, row(1000 + n, "new"));
        let reply = page_of(&rows, req);
        let page: Value = serde_json::from_slice(&reply.body).unwrap();
        if page["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["wechatNickname"] == format!("v{n}"))
        {
            *ls.lock().unwrap() = Some(n);
        }
        reply
    })
    .await;
    // A one-second window cannot be halved (a wider one would be, and each half re-read; the
    // simulator test `upstream_sim` covers that path, as this mock ignores the window). Every
    // page has a new totalCount, so the read never completes: after `max_read_passes` passes
    // it returns the union of what it saw, marked incomplete.
    let mut cfg = api_config(&mock.base_url);
    cfg.max_read_passes = 4;
    let r = complete(
        WindowReader::new(ApiClient::new(&cfg).unwrap(), &cfg)
            .read(window(1), 1000)
            .await
            .unwrap(),
    );
    assert!(!r.complete);
    assert_eq!(r.drift_rereads, 3);
    // Every original relation was seen in some pass and none is lost.
    let got = keys(&r);
    for k in expected_keys(20) {
        assert!(got.contains(&k), "lost {k:?}");
    }
    assert!(got.len() > 20);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, got, "sorted and unique");
    // Relation 5 carries the content of the latest request that returned it.
    let rel5 = r
        .relations
        .iter()
        .find(|(e, rel)| e == "ext-00002" && rel.qw_user_id == "qw-1")
        .unwrap();
    let last_seen_n = last_seen.lock().unwrap().unwrap();
    assert_eq!(
        rel5.1.nickname.as_deref(),
        Some(format!("v{last_seen_n}").as_str())
    );
}

/// `rows` in an order drawn from `seed`: one execution of `ORDER BY addTime` over rows that all
/// share one add time.
fn shuffled(rows: &[Value], seed: usize) -> Vec<Value> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut out = rows.to_vec();
    out.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed as u64));
    out
}

/// A bulk second served in a new order on every request: one pass sees about two thirds of the
/// rows, so the reader reads again until the union of its passes holds every row.
#[tokio::test]
async fn a_second_in_unstable_order_is_read_until_complete() {
    let rows = dataset(95);
    let mock = serve(move |n, req: &ListRequest| page_of(&shuffled(&rows, n), req)).await;
    let r = complete(reader(&mock).read(window(1), 50).await.unwrap());
    assert!(r.complete);
    assert_eq!(keys(&r), expected_keys(95));
    assert_eq!(r.total_count, 95);
    assert_eq!(r.pages, 10);
    assert!(r.drift_rereads >= 1 && r.requests > 10, "{r:?}");
    assert_eq!(r.reread_requests, r.requests - 10);
    assert_eq!(mock.count() as u32, r.requests);
}

/// A row the endpoint counts but never serves: the read stays incomplete after
/// `max_read_passes` passes and keeps every row it saw.
#[tokio::test]
async fn a_read_that_never_sees_every_row_is_incomplete() {
    let rows = dataset(25);
    let mock = serve(move |n, req: &ListRequest| {
        let mut page: Vec<Value> = shuffled(&rows[..24], n);
        page.push(rows[0].clone());
        Reply::page(req.page_no, req.page_size, 25, page_rows(&page, req))
    })
    .await;
    let mut cfg = api_config(&mock.base_url);
    cfg.max_read_passes = 3;
    let reader = WindowReader::new(ApiClient::new(&cfg).unwrap(), &cfg);
    let r = complete(reader.read(window(1), 1000).await.unwrap());
    assert!(!r.complete);
    assert_eq!(keys(&r), expected_keys(24));
    assert_eq!((r.requests, r.drift_rereads), (9, 2));
}

/// A row removed in the middle of the read: the union of the passes still holds it, but the
/// count starts again under the new totalCount, and the complete read leaves it out.
#[tokio::test]
async fn a_row_removed_during_the_read_is_not_in_the_complete_read() {
    let rows = dataset(40);
    let mock = serve(move |n, req: &ListRequest| {
        let live: Vec<Value> = if n < 3 {
            rows.clone()
        } else {
            rows.iter()
                .filter(|r| r["externalUserId"] != "ext-00003")
                .cloned()
                .collect()
        };
        page_of(&shuffled(&live, n), req)
    })
    .await;
    let r = complete(reader(&mock).read(window(1), 1000).await.unwrap());
    assert!(r.complete);
    assert_eq!(r.total_count, 38);
    let want: Vec<_> = expected_keys(40)
        .into_iter()
        .filter(|(e, _)| e != "ext-00003")
        .collect();
    assert_eq!(keys(&r), want);
}

#[tokio::test]
async fn api_errors_pass_through() {
    let mock = serve(|n, req: &ListRequest| {
        if n == 1 {
            return Reply::code(1002, "bad sign");
        }
        page_of(&dataset(30), req)
    })
    .await;
    let err = reader(&mock).read(window(60), 1000).await.unwrap_err();
    assert!(err.to_string().contains("page 2 of window"), "{err}");
}
