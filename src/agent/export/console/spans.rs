//! The `console` exporter. Spans are printed in the shape of Python's
//! `ConsoleSpanExporter` (`ReadableSpan.to_json()`: 4-space indent, ASCII-escaped,
//! `0x` ids, microsecond UTC times), so output users know from
//! `opentelemetry-instrument --traces_exporter console` looks the same. Metrics and
//! logs are printed as one OTLP/JSON line per resource.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, Span, span::SpanKind, status::StatusCode,
};

use super::{ExportError, Payload};
use crate::context::hex;

/// Where console output goes.
pub enum Output {
    Stderr,
    Stdout,
    File(PathBuf, Mutex<File>),
}

pub struct Console {
    output: Output,
}

impl Console {
    /// `stderr`, `stdout`, or a file path (created, appended to).
    pub fn open(target: &str) -> std::io::Result<Console> {
        let output = match target {
            "stderr" => Output::Stderr,
            "stdout" => Output::Stdout,
            path => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Output::File(PathBuf::from(path), Mutex::new(file))
            }
        };
        Ok(Console { output })
    }

    pub fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        let mut text = String::new();
        for item in batch {
            item.to_console(&mut text);
        }
        let result = match &self.output {
            Output::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Output::File(_, file) => file
                .lock()
                .expect("console file lock")
                .write_all(text.as_bytes()),
        };
        result.map_err(|e| ExportError::Permanent(format!("cannot write console output: {e}")))
    }

    pub fn describe(&self) -> String {
        match &self.output {
            Output::Stderr => "console (stderr)".into(),
            Output::Stdout => "console (stdout)".into(),
            Output::File(path, _) => format!("console (`{}`)", path.display()),
        }
    }
}

/// Appends every span of `resource_spans`, each followed by a newline.
pub fn spans(resource_spans: &ResourceSpans, out: &mut String) {
    let resource = obj(vec![
        (
            "attributes",
            attributes(
                resource_spans
                    .resource
                    .as_ref()
                    .map_or(&[][..], |r| &r.attributes),
            ),
        ),
        ("schema_url", Json::Str(resource_spans.schema_url.clone())),
    ]);
    for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
        span_json(span, resource.clone()).write(out, 0);
        out.push('\n');
    }
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
        Json::Str(format!("0x{}", hex(&span.parent_span_id)))
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
        ("attributes", attributes(&span.attributes)),
        (
            "events",
            Json::Arr(
                span.events
                    .iter()
                    .map(|e| {
                        obj(vec![
                            ("name", Json::Str(e.name.clone())),
                            ("timestamp", time(e.time_unix_nano)),
                            ("attributes", attributes(&e.attributes)),
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
                            ("attributes", attributes(&l.attributes)),
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
        ("trace_id", Json::Str(format!("0x{}", hex(trace_id)))),
        ("span_id", Json::Str(format!("0x{}", hex(span_id)))),
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

/// Python's `ns_to_iso_str`: the nanoseconds go through a float and are rounded
/// to microseconds; 0 is `null`.
fn time(nanos: u64) -> Json {
    if nanos == 0 {
        return Json::Null;
    }
    let seconds = nanos as f64 / 1e9;
    let mut whole = seconds.trunc();
    let mut micros = (seconds.fract() * 1e6).round_ties_even();
    if micros >= 1e6 {
        micros -= 1e6;
        whole += 1.0;
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(whole as u64);
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    Json::Str(format!(
        "{}.{:06}Z",
        stamp.trim_end_matches('Z'),
        micros as u32
    ))
}

fn attributes(kvs: &[KeyValue]) -> Json {
    Json::Obj(
        kvs.iter()
            .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
            .collect(),
    )
}

/// An object from fixed keys.
fn obj(items: Vec<(&str, Json)>) -> Json {
    Json::Obj(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn value(v: Option<&AnyValue>) -> Json {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::Str(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::Int(*i),
        Some(Value::DoubleValue(f)) => Json::Float(*f),
        Some(Value::ArrayValue(a)) => Json::Arr(a.values.iter().map(|v| value(Some(v))).collect()),
        Some(Value::KvlistValue(kv)) => attributes(&kv.values),
        Some(Value::BytesValue(b)) => Json::Str(format!("0x{}", hex(b))),
        Some(Value::StringValueStrindex(i)) => Json::Int(i64::from(*i)),
    }
}

/// A JSON value written as Python's `json.dumps(indent=4)` writes it.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String, depth: usize) {
        let pad = |out: &mut String, depth: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', depth * 4));
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Float(f) => out.push_str(&py_float(*f)),
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Obj(items) if items.is_empty() => out.push_str("{}"),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    item.write(out, depth + 1);
                }
                pad(out, depth);
                out.push(']');
            }
            Json::Obj(items) => {
                out.push('{');
                for (i, (key, item)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    write_str(out, key);
                    out.push_str(": ");
                    item.write(out, depth + 1);
                }
                pad(out, depth);
                out.push('}');
            }
        }
    }
}

/// A JSON string with Python's `ensure_ascii` escaping.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr()` of a float: the shortest round-trip digits, in exponent form
/// when the exponent is below -4 or at least 16.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("exponent is a number");
    if (-4..16).contains(&exp) {
        let plain = format!("{f}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
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
    fn floats_print_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (3.5, "3.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-7, "1e-07"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (-0.0, "-0.0"),
        ];
        for (f, expected) in cases {
            assert_eq!(py_float(f), expected, "{f}");
        }
    }

    #[test]
    fn times_round_to_microseconds_through_a_float_like_python() {
        let t0 = 1_700_000_000_000_000_000u64;
        assert_eq!(
            time(t0 + 10_000),
            Json::Str("2023-11-14T22:13:20.000010Z".into())
        );
        assert_eq!(
            time(t0 + 123_456_789),
            Json::Str("2023-11-14T22:13:20.123457Z".into())
        );
        assert_eq!(
            time(t0 + 999_999_600),
            Json::Str("2023-11-14T22:13:21.000000Z".into())
        );
        assert!(matches!(time(0), Json::Null));
    }

    #[test]
    fn strings_are_ascii_escaped() {
        let mut out = String::new();
        write_str(&mut out, "h\u{e9}llo \u{2713} \"q\" \\ \n\t\u{1} \u{1F600}");
        assert_eq!(
            out,
            r#""h\u00e9llo \u2713 \"q\" \\ \n\t\u0001 \ud83d\ude00""#
        );
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
        let mut out = String::new();
        spans(&rs, &mut out);
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
