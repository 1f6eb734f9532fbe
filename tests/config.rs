//! Config loading: file + environment overrides, secret rules, every problem listed.

// figment::Jail fixes the closure error type (figment::Error) for us.
#![allow(clippy::result_large_err)]

use figment::Jail;
use secrecy::ExposeSecret;
use tanma_connector::config::Config;

const GOOD: &str = r#"
[api]
base_url = "http://127.0.0.1:18080"
app_id = "demo-app"

[kafka]
bootstrap_servers = "127.0.0.1:19092"
"#;

fn problems(r: Result<Config, tanma_connector::config::ConfigError>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected the config to be rejected"),
        Err(e) => e.problems,
    }
}

#[test]
fn file_plus_env_overrides_and_secret_from_env() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", GOOD)?;
        jail.set_env("TANMA_API__APP_KEY", "k3y-from-env");
        jail.set_env("TANMA_API__APP_ID", "12345");
        jail.set_env("TANMA_WINDOWS__SETTLE_LAG_SECS", "42");
        jail.set_env("TANMA_INFRA_DIR", "/not/a/config/key");
        let c = Config::load(Some("c.toml".as_ref())).map_err(|e| e.to_string())?;
        assert_eq!(
            c.api.app_key.as_ref().unwrap().expose_secret(),
            "k3y-from-env"
        );
        assert_eq!(
            c.api.app_id, "12345",
            "a numeric env value still fills a string key"
        );
        assert_eq!(c.windows.settle_lag_secs, 42);
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:19092");
        Ok(())
    });
}

#[test]
fn secret_in_file_is_rejected_and_not_echoed() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            &format!("{GOOD}\n[schema_registry]\npassword = \"hunter2-secret\"\n"),
        )?;
        jail.create_file("key", "file-key\n")?;
        jail.set_env("TANMA_API__APP_KEY_FILE", "key");
        let err = Config::load(Some("c.toml".as_ref())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("schema_registry.password"), "{text}");
        assert!(!text.contains("hunter2-secret"), "secret echoed: {text}");
        Ok(())
    });
}

#[test]
fn unknown_keys_and_every_problem_listed() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            r#"
[api]
base_url = "ftp://nope"
app_id = ""
page_sizee = 10
"#,
        )?;
        let p = problems(Config::load(Some("c.toml".as_ref())));
        assert!(p.iter().any(|l| l.contains("page_sizee")), "{p:?}");
        jail.create_file(
            "d.toml",
            r#"
[api]
base_url = "ftp://nope"
time_zone = "Mars/Olympus"

[windows]
start_time = "yesterday"

[kafka]
security_protocol = "sasl_ssl"
"#,
        )?;
        let p = problems(Config::load(Some("d.toml".as_ref())));
        for key in [
            "api.base_url",
            "api.app_id",
            "api.app_key",
            "api.time_zone",
            "windows.start_time",
            "kafka.sasl_mechanism",
            "kafka.sasl_username",
            "kafka.sasl_password",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(key)),
                "no problem for {key}: {p:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn unknown_env_key_in_a_section_is_rejected() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", GOOD)?;
        jail.set_env("TANMA_API__APP_KEY", "x");
        jail.set_env("TANMA_API__NOPE", "1");
        let p = problems(Config::load(Some("c.toml".as_ref())));
        assert!(p.iter().any(|l| l.contains("nope")), "{p:?}");
        Ok(())
    });
}
