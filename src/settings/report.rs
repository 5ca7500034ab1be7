//! `otel-run config`: the resolved settings with their sources, secrets redacted.

use std::fmt::Write as _;

use serde_json::json;

use super::kubernetes::{self, Detected};
use super::otlp::{ExporterKind, Signal, Target};
use super::vars::{self, Kind, Var};
use super::{Settings, parse};

const REDACTED: &str = "***";

/// A value as otel-run may show it: header values and URL credentials hidden.
/// Every message that shows a setting's value goes through here, whether the
/// value parsed or not.
pub fn redact(var: &Var, raw: &str) -> String {
    match var.kind {
        Kind::Headers => match parse::headers(raw) {
            Ok(pairs) => pairs
                .iter()
                .map(|(k, _)| format!("{k}={REDACTED}"))
                .collect::<Vec<_>>()
                .join(","),
            // A malformed list may have a secret anywhere, even where a name should be.
            Err(_) => REDACTED.to_string(),
        },
        Kind::Url => redact_url(raw),
        _ if var.secret => REDACTED.to_string(),
        _ => raw.to_string(),
    }
}

/// Hides the password (or a user name without one, often a token) and the
/// query values of a URL, read as text so that a URL that does not parse, or
/// has no scheme (`user:pw@collector:4317`), is hidden alike. Everything up to
/// the last `@` before the query counts as user info: when the URL is broken,
/// hiding too much is the safe mistake.
pub fn redact_url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, tail) = rest.split_at(end);
    let mut out = String::from(scheme);
    match before_query.rfind('@') {
        Some(at) => {
            match before_query[..at].split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}")),
                None => out.push_str(REDACTED),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    let (query, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    if let Some(query) = query.strip_prefix('?') {
        out.push('?');
        let keys = query.split('&').map(|item| match item.split_once('=') {
            Some((key, _)) => format!("{key}={REDACTED}"),
            None => item.to_string(),
        });
        out.push_str(&keys.collect::<Vec<_>>().join("&"));
    }
    if !fragment.is_empty() {
        out.push_str(&format!("#{REDACTED}"));
    }
    out
}

/// Shows at most the start of a piece of text that failed to parse: it may
/// hold a secret.
pub fn redact_part(text: &str) -> String {
    let shown: String = text.chars().take(3).collect();
    if shown.len() < text.len() {
        format!("{shown}…")
    } else {
        shown
    }
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
    let or_default = |var: &'static Var| settings.text(var).or(var.default).unwrap_or_default();
    Signal::ALL
        .iter()
        .map(|&signal| {
            let described = settings
                .exporters(signal)
                .into_iter()
                .map(|e| match e {
                    ExporterKind::Otlp | ExporterKind::Jaeger => {
                        let t = Target::of(settings, signal);
                        let gzip = if t.gzip { ", gzip" } else { "" };
                        format!(
                            "otlp {} {}{gzip}",
                            t.protocol.name(),
                            redact_url(t.url.as_str())
                        )
                    }
                    ExporterKind::Console => format!(
                        "console to {}",
                        settings.text(&vars::CONSOLE_OUTPUT).unwrap_or("stdout")
                    ),
                    ExporterKind::Zipkin => {
                        format!("zipkin {}", redact_url(or_default(&vars::ZIPKIN_ENDPOINT)))
                    }
                    ExporterKind::Prometheus => format!(
                        "prometheus scrape endpoint on http://{}:{}/metrics",
                        or_default(&vars::PROMETHEUS_HOST),
                        or_default(&vars::PROMETHEUS_PORT)
                    ),
                    ExporterKind::None => e.name().to_string(),
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
    let pod = kubernetes_rows(settings);
    if !pod.is_empty() {
        writeln!(out, "\nresource from the Kubernetes downward API:").unwrap();
        let key_width = pod.iter().map(|(d, _)| d.key.len()).max().unwrap_or(0);
        let value_width = pod.iter().map(|(d, _)| d.value.len()).max().unwrap_or(0);
        for (d, used) in pod {
            let note = if used {
                String::new()
            } else {
                format!(", unused: {} gives it", vars::RESOURCE_ATTRIBUTES.name)
            };
            writeln!(
                out,
                "  {:key_width$}  {:value_width$}  ({}{note})",
                d.key, d.value, d.var
            )
            .unwrap();
        }
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

/// The downward API's attributes, each with whether it is used (the user's
/// OTEL_RESOURCE_ATTRIBUTES does not name it).
fn kubernetes_rows(settings: &Settings) -> Vec<(&Detected, bool)> {
    let user = settings.key_values(&vars::RESOURCE_ATTRIBUTES);
    settings
        .kubernetes
        .iter()
        .map(|d| (d, !kubernetes::given(&user, d.key)))
        .collect()
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
        "kubernetes": kubernetes_rows(settings)
            .into_iter()
            .map(|(d, used)| json!({
                "attribute": d.key,
                "value": d.value,
                "variable": d.var,
                "used": used,
            }))
            .collect::<Vec<_>>(),
        "export": export,
        "warnings": settings.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_attributes_are_shown_with_their_variables() {
        let inputs = crate::settings::Inputs::of(
            &[
                ("K8S_POD_NAME", "pod-1"),
                ("POD_NAMESPACE", "shop"),
                ("OTEL_RESOURCE_ATTRIBUTES", "k8s.namespace.name=mine"),
            ],
            &[],
        );
        let settings = Settings::resolve(&inputs).unwrap();
        let text = render(&settings, Format::Text);
        assert!(
            text.contains(
                "resource from the Kubernetes downward API:\n  \
                 k8s.pod.name        pod-1  (K8S_POD_NAME)\n  \
                 k8s.namespace.name  shop   (POD_NAMESPACE, unused: OTEL_RESOURCE_ATTRIBUTES gives it)\n"
            ),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&settings, Format::Json)).unwrap();
        assert_eq!(
            json["kubernetes"][1],
            json!({"attribute": "k8s.namespace.name", "value": "shop", "variable": "POD_NAMESPACE", "used": false})
        );
        let none = Settings::resolve(&crate::settings::Inputs::of(&[], &[])).unwrap();
        assert!(!render(&none, Format::Text).contains("Kubernetes"));
    }

    #[test]
    fn header_values_are_hidden_keys_are_kept() {
        assert_eq!(
            redact(&vars::OTLP.headers, "api-key=s3cret,x-team=a%20b"),
            "api-key=***,x-team=***"
        );
        assert_eq!(redact(&vars::OTLP.headers, "garbage"), "***");
        assert_eq!(redact(&vars::SERVICE_NAME, "shop"), "shop");
    }

    #[test]
    fn malformed_headers_are_hidden_whole() {
        // The colon form is not `k=v`: its `=` makes a "name" that holds the secret.
        for raw in ["Authorization: Basic SECRET==", "a b=SECRET", "ok=1,SECRET"] {
            let shown = redact(&vars::OTLP_TRACES.headers, raw);
            assert!(!shown.contains("SECRET"), "{raw}: {shown}");
        }
    }

    #[test]
    fn urls_that_do_not_parse_are_hidden_too() {
        for (raw, shown) in [
            ("http://user:SECRET@[bad", "http://user:***@[bad"),
            ("user:SECRET@collector:4317", "user:***@collector:4317"),
            ("https://SECRET@host:4317/v1", "https://***@host:4317/v1"),
            ("http://u:pa/SECRET@host", "http://u:***@host"),
            (
                "http://[bad?token=SECRET&x#SECRET",
                "http://[bad?token=***&x#***",
            ),
        ] {
            assert_eq!(redact(&vars::OTLP.endpoint, raw), shown);
        }
    }

    #[test]
    fn url_credentials_and_query_values_are_hidden() {
        assert_eq!(
            redact(
                &vars::OTLP.endpoint,
                "https://user:pw@otlp.example.com/v1?token=abc&x=1"
            ),
            "https://user:***@otlp.example.com/v1?token=***&x=***"
        );
        assert_eq!(
            redact(&vars::OTLP.endpoint, "http://localhost:4317"),
            "http://localhost:4317"
        );
    }
}
