//! The configuration files shipped for deployment load and validate with the real loader:
//! `deploy/compose/connector.toml` and a config rendered by the Helm chart from values with large
//! numbers and tricky strings (`tests/data/helm-rendered-large-numbers.json`, kept equal to the
//! chart's output by `scripts/validate-deploy`) always, and every Helm-rendered `config.json`
//! when `scripts/validate-deploy` points `OPS_RENDERED_CONFIG_DIR` at them.
//!
//! Secrets are mounted files in production; here every `/etc/tanma/secrets/` path is pointed at
//! a temporary directory holding dummy values, and the compose config gets an `app_key_file`.

use std::path::{Path, PathBuf};

use tanma_connector::config::Config;

const SECRET_DIR: &str = "/etc/tanma/secrets/";

fn secrets_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["app-key", "sasl-password", "schema-registry-password"] {
        std::fs::write(dir.path().join(name), "dummy-secret\n").unwrap();
    }
    dir
}

/// Loads `text` as a config file in the format of `origin`'s extension, with secret file paths
/// redirected to `secrets`.
fn load(text: &str, secrets: &Path, origin: &Path) -> Config {
    let redirected = text.replace(SECRET_DIR, &format!("{}/", secrets.display()));
    let ext = origin
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("toml");
    let file = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), redirected).unwrap();
    match Config::load(Some(file.path())) {
        Ok(c) => c,
        Err(e) => panic!("{} does not load: {e}", origin.display()),
    }
}

#[test]
fn compose_config_loads() {
    let secrets = secrets_dir();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/compose/connector.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Compose passes the key as TANMA_API__APP_KEY; a file stands in for it here.
    let text = text.replacen(
        "[api]\n",
        &format!("[api]\napp_key_file = \"{SECRET_DIR}app-key\"\n"),
        1,
    );
    let c = load(&text, secrets.path(), &path);
    assert_eq!(c.api.base_url, "http://sim:18080");
    assert_eq!(c.kafka.bootstrap_servers, "kafka:9092");
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/tanma"));
    assert_eq!(c.ops.listen, "0.0.0.0:9464");
}

/// The values of `helm/tanma-connector/ci/large-numbers-tricky-strings-values.yaml`, as the
/// connector must see them: integers of any size as integers, strings byte for byte.
fn assert_large_numbers_and_tricky_strings(c: &Config, origin: &Path) {
    let o = origin.display();
    assert_eq!(c.windows.rescan[0].max_age_secs, 2_592_000, "{o}");
    assert_eq!(c.windows.rescan[1].every_secs, 604_800, "{o}");
    assert_eq!(c.windows.window_secs, 2_592_000, "{o}");
    assert_eq!(c.windows.split_threshold, 1_000_000, "{o}");
    assert_eq!(c.state.restore_timeout_ms, 3_600_000, "{o}");
    assert_eq!(c.api.request_timeout_ms, 3_600_000, "{o}");
    assert_eq!(c.api.max_response_bytes, 67_108_864, "{o}");
    assert_eq!(c.api.fatal_codes, vec![1005, 1006, 2_000_000], "{o}");
    assert_eq!(c.api.rate_limit_per_sec, 2.5, "{o}");
    assert_eq!(c.kafka.transaction_timeout_ms, 900_000, "{o}");
    assert_eq!(c.topics.replication_factor, -1, "{o}");
    assert_eq!(
        c.kafka.bootstrap_servers, "10.0.0.11:9092,10.0.0.12:9092,10.0.0.13:9092",
        "{o}"
    );
    assert_eq!(
        c.api.base_url, "https://gw.example.internal/apiServer?v=2.0&lang=zh-CN",
        "{o}"
    );
    assert_eq!(
        c.schema_registry.url.as_deref(),
        Some("https://registry.example.internal/apis/ccompat/v7?v=2.0"),
        "{o}"
    );
    assert_eq!(c.api.app_id, "应用-华东-1.0", "{o}");
    assert_eq!(c.kafka.transactional_id, "tanma-connector-华东-10.0", "{o}");
    assert_eq!(c.topics.events, "tanma.customer.events.v2.0", "{o}");
    assert_eq!(c.windows.start_time, "2023-06-01T00:00:00.000+08:00", "{o}");
    let props = &c.kafka.properties;
    assert_eq!(props["client.id"], "tanma-连接器-10.0.0.12", "{o}");
    assert_eq!(props["linger.ms"], "50", "{o}");
    assert_eq!(props["message.max.bytes"], "10000000", "{o}");
    assert_eq!(props["queue.buffering.max.messages"], "1000000", "{o}");
    assert_eq!(c.ops.shutdown_grace_secs, 120, "{o}");
}

