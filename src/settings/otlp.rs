//! The OTLP export target of one signal, from the general and per-signal settings.
//!
//! Rules of the specification: a per-signal setting wins over the general one; the
//! general endpoint gets `v1/traces` (etc.) appended for HTTP, a per-signal endpoint
//! is used as given; gRPC endpoints are used as given.

use std::path::PathBuf;
use std::time::Duration;

use super::vars::{self, Otlp, Var};
use super::{Settings, parse};

/// A telemetry signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What the signal's records are called, counting them.
    pub fn records(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// The path an OTLP/HTTP endpoint serves this signal on.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// The OTEL_*_EXPORTER setting of this signal.
    pub fn exporter_var(self) -> &'static Var {
        match self {
            Signal::Traces => &vars::TRACES_EXPORTER,
            Signal::Metrics => &vars::METRICS_EXPORTER,
            Signal::Logs => &vars::LOGS_EXPORTER,
        }
    }

    /// The per-signal OTLP settings.
    pub fn otlp(self) -> &'static Otlp {
        match self {
            Signal::Traces => &vars::OTLP_TRACES,
            Signal::Metrics => &vars::OTLP_METRICS,
            Signal::Logs => &vars::OTLP_LOGS,
        }
    }
}

/// One exporter of an OTEL_*_EXPORTER list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    Otlp,
    /// Spans in Zipkin's v2 JSON (traces only).
    Zipkin,
    /// A name the specification keeps for Jaeger, which takes OTLP: spans go
    /// to it as OTLP (traces only).
    Jaeger,
    /// A scrape endpoint the agent serves (metrics only).
    Prometheus,
    Console,
    None,
}

impl ExporterKind {
    /// The names each signal's setting takes: the specification's, with
    /// `logging` as the deprecated name of `console`.
    pub const TRACES: &[&str] = &["otlp", "zipkin", "jaeger", "console", "logging", "none"];
    pub const METRICS: &[&str] = &["otlp", "prometheus", "console", "logging", "none"];
    pub const LOGS: &[&str] = &["otlp", "console", "logging", "none"];

    pub fn parse(name: &str) -> Option<ExporterKind> {
        match name {
            "otlp" => Some(ExporterKind::Otlp),
            "zipkin" => Some(ExporterKind::Zipkin),
            "jaeger" => Some(ExporterKind::Jaeger),
            "prometheus" => Some(ExporterKind::Prometheus),
            "console" | "logging" => Some(ExporterKind::Console),
            "none" => Some(ExporterKind::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExporterKind::Otlp => "otlp",
            ExporterKind::Zipkin => "zipkin",
            ExporterKind::Jaeger => "jaeger",
            ExporterKind::Prometheus => "prometheus",
            ExporterKind::Console => "console",
            ExporterKind::None => "none",
        }
    }

    /// Sends OTLP to the signal's OTLP target.
    pub fn is_otlp(self) -> bool {
        matches!(self, ExporterKind::Otlp | ExporterKind::Jaeger)
    }
}

impl Settings {
    /// The exporters a signal's setting names.
    pub fn exporters(&self, signal: Signal) -> Vec<ExporterKind> {
        self.list(signal.exporter_var())
            .iter()
            .filter_map(|name| ExporterKind::parse(name))
            .collect()
    }

