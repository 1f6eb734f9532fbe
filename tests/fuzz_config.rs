//! Fuzzing the config loader (proptest; `cargo fuzz` needs nightly): arbitrary TOML text and
//! arbitrary `TANMA_*` environment values never panic; the result is a config or a
//! `ConfigError` whose every problem names a key (or the file), and never echoes a secret.
//!
//! Longer run: `PROPTEST_CASES=20000 cargo test --test fuzz_config` (see docs/OPERATIONS.md).

// figment::Jail fixes the closure error type (figment::Error) for us.
#![allow(clippy::result_large_err)]

use figment::Jail;
use proptest::prelude::*;
use tanma_connector::config::Config;

const SECRET: &str = "fuzz-secret-3c2b1a";

const GOOD: &str = r#"
[api]
base_url = "http://127.0.0.1:18080"
app_id = "demo-app"

[kafka]
bootstrap_servers = "127.0.0.1:19092"
"#;

const SECTIONS: [&str; 8] = [
    "api",
    "windows",
    "kafka",
    "topics",
    "schema_registry",
    "state",
    "ops",
    "nonsense",
];

const KEYS: [&str; 24] = [
    "base_url",
    "app_id",
    "app_key",
    "page_size",
    "time_zone",
    "fatal_codes",
    "rate_limit_per_sec",
    "start_time",
    "window_secs",
    "rescan",
    "concurrency",
    "bootstrap_servers",
    "security_protocol",
    "sasl_mechanism",
    "sasl_password",
    "properties",
    "events",
    "on_bad_record",
    "partitions",
    "url",
    "password",
    "dir",
    "listen",
    "log_format",
];

/// A TOML value as text: well-formed or not, of any type.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,16}".prop_map(|s| format!("{s:?}")),
        proptest::collection::vec(any::<i32>(), 0..4).prop_map(|v| format!("{v:?}")),
        Just("{ max_age_secs = 1, every_secs = 0 }".to_string()),
        Just("[{ max_age_secs = 5 }]".to_string()),
        "[^\n]{0,10}",
    ]
}

/// A config file: known and unknown sections and keys, valid and invalid values, and noise.
fn toml_text() -> impl Strategy<Value = String> {
    let entry = (
        prop::sample::select(SECTIONS.to_vec()),
        prop::sample::select(KEYS.to_vec()),
        toml_value(),
    );
    (
        proptest::collection::vec(entry, 0..8),
        proptest::option::of("[^\u{0}]{0,40}"),
    )
        .prop_map(|(entries, noise)| {
            let mut s = String::from(GOOD);
            for (sec, key, v) in entries {
                s.push_str(&format!("\n[{sec}]\n{key} = {v}\n"));
            }
            if let Some(n) = noise {
                s.push_str(&n);
            }
            s
        })
}

fn env_pair() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(SECTIONS.to_vec()),
        prop_oneof![
            prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
            "[A-Z_]{0,8}",
        ],
        prop_oneof![toml_value(), "[\\[{].{0,12}", Just(String::new())],
    )
        // The OS cannot hold a NUL in an environment value.
        .prop_map(|(sec, key, v)| {
            (
                format!("TANMA_{}__{}", sec.to_uppercase(), key.to_uppercase()),
                v.replace('\0', ""),
            )
        })
}

/// Secrets in their own variables, as plain strings or shaped like structured values (a
/// value starting with `[` or `{` is parsed as TOML).
fn secret_env() -> impl Strategy<Value = Vec<(String, String)>> {
    let var = prop::sample::select(vec![
        "TANMA_API__APP_KEY",
        "TANMA_KAFKA__SASL_PASSWORD",
        "TANMA_SCHEMA_REGISTRY__PASSWORD",
    ]);
    let value = prop::sample::select(vec![
        SECRET.to_string(),
        format!("[\"{SECRET}\"]"),
        format!("{{a = \"{SECRET}\"}}"),
        format!("[{SECRET}"),
    ]);
    proptest::collection::vec((var.prop_map(str::to_string), value), 0..3)
}

/// Every problem must name something an operator can find: a config section or key, the
/// file, or a TANMA_ variable.
fn names_a_key(p: &str) -> bool {
    SECTIONS.iter().any(|s| p.contains(s))
        || KEYS.iter().any(|k| p.contains(k))
        || p.contains("c.toml")
        || p.contains("TANMA_")
        || p.contains("topics")
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_files_and_env_never_panic_and_errors_name_keys(
        text in toml_text(),
        env in proptest::collection::vec(env_pair(), 0..4),
        secret in secret_env(),
        secret_in_file in proptest::option::of(prop::sample::select(vec![
            ("api", "app_key"), ("kafka", "sasl_password"), ("schema_registry", "password"),
        ])),
    ) {
        let mut text = text;
        if let Some((section, key)) = secret_in_file {
            text.push_str(&format!("\n[{section}]\n{key} = \"{SECRET}\"\n"));
        }
        let mut failure: Option<String> = None;
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", &text)?;
            for (k, v) in &env {
                jail.set_env(k, v);
            }
            // Secrets last, so that they are what the loader sees for those keys.
            for (k, v) in &secret {
                jail.set_env(k, v);
            }
            match Config::load(Some("c.toml".as_ref())) {
                Ok(c) => {
                    if !c.validate().is_empty() {
                        failure = Some(format!("loaded but invalid: {:?}", c.validate()));
                    }
                }
                Err(e) => {
                    if e.problems.is_empty() {
                        failure = Some("an error with no problem".into());
                    }
                    let shown = e.to_string();
                    if shown.contains(SECRET) {
                        failure = Some(format!("secret echoed: {shown}"));
                    }
                    for p in &e.problems {
                        if !names_a_key(p) {
                            failure = Some(format!("problem names no key: {p:?}"));
                        }
                    }
                }
            }
            Ok(())
        });
        prop_assert!(failure.is_none(), "{:?}\nfile:\n{}\nenv: {:?} {:?}", failure, text, env, secret);
    }

    #[test]
    fn arbitrary_bytes_as_a_config_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &bytes).expect("write");
        // No Jail: the process environment has no TANMA_API__APP_KEY, so this is an error or,
        // never, a config; what matters is no panic and a non-empty problem list.
        if let Err(e) = Config::load(Some(&path)) {
            prop_assert!(!e.problems.is_empty());
        }
    }
}