#[test]
fn helm_rendered_large_numbers_and_tricky_strings_load_unchanged() {
    let secrets = secrets_dir();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/helm-rendered-large-numbers.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = load(&text, secrets.path(), &path);
    assert_large_numbers_and_tricky_strings(&c, &path);
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/tanma"));
}

#[test]
fn helm_rendered_configs_load() {
    let Ok(dir) = std::env::var("OPS_RENDERED_CONFIG_DIR") else {
        // Only scripts/validate-deploy renders the chart; nothing to check without it.
        return;
    };
    let secrets = secrets_dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml" | "json")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let c = load(&text, secrets.path(), &path);
        assert_eq!(
            c.state.dir,
            PathBuf::from("/var/lib/tanma"),
            "{}",
            path.display()
        );
        assert!(c.api.app_key.is_some(), "{}", path.display());
        if path.file_stem().and_then(|s| s.to_str()) == Some("large-numbers-tricky-strings") {
            assert_large_numbers_and_tricky_strings(&c, &path);
        }
        seen += 1;
    }
    assert!(seen > 0, "no rendered config in {dir}");
}

#[test]
fn json_config_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // A float where an integer is expected (what a float-rendering template would produce), and
    // a secret written into the file.
    std::fs::write(
        &path,
        r#"{"api": {"base_url": "http://127.0.0.1:9", "app_id": "a", "app_key": "in-the-file"},
            "windows": {"rescan": [{"max_age_secs": 2.592e6, "every_secs": 3600}]}}"#,
    )
    .unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("windows.rescan.0.max_age_secs") && err.contains("float"),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("api.app_key: secrets may not be written"),
        "{err}"
    );
    assert!(!err.contains("in-the-file"), "{err}");

    // The same file as TOML syntax under a .json name is a JSON syntax error naming the file.
    std::fs::write(&path, "[api]\nbase_url = \"http://x\"\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

/// Every key of the connector's configuration can be set through the Helm chart: the chart's
/// `values.schema.json` refuses unknown keys (`additionalProperties: false`), so a key added to
/// [`Config`] but not to the schema could not be set by a Helm user at all. The keys the chart
/// owns (the secret files it mounts, the state volume, the metrics port) are not values.
#[test]
fn every_config_key_is_in_the_helm_values_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("helm/tanma-connector/values.schema.json")).unwrap(),
    )
    .unwrap();
    let config = serde_json::to_value(Config::default()).unwrap();
    let mut missing = Vec::new();
    let chart_owned = [
        "config.api.app_key_file",
        "config.kafka.sasl_password_file",
        "config.schema_registry.password_file",
        "config.ops.listen",
        "config.state.dir",
    ];
    missing_keys(
        &config,
        &schema["properties"]["config"],
        "config",
        &mut missing,
    );
    missing.retain(|k| !chart_owned.contains(&k.as_str()));
    assert!(
        missing.is_empty(),
        "config keys the chart's values.schema.json does not allow: {missing:?}"
    );
}

fn missing_keys(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let Some(fields) = value.as_object() else {
        return;
    };
    let allowed = &schema["properties"];
    for (key, v) in fields {
        let at = format!("{path}.{key}");
        match allowed.get(key) {
            Some(s) => missing_keys(v, s, &at, out),
            None => out.push(at),
        }
    }
}
