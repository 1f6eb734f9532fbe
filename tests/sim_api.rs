//! The simulator's API contract: signing, clock skew, parameters, paging, determinism, truth.

mod sim_support;

use chrono::{DateTime, Duration, Utc};
use sim_support::{local, now_ms, start, Client};
use tanma_connector::sim::{SimConfig, CODE_BAD_PARAM, CODE_BAD_SIGNATURE, CODE_CLOCK_SKEW};

fn span(cfg: &SimConfig) -> (DateTime<Utc>, DateTime<Utc>) {
    (cfg.start, cfg.end)
}

#[tokio::test]
async fn signature_is_checked() {
    let cfg = SimConfig::for_tests(1, 50);
    let (s, e) = span(&cfg);
    let (_sim, c) = start(cfg).await;
    let body = Client::body(&local(s, c.tz), &local(e, c.tz), 10, 1);

    let ok = c.send(&body, &c.app_id, now_ms(), None, &[]).await;
    assert_eq!((ok.status, ok.api().code), (200, 0));
    assert!(ok.content_type.starts_with("application/json"));

    // The appKey header is ignored, even when wrong.
    let with_key = c
        .send(&body, &c.app_id, now_ms(), None, &[("appKey", "nonsense")])
        .await;
    assert_eq!(with_key.api().code, 0);

    let wrong_sign = c
        .send(&body, &c.app_id, now_ms(), Some(&"0".repeat(64)), &[])
        .await;
    assert_eq!(wrong_sign.status, 200);
    let api = wrong_sign.api();
    assert_eq!(api.code, CODE_BAD_SIGNATURE);
    assert_eq!(api.message.as_deref(), Some("签名错误"));
    assert!(api.data.is_none());
    assert!(String::from_utf8_lossy(&wrong_sign.body).contains("\"data\":null"));

    // Signed by another app id: unknown appId.
    let other = c.send(&body, "someone-else", now_ms(), None, &[]).await;
    assert_eq!(other.api().code, CODE_BAD_SIGNATURE);

    // Signature over different bytes than the ones sent (re-serialized with spaces).
    let ts = now_ms();
    let sig = tanma_connector::upstream::sign::sign(&c.app_id, &ts.to_string(), &body, &c.key);
    let spaced = String::from_utf8(body.clone()).unwrap().replace(',', ", ");
    let tampered = c
        .send(spaced.as_bytes(), &c.app_id, ts, Some(&sig), &[])
        .await;
    assert_eq!(tampered.api().code, CODE_BAD_SIGNATURE);

    // Missing headers.
    let bare = c
        .http
        .post(format!("{}/api/v2/customer/qw-list-by-create-time", c.base))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 200);
    let bare: tanma_connector::upstream::wire::ApiResponse<tanma_connector::upstream::wire::Page> =
        serde_json::from_slice(&bare.bytes().await.unwrap()).unwrap();
    assert_eq!(bare.code, CODE_BAD_SIGNATURE);
}

#[tokio::test]
async fn clock_skew_is_rejected() {
    let cfg = SimConfig {
        max_clock_skew_secs: 300,
        ..SimConfig::for_tests(1, 20)
    };
    let (s, e) = span(&cfg);
    let (_sim, c) = start(cfg).await;
    let body = Client::body(&local(s, c.tz), &local(e, c.tz), 10, 1);
    for (offset_s, code) in [
        (-200, 0),
        (200, 0),
        (-320, CODE_CLOCK_SKEW),
        (400, CODE_CLOCK_SKEW),
    ] {
        let r = c
            .send(&body, &c.app_id, now_ms() + offset_s * 1000, None, &[])
            .await;
        assert_eq!(r.api().code, code, "offset {offset_s}s");
    }
    // Seconds instead of milliseconds is a skew of decades.
    let r = c.send(&body, &c.app_id, now_ms() / 1000, None, &[]).await;
    assert_eq!(r.api().code, CODE_CLOCK_SKEW);
}

