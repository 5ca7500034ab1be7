//! JSON written as Python's `json.dumps(indent=4)` writes it (ASCII-escaped
//! strings, `repr()` floats), and the value formats Python's console exporters
//! use: ISO times rounded to microseconds, OTLP attributes as plain objects.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use crate::telemetry::hex;

/// A JSON value, keys in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Unsigned integers Python prints whole: nanosecond times, ids as numbers.
    UInt(u128),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The text of one record: the value, indented, and a newline.
    pub fn record(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let pad = |out: &mut String, depth: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', depth * 4));
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::UInt(u) => out.push_str(&u.to_string()),
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

/// An object from fixed keys.
pub fn obj(items: Vec<(&str, Json)>) -> Json {
    Json::Obj(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub fn text(s: &str) -> Json {
    Json::Str(s.to_string())
}

/// A string, or `null` when empty: what Python prints for an optional text that
/// OTLP carried as the empty string.
pub fn text_or_null(s: &str) -> Json {
    if s.is_empty() { Json::Null } else { text(s) }
}

/// An id as Python prints it in a span or log record: `0x` and lower-case hex.
pub fn hex_id(bytes: &[u8]) -> Json {
    Json::Str(format!("0x{}", hex::encode(bytes)))
}

/// How a value's bytes are printed: span attributes show them as `0x` hex, log
/// records (Python's `BytesEncoder`) as base64.
#[derive(Clone, Copy)]
pub enum Bytes {
    Hex,
    Base64,
}

/// OTLP attributes as a plain object.
pub fn attributes(kvs: &[KeyValue], bytes: Bytes) -> Json {
    Json::Obj(
        kvs.iter()
            .map(|kv| (kv.key.clone(), value(kv.value.as_ref(), bytes)))
            .collect(),
    )
}

/// The resource of a span, log record or metrics export, as Python prints it.
pub fn resource(
    resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
    schema_url: &str,
) -> Json {
    obj(vec![
        (
            "attributes",
            attributes(resource.map_or(&[][..], |r| &r.attributes), Bytes::Hex),
        ),
        ("schema_url", text(schema_url)),
    ])
}

pub fn value(v: Option<&AnyValue>, bytes: Bytes) -> Json {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::Str(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::Int(*i),
        Some(Value::DoubleValue(f)) => Json::Float(*f),
        Some(Value::ArrayValue(a)) => {
            Json::Arr(a.values.iter().map(|v| value(Some(v), bytes)).collect())
        }
        Some(Value::KvlistValue(kv)) => attributes(&kv.values, bytes),
        Some(Value::BytesValue(b)) => match bytes {
            Bytes::Hex => hex_id(b),
            Bytes::Base64 => {
                use base64::Engine as _;
                Json::Str(base64::engine::general_purpose::STANDARD.encode(b))
            }
        },
        Some(Value::StringValueStrindex(i)) => Json::Int(i64::from(*i)),
    }
}

/// Python's `ns_to_iso_str`: the nanoseconds go through a float and are rounded
/// to microseconds; 0 (unset in OTLP) is `null`.
pub fn time(nanos: u64) -> Json {
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
    fn bytes_print_as_hex_in_spans_and_base64_in_logs() {
        let v = AnyValue {
            value: Some(any_value::Value::BytesValue(b"hi".to_vec())),
        };
        assert_eq!(value(Some(&v), Bytes::Hex), text("0x6869"));
        assert_eq!(value(Some(&v), Bytes::Base64), text("aGk="));
    }
}
