//! The `otel-run.toml` config file.
//!
//! Keys are the variable names without `OTEL_` (or `OTEL_RUN_`), lower-case:
//! `service_name = "checkout"`. Lists may be TOML arrays, key-value settings
//! (`resource_attributes`, `exporter_otlp_headers`) may be tables.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::vars;

/// The name looked for in the working directory.
pub const FILE_NAME: &str = "otel-run.toml";

/// A config file's values by variable name, as raw text.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub values: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file `{path}` is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{key}` in `{path}`")]
    UnknownKey { path: PathBuf, key: String },
    #[error("`{key}` in `{path}` must be {expected}")]
    Type {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
}

impl crate::diag::Hint for FileError {
    fn hint(&self) -> Option<String> {
        matches!(self, FileError::UnknownKey { .. }).then(|| {
            "keys are the variable names without `OTEL_`, lower-case, e.g. `service_name`; `otel-run --help` lists them".to_string()
        })
    }

    fn exit_code(&self) -> u8 {
        crate::diag::USAGE
    }
}

/// Loads `explicit` (which must exist), else `otel-run.toml` in `cwd` if present.
pub fn load(explicit: Option<&Path>, cwd: &Path) -> Result<Option<ConfigFile>, FileError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let path = cwd.join(FILE_NAME);
            if !path.is_file() {
                return Ok(None);
            }
            PathBuf::from(FILE_NAME)
        }
    };
    let text = std::fs::read_to_string(cwd.join(&path)).map_err(|source| FileError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&path, &text).map(Some)
}

/// Parses a config file's text.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, FileError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FileError::Syntax {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
    let mut values = HashMap::default();
    for (key, value) in table {
        let var = vars::find(&key)
            .filter(|v| v.key() == key.replace('-', "_"))
            .ok_or_else(|| FileError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
            })?;
        let type_error = |expected| FileError::Type {
            path: path.to_path_buf(),
            key: key.clone(),
            expected,
        };
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| type_error("a list of strings"))?
                .join(","),
            toml::Value::Table(t)
                if matches!(var.kind, vars::Kind::KeyValues | vars::Kind::Headers) =>
            {
                t.iter()
                    .map(|(k, v)| match v {
                        toml::Value::String(s) => Some(format!("{}={}", encode(k), encode(s))),
                        toml::Value::Integer(_)
                        | toml::Value::Float(_)
                        | toml::Value::Boolean(_) => Some(format!("{}={}", encode(k), v)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| type_error("a table of strings"))?
                    .join(",")
            }
            _ => return Err(type_error("a string, number or boolean")),
        };
        values.insert(var.name.to_string(), raw);
    }
    Ok(ConfigFile {
        path: path.to_path_buf(),
        values,
    })
}

/// Characters that would break a `k=v,k2=v2` list.
const KV_RESERVED: &AsciiSet = &CONTROLS.add(b',').add(b'=').add(b'%').add(b' ');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, KV_RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse;

    fn parsed(text: &str) -> Result<ConfigFile, FileError> {
        parse(Path::new("otel-run.toml"), text)
    }

    #[test]
    fn keys_and_value_types() {
        let file = parsed(
            r#"
            service_name = "checkout"
            traces-exporter = ["otlp", "console"]
            bsp_schedule_delay = 250
            exporter_otlp_insecure = true
            traces_sampler_arg = 0.25
            [resource_attributes]
            "deployment.environment" = "prod, eu"
            "#,
        )
        .unwrap();
        let v = |name: &str| file.values.get(name).map(String::as_str);
        assert_eq!(v("OTEL_SERVICE_NAME"), Some("checkout"));
        assert_eq!(v("OTEL_TRACES_EXPORTER"), Some("otlp,console"));
        assert_eq!(v("OTEL_BSP_SCHEDULE_DELAY"), Some("250"));
        assert_eq!(v("OTEL_EXPORTER_OTLP_INSECURE"), Some("true"));
        assert_eq!(v("OTEL_TRACES_SAMPLER_ARG"), Some("0.25"));
        let attrs = parse::key_values(v("OTEL_RESOURCE_ATTRIBUTES").unwrap()).unwrap();
        assert_eq!(
            attrs,
            vec![("deployment.environment".into(), "prod, eu".into())]
        );
    }

    #[test]
    fn unknown_keys_and_variable_names_are_errors() {
        let err = parsed("servce_name = 'x'").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `servce_name` in `otel-run.toml`"
        );
        assert!(
            parsed("OTEL_SERVICE_NAME = 'x'").is_err(),
            "keys are not variable names"
        );
    }

    #[test]
    fn syntax_and_type_errors_name_the_file() {
        assert!(
            parsed("service_name = ")
                .unwrap_err()
                .to_string()
                .contains("not valid TOML")
        );
        let err = parsed("[service_name]\nx = 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`service_name` in `otel-run.toml` must be a string, number or boolean"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error_and_missing_default_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(None, dir.path()).unwrap().is_none());
        assert!(matches!(
            load(Some(Path::new("nope.toml")), dir.path()),
            Err(FileError::Read { .. })
        ));
        std::fs::write(dir.path().join(FILE_NAME), "service_name = 'here'").unwrap();
        let file = load(None, dir.path()).unwrap().unwrap();
        assert_eq!(file.values["OTEL_SERVICE_NAME"], "here");
    }
}