    /// Whether a signal is exported at all: OpenTelemetry is not disabled and
    /// the signal has an exporter that is not `none`.
    pub fn exports(&self, signal: Signal) -> bool {
        !self.disabled()
            && self
                .exporters(signal)
                .iter()
                .any(|e| *e != ExporterKind::None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }

    fn parse(s: &str) -> Protocol {
        match s {
            "http/protobuf" => Protocol::HttpProtobuf,
            "http/json" => Protocol::HttpJson,
            _ => Protocol::Grpc,
        }
    }
}

/// The protocol when none is set. The specification suggests `http/protobuf`, but
/// otel-run follows `opentelemetry-instrument`, whose users' commands
/// (`--exporter_otlp_endpoint http://localhost:4317`) expect gRPC.
pub const DEFAULT_PROTOCOL: Protocol = Protocol::Grpc;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to export one signal over OTLP.
#[derive(Debug, Clone)]
pub struct Target {
    pub signal: Signal,
    pub url: url::Url,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
}

impl Target {
    pub fn of(settings: &Settings, signal: Signal) -> Target {
        let specific = signal.otlp();
        // Per-signal value, else general value; `var` picks the same setting of both.
        let pick = |var: fn(&'static Otlp) -> &'static Var| {
            settings
                .text(var(specific))
                .map(|v| (v, true))
                .or_else(|| settings.text(var(&vars::OTLP)).map(|v| (v, false)))
        };
        let protocol = pick(|o| &o.protocol).map_or(DEFAULT_PROTOCOL, |(p, _)| Protocol::parse(p));
        let insecure = pick(|o| &o.insecure).is_some_and(|(v, _)| v == "true");
        let url = match pick(|o| &o.endpoint) {
            Some((raw, specific)) => {
                // Validated when resolved; a scheme-less value gets one here.
                let mut url = parse::url_of(raw, insecure).expect("endpoint validated");
                if !specific && protocol != Protocol::Grpc {
                    append_path(&mut url, signal.http_path());
                }
                url
            }
            None => default_url(protocol, signal),
        };
        let path = |var| pick(var).map(|(v, _)| PathBuf::from(v));
        Target {
            signal,
            url,
            protocol,
            headers: pick(|o| &o.headers)
                .and_then(|(v, _)| parse::headers(v).ok())
                .unwrap_or_default(),
            gzip: pick(|o| &o.compression).is_some_and(|(v, _)| v == "gzip"),
            timeout: pick(|o| &o.timeout)
                .and_then(|(v, _)| v.parse().ok())
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            certificate: path(|o| &o.certificate),
            client_key: path(|o| &o.client_key),
            client_certificate: path(|o| &o.client_certificate),
        }
    }
}

fn default_url(protocol: Protocol, signal: Signal) -> url::Url {
    let text = match protocol {
        Protocol::Grpc => "http://localhost:4317".to_string(),
        _ => format!("http://localhost:4318{}", signal.http_path()),
    };
    url::Url::parse(&text).expect("default endpoint is a URL")
}

fn append_path(url: &mut url::Url, path: &str) {
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Inputs;

    fn target(env: &[(&str, &str)], signal: Signal) -> Target {
        let inputs = Inputs::of(env, &[]);
        Target::of(&Settings::resolve(&inputs).unwrap(), signal)
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let t = target(&[], Signal::Traces);
        assert_eq!(
            (t.url.as_str(), t.protocol),
            ("http://localhost:4317/", Protocol::Grpc)
        );
        let t = target(
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
            Signal::Logs,
        );
        assert_eq!(t.url.as_str(), "http://localhost:4318/v1/logs");
        assert_eq!(t.timeout, Duration::from_secs(10));
    }

    #[test]
    fn general_http_endpoint_gets_the_signal_path() {
        let env = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://otlp.example.com/prefix/",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        assert_eq!(
            target(&env, Signal::Metrics).url.as_str(),
            "https://otlp.example.com/prefix/v1/metrics"
        );
    }

    #[test]
    fn per_signal_settings_win_and_are_used_as_given() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ];
        let t = target(&env, Signal::Traces);
        assert_eq!(t.url.as_str(), "http://traces:9999/custom");
        assert_eq!(t.timeout, Duration::from_millis(500));
        assert_eq!(t.headers, vec![("a".to_string(), "1".to_string())]);
        assert!(t.gzip);
        assert_eq!(
            target(&env, Signal::Logs).url.as_str(),
            "http://general:4318/v1/logs"
        );
    }

    #[test]
    fn grpc_endpoint_is_used_as_given_and_scheme_less_follows_insecure() {
        let env = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "0.0.0.0:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ];
        assert_eq!(
            target(&env, Signal::Traces).url.as_str(),
            "http://0.0.0.0:4317/"
        );
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")];
        assert_eq!(
            target(&env, Signal::Traces).url.as_str(),
            "https://collector:4317/"
        );
    }
}
