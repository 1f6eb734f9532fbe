//! Loading: the file (TOML, or JSON when its name ends in `.json`), `TANMA_SECTION__KEY`
//! environment overrides, secret files, validation.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Json, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;

use super::{Config, ConfigError, SECRET_KEYS};

impl Config {
    /// Loads `path` (if given), applies `TANMA_SECTION__KEY` environment overrides, reads secret
    /// files, and validates. A path ending in `.json` is read as JSON (the Helm chart renders
    /// JSON: strings and integers of any size reach the connector unchanged), any other as TOML.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let format = FileFormat::of(path);
                    let file_only = format.string(&text);
                    for (section, key) in SECRET_KEYS {
                        if file_only.find_value(&format!("{section}.{key}")).is_ok() {
                            problems.push(format!(
                                "{section}.{key}: secrets may not be written in the config file {}; set TANMA_{}__{} or {section}.{key}_file",
                                path.display(),
                                section.to_uppercase(),
                                key.to_uppercase()
                            ));
                        }
                    }
                    // `file_exact` so that errors name the file, not "TOML source string".
                    fig = format.merge_file(fig, path);
                }
                Err(e) => {
                    return Err(ConfigError {
                        problems: vec![format!("cannot read config file {}: {e}", path.display())],
                    })
                }
            }
        }
        fig = merge_env(fig);
        let mut config: Config = match fig.extract_lossy() {
            Ok(c) => c,
            Err(errors) => {
                problems.extend(errors.into_iter().map(describe_figment_error));
                return Err(ConfigError { problems });
            }
        };
        config.read_secret_files(&mut problems);
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn read_secret_files(&mut self, problems: &mut Vec<String>) {
        fn read(
            slot: &mut Option<SecretString>,
            file: &Option<PathBuf>,
            key: &str,
            problems: &mut Vec<String>,
        ) {
            if let Some(path) = file {
                match std::fs::read_to_string(path) {
                    Ok(s) => {
                        *slot = Some(SecretString::from(
                            s.trim_end_matches(['\n', '\r']).to_string(),
                        ))
                    }
                    Err(e) => {
                        problems.push(format!("{key}_file: cannot read {}: {e}", path.display()))
                    }
                }
            }
        }
        read(
            &mut self.api.app_key,
            &self.api.app_key_file,
            "api.app_key",
            problems,
        );
        read(
            &mut self.kafka.sasl_password,
            &self.kafka.sasl_password_file,
            "kafka.sasl_password",
            problems,
        );
        read(
            &mut self.schema_registry.password,
            &self.schema_registry.password_file,
            "schema_registry.password",
            problems,
        );
    }
}

/// The syntax of a config file, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Toml,
    Json,
}

impl FileFormat {
    fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => FileFormat::Json,
            _ => FileFormat::Toml,
        }
    }

    /// A provider of `text` in this format (used to look for secrets written in the file).
    fn string(self, text: &str) -> Figment {
        match self {
            FileFormat::Toml => Figment::from(Toml::string(text)),
            FileFormat::Json => Figment::from(Json::string(text)),
        }
    }

    /// Merges the file at `path` over `fig`; its errors name the file.
    fn merge_file(self, fig: Figment, path: &Path) -> Figment {
        match self {
            FileFormat::Toml => fig.merge(Toml::file_exact(path)),
            FileFormat::Json => fig.merge(Json::file_exact(path)),
        }
    }
}

/// Merges `TANMA_SECTION__KEY` environment variables over `fig`. Values stay strings (the lossy
/// extraction turns `"42"` into a number where a number is expected, and keeps `"12345"` a string
/// where a string is expected); a value starting with `[` or `{` is parsed as structured data,
/// e.g. `TANMA_API__FATAL_CODES=[1005,1006]`. Other `TANMA_*` variables are not ours.
fn merge_env(mut fig: Figment) -> Figment {
    let env = Env::prefixed("TANMA_")
        .filter(|k| k.as_str().contains("__"))
        .split("__");
    for (key, raw) in env.iter() {
        let value = if raw.trim_start().starts_with(['[', '{']) {
            raw.parse::<figment::value::Value>()
                .unwrap_or_else(|_| figment::value::Value::from(raw.clone()))
        } else {
            figment::value::Value::from(raw)
        };
        fig = fig.merge(Serialized::default(key.as_str(), value));
    }
    fig
}

fn describe_figment_error(e: figment::Error) -> String {
    let path = e.path.join(".");
    let origin = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            // figment shows file paths relative to the working directory; name the file as given.
            Some(figment::Source::File(file)) => format!("{} {}", m.name, file.display()),
            // Only the environment overrides are merged from code.
            Some(figment::Source::Code(_)) => {
                let var = e.path.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>();
                format!("environment variable TANMA_{}", var.join("__"))
            }
            Some(source) => format!("{} {source}", m.name),
            None => m.name.to_string(),
        })
        .unwrap_or_default();
    let secret = SECRET_KEYS
        .iter()
        .any(|(section, key)| path == format!("{section}.{key}"));
    // A type error quotes the value it found: never for a secret.
    let kind = if secret {
        "invalid value (not shown: secret)".to_string()
    } else {
        e.kind.to_string()
    };
    if path.is_empty() {
        format!("{kind} ({origin})")
    } else {
        format!("{path}: {kind} ({origin})")
    }
}