#[tokio::test]
async fn parameters_are_validated() {
    let cfg = SimConfig::for_tests(1, 20);
    let (s, e) = span(&cfg);
    let (_sim, c) = start(cfg).await;
    let (ls, le) = (local(s, c.tz), local(e, c.tz));
    for (since, before, size, no) in [
        (ls.as_str(), le.as_str(), 101, 1),
        (ls.as_str(), le.as_str(), 0, 1),
        (ls.as_str(), le.as_str(), 10, 0),
        ("2024-01-01T00:00:00", le.as_str(), 10, 1),
        ("2024/01/01 00:00:00", le.as_str(), 10, 1),
        ("2024-1-1 0:0:0", le.as_str(), 10, 1),
        (le.as_str(), ls.as_str(), 10, 1),
    ] {
        let r = c.request(since, before, size, no).await;
        assert_eq!(r.status, 200);
        let api = r.api();
        assert_eq!(api.code, CODE_BAD_PARAM, "{since} {before} {size} {no}");
        assert!(api.data.is_none());
    }
    let not_json = c.send(b"{\"since\":", &c.app_id, now_ms(), None, &[]).await;
    assert_eq!(not_json.api().code, CODE_BAD_PARAM);
    // The largest page size is fine.
    assert_eq!(c.request(&ls, &le, 100, 1).await.api().code, 0);
}

#[tokio::test]
async fn paging_follows_the_documentation() {
    let cfg = SimConfig::for_tests(5, 300);
    let (s, e) = span(&cfg);
    let (sim, c) = start(cfg).await;
    let truth = sim.control().truth();
    let total = truth.len() as u64;
    assert!(total >= 300, "every customer has at least one relation");

    let size = 7u32;
    let first = c.page(s, e, size, 1).await;
    assert_eq!(first.total_count, Some(total));
    let pages = total.div_ceil(u64::from(size)) as u32;
    assert_eq!(first.total_page, Some(pages));
    assert_eq!(first.page_size, Some(size));
    assert_eq!(first.page_no, Some(1));
    assert_eq!(first.result.as_ref().map(Vec::len), Some(7));

    let last = c.page(s, e, size, pages).await;
    let rem = (total - u64::from(size) * u64::from(pages - 1)) as usize;
    assert_eq!(last.result.as_ref().map(Vec::len), Some(rem));

    let past = c.page(s, e, size, pages + 1).await;
    assert_eq!(past.result, Some(vec![]));
    assert_eq!(past.total_count, Some(total));
    assert_eq!(past.page_no, Some(pages + 1));
    let far = c.page(s, e, size, u32::MAX).await;
    assert_eq!(far.result, Some(vec![]));

    // An empty window.
    let before_all = s - Duration::days(1);
    let empty = c.page(before_all, s, 10, 1).await;
    assert_eq!((empty.total_count, empty.total_page), (Some(0), Some(0)));
    assert_eq!(empty.result, Some(vec![]));
}

#[tokio::test]
async fn truth_matches_paging_and_windows_are_half_open() {
    let cfg = SimConfig::for_tests(9, 400);
    let (s, e) = span(&cfg);
    let (sim, c) = start(cfg).await;
    let truth = c.truth().await;
    assert_eq!(
        truth,
        sim.control().truth(),
        "HTTP and in-process truth agree"
    );

    let all = c.window(s, e, 100).await;
    let truth_rows: Vec<_> = truth.iter().map(|t| t.row.clone()).collect();
    assert_eq!(
        all, truth_rows,
        "paging the whole span serves the truth, in order"
    );

    // Order: (addTime, externalUserId, qwUserId).
    for w in truth.windows(2) {
        let k = |t: &tanma_connector::sim::TruthRow| {
            (
                t.add_time,
                t.row.external_user_id.clone(),
                t.row.qw_user_id.clone(),
            )
        };
        assert!(k(&w[0]) < k(&w[1]));
    }

    // Cut at an exact add time: the relation belongs to the window that starts there.
    let pivot = truth[truth.len() / 2].add_time;
    let left = c.window(s, pivot, 100).await;
    let right = c.window(pivot, e, 100).await;
    assert_eq!(left.len() + right.len(), truth.len());
    assert!(right.contains(&truth[truth.len() / 2].row));
    assert!(!left.contains(&truth[truth.len() / 2].row));
    let expected_left = truth.iter().filter(|t| t.add_time < pivot).count();
    assert_eq!(left.len(), expected_left);

    // Daily windows in the sim's zone cover everything exactly once.
    let mut joined = Vec::new();
    let mut t = s;
    while t < e {
        let next = (t + Duration::days(1)).min(e);
        joined.extend(c.window(t, next, 100).await);
        t = next;
    }
    assert_eq!(joined, truth_rows);
}

