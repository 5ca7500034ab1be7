//! otel-run's compact span encoding: what its Python shim sends instead of
//! OTLP/JSON, because the shim encodes in the program's own process, under its
//! GIL, while the program serves requests.
//!
//! OTLP/JSON wraps every attribute in two objects (`{"key": …, "value":
//! {"stringValue": …}}`), which Python builds one dict at a time: that was most
//! of what exporting a span cost a Python worker. Here a span is a JSON array of
//! its fields in a fixed order and its attributes one JSON object, which the
//! standard library's C encoder writes straight from the SDK's own dicts and
//! tuples. The agent turns each batch into OTLP messages.
//!
//! A body is `[1, resources, scopes, spans]`, `1` being the version:
//! - resource: `[attributes, schema_url, dropped_attributes_count]`
//! - scope: `[name, version, schema_url, attributes]`
//! - span: `[resource, scope, trace_id, span_id, parent_span_id, trace_state,
//!   flags, name, kind, start_ns, end_ns, attributes, dropped_attributes_count,
//!   events, dropped_events_count, links, dropped_links_count, status_code,
//!   status_message]`, `resource` and `scope` being indexes into the lists above,
//!   ids lower- or upper-case hex (empty for none), `kind` OTLP's number
//! - event: `[time_ns, name, attributes, dropped_attributes_count]`
//! - link: `[trace_id, span_id, trace_state, attributes, flags,
//!   dropped_attributes_count]`
//! - attributes: a JSON object; a string, `true`/`false`, an integer, a number
//!   with a fraction or exponent (a double), an array (an array value), an
//!   object (a key-value list) or `null` (an empty value). An integer beyond
//!   64 bits is taken as a double, as JSON numbers are.
//!
//! Spans keep the order sent, grouped by resource and then scope.
//!
//! The same batch comes in one of two forms: as JSON ([`CONTENT_TYPE`]), or
//! as Python's `marshal` data of version 2 ([`MARSHAL_CONTENT_TYPE`],
//! [`marshal`] says what is read), which the interpreter writes several times
//! faster and the shim sends whenever its interpreter writes that format as
//! otel-run reads it. In marshal data the attributes are dicts, the arrays
//! tuples or lists, an empty value `None`, and a bytes value (which JSON
//! cannot carry) arrives as bytes.

use std::collections::HashMap;
use std::fmt;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status,
    span::{Event, Link},
};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::telemetry::hex;

pub mod marshal;

/// The content type the shim sends the encoding as, in JSON.
pub const CONTENT_TYPE: &str = "application/x-otel-run-spans+json";

/// The content type of the encoding as Python's marshal data, version 2.
pub const MARSHAL_CONTENT_TYPE: &str = "application/x-otel-run-spans+marshal";

/// How a compact body is serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Marshal,
}

/// The only version there is: the shim and the agent ship together.
const VERSION: u32 = 1;

/// The resources of a body, each with its spans, in the order sent.
pub fn resources(body: &[u8], form: Form) -> Result<Vec<ResourceSpans>, String> {
    let Batch(version, resources, scopes, spans) = match form {
        Form::Json => serde_json::from_slice(body).map_err(|e| e.to_string())?,
        Form::Marshal => marshal::from_slice(body).map_err(|e| e.to_string())?,
    };
    if version != VERSION {
        return Err(format!(
            "compact span encoding version {version}; this otel-run reads version {VERSION}"
        ));
    }
    let mut out: Vec<ResourceSpans> = resources
        .into_iter()
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: r.0.0,
                dropped_attributes_count: r.2,
                entity_refs: Vec::new(),
            }),
            scope_spans: Vec::new(),
            schema_url: r.1,
        })
        .collect();
    // Where each (resource, scope) pair's spans go in `out`: only the pairs
    // spans name, not every pair a body lists.
    let mut placed: HashMap<(usize, usize), usize> = HashMap::new();
    let resource_count = out.len();
    for span in spans {
        let (r, s) = (span.0, span.1);
        let Some(resource) = out.get_mut(r) else {
            return Err(format!("a span names resource {r} of {resource_count}"));
        };
        let Some(scope) = scopes.get(s) else {
            return Err(format!("a span names scope {s} of {}", scopes.len()));
        };
        let at = *placed.entry((r, s)).or_insert_with(|| {
            resource.scope_spans.push(ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.0.clone(),
                    version: scope.1.clone(),
                    attributes: scope.3.0.clone(),
                    dropped_attributes_count: 0,
                }),
                spans: Vec::new(),
                schema_url: scope.2.clone(),
            });
            resource.scope_spans.len() - 1
        });
        resource.scope_spans[at].spans.push(span.into_otlp()?);
    }
    out.retain(|r| !r.scope_spans.is_empty());
    Ok(out)
}

