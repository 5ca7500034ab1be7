//! Jaeger's trace search over the store: `service` (required), `operation`,
//! `tags` (a JSON object, or repeated `tag=key:value`), `minDuration` and
//! `maxDuration` (Go durations: `1.5s`, `200ms`), `start` and `end`
//! (microseconds since the epoch) and `limit`. A trace matches when one span
//! of the service meets every condition; the newest traces come first.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::jaeger::{self, service, span_tags, tag_text};
use super::store::{SpanEntry, Store, Stored, Trace};
use opentelemetry_proto::tonic::trace::v1::Span;

/// Traces answered when the query names no limit.
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Default, PartialEq)]
pub struct Query {
    pub service: String,
    pub operation: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Microseconds.
    pub min_duration: Option<u64>,
    pub max_duration: Option<u64>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub limit: usize,
}

impl Query {
    /// The query of `/api/traces?...`, or the message Jaeger answers a bad one with.
    pub fn parse(raw: &str) -> Result<Query, String> {
        let mut query = Query {
            limit: DEFAULT_LIMIT,
            ..Query::default()
        };
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let value = value.into_owned();
            if value.is_empty() {
                continue;
            }
            let micros = |v: &str| {
                v.parse::<u64>().map_err(|_| {
                    format!("unable to parse param '{key}': `{v}` is not microseconds")
                })
            };
            match &*key {
                "service" => query.service = value,
                "operation" => query.operation = Some(value),
                "tags" => {
                    let tags: BTreeMap<String, Value> = serde_json::from_str(&value)
                        .map_err(|e| format!("malformed 'tags' parameter: {e}"))?;
                    for (k, v) in tags {
                        let text = match v {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        query.tags.insert(k, text);
                    }
                }
                "tag" => {
                    let (k, v) = value.split_once(':').ok_or_else(|| {
                        format!("malformed 'tag' parameter, expecting key:value, got `{value}`")
                    })?;
                    query.tags.insert(k.to_string(), v.to_string());
                }
                "minDuration" => query.min_duration = Some(duration(&value)?),
                "maxDuration" => query.max_duration = Some(duration(&value)?),
                "start" => query.start = Some(micros(&value)?),
                "end" => query.end = Some(micros(&value)?),
                "limit" => {
                    query.limit = value
                        .parse()
                        .map_err(|_| format!("unable to parse param 'limit': `{value}`"))?
                }
                _ => {}
            }
        }
        if query.service.is_empty() {
            return Err("parameter 'service' is required".into());
        }
        Ok(query)
    }

    fn matches(&self, span: &Stored<SpanEntry>) -> bool {
        let s = &span.item;
        let start = s.start / 1000;
        let duration = s.end.saturating_sub(s.start) / 1000;
        service(Some(&span.resource)) == self.service
            && self.operation.as_ref().is_none_or(|o| **o == *s.name)
            && self.min_duration.is_none_or(|d| duration >= d)
            && self.max_duration.is_none_or(|d| duration <= d)
            && self.start.is_none_or(|t| start >= t)
            && self.end.is_none_or(|t| start <= t)
            && (self.tags.is_empty() || self.tags_match(&span.decoded()))
    }

    /// Every tag is one of the span's, its resource's or its events'.
    fn tags_match(&self, span: &Stored<Span>) -> bool {
        let mut have: Vec<(String, String)> = span_tags(span)
            .iter()
            .map(|t| (t["key"].as_str().unwrap_or("").to_string(), tag_text(t)))
            .collect();
        let plain = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            kvs.iter()
                .map(|kv| {
                    let v = jaeger::any_value_json(kv.value.as_ref());
                    let text = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (kv.key.clone(), text)
                })
                .collect::<Vec<_>>()
        };
        have.extend(plain(&span.resource.attributes));
        for event in &span.item.events {
            have.extend(plain(&event.attributes));
        }
        self.tags
            .iter()
            .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
    }
}

/// A Go duration (`1h2m3.5s`, `250ms`, `10us`) in microseconds.
pub fn duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "unable to parse param 'duration': `{text}` is not a duration such as `1.5s` or `200ms`"
        )
    };
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let micros = match &rest[..unit_len] {
            "ns" => 0.001,
            "us" | "µs" => 1.0,
            "ms" => 1_000.0,
            "s" => 1_000_000.0,
            "m" => 60_000_000.0,
            "h" => 3_600_000_000.0,
            _ => return Err(bad()),
        };
        total += number * micros;
        rest = &rest[unit_len..];
    }
    Ok(total as u64)
}

/// The traces `query` finds, newest first, in Jaeger's JSON.
pub fn search(store: &Store, query: &Query) -> Vec<Value> {
    store.read(|traces| {
        let mut found: Vec<(u64, &Trace)> = traces
            .values()
            .filter(|t| t.spans.iter().any(|s| query.matches(s)))
            .map(|t| (t.start(), t))
            .collect();
        found.sort_unstable_by_key(|(start, _)| std::cmp::Reverse(*start));
        found.truncate(query.limit.max(1));
        found
            .into_iter()
            .filter_map(|(_, t)| jaeger::trace_json(t))
            .collect()
    })
}

/// Every service with a span stored, sorted.
pub fn services(store: &Store) -> Vec<String> {
    store.read(|traces| {
        let names: BTreeSet<&str> = traces
            .values()
            .flat_map(|t| &t.spans)
            .map(|s| service(Some(&s.resource)))
            .collect();
        names.into_iter().map(str::to_string).collect()
    })
}

/// The span names of a service, sorted, each with its kinds (for `/api/operations`).
pub fn operations(store: &Store, service_name: &str) -> BTreeMap<String, BTreeSet<i32>> {
    store.read(|traces| {
        let mut names: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for span in traces.values().flat_map(|t| &t.spans) {
            if jaeger::service(Some(&span.resource)) == service_name {
                names
                    .entry(span.item.name.to_string())
                    .or_default()
                    .insert(span.item.kind);
            }
        }
        names
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_to_microseconds() {
        assert_eq!(duration("1.5s"), Ok(1_500_000));
        assert_eq!(duration("200ms"), Ok(200_000));
        assert_eq!(duration("1m30s"), Ok(90_000_000));
        assert_eq!(duration("10us"), Ok(10));
        assert!(duration("fast").is_err());
        assert!(duration("10").is_err());
    }

    #[test]
    fn a_query_needs_a_service_and_reads_tags_both_ways() {
        assert_eq!(
            Query::parse("limit=5"),
            Err("parameter 'service' is required".into())
        );
        let q = Query::parse("service=a&tags=%7B%22k%22%3A%22v%22%7D&tag=x:y&limit=5").unwrap();
        assert_eq!(q.service, "a");
        assert_eq!(q.limit, 5);
        assert_eq!(q.tags.get("k").map(String::as_str), Some("v"));
        assert_eq!(q.tags.get("x").map(String::as_str), Some("y"));
    }
}
