//! Resolved settings: built-in defaults < `otel-run.toml` < environment < flags.
//!
//! Every value remembers where it came from, so messages and `otel-run config`
//! can say "from OTEL_SERVICE_NAME". An invalid value in a flag or the config file
//! is an error (exit code 2); in the environment it is a warning and the default
//! is used, as the specification asks of SDKs. An empty value counts as unset.

pub mod file;
pub mod kubernetes;
pub mod otlp;
pub mod parse;
pub mod ready;
pub mod reference;
pub mod report;
pub mod vars;

use rustc_hash::FxHashMap as HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use vars::{Kind, Var};

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env,
    Flag,
}

impl Source {
    /// Describes the source of `var`'s value, e.g. "flag `--service-name`".
    pub fn describe(&self, var: &Var) -> String {
        match self {
            Source::Default => "default".to_string(),
            Source::File(path) => format!("`{}` in `{}`", var.key(), path.display()),
            Source::Env => format!("env `{}`", var.name),
            Source::Flag => format!("flag `--{}`", var.flag()),
        }
    }

    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Source::Default => "default".into(),
            Source::File(path) => path.display().to_string(),
            Source::Env => "env".into(),
            Source::Flag => "flag".into(),
        }
    }
}

/// One resolved value, in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub value: String,
    pub source: Source,
}

/// An invalid value given in a flag or the config file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid value `{value}` for {place}: expected {expected}")]
    Invalid {
        place: String,
        value: String,
        expected: String,
    },
}

impl crate::diag::Hint for SettingsError {
    fn exit_code(&self) -> u8 {
        crate::diag::USAGE
    }
}

/// What settings are resolved from: each layer maps a variable name to its raw text.
#[derive(Debug, Default)]
pub struct Inputs {
    pub file: Option<file::ConfigFile>,
    pub env: HashMap<String, String>,
    /// OTEL_* variables whose values are not UTF-8, which no setting can take.
    pub env_not_utf8: Vec<String>,
    pub flags: HashMap<&'static str, String>,
}

