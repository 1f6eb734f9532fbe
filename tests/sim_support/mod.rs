//! Shared helpers of the simulator tests: a raw signing client and time formatting.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tanma_connector::sim::{SimConfig, SimHandle, TruthRow};
use tanma_connector::upstream::sign::sign;
use tanma_connector::upstream::wire::{
    ApiResponse, ListRequest, Page, Row, LIST_BY_CREATE_TIME_PATH,
};

/// The tests' one condition-with-deadline helper (shared with `tests/support`).
#[path = "../support/wait.rs"]
pub mod wait;
#[allow(unused_imports)]
pub use wait::wait_until;

/// A raw client that signs like the real one.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub app_id: String,
    pub key: SecretString,
    pub tz: chrono_tz::Tz,
}

/// A raw answer.
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Raw {
    pub fn api(&self) -> ApiResponse<Page> {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an API response ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub async fn start(cfg: SimConfig) -> (SimHandle, Client) {
    let app_id = cfg.app_id.clone();
    let key = SecretString::from(cfg.app_key.clone());
    let tz = cfg.time_zone;
    let sim = SimHandle::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts");
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        base: sim.base_url(),
        app_id,
        key,
        tz,
    };
    (sim, client)
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `yyyy-MM-dd HH:mm:ss` in `tz`.
pub fn local(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Client {
    /// Sends `body` with the given headers; `sign` None = computed correctly.
    pub async fn send(
        &self,
        body: &[u8],
        app_id: &str,
        ts_ms: i64,
        sign_override: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Raw {
        let ts = ts_ms.to_string();
        let sig = match sign_override {
            Some(s) => s.to_string(),
            None => sign(app_id, &ts, body, &self.key),
        };
        let mut req = self
            .http
            .post(format!("{}{}", self.base, LIST_BY_CREATE_TIME_PATH))
            .header("appId", app_id)
            .header("timestamp", &ts)
            .header("sign", sig)
            .header("Content-Type", "application/json");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        let resp = req.body(body.to_vec()).send().await.expect("request sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.bytes().await.expect("body read").to_vec();
        Raw {
            status,
            content_type,
            body,
            elapsed: started.elapsed(),
        }
    }

    pub fn body(since: &str, before: &str, page_size: u32, page_no: u32) -> Vec<u8> {
        serde_json::to_vec(&ListRequest {
            since: since.into(),
            before: before.into(),
            page_size,
            page_no,
        })
        .unwrap()
    }

    /// A correctly signed request.
    pub async fn request(&self, since: &str, before: &str, page_size: u32, page_no: u32) -> Raw {
        let body = Self::body(since, before, page_size, page_no);
        self.send(&body, &self.app_id, now_ms(), None, &[]).await
    }

    /// A page of `[since, before)`, times in UTC converted to the sim's zone; must succeed.
    pub async fn page(
        &self,
        since: DateTime<Utc>,
        before: DateTime<Utc>,
        size: u32,
        no: u32,
    ) -> Page {
        let raw = self
            .request(&local(since, self.tz), &local(before, self.tz), size, no)
            .await;
        assert_eq!(raw.status, 200);
        let api = raw.api();
        assert_eq!(api.code, 0, "message {:?}", api.message);
        api.data.expect("data on success")
    }

    /// Every row of a window, page by page.
    pub async fn window(&self, since: DateTime<Utc>, before: DateTime<Utc>, size: u32) -> Vec<Row> {
        let mut out = Vec::new();
        let mut no = 1;
        loop {
            let page = self.page(since, before, size, no).await;
            let rows = page.result.unwrap_or_default();
            if rows.is_empty() {
                return out;
            }
            out.extend(rows);
            no += 1;
        }
    }

    /// `GET` a control path; returns the body.
    pub async fn get(&self, path: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.bytes().await.unwrap().to_vec()
    }

    /// `POST`/`PUT` JSON to a control path; returns status and body.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        json: &str,
    ) -> (u16, Vec<u8>) {
        let r = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("Content-Type", "application/json")
            .body(json.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    /// The truth dump over HTTP.
    pub async fn truth(&self) -> Vec<TruthRow> {
        let body = self.get("/_sim/truth").await;
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("truth line parses"))
            .collect()
    }
}
