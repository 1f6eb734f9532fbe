//! A scripted mock of the list endpoint on `127.0.0.1:0`, for the upstream tests. The mock
//! checks every request's signature with the known test key and answers 1002 when it is wrong,
//! as the real server does.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use secrecy::SecretString;
use serde_json::{json, Value};
use tanma_connector::config::ApiConfig;
use tanma_connector::upstream::sign::{sign, signatures_equal};
use tanma_connector::upstream::wire::{ListRequest, LIST_BY_CREATE_TIME_PATH};

/// The app id every test uses.
pub const APP_ID: &str = "test-app-id";
/// A recognizable key that must never show up in any output.
pub const APP_KEY: &str = "SeCrEt-KeY-7f3a9c-never-print";

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The parsed body.
    pub req: ListRequest,
    /// The raw body bytes.
    pub body: Vec<u8>,
    /// The request headers.
    pub headers: HeaderMap,
    /// Whether `sign` matched `appId + timestamp + body + key`.
    pub sign_ok: bool,
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow server).
    pub delay: Duration,
    /// Send the body as a stream of chunks without Content-Length.
    pub streamed: bool,
}

impl Reply {
    /// HTTP `status` with a JSON body.
    pub fn json(status: u16, v: Value) -> Reply {
        Reply::raw(status, v.to_string().into_bytes())
    }
    /// HTTP `status` with `body` as it is.
    pub fn raw(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
            streamed: false,
        }
    }
    /// HTTP 200 with a business code.
    pub fn code(code: i64, message: &str) -> Reply {
        Reply::json(200, json!({"code": code, "message": message, "data": null}))
    }
    /// A success page.
    pub fn page(page_no: u32, page_size: u32, total: u64, rows: Vec<Value>) -> Reply {
        let total_page = total.div_ceil(u64::from(page_size.max(1)));
        Reply::json(
            200,
            json!({"code": 0, "message": "success", "data": {
                "pageSize": page_size, "pageNo": page_no, "totalCount": total,
                "totalPage": total_page, "result": rows}}),
        )
    }
    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
    /// Delays the answer.
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
    /// Streams the body.
    pub fn streamed(mut self) -> Reply {
        self.streamed = true;
        self
    }
}

type Handler = Arc<dyn Fn(usize, &ListRequest) -> Reply + Send + Sync>;

#[derive(Clone)]
struct MockState {
    handler: Handler,
    log: Arc<Mutex<Vec<Received>>>,
}

/// A running mock.
pub struct Mock {
    /// Base URL to configure (`http://127.0.0.1:PORT`).
    pub base_url: String,
    log: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
    /// Number of requests so far.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a mock whose answer to the `n`-th request (0-based) is `handler(n, request)`.
pub async fn serve(handler: impl Fn(usize, &ListRequest) -> Reply + Send + Sync + 'static) -> Mock {
    let log = Arc::new(Mutex::new(Vec::new()));
    let state = MockState {
        handler: Arc::new(handler),
        log: log.clone(),
    };
    let app = Router::new()
        .route(LIST_BY_CREATE_TIME_PATH, post(handle))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Mock {
        base_url: format!("http://{addr}"),
        log,
        task,
    }
}

async fn handle(State(st): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<ListRequest>(&body) else {
        return Response::builder()
            .status(400)
            .body(Body::from("bad body"))
            .unwrap();
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = SecretString::from(APP_KEY.to_string());
    let expected = sign(h("appId"), h("timestamp"), &body, &key);
    let sign_ok = h("appId") == APP_ID && signatures_equal(&expected, h("sign"));
    let n = {
        let mut log = st.log.lock().unwrap();
        log.push(Received {
            req: req.clone(),
            body: body.to_vec(),
            headers: headers.clone(),
            sign_ok,
        });
        log.len() - 1
    };
    let reply = if sign_ok {
        (st.handler)(n, &req)
    } else {
        Reply::code(1002, "sign check failed")
    };
    if !reply.delay.is_zero() {
        // Simulates a slow server; not used for synchronisation.
        tokio::time::sleep(reply.delay).await;
    }
    let mut b = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    b = b.header("content-type", "application/json");
    for (k, v) in &reply.headers {
        b = b.header(*k, v.as_str());
    }
    let body = if reply.streamed {
        let chunks: Vec<Result<Bytes, std::io::Error>> = reply
            .body
            .chunks(8 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures::stream::iter(chunks))
    } else {
        Body::from(reply.body)
    };
    b.body(body).unwrap()
}

/// A config for the mock: tiny backoffs, fast timeouts, generous rate limit.
pub fn api_config(base_url: &str) -> ApiConfig {
    ApiConfig {
        base_url: base_url.to_string(),
        app_id: APP_ID.to_string(),
        app_key: Some(SecretString::from(APP_KEY.to_string())),
        page_size: 10,
        request_timeout_ms: 2_000,
        max_response_bytes: 1024 * 1024,
        rate_limit_per_sec: 10_000.0,
        rate_limit_burst: 1_000,
        max_attempts: 4,
        backoff_initial_ms: 1,
        backoff_max_ms: 5,
        malformed_attempts: 3,
        clock_skew_attempts: 2,
        max_drift_rereads: 3,
        ..ApiConfig::default()
    }
}

/// Row `i` of a synthetic data set: customer `ext-{i/2}` followed by staff `qw-{i%2}`.
pub fn row(i: usize, nickname: &str) -> Value {
    json!({
        "qwUserId": format!("qw-{}", i % 2),
        "externalUserId": format!("ext-{:05}", i / 2),
        "mobiles": [format!("1590000{i:04}")],
        "wechatNickname": nickname,
        "wechatAvatar": null,
        "fields": [{"id": 680, "name": "电话", "outerField": null, "value": null, "stable": true}]
    })
}

/// The page `req` asks for out of `rows`, with `totalCount = rows.len()`.
pub fn page_of(rows: &[Value], req: &ListRequest) -> Reply {
    let size = req.page_size as usize;
    let start = (req.page_no as usize - 1) * size;
    let slice: Vec<Value> = rows.iter().skip(start).take(size).cloned().collect();
    Reply::page(req.page_no, req.page_size, rows.len() as u64, slice)
}