impl Inputs {
    /// Inputs of an environment and flags, for tests of what settings make.
    #[cfg(test)]
    pub fn of(env: &[(&str, &str)], flags: &[(&'static str, &str)]) -> Inputs {
        Inputs {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: flags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..Default::default()
        }
    }

    /// Takes the OTEL_* variables of an environment (the process's, in `run`),
    /// and the downward API's of [`vars::KUBERNETES`].
    /// The environment is read as bytes: a value that is not text is named in
    /// [`Inputs::env_not_utf8`], and every variable reaches the child untouched
    /// all the same, since it inherits otel-run's environment.
    pub fn read_env(&mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) {
        for (name, value) in vars {
            let Some(name) = name.to_str().filter(|n| {
                n.starts_with("OTEL_") || vars::KUBERNETES.iter().any(|k| k.vars.contains(n))
            }) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => {
                    self.env.insert(name.to_string(), value);
                }
                Err(_) => self.env_not_utf8.push(name.to_string()),
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    values: HashMap<&'static str, Resolved>,
    /// Problems with environment values, reported once as warnings.
    pub warnings: Vec<String>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The `k8s.*` resource attributes of the downward API's variables.
    pub kubernetes: Vec<kubernetes::Detected>,
}

impl Settings {
    pub fn resolve(inputs: &Inputs) -> Result<Self, SettingsError> {
        let mut settings = Settings {
            values: HashMap::default(),
            warnings: Vec::new(),
            config_file: inputs.file.as_ref().map(|f| f.path.clone()),
            kubernetes: kubernetes::detect(&inputs.env),
        };
        for var in vars::ALL.iter().copied() {
            if let Some(resolved) = settings.resolve_one(var, inputs)? {
                settings.values.insert(var.name, resolved);
            }
        }
        settings.check_sampler_arg()?;
        settings.warn_near_misses(inputs.env.keys());
        Ok(settings)
    }

    /// An OTEL_* variable that is one or two letters away from a setting's name is
    /// almost surely a typo (`OTEL_LOG_EXPORTER`); every SDK would ignore it silently.
    fn warn_near_misses<'a>(&mut self, names: impl Iterator<Item = &'a String>) {
        let mut misses: Vec<(&String, &str)> = names
            .filter(|name| vars::find(name).is_none_or(|v| v.name != name.as_str()))
            .filter_map(|name| {
                vars::ALL
                    .iter()
                    .find(|v| strsim::levenshtein(name, v.name) <= 2)
                    .map(|v| (name, v.name))
            })
            .collect();
        misses.sort();
        for (name, meant) in misses {
            self.warnings.push(format!(
                "{name} is not an OpenTelemetry setting; did you mean {meant}?"
            ));
        }
    }

    /// The highest layer with a non-empty value wins; a bad environment value falls
    /// through to the layers below it with a warning.
    fn resolve_one(
        &mut self,
        var: &'static Var,
        inputs: &Inputs,
    ) -> Result<Option<Resolved>, SettingsError> {
        if let Some(raw) = inputs.flags.get(var.name).filter(|v| !v.trim().is_empty()) {
            return strict(var, raw, Source::Flag).map(Some);
        }
        if inputs.env_not_utf8.iter().any(|n| n == var.name) {
            self.warnings.push(format!(
                "ignoring {}: its value is not UTF-8 text",
                var.name
            ));
        }
        if let Some(raw) = inputs.env.get(var.name).filter(|v| !v.trim().is_empty()) {
            match parse::normalize(var, raw) {
                Ok(value) => {
                    return Ok(Some(Resolved {
                        value,
                        source: Source::Env,
                    }));
                }
                Err(e) => self.warnings.push(format!(
                    "ignoring {}=`{}`: expected {}",
                    var.name,
                    report::redact(var, raw),
                    e.expected
                )),
            }
        }
        if let Some(file) = &inputs.file
            && let Some(raw) = file.values.get(var.name).filter(|v| !v.trim().is_empty())
        {
            return strict(var, raw, Source::File(file.path.clone())).map(Some);
        }
        Ok(var.default.map(|d| Resolved {
            value: d.to_string(),
            source: Source::Default,
        }))
    }

    /// The ratio samplers need a ratio; other samplers' arguments are theirs to read.
    fn check_sampler_arg(&mut self) -> Result<(), SettingsError> {
        if !self
            .text(&vars::TRACES_SAMPLER)
            .is_some_and(|s| s.ends_with("traceidratio"))
        {
            return Ok(());
        }
        let Some(arg) = self.values.get(vars::TRACES_SAMPLER_ARG.name) else {
            return Ok(());
        };
        if arg
            .value
            .parse::<f64>()
            .is_ok_and(|r| (0.0..=1.0).contains(&r))
        {
            return Ok(());
        }
        let expected = "a ratio between 0 and 1 for the `traceidratio` samplers".to_string();
        if arg.source == Source::Env {
            self.warnings.push(format!(
                "ignoring {}=`{}`: expected {expected}; sampling everything",
                vars::TRACES_SAMPLER_ARG.name,
                arg.value
            ));
            self.values.remove(vars::TRACES_SAMPLER_ARG.name);
            return Ok(());
        }
        Err(SettingsError::Invalid {
            place: arg.source.describe(&vars::TRACES_SAMPLER_ARG),
            value: arg.value.clone(),
            expected,
        })
    }

    pub fn get(&self, var: &Var) -> Option<&Resolved> {
        self.values.get(var.name)
    }

    /// The value's text, if set.
    pub fn text(&self, var: &Var) -> Option<&str> {
        self.get(var).map(|r| r.value.as_str())
    }

    pub fn flag(&self, var: &Var) -> bool {
        debug_assert_eq!(var.kind, Kind::Bool);
        self.text(var) == Some("true")
    }

    pub fn count(&self, var: &Var) -> Option<u64> {
        self.text(var).and_then(|v| v.parse().ok())
    }

    /// A list setting's items (exporters, propagators).
    pub fn list(&self, var: &Var) -> Vec<String> {
        self.text(var).map(parse::list).unwrap_or_default()
    }

    pub fn key_values(&self, var: &Var) -> Vec<(String, String)> {
        self.text(var)
            .and_then(|v| parse::key_values(v).ok())
            .unwrap_or_default()
    }

    /// Settings given in a flag or the config file: the child does not see them in
    /// its environment unless otel-run sets them.
    pub fn explicit(&self) -> impl Iterator<Item = (&'static Var, &Resolved)> {
        vars::ALL.iter().copied().filter_map(|var| {
            self.get(var)
                .filter(|r| matches!(r.source, Source::Flag | Source::File(_)))
                .map(|r| (var, r))
        })
    }

    /// The service name: OTEL_SERVICE_NAME, else `service.name` from the resource
    /// attributes.
    pub fn service_name(&self) -> Option<String> {
        self.text(&vars::SERVICE_NAME)
            .map(str::to_string)
            .or_else(|| {
                self.key_values(&vars::RESOURCE_ATTRIBUTES)
                    .into_iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v)
            })
    }

    pub fn disabled(&self) -> bool {
        self.flag(&vars::SDK_DISABLED)
    }
}

fn strict(var: &Var, raw: &str, source: Source) -> Result<Resolved, SettingsError> {
    parse::normalize(var, raw)
        .map(|value| Resolved {
            value,
            source: source.clone(),
        })
        .map_err(|e| SettingsError::Invalid {
            place: source.describe(var),
            value: report::redact(var, raw),
            expected: e.expected,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs from a config file's keys, the environment and flags.
    pub(in crate::settings) fn inputs(
        file: &[(&str, &str)],
        env: &[(&str, &str)],
        flags: &[(&'static str, &str)],
    ) -> Inputs {
        Inputs {
            file: (!file.is_empty()).then(|| file::ConfigFile {
                path: "otel-run.toml".into(),
                values: file
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            ..Inputs::of(env, flags)
        }
    }

    const NAME: &str = "OTEL_SERVICE_NAME";

    #[test]
    fn precedence_is_default_file_env_flag() {
        let s = Settings::resolve(&inputs(&[], &[], &[])).unwrap();
        assert_eq!(s.text(&vars::TRACES_EXPORTER), Some("otlp"));
        assert_eq!(
            s.get(&vars::TRACES_EXPORTER).unwrap().source,
            Source::Default
        );

        let s = Settings::resolve(&inputs(&[(NAME, "file")], &[], &[])).unwrap();
        assert_eq!(s.text(&vars::SERVICE_NAME), Some("file"));

        let s = Settings::resolve(&inputs(&[(NAME, "file")], &[(NAME, "env")], &[])).unwrap();
        assert_eq!(s.text(&vars::SERVICE_NAME), Some("env"));
        assert_eq!(s.get(&vars::SERVICE_NAME).unwrap().source, Source::Env);

        let s = Settings::resolve(&inputs(
            &[(NAME, "file")],
            &[(NAME, "env")],
            &[(NAME, "flag")],
        ))
        .unwrap();
        assert_eq!(s.text(&vars::SERVICE_NAME), Some("flag"));
        assert_eq!(s.get(&vars::SERVICE_NAME).unwrap().source, Source::Flag);
    }

    #[test]
    fn empty_values_are_unset() {
        let s =
            Settings::resolve(&inputs(&[(NAME, "file")], &[(NAME, "")], &[(NAME, " ")])).unwrap();
        assert_eq!(s.text(&vars::SERVICE_NAME), Some("file"));
    }

    #[test]
    fn invalid_flag_is_an_error_naming_the_flag_and_the_choices() {
        let err = Settings::resolve(&inputs(&[], &[], &[("OTEL_TRACES_SAMPLER", "sometimes")]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`--traces-sampler`"), "{msg}");
        assert!(msg.contains("`parentbased_always_on`"), "{msg}");
    }

    #[test]
    fn invalid_file_value_is_an_error_naming_the_key_and_file() {
        let err = Settings::resolve(&inputs(&[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")], &[], &[]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value `lots` for `bsp_max_queue_size` in `otel-run.toml`: expected a whole number, e.g. `512`"
        );
    }

    #[test]
    fn invalid_env_value_warns_and_falls_back() {
        let s = Settings::resolve(&inputs(
            &[("OTEL_TRACES_EXPORTER", "console")],
            &[
                ("OTEL_TRACES_EXPORTER", "zipkinn"),
                ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(
            s.text(&vars::TRACES_EXPORTER),
            Some("console"),
            "falls back to the file"
        );
        assert_eq!(
            s.text(&vars::BSP_SCHEDULE_DELAY),
            Some("5000"),
            "falls back to the default"
        );
        assert_eq!(s.warnings.len(), 2);
        assert!(
            s.warnings[0].contains("OTEL_TRACES_EXPORTER=`zipkinn`"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn secrets_in_invalid_values_are_redacted() {
        let err = Settings::resolve(&inputs(
            &[],
            &[],
            &[("OTEL_EXPORTER_OTLP_HEADERS", "token")],
        ))
        .unwrap_err();
        assert!(!err.to_string().contains("token"), "{err}");
        let s = Settings::resolve(&inputs(
            &[],
            &[("OTEL_EXPORTER_OTLP_HEADERS", "secretvalue")],
            &[],
        ))
        .unwrap();
        assert!(!s.warnings[0].contains("secretvalue"), "{:?}", s.warnings);
    }

    #[test]
    fn environment_values_that_are_not_text_warn_and_fall_back() {
        use std::os::unix::ffi::OsStringExt as _;
        let mut inputs = inputs(&[(NAME, "file")], &[], &[]);
        let bytes = |s: &str| OsString::from(s);
        inputs.read_env([
            (bytes(NAME), OsString::from_vec(b"caf\xe9".to_vec())),
            (bytes("OTEL_CHILDS_OWN"), OsString::from_vec(vec![0xff])),
            (bytes("FOO"), OsString::from_vec(vec![0xe9])),
            (bytes("OTEL_LOG_LEVEL"), bytes("debug")),
        ]);
        assert_eq!(inputs.env.len(), 1, "{:?}", inputs.env);
        let s = Settings::resolve(&inputs).unwrap();
        assert_eq!(s.text(&vars::SERVICE_NAME), Some("file"));
        assert_eq!(s.text(&vars::LOG_LEVEL), Some("debug"));
        assert_eq!(
            s.warnings,
            ["ignoring OTEL_SERVICE_NAME: its value is not UTF-8 text"]
        );
    }

    #[test]
    fn bad_headers_and_huge_durations_are_usage_errors_in_flags_and_warnings_in_env() {
        for (name, raw, place) in [
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "a b=1",
                "flag `--exporter-otlp-headers`",
            ),
            (
                "OTEL_BSP_EXPORT_TIMEOUT",
                "400000000000000",
                "flag `--bsp-export-timeout`",
            ),
        ] {
            let err = Settings::resolve(&inputs(&[], &[], &[(name, raw)])).unwrap_err();
            assert!(err.to_string().contains(place), "{err}");
            let err = Settings::resolve(&inputs(&[(name, raw)], &[], &[])).unwrap_err();
            assert!(err.to_string().contains("in `otel-run.toml`"), "{err}");
            let s = Settings::resolve(&inputs(&[], &[(name, raw)], &[])).unwrap();
            let var = vars::find(name).unwrap();
            assert_eq!(s.text(var), var.default, "{name}: the default is used");
            assert!(
                s.warnings[0].starts_with(&format!("ignoring {name}=")),
                "{:?}",
                s.warnings
            );
        }
    }

    #[test]
    fn sampler_ratio_is_checked_against_the_sampler() {
        let bad = [
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ];
        assert!(Settings::resolve(&inputs(&[], &[], &bad)).is_err());
        let s = Settings::resolve(&inputs(&[], &bad, &[])).unwrap();
        assert_eq!(s.text(&vars::TRACES_SAMPLER_ARG), None);
        assert_eq!(s.warnings.len(), 1);
        let other = [
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "endpoint=http://x"),
        ];
        assert!(Settings::resolve(&inputs(&[], &[], &other)).is_ok());
    }

    #[test]
    fn misspelled_variables_get_a_hint() {
        let s = Settings::resolve(&inputs(
            &[],
            &[
                ("OTEL_LOG_EXPORTER", "console"),
                ("OTEL_PYTHON_EXCLUDED_URLS", "x"),
                (NAME, "ok"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(
            s.warnings,
            vec![
                "OTEL_LOG_EXPORTER is not an OpenTelemetry setting; did you mean OTEL_LOGS_EXPORTER?"
            ]
        );
    }

    #[test]
    fn service_name_beats_the_resource_attribute() {
        let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=a");
        let s = Settings::resolve(&inputs(&[], &[attrs], &[])).unwrap();
        assert_eq!(s.service_name().as_deref(), Some("from-attrs"));
        let s = Settings::resolve(&inputs(&[], &[attrs, (NAME, "named")], &[])).unwrap();
        assert_eq!(s.service_name().as_deref(), Some("named"));
    }

    #[test]
    fn explicit_lists_flags_and_file_values_only() {
        let s = Settings::resolve(&inputs(
            &[("OTEL_LOG_LEVEL", "debug")],
            &[(NAME, "env")],
            &[("OTEL_TRACES_EXPORTER", "none")],
        ))
        .unwrap();
        let names: Vec<_> = s.explicit().map(|(v, _)| v.name).collect();
        assert_eq!(names, vec!["OTEL_LOG_LEVEL", "OTEL_TRACES_EXPORTER"]);
    }
}
