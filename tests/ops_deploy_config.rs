//! The configuration files shipped for deployment load and validate with the real loader:
//! `deploy/compose/connector.toml` always, and the Helm-rendered `config.toml`s when
//! `scripts/validate-deploy` points `OPS_RENDERED_CONFIG_DIR` at them.
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

/// Loads `text` as a config file, with secret file paths redirected to `secrets`.
fn load(text: &str, secrets: &Path, origin: &Path) -> Config {
    let redirected = text.replace(SECRET_DIR, &format!("{}/", secrets.display()));
    let file = tempfile::NamedTempFile::new().unwrap();
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
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
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
        seen += 1;
    }
    assert!(seen > 0, "no rendered config.toml in {dir}");
}
