//! Broken configurations, run through the real binary: each one exits with code 2 and a message
//! naming the key (or the file), and nothing is written to Kafka — no topic with the test's
//! prefix exists afterwards.

mod support;

use std::process::Stdio;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use support::harness::{sim_config, TestEnv};
use tanma_connector::commands::exit_code;

/// Runs `tanma-connector <args>` with `env` (and `extra` on top, `None` removing a variable);
/// returns the exit code and the combined output. Fails if it does not exit within 60 s.
async fn run(
    env: &TestEnv,
    args: &[&str],
    extra: &[(&str, Option<&str>)],
) -> (Option<i32>, String) {
    let mut vars: Vec<(String, String)> = env.env_vars();
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        if let Some(v) = v {
            vars.push(((*k).to_string(), (*v).to_string()));
        }
    }
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tanma-connector"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`tanma-connector {args:?}` with {extra:?} did not exit"))
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn topics_with_prefix(bootstrap: &str, prefix: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let md = c
        .fetch_metadata(None, Duration::from_secs(15))
        .expect("broker metadata");
    md.topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Arguments, environment changes (`None` removes), texts the output must contain.
type Case<'a> = (Vec<String>, Vec<(&'a str, Option<String>)>, Vec<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_error_exits_2_naming_the_key_and_writes_nothing() {
    let env = TestEnv::new(sim_config(41, 50), |_| {}).await;
    let prefix = env
        .cfg
        .topics
        .events
        .trim_end_matches(".events")
        .to_string();
    let dir = env.dir.path();
    let unknown_key = dir.join("unknown.toml");
    std::fs::write(&unknown_key, "[api]\nbase_urll = \"http://x\"\n").expect("write");
    let not_toml = dir.join("broken.toml");
    std::fs::write(&not_toml, "[api\npage_size = = 3\n").expect("write");
    let secret_in_file = dir.join("secret.toml");
    std::fs::write(&secret_in_file, "[api]\napp_key = \"do-not-echo-4711\"\n").expect("write");
    let missing = dir.join("missing.toml");
    let missing_key_file = dir.join("no-such-key-file");

    let s = |p: &std::path::Path| p.display().to_string();
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![("TANMA_API__PAGE_SIZE", Some("0".into()))],
            vec!["api.page_size".into()],
        ),
        (
            vec![],
            vec![("TANMA_API__PAGE_SIZE", Some("many".into()))],
            vec!["api.page_size".into()],
        ),
        (
            vec![],
            vec![("TANMA_API__APP_KEY", None)],
            vec!["api.app_key".into(), "TANMA_API__APP_KEY".into()],
        ),
        (
            vec![],
            vec![("TANMA_API__BASE_URL", Some("ftp://example".into()))],
            vec!["api.base_url".into()],
        ),
        (
            vec![],
            vec![("TANMA_API__TIME_ZONE", Some("Mars/Olympus".into()))],
            vec!["api.time_zone".into()],
        ),
        (
            vec![],
            vec![("TANMA_WINDOWS__START_TIME", Some("yesterday".into()))],
            vec!["windows.start_time".into()],
        ),
        (
            vec![],
            vec![("TANMA_WINDOWS__CONCURRENCY", Some("0".into()))],
            vec!["windows.concurrency".into()],
        ),
        (
            vec![],
            vec![("TANMA_KAFKA__SECURITY_PROTOCOL", Some("tls".into()))],
            vec!["kafka.security_protocol".into()],
        ),
        (
            vec![],
            vec![("TANMA_KAFKA__SECURITY_PROTOCOL", Some("sasl_ssl".into()))],
            vec!["kafka.sasl_mechanism".into(), "kafka.sasl_password".into()],
        ),
        (
            vec![],
            vec![("TANMA_TOPICS__EVENTS", Some("bad topic!".into()))],
            vec!["topics.events".into()],
        ),
        (
            vec![],
            vec![("TANMA_TOPICS__ON_BAD_RECORD", Some("ignore".into()))],
            vec!["topics.on_bad_record".into()],
        ),
        (
            vec![],
            vec![("TANMA_OPS__LOG_FORMAT", Some("xml".into()))],
            vec!["ops.log_format".into()],
        ),
        (
            vec![],
            vec![("TANMA_OPS__LISTEN", Some("everywhere".into()))],
            vec!["ops.listen".into()],
        ),
        (
            vec![],
            vec![
                ("TANMA_API__APP_KEY", None),
                ("TANMA_API__APP_KEY_FILE", Some(s(&missing_key_file))),
            ],
            vec!["api.app_key_file".into()],
        ),
        (
            vec!["--config".into(), s(&unknown_key)],
            vec![],
            vec!["base_urll".into()],
        ),
        (
            vec!["--config".into(), s(&not_toml)],
            vec![],
            vec![s(&not_toml)],
        ),
        (
            vec!["--config".into(), s(&secret_in_file)],
            vec![],
            vec!["api.app_key".into(), "secrets may not be written".into()],
        ),
        (
            vec!["--config".into(), s(&missing)],
            vec![],
            vec![s(&missing)],
        ),
    ];
    for (args, extra, expect) in &cases {
        for sub in ["run", "check-config"] {
            let mut argv = vec![sub];
            argv.extend(args.iter().map(String::as_str));
            let extra: Vec<(&str, Option<&str>)> =
                extra.iter().map(|(k, v)| (*k, v.as_deref())).collect();
            let (code, out) = run(&env, &argv, &extra).await;
            assert_eq!(
                code,
                Some(exit_code::CONFIG),
                "{argv:?} {extra:?}: exit code; output:\n{out}"
            );
            for e in expect {
                assert!(
                    out.contains(e.as_str()),
                    "{argv:?} {extra:?}: {e:?} not named in:\n{out}"
                );
            }
            assert!(
                !out.contains("do-not-echo-4711"),
                "a secret was echoed:\n{out}"
            );
            assert!(!out.contains("panicked"), "panic:\n{out}");
        }
    }
    let bootstrap = env.infra.bootstrap.clone();
    let p = prefix.clone();
    let created = tokio::task::spawn_blocking(move || topics_with_prefix(&bootstrap, &p))
        .await
        .expect("join");
    assert!(
        created.is_empty(),
        "config errors created topics: {created:?}"
    );

    // Control: the same environment, unbroken, passes check-config, and a run creates the
    // topics (so the check above could fail).
    let (code, out) = run(&env, &["check-config"], &[]).await;
    assert_eq!(code, Some(exit_code::OK), "{out}");
    env.run_until_caught_up().await;
    let bootstrap = env.infra.bootstrap.clone();
    let created = tokio::task::spawn_blocking(move || topics_with_prefix(&bootstrap, &prefix))
        .await
        .expect("join");
    assert_eq!(created.len(), 4, "{created:?}");
}