#[tokio::test]
async fn time_zone_of_since_and_before_is_the_sims() {
    let cfg = SimConfig::for_tests(3, 200);
    let (s, e) = span(&cfg);
    let (sim, c) = start(cfg).await;
    let truth = sim.control().truth();
    let t = truth[10].add_time;
    // Written as UTC wall-clock time, the one-second window lands eight hours off.
    let utc_text = |d: DateTime<Utc>| d.format("%Y-%m-%d %H:%M:%S").to_string();
    let as_utc = c
        .request(&utc_text(t), &utc_text(t + Duration::seconds(1)), 100, 1)
        .await
        .api()
        .data
        .unwrap();
    assert!(!as_utc.result.unwrap().contains(&truth[10].row));
    let one_sec = c.page(t, t + Duration::seconds(1), 100, 1).await;
    assert!(one_sec.result.unwrap().contains(&truth[10].row));
    let _ = (s, e);
}

#[tokio::test]
async fn same_seed_gives_same_dataset() {
    let a = start(SimConfig::for_tests(77, 500)).await.0;
    let b = start(SimConfig::for_tests(77, 500)).await.0;
    let d = start(SimConfig::for_tests(78, 500)).await.0;
    let (ta, tb, td) = (
        a.control().truth(),
        b.control().truth(),
        d.control().truth(),
    );
    assert_eq!(ta, tb);
    assert_ne!(ta, td);

    // Realistic content is present somewhere in the dataset.
    let rows: Vec<_> = ta.iter().map(|t| &t.row).collect();
    assert!(rows
        .iter()
        .all(|r| r.external_user_id.as_ref().is_some_and(|x| x.len() == 32)));
    assert!(rows.iter().any(|r| r.wechat_nickname.is_none()));
    assert!(rows
        .iter()
        .any(|r| r.wechat_nickname.as_deref() == Some("")));
    assert!(rows
        .iter()
        .any(|r| r.wechat_nickname.as_deref().is_some_and(|n| !n.is_ascii())));
    assert!(rows.iter().any(|r| r.wechat_avatar.is_none()));
    assert!(rows.iter().any(|r| r
        .mobiles
        .as_ref()
        .is_some_and(|m| m.iter().any(Option::is_none))));
    assert!(rows
        .iter()
        .any(|r| r.mobiles.as_ref().is_some_and(|m| m.len() >= 3)));
    let fields: Vec<_> = rows
        .iter()
        .flat_map(|r| r.fields.iter().flatten())
        .collect();
    assert!(fields
        .iter()
        .any(|f| f.id == Some(687) && f.name.as_deref() == Some("性别 ")));
    assert!(fields
        .iter()
        .any(|f| f.stable == Some(false) && f.outer_field.as_deref() == Some("job")));
    assert!(fields.iter().any(|f| f.value.as_deref() == Some("")));
    assert!(fields.iter().any(|f| f.value.is_none()));
    let staff: std::collections::HashSet<_> = rows.iter().map(|r| r.qw_user_id.clone()).collect();
    assert!(
        staff.len() > 50 && staff.len() <= 200,
        "staff pool used: {}",
        staff.len()
    );
}
