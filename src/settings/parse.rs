//! Validation of raw setting values, and the typed readers for validated ones.
//!
//! A value is checked once, when settings are resolved, and kept in a normal form
//! (choices lower-cased, lists trimmed); the readers here then cannot fail on it.

use std::time::Duration;

use super::report::redact_part;
use super::vars::{Kind, Var};
use percent_encoding::percent_decode_str;

/// The longest duration a setting may give: a year. Longer ones mean "never"
/// in practice, and deadlines computed as `Instant::now() + d` must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Why a raw value is not valid for its setting: the text finishes the sentence
/// "expected ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub expected: String,
}

fn invalid(expected: impl Into<String>) -> Invalid {
    Invalid {
        expected: expected.into(),
    }
}

/// Checks `raw` against the setting's kind and returns its normal form.
pub fn normalize(var: &Var, raw: &str) -> Result<String, Invalid> {
    let raw = raw.trim();
    match var.kind {
        Kind::Text | Kind::Path => Ok(raw.to_string()),
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_string()),
            _ => Err(invalid("`true` or `false`")),
        },
        Kind::Count => raw
            .parse::<u64>()
            .map(|n| n.to_string())
            .map_err(|_| invalid("a whole number, e.g. `512`")),
        Kind::Port => raw
            .parse::<u16>()
            .ok()
            .filter(|&port| port > 0)
            .map(|port| port.to_string())
            .ok_or_else(|| invalid("a port from 1 to 65535, e.g. `9464`")),
        Kind::Millis => raw
            .parse::<u64>()
            .ok()
            .filter(|&ms| u128::from(ms) <= MAX_DURATION.as_millis())
            .map(|ms| ms.to_string())
            .ok_or_else(|| {
                invalid(format!(
                    "a whole number of milliseconds up to {} (a year), e.g. `5000`",
                    MAX_DURATION.as_millis()
                ))
            }),
        Kind::Choice(choices) => {
            let lower = raw.to_ascii_lowercase();
            if choices.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                Err(invalid(format!("one of {}", quoted(choices))))
            }
        }
        Kind::ChoiceList(choices) => {
            let items = list(raw);
            if items.is_empty() {
                return Err(invalid(format!("one or more of {}", quoted(choices))));
            }
            for item in &items {
                if !choices.contains(&item.as_str()) {
                    return Err(invalid(format!(
                        "one or more of {} (not `{item}`)",
                        quoted(choices)
                    )));
                }
            }
            if items.len() > 1 && items.iter().any(|i| i == "none") {
                return Err(invalid("`none` alone, or a list without `none`"));
            }
            Ok(items.join(","))
        }
        // Open lists keep unknown names: they may be provided by the child's own packages.
        Kind::OpenList(_) => Ok(list(raw).join(",")),
        Kind::KeyValues => {
            key_values(raw)?;
            Ok(raw.to_string())
        }
        Kind::Headers => {
            headers(raw)?;
            Ok(raw.to_string())
        }
        Kind::Url => {
            url_of(raw, false)?;
            Ok(raw.to_string())
        }
    }
}

/// A comma-separated list: trimmed, lower-cased, empty items dropped.
pub fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses `k=v,k2=v2` with percent-decoded keys and values, as the specification
/// gives for OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS.
pub fn key_values(raw: &str) -> Result<Vec<(String, String)>, Invalid> {
    let mut pairs = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(invalid(format!(
                "`key=value` pairs separated by commas (`{}` has no `=`)",
                redact_part(item)
            )));
        };
        let key = decode(key.trim())?;
        if key.is_empty() {
            return Err(invalid("`key=value` pairs with non-empty keys"));
        }
        pairs.push((key, decode(value.trim())?));
    }
    Ok(pairs)
}

/// Parses OTLP headers: `key=value` pairs whose keys are header names that HTTP
/// and gRPC both accept and whose values are visible ASCII, so that every
/// exporter can send them.
pub fn headers(raw: &str) -> Result<Vec<(String, String)>, Invalid> {
    let pairs = key_values(raw)?;
    for (name, value) in &pairs {
        // gRPC metadata keys ending in `-bin` carry binary values, which text cannot give.
        let binary = name.to_ascii_lowercase().ends_with("-bin");
        if binary || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(format!(
                "`name=value` pairs whose names are HTTP header names such as `api-key` (`{}` is not)",
                redact_part(name)
            )));
        }
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(invalid(format!(
                "header values of visible ASCII characters (the value of `{name}` has others)"
            )));
        }
    }
    Ok(pairs)
}

fn decode(s: &str) -> Result<String, Invalid> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| invalid("percent-encoded UTF-8 keys and values"))
}

/// Parses an endpoint. `host:port` without a scheme (as some guides write for
/// gRPC) gets `http://` when `insecure`, else `https://`, as the Python SDK does.
pub fn url_of(raw: &str, insecure: bool) -> Result<url::Url, Invalid> {
    let expected = "an `http://` or `https://` URL, e.g. `http://localhost:4317`";
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{raw}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| invalid(expected))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(invalid(expected)),
    }
}