#[derive(Deserialize)]
struct Batch(
    u32,
    Vec<CompactResource>,
    Vec<CompactScope>,
    Vec<CompactSpan>,
);

#[derive(Deserialize)]
struct CompactResource(Attributes, String, u32);

#[derive(Deserialize)]
struct CompactScope(String, String, String, Attributes);

#[derive(Deserialize)]
struct CompactSpan(
    usize,
    usize,
    String,
    String,
    String,
    String,
    u32,
    String,
    i32,
    u64,
    u64,
    Attributes,
    u32,
    Vec<CompactEvent>,
    u32,
    Vec<CompactLink>,
    u32,
    i32,
    String,
);

#[derive(Deserialize)]
struct CompactEvent(u64, String, Attributes, u32);

#[derive(Deserialize)]
struct CompactLink(String, String, String, Attributes, u32, u32);

impl CompactSpan {
    fn into_otlp(self) -> Result<Span, String> {
        Ok(Span {
            trace_id: id::<16>(&self.2, "trace id")?,
            span_id: id::<8>(&self.3, "span id")?,
            parent_span_id: id::<8>(&self.4, "parent span id")?,
            trace_state: self.5,
            flags: self.6,
            name: self.7,
            kind: self.8,
            start_time_unix_nano: self.9,
            end_time_unix_nano: self.10,
            attributes: self.11.0,
            dropped_attributes_count: self.12,
            events: self
                .13
                .into_iter()
                .map(|e| Event {
                    time_unix_nano: e.0,
                    name: e.1,
                    attributes: e.2.0,
                    dropped_attributes_count: e.3,
                })
                .collect(),
            dropped_events_count: self.14,
            links: self
                .15
                .into_iter()
                .map(|l| {
                    Ok(Link {
                        trace_id: id::<16>(&l.0, "link's trace id")?,
                        span_id: id::<8>(&l.1, "link's span id")?,
                        trace_state: l.2,
                        attributes: l.3.0,
                        dropped_attributes_count: l.5,
                        flags: l.4,
                    })
                })
                .collect::<Result<_, String>>()?,
            dropped_links_count: self.16,
            status: (self.17 != 0 || !self.18.is_empty()).then_some(Status {
                message: self.18,
                code: self.17,
            }),
        })
    }
}

/// An id in hex, or none.
fn id<const N: usize>(hex: &str, what: &str) -> Result<Vec<u8>, String> {
    if hex.is_empty() {
        return Ok(Vec::new());
    }
    hex::decode::<N>(hex)
        .map(|bytes| bytes.to_vec())
        .ok_or_else(|| format!("{what} `{hex}` is not {} hex digits", N * 2))
}

/// A JSON object of attributes, in the order sent.
#[derive(Default)]
struct Attributes(Vec<KeyValue>);

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(KeyValues).map(Attributes)
    }
}

struct KeyValues;

impl<'de> Visitor<'de> for KeyValues {
    type Value = Vec<KeyValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of attributes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, value)) = map.next_entry::<String, Any>()? {
            out.push(KeyValue {
                key,
                value: Some(value.0),
                ..Default::default()
            });
        }
        Ok(out)
    }
}

/// One attribute value.
struct Any(AnyValue);

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

fn any(value: Value) -> Any {
    Any(AnyValue { value: Some(value) })
}

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Any, E> {
        Ok(any(Value::BoolValue(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Any, E> {
        Ok(any(Value::IntValue(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Any, E> {
        let value = i64::try_from(v).map_or(Value::DoubleValue(v as f64), Value::IntValue);
        Ok(any(value))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Any, E> {
        Ok(any(Value::DoubleValue(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Any, E> {
        Ok(any(Value::StringValue(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Any, E> {
        Ok(any(Value::StringValue(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Any, E> {
        Ok(any(Value::BytesValue(v.to_vec())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Any, E> {
        Ok(Any(AnyValue { value: None }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Any(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Any, A::Error> {
        let values = KeyValues.visit_map(map)?;
        Ok(any(Value::KvlistValue(KeyValueList { values })))
    }
}

#[cfg(test)]
mod tests;
