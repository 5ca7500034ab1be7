//! `otel-run config`: the resolved settings with their sources, secrets redacted.

use std::fmt::Write as _;

use serde_json::json;

use super::otlp::{Signal, Target};
use super::vars::{self, Kind, Var};
use super::{Settings, parse};

const REDACTED: &str = "***";

/// A value as otel-run may show it: header values and URL credentials hidden.
pub fn redact(var: &Var, raw: &str) -> String {
    match var.kind {
        Kind::KeyValues if var.secret => match parse::key_values(raw) {
            Ok(pairs) => pairs
                .iter()
                .map(|(k, _)| format!("{k}={REDACTED}"))
                .collect::<Vec<_>>()
                .join(","),
            Err(_) => REDACTED.to_string(),
        },
        Kind::Url => redact_url(raw),
        _ if var.secret => REDACTED.to_string(),
        _ => raw.to_string(),
    }
}

/// Hides the password and query values of a URL (tokens are often put there).
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return raw.to_string();
    };
    if url.password().is_none() && url.query().is_none() {
        return raw.to_string();
    }
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), REDACTED)));
    }
    url.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Renders the resolved settings.
pub fn render(settings: &Settings, format: Format) -> String {
    match format {
        Format::Text => text(settings),
        Format::Json => {
            serde_json::to_string_pretty(&as_json(settings)).expect("JSON of strings") + "\n"
        }
    }
}

fn rows(settings: &Settings) -> impl Iterator<Item = (&'static Var, String, String)> + '_ {
    vars::ALL.iter().copied().filter_map(|var| {
        settings
            .get(var)
            .map(|r| (var, redact(var, &r.value), r.source.label()))
    })
}

pub fn export_lines(settings: &Settings) -> Vec<(Signal, String)> {
    Signal::ALL
        .iter()
        .map(|&signal| {
            let exporters = settings.list(signal.exporter_var());
            let described = exporters
                .iter()
                .map(|e| match e.as_str() {
                    "otlp" => {
                        let t = Target::of(settings, signal);
                        let gzip = if t.gzip { ", gzip" } else { "" };
                        format!(
                            "otlp {} {}{gzip}",
                            t.protocol.name(),
                            redact_url(t.url.as_str())
                        )
                    }
                    "console" => format!(
                        "console to {}",
                        settings.text(&vars::CONSOLE_OUTPUT).unwrap_or("stderr")
                    ),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" + ");
            (signal, described)
        })
        .collect()
}

fn text(settings: &Settings) -> String {
    let mut out = String::new();
    match &settings.config_file {
        Some(path) => writeln!(out, "config file: {}", path.display()).unwrap(),
        None => writeln!(out, "config file: none").unwrap(),
    }
    writeln!(out).unwrap();
    let rows: Vec<_> = rows(settings).collect();
    let name_width = rows.iter().map(|(v, ..)| v.name.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, v, _)| v.len())
        .max()
        .unwrap_or(0)
        .min(40);
    for (var, value, source) in &rows {
        writeln!(
            out,
            "{:name_width$}  {value:value_width$}  ({source})",
            var.name
        )
        .unwrap();
    }
    writeln!(out).unwrap();
    writeln!(out, "export:").unwrap();
    for (signal, line) in export_lines(settings) {
        writeln!(out, "  {:8} {line}", signal.name()).unwrap();
    }
    for warning in &settings.warnings {
        writeln!(out, "\nwarning: {warning}").unwrap();
    }
    out
}

fn as_json(settings: &Settings) -> serde_json::Value {
    let settings_json: Vec<_> = rows(settings)
        .map(|(var, value, source)| {
            json!({
                "name": var.name,
                "flag": format!("--{}", var.flag()),
                "key": var.key(),
                "value": value,
                "source": source,
            })
        })
        .collect();
    let export: serde_json::Map<_, _> = export_lines(settings)
        .into_iter()
        .map(|(signal, line)| (signal.name().to_string(), json!(line)))
        .collect();
    json!({
        "config_file": settings.config_file.as_ref().map(|p| p.display().to_string()),
        "settings": settings_json,
        "export": export,
        "warnings": settings.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_hidden_keys_are_kept() {
        assert_eq!(
            redact(&vars::OTLP_HEADERS, "api-key=s3cret,x-team=a%20b"),
            "api-key=***,x-team=***"
        );
        assert_eq!(redact(&vars::OTLP_HEADERS, "garbage"), "***");
        assert_eq!(redact(&vars::SERVICE_NAME, "shop"), "shop");
    }

    #[test]
    fn url_credentials_and_query_values_are_hidden() {
        assert_eq!(
            redact(
                &vars::OTLP_ENDPOINT,
                "https://user:pw@otlp.example.com/v1?token=abc&x=1"
            ),
            "https://user:***@otlp.example.com/v1?token=***&x=***"
        );
        assert_eq!(
            redact(&vars::OTLP_ENDPOINT, "http://localhost:4317"),
            "http://localhost:4317"
        );
    }
}
