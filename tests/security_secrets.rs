//! Secret hygiene: the real binary, given known secrets (the app key, a SASL password, a
//! registry password), through success and failure paths, never prints them — not in a log
//! line (at debug level), an error, a `/metrics`, `/health` or `/ready` answer, nor a panic.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::harness::{sim_config, TestEnv, APP_KEY};
use support::wait_until;
use tanma_connector::commands::exit_code;

const SASL_PASSWORD: &str = "sasl-pw-7f3c9e1d2b6a";
const REGISTRY_PASSWORD: &str = "reg-pw-a8b7c6d5e4f3";
const WRONG_KEY: &str = "wrong-app-key-0b1c2d3e4f";

/// Every secret of this test, and the parts of them long enough to be recognisable.
fn assert_no_secret(what: &str, text: &str) {
    for s in [APP_KEY, SASL_PASSWORD, REGISTRY_PASSWORD, WRONG_KEY] {
        for part in [s, &s[..s.len() / 2], &s[s.len() / 2..]] {
            assert!(
                !text.contains(part),
                "{what} contains (part of) a secret {part:?}:\n{text}"
            );
        }
    }
    assert!(!text.contains("panicked"), "{what}: a panic:\n{text}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM to {pid}");
}

/// Starts the binary with the harness environment plus `extra` (`None` removes a variable), at
/// debug log level, its output going to `log`.
fn spawn(
    env: &TestEnv,
    sub: &str,
    extra: &[(&str, Option<&str>)],
    log: &Path,
) -> tokio::process::Child {
    let mut vars = env.env_vars();
    vars.push(("TANMA_OPS__LOG_LEVEL".into(), "debug".into()));
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        if let Some(v) = v {
            vars.push(((*k).to_string(), (*v).to_string()));
        }
    }
    let file = std::fs::File::create(log).expect("log file");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tanma-connector"))
        .arg(sub)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().expect("clone")))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts")
}

/// Waits up to `deadline` for `child` to exit, then sends SIGTERM and waits for that.
async fn finish(mut child: tokio::process::Child, deadline: Duration) -> Option<i32> {
    let status = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(s) => s.expect("wait"),
        Err(_) => {
            sigterm(child.id().expect("pid"));
            tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .expect("exits after SIGTERM")
                .expect("wait")
        }
    };
    status.code()
}

/// [`spawn`], then [`finish`]; returns the exit code and everything it printed.
async fn run(
    env: &TestEnv,
    sub: &str,
    extra: &[(&str, Option<&str>)],
    deadline: Duration,
    log: &Path,
) -> (Option<i32>, String) {
    let child = spawn(env, sub, extra, log);
    let code = finish(child, deadline).await;
    (code, std::fs::read_to_string(log).expect("log readable"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_errors_or_metrics() {
    let env = TestEnv::new(sim_config(51, 300), |_| {}).await;
    let dir = env.dir.path().to_path_buf();
    let registry_auth = [
        ("TANMA_SCHEMA_REGISTRY__USERNAME", Some("registry-user")),
        ("TANMA_SCHEMA_REGISTRY__PASSWORD", Some(REGISTRY_PASSWORD)),
    ];

    // 1. Success: a full backfill, with the ops server scraped while it runs.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut extra = registry_auth.to_vec();
    extra.push(("TANMA_OPS__LISTEN", Some(listen.as_str())));
    let log = dir.join("success.log");
    let child = spawn(&env, "run", &extra, &log);
    env.wait_clean(Duration::from_secs(120)).await;
    let mut scraped = String::new();
    for path in ["/metrics", "/health", "/ready"] {
        let url = format!("http://{listen}{path}");
        wait_until(&format!("{url} answers"), Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok() }
        })
        .await;
        let body = reqwest::get(&url)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        scraped.push_str(&body);
    }
    assert!(
        scraped.contains("tanma_api_requests_total"),
        "metrics scraped: {scraped}"
    );
    assert_no_secret("/metrics, /health, /ready", &scraped);
    // Still running (it runs until signalled); SIGTERM → clean exit.
    let code = finish(child, Duration::ZERO).await;
    assert_eq!(code, Some(exit_code::OK));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.lines().count() > 10, "{text}");
    assert_no_secret("success run log", &text);

    // 2. Wrong app key: code 1002 → fatal, exit 3, the key named as the cause but not printed.
    let (code, text) = run(
        &env,
        "run",
        &[("TANMA_API__APP_KEY", Some(WRONG_KEY))],
        Duration::from_secs(60),
        &dir.join("wrong-key.log"),
    )
    .await;
    assert_eq!(code, Some(exit_code::UPSTREAM_FATAL), "{text}");
    assert!(text.contains("1002"), "{text}");
    assert_no_secret("wrong key run", &text);
    let (code, text) = run(
        &env,
        "check-config",
        &[("TANMA_API__APP_KEY", Some(WRONG_KEY))],
        Duration::from_secs(60),
        &dir.join("wrong-key-check.log"),
    )
    .await;
    assert_eq!(code, Some(exit_code::CHECK_FAILED), "{text}");
    assert_no_secret("wrong key check-config", &text);

    // 3. SASL against a PLAINTEXT listener: the broker cannot authenticate us.
    let sasl = [
        ("TANMA_KAFKA__SECURITY_PROTOCOL", Some("sasl_plaintext")),
        ("TANMA_KAFKA__SASL_MECHANISM", Some("SCRAM-SHA-512")),
        ("TANMA_KAFKA__SASL_USERNAME", Some("connector")),
        ("TANMA_KAFKA__SASL_PASSWORD", Some(SASL_PASSWORD)),
        ("TANMA_KAFKA__OPERATION_TIMEOUT_MS", Some("5000")),
    ];
    for sub in ["run", "check-config"] {
        let (code, text) = run(
            &env,
            sub,
            &sasl,
            Duration::from_secs(60),
            &dir.join(format!("sasl-{sub}.log")),
        )
        .await;
        assert_ne!(code, Some(exit_code::OK), "{sub} with failing SASL: {text}");
        assert!(!text.trim().is_empty(), "{sub}: no error printed");
        assert_no_secret(&format!("{sub} with failing SASL"), &text);
    }

    // 4. Registry unreachable, with a password.
    let mut unreachable = registry_auth.to_vec();
    unreachable.push((
        "TANMA_SCHEMA_REGISTRY__URL",
        Some("http://127.0.0.1:9/apis/ccompat/v7"),
    ));
    for sub in ["run", "check-config"] {
        let (code, text) = run(
            &env,
            sub,
            &unreachable,
            Duration::from_secs(60),
            &dir.join(format!("registry-{sub}.log")),
        )
        .await;
        assert_ne!(code, Some(exit_code::OK), "{sub} with no registry: {text}");
        assert!(!text.trim().is_empty(), "{sub}: no error printed");
        assert_no_secret(&format!("{sub} with no registry"), &text);
    }

    // 5. A config error while secrets are set: the error lists keys, never values.
    let mut broken = sasl.to_vec();
    broken.push(("TANMA_KAFKA__SASL_MECHANISM", Some("MD5")));
    broken.extend(registry_auth);
    let (code, text) = run(
        &env,
        "run",
        &broken,
        Duration::from_secs(30),
        &dir.join("config.log"),
    )
    .await;
    assert_eq!(code, Some(exit_code::CONFIG), "{text}");
    assert!(text.contains("kafka.sasl_mechanism"), "{text}");
    assert_no_secret("config error", &text);
}