fn quoted(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::vars;

    #[test]
    fn choices_are_case_insensitive_and_normalized() {
        assert_eq!(
            normalize(&vars::TRACES_SAMPLER, " AlWays_On ").unwrap(),
            "always_on"
        );
        assert_eq!(
            normalize(&vars::OTLP.protocol, "HTTP/Protobuf").unwrap(),
            "http/protobuf"
        );
    }

    #[test]
    fn unknown_choice_lists_the_valid_ones() {
        let err = normalize(&vars::LOGS_EXPORTER, "zipkin").unwrap_err();
        assert_eq!(
            err.expected,
            "one or more of `otlp`, `console`, `logging`, `none` (not `zipkin`)"
        );
        // Each signal takes the specification's names for it.
        assert!(normalize(&vars::TRACES_EXPORTER, "zipkin,jaeger").is_ok());
        assert!(normalize(&vars::METRICS_EXPORTER, "prometheus").is_ok());
        assert!(normalize(&vars::METRICS_EXPORTER, "zipkin").is_err());
    }

    #[test]
    fn exporter_lists() {
        assert_eq!(
            normalize(&vars::TRACES_EXPORTER, "otlp, Console").unwrap(),
            "otlp,console"
        );
        assert!(normalize(&vars::TRACES_EXPORTER, "otlp,none").is_err());
        assert!(normalize(&vars::TRACES_EXPORTER, " , ").is_err());
    }

    #[test]
    fn propagators_are_an_open_set() {
        assert_eq!(
            normalize(&vars::PROPAGATORS, "tracecontext,kontur,vostok").unwrap(),
            "tracecontext,kontur,vostok"
        );
    }

    #[test]
    fn ports_are_1_to_65535() {
        assert_eq!(normalize(&vars::PROMETHEUS_PORT, "9464").unwrap(), "9464");
        for bad in ["0", "65536", "70000", "-1", "http"] {
            let err = normalize(&vars::PROMETHEUS_PORT, bad).unwrap_err();
            assert!(err.expected.contains("1 to 65535"), "{bad}");
        }
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(normalize(&vars::BSP_SCHEDULE_DELAY, "250").unwrap(), "250");
        assert!(
            normalize(&vars::BSP_SCHEDULE_DELAY, "5s")
                .unwrap_err()
                .expected
                .contains("milliseconds")
        );
        assert!(normalize(&vars::BSP_MAX_QUEUE_SIZE, "-1").is_err());
    }

    #[test]
    fn durations_stop_at_a_year() {
        let year = MAX_DURATION.as_millis().to_string();
        assert_eq!(normalize(&vars::OTLP.timeout, &year).unwrap(), year);
        // Every duration setting, through its kind: none may overflow a deadline.
        for var in vars::ALL.iter().filter(|v| v.kind == Kind::Millis) {
            let err = normalize(var, "400000000000000").unwrap_err();
            assert!(
                err.expected.contains("up to 31536000000 (a year)"),
                "{}",
                var.name
            );
            assert!(
                std::time::Instant::now()
                    .checked_add(MAX_DURATION)
                    .is_some()
            );
        }
    }

    #[test]
    fn headers_are_header_names_with_ascii_values() {
        assert_eq!(
            headers("api-key=s3cret,X-Tenant=a%20b").unwrap(),
            vec![
                ("api-key".into(), "s3cret".into()),
                ("X-Tenant".into(), "a b".into())
            ]
        );
        for (raw, why) in [
            ("a b=1", "`a b` is not"),
            ("Authorization: Basic SECRET==", "`Aut…` is not"),
            ("trace-bin=x", "`tra…` is not"),
            ("k=caf%C3%A9", "the value of `k` has others"),
            ("k=line%0Abreak", "the value of `k` has others"),
        ] {
            let err = normalize(&vars::OTLP.headers, raw).unwrap_err();
            assert!(err.expected.contains(why), "{raw}: {}", err.expected);
            assert!(!err.expected.contains("SECRET"), "{}", err.expected);
        }
        // Resource attributes are not headers: any text goes.
        assert!(normalize(&vars::RESOURCE_ATTRIBUTES, "a b=café").is_ok());
    }

    #[test]
    fn booleans() {
        assert_eq!(normalize(&vars::SDK_DISABLED, "TRUE").unwrap(), "true");
        assert!(normalize(&vars::SDK_DISABLED, "yes").is_err());
    }

    #[test]
    fn key_values_are_percent_decoded() {
        let pairs = key_values("api-key=a%20b%3Dc , x=1,,").unwrap();
        assert_eq!(
            pairs,
            vec![("api-key".into(), "a b=c".into()), ("x".into(), "1".into())]
        );
    }

    #[test]
    fn malformed_key_values_do_not_echo_the_secret() {
        let err = key_values("authorization").unwrap_err();
        assert!(err.expected.contains("`aut…`"), "{}", err.expected);
        assert!(key_values("=v").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            url_of("http://localhost:4317", false).unwrap().as_str(),
            "http://localhost:4317/"
        );
        assert_eq!(url_of("0.0.0.0:4317", true).unwrap().scheme(), "http");
        assert_eq!(url_of("collector:4317", false).unwrap().scheme(), "https");
        assert!(url_of("ftp://x", false).is_err());
        assert!(normalize(&vars::OTLP.endpoint, "http://").is_err());
    }
}
