//! Stored spans in the JSON of Jaeger's query API, written as Jaeger v2 writes
//! OTLP spans: kind, status, scope and trace state become tags, events `logs`,
//! the parent a `CHILD_OF` reference and links `FOLLOWS_FROM` ones, the
//! resource the trace's `processes`. Tags are sorted by key, as Jaeger's are.

use std::collections::HashMap;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde_json::{Map, Value, json};

use super::store::{Stored, Trace};

/// The service of a resource without `service.name`, as Jaeger names it.
pub const NO_SERVICE: &str = "OTLPResourceNoServiceName";

pub fn service_name(resource: Option<&Resource>) -> String {
    service(resource).to_string()
}

/// The service of a resource, borrowed: searches compare it for every span.
pub fn service(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or(NO_SERVICE)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An attribute's value as plain JSON (arrays and maps nested).
pub fn any_value_json(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BytesValue(b)) => {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_value_json(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kvs)) => Value::Object(
            kvs.values
                .iter()
                .map(|kv| (kv.key.clone(), any_value_json(kv.value.as_ref())))
                .collect(),
        ),
        // An index into a profile's string table: nothing to look it up in.
        Some(any_value::Value::StringValueStrindex(i)) => json!(i),
        None => Value::Null,
    }
}

fn tag(key: &str, value: Option<&AnyValue>) -> Value {
    let (kind, value) = match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i)),
        Some(any_value::Value::DoubleValue(d)) => ("float64", json!(d)),
        Some(any_value::Value::BytesValue(_)) => ("binary", any_value_json(value)),
        Some(any_value::Value::StringValue(s)) => ("string", json!(s)),
        Some(_) => ("string", json!(any_value_json(value).to_string())),
        None => ("string", json!("")),
    };
    json!({"key": key, "type": kind, "value": value})
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({"key": key, "type": "string", "value": value})
}

fn sorted(mut tags: Vec<Value>) -> Value {
    tags.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    Value::Array(tags)
}

fn attribute_tags(attributes: &[KeyValue]) -> Vec<Value> {
    attributes
        .iter()
        .map(|kv| tag(&kv.key, kv.value.as_ref()))
        .collect()
}

/// The tags Jaeger gives a span: its attributes and what OTLP holds in fields.
pub fn span_tags(stored: &Stored<Span>) -> Vec<Value> {
    let span = &stored.item;
    let mut tags = attribute_tags(&span.attributes);
    if !stored.scope.name.is_empty() {
        tags.push(string_tag("otel.scope.name", &stored.scope.name));
    }
    if !stored.scope.version.is_empty() {
        tags.push(string_tag("otel.scope.version", &stored.scope.version));
    }
    let kind = match SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Internal => Some("internal"),
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
        SpanKind::Unspecified => None,
    };
    if let Some(kind) = kind {
        tags.push(string_tag("span.kind", kind));
    }
    if let Some(status) = &span.status {
        match StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset) {
            StatusCode::Ok => tags.push(string_tag("otel.status_code", "OK")),
            StatusCode::Error => {
                tags.push(string_tag("otel.status_code", "ERROR"));
                tags.push(json!({"key": "error", "type": "bool", "value": true}));
            }
            StatusCode::Unset => {}
        }
        if !status.message.is_empty() {
            tags.push(string_tag("otel.status_description", &status.message));
        }
    }
    if !span.trace_state.is_empty() {
        tags.push(string_tag("w3c.tracestate", &span.trace_state));
    }
    tags
}

/// One trace in Jaeger's JSON; `None` when it holds no span (only logs).
pub fn trace_json(trace: &Trace) -> Option<Value> {
    let first = trace.spans.first()?.item.decode();
    let trace_id = hex(&first.trace_id);
    let mut processes: Vec<(String, Value)> = Vec::new();
    let mut process_of: HashMap<*const Resource, String> = HashMap::new();
    let spans: Vec<Value> = trace
        .spans
        .iter()
        .map(|stored| {
            let key = std::sync::Arc::as_ptr(&stored.resource);
            let process_id = process_of
                .entry(key)
                .or_insert_with(|| {
                    let process = process_json(&stored.resource);
                    match processes.iter().find(|(_, p)| *p == process) {
                        Some((id, _)) => id.clone(),
                        None => {
                            let id = format!("p{}", processes.len() + 1);
                            processes.push((id.clone(), process));
                            id
                        }
                    }
                })
                .clone();
            span_json(&stored.decoded(), &process_id)
        })
        .collect();
    Some(json!({
        "traceID": trace_id,
        "spans": spans,
        "processes": processes.into_iter().collect::<Map<String, Value>>(),
        "warnings": null,
    }))
}

fn process_json(resource: &Resource) -> Value {
    let tags: Vec<Value> = resource
        .attributes
        .iter()
        .filter(|kv| kv.key != "service.name")
        .map(|kv| tag(&kv.key, kv.value.as_ref()))
        .collect();
    json!({"serviceName": service_name(Some(resource)), "tags": sorted(tags)})
}

fn span_json(stored: &Stored<Span>, process_id: &str) -> Value {
    let span = &stored.item;
    let trace_id = hex(&span.trace_id);
    let mut references = Vec::new();
    if span.parent_span_id.iter().any(|b| *b != 0) {
        references.push(json!({
            "refType": "CHILD_OF",
            "traceID": trace_id,
            "spanID": hex(&span.parent_span_id),
        }));
    }
    for link in &span.links {
        references.push(json!({
            "refType": "FOLLOWS_FROM",
            "traceID": hex(&link.trace_id),
            "spanID": hex(&link.span_id),
        }));
    }
    let logs: Vec<Value> = span
        .events
        .iter()
        .map(|event| {
            let mut fields = vec![string_tag("event", &event.name)];
            fields.extend(attribute_tags(&event.attributes));
            json!({"timestamp": event.time_unix_nano / 1000, "fields": fields})
        })
        .collect();
    let start = span.start_time_unix_nano / 1000;
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000;
    json!({
        "traceID": trace_id,
        "spanID": hex(&span.span_id),
        "operationName": span.name,
        "references": references,
        "startTime": start,
        "duration": duration,
        "tags": sorted(span_tags(stored)),
        "logs": logs,
        "processID": process_id,
        "warnings": null,
    })
}

/// A log record for `/api/otel-run/logs`.
pub fn log_json(stored: &Stored<opentelemetry_proto::tonic::logs::v1::LogRecord>) -> Value {
    let record = &stored.item;
    let attributes: Map<String, Value> = record
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value_json(kv.value.as_ref())))
        .collect();
    json!({
        "timestamp": record.time_unix_nano / 1000,
        "observedTimestamp": record.observed_time_unix_nano / 1000,
        "severityText": record.severity_text,
        "severityNumber": record.severity_number,
        "body": any_value_json(record.body.as_ref()),
        "attributes": attributes,
        "traceID": hex(&record.trace_id),
        "spanID": hex(&record.span_id),
        "serviceName": service_name(Some(&stored.resource)),
        "scope": stored.scope.name,
    })
}

/// A tag's value as the text a `tags=` query compares with.
pub fn tag_text(tag: &Value) -> String {
    match &tag["value"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
