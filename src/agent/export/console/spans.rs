//! Spans in the shape of Python's `ConsoleSpanExporter` (`ReadableSpan.to_json()`:
//! 4-space indent, ASCII-escaped, `0x` ids, microsecond UTC times), so output users
//! know from `opentelemetry-instrument --traces_exporter console` looks the same.

use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, Span, span::SpanKind, status::StatusCode,
};

use super::json::{self, Bytes, Json, hex_id, obj, time};

/// One record per span of `resource_spans`.
pub fn records(resource_spans: &ResourceSpans) -> Vec<String> {
    let resource = json::resource(resource_spans.resource.as_ref(), &resource_spans.schema_url);
    resource_spans
        .scope_spans
        .iter()
        .flat_map(|s| &s.spans)
        .map(|span| span_json(span, resource.clone()).record())
        .collect()
}

fn span_json(span: &Span, resource: Json) -> Json {
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Internal);
    let kind = match kind {
        SpanKind::Server => "SpanKind.SERVER",
        SpanKind::Client => "SpanKind.CLIENT",
        SpanKind::Producer => "SpanKind.PRODUCER",
        SpanKind::Consumer => "SpanKind.CONSUMER",
        SpanKind::Internal | SpanKind::Unspecified => "SpanKind.INTERNAL",
    };
    let (code, description) = match &span.status {
        Some(s) => (
            StatusCode::try_from(s.code).unwrap_or(StatusCode::Unset),
            s.message.as_str(),
        ),
        None => (StatusCode::Unset, ""),
    };
    let mut status = vec![(
        "status_code",
        Json::Str(
            match code {
                StatusCode::Ok => "OK",
                StatusCode::Error => "ERROR",
                StatusCode::Unset => "UNSET",
            }
            .into(),
        ),
    )];
    if !description.is_empty() {
        status.push(("description", Json::Str(description.into())));
    }
    let parent = if span.parent_span_id.iter().any(|b| *b != 0) {
        hex_id(&span.parent_span_id)
    } else {
        Json::Null
    };
    obj(vec![
        ("name", Json::Str(span.name.clone())),
        (
            "context",
            context(&span.trace_id, &span.span_id, &span.trace_state),
        ),
        ("kind", Json::Str(kind.into())),
        ("parent_id", parent),
        ("start_time", time(span.start_time_unix_nano)),
        ("end_time", time(span.end_time_unix_nano)),
        ("status", obj(status)),
        ("attributes", json::attributes(&span.attributes, Bytes::Hex)),
        (
            "events",
            Json::Arr(
                span.events
                    .iter()
                    .map(|e| {
                        obj(vec![
                            ("name", Json::Str(e.name.clone())),
                            ("timestamp", time(e.time_unix_nano)),
                            ("attributes", json::attributes(&e.attributes, Bytes::Hex)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "links",
            Json::Arr(
                span.links
                    .iter()
                    .map(|l| {
                        obj(vec![
                            ("context", context(&l.trace_id, &l.span_id, &l.trace_state)),
                            ("attributes", json::attributes(&l.attributes, Bytes::Hex)),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("resource", resource),
    ])
}

fn context(trace_id: &[u8], span_id: &[u8], trace_state: &str) -> Json {
    obj(vec![
        ("trace_id", hex_id(trace_id)),
        ("span_id", hex_id(span_id)),
        ("trace_state", Json::Str(trace_state_repr(trace_state))),
    ])
}

/// Python prints a trace state as the `repr()` of a list of `{key=K, value=V}`.
fn trace_state_repr(trace_state: &str) -> String {
    let entries: Vec<String> = trace_state
        .split(',')
        .filter_map(|e| e.trim().split_once('='))
        .map(|(k, v)| py_repr(&format!("{{key={}, value={}}}", k.trim(), v.trim())))
        .collect();
    format!("[{}]", entries.join(", "))
}

/// Python's `repr()` of a printable string.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        if c == quote || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status, span};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn trace_state_prints_as_python_does() {
        assert_eq!(trace_state_repr(""), "[]");
        assert_eq!(
            trace_state_repr("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            "['{key=congo, value=t61rcWkgMzE}', '{key=rojo, value=00f067aa0ba902b7}']"
        );
    }

    /// The expected text is what opentelemetry-sdk 1.45.2's ConsoleSpanExporter
    /// printed for a span with the same fields.
    #[test]
    fn span_matches_python_console_exporter() {
        let t0 = 1_700_000_000_000_000_000u64;
        let span = Span {
            trace_id: (0u8..16).collect(),
            span_id: vec![0, 0xab, 0, 0, 0, 0, 0, 2],
            parent_span_id: vec![0, 0xab, 0, 0, 0, 0, 0, 1],
            name: "child-op".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: t0 + 10_000,
            end_time_unix_nano: t0 + 20_000,
            attributes: vec![
                kv("i", any_value::Value::IntValue(42)),
                kv(
                    "ls",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::StringValue("a".into())),
                        }],
                    }),
                ),
            ],
            status: Some(Status {
                message: "something broke".into(),
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        let rs = ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("demo-svc".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
        };
        let out = records(&rs).concat();
        let expected = r#"{
    "name": "child-op",
    "context": {
        "trace_id": "0x000102030405060708090a0b0c0d0e0f",
        "span_id": "0x00ab000000000002",
        "trace_state": "[]"
    },
    "kind": "SpanKind.CLIENT",
    "parent_id": "0x00ab000000000001",
    "start_time": "2023-11-14T22:13:20.000010Z",
    "end_time": "2023-11-14T22:13:20.000020Z",
    "status": {
        "status_code": "ERROR",
        "description": "something broke"
    },
    "attributes": {
        "i": 42,
        "ls": [
            "a"
        ]
    },
    "events": [],
    "links": [],
    "resource": {
        "attributes": {
            "service.name": "demo-svc"
        },
        "schema_url": "https://opentelemetry.io/schemas/1.21.0"
    }
}
"#;
        assert_eq!(out, expected);
    }
}
