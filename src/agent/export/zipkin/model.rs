//! OTLP spans as Zipkin v2 JSON spans, as the specification's Zipkin
//! transformation says: the kind (INTERNAL omitted), microsecond times, the
//! resource's `service.name` as the local endpoint, the best remote endpoint
//! the attributes give, attributes and status as tags, events as annotations.
//! Each resource keeps its own service: forwarded children stay themselves.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, span::SpanKind, status};
use serde_json::{Map, Value, json};

use crate::telemetry::hex::encode as hex;

/// The attributes that name a span's remote endpoint, best first (the
/// specification's ranking); an address is joined by its port when present.
const REMOTE: &[(&str, Option<&str>)] = &[
    ("peer.service", None),
    ("server.address", Some("server.port")),
    ("net.peer.name", Some("net.peer.port")),
    ("network.peer.address", Some("network.peer.port")),
    ("server.socket.domain", None),
    ("server.socket.address", Some("server.socket.port")),
    ("net.sock.peer.name", None),
    ("net.sock.peer.addr", Some("net.sock.peer.port")),
    ("peer.hostname", None),
    ("peer.address", None),
    ("db.name", None),
];

/// The Zipkin spans of `resources`, in order.
pub fn spans<'a>(resources: impl IntoIterator<Item = &'a ResourceSpans>) -> Vec<Value> {
    let mut out = Vec::new();
    for resource in resources {
        let attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes);
        let service = text(attributes, "service.name").unwrap_or_else(|| "unknown_service".into());
        for scope in &resource.scope_spans {
            let scope_tags = scope.scope.iter().flat_map(|s| {
                [
                    ("otel.scope.name", &s.name),
                    ("otel.scope.version", &s.version),
                ]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), Value::from(v.as_str())))
            });
            let scope_tags: Vec<(String, Value)> = scope_tags.collect();
            for span in &scope.spans {
                out.push(one(span, &service, attributes, &scope_tags));
            }
        }
    }
    out
}

fn one(span: &Span, service: &str, resource: &[KeyValue], scope_tags: &[(String, Value)]) -> Value {
    let mut zipkin = Map::new();
    zipkin.insert("traceId".into(), hex(&span.trace_id).into());
    zipkin.insert("id".into(), hex(&span.span_id).into());
    if !span.parent_span_id.is_empty() {
        zipkin.insert("parentId".into(), hex(&span.parent_span_id).into());
    }
    zipkin.insert("name".into(), span.name.clone().into());
    let kind = match SpanKind::try_from(span.kind) {
        Ok(SpanKind::Server) => Some("SERVER"),
        Ok(SpanKind::Client) => Some("CLIENT"),
        Ok(SpanKind::Producer) => Some("PRODUCER"),
        Ok(SpanKind::Consumer) => Some("CONSUMER"),
        _ => None,
    };
    if let Some(kind) = kind {
        zipkin.insert("kind".into(), kind.into());
    }
    zipkin.insert("timestamp".into(), micros(span.start_time_unix_nano).into());
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    zipkin.insert("duration".into(), micros(duration).into());
    zipkin.insert("localEndpoint".into(), json!({ "serviceName": service }));
    // Zipkin draws a dependency from a client's or producer's remote endpoint.
    if matches!(kind, Some("CLIENT" | "PRODUCER"))
        && let Some(remote) = remote(&span.attributes)
    {
        zipkin.insert("remoteEndpoint".into(), remote);
    }
    let annotations: Vec<Value> = span
        .events
        .iter()
        .map(|event| {
            let value = if event.attributes.is_empty() {
                event.name.clone()
            } else {
                let attributes: Map<String, Value> = event
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), json_value(kv.value.as_ref())))
                    .collect();
                format!(
                    "{}:{}",
                    Value::from(event.name.as_str()),
                    Value::Object(attributes)
                )
            };
            json!({ "timestamp": micros(event.time_unix_nano), "value": value })
        })
        .collect();
    if !annotations.is_empty() {
        zipkin.insert("annotations".into(), annotations.into());
    }
    let tags = tags(span, resource, scope_tags);
    if !tags.is_empty() {
        zipkin.insert("tags".into(), Value::Object(tags));
    }
    Value::Object(zipkin)
}

/// The span's attributes, then the resource's and the scope's where the span
/// has no such key, the dropped counts and the status, all as strings.
fn tags(span: &Span, resource: &[KeyValue], scope_tags: &[(String, Value)]) -> Map<String, Value> {
    let mut tags = Map::new();
    for kv in &span.attributes {
        tags.insert(kv.key.clone(), tag(kv.value.as_ref()).into());
    }
    for kv in resource.iter().filter(|kv| kv.key != "service.name") {
        tags.entry(kv.key.clone())
            .or_insert_with(|| tag(kv.value.as_ref()).into());
    }
    for (key, value) in scope_tags {
        tags.entry(key.clone()).or_insert_with(|| value.clone());
    }
    for (key, count) in [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ] {
        if count > 0 {
            tags.insert(key.into(), count.to_string().into());
        }
    }
    // Zipkin takes any `error` tag as a failure: only an Error status sets it.
    tags.remove("error");
    let status = span.status.as_ref();
    match status.map(|s| status::StatusCode::try_from(s.code)) {
        Some(Ok(status::StatusCode::Ok)) => {
            tags.insert("otel.status_code".into(), "OK".into());
        }
        Some(Ok(status::StatusCode::Error)) => {
            tags.insert("otel.status_code".into(), "ERROR".into());
            let message = status.map_or("", |s| s.message.as_str());
            tags.insert("error".into(), message.into());
        }
        _ => {}
    }
    tags
}

/// The best-ranked attribute naming the peer: an IP address goes to `ipv4` or
/// `ipv6`, a name to `serviceName`, and its port, if given, to `port`.
fn remote(attributes: &[KeyValue]) -> Option<Value> {
    REMOTE.iter().find_map(|(name, port)| {
        let peer = text(attributes, name)?;
        let mut endpoint = Map::new();
        match peer.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => endpoint.insert("ipv4".into(), ip.to_string().into()),
            Ok(std::net::IpAddr::V6(ip)) => endpoint.insert("ipv6".into(), ip.to_string().into()),
            Err(_) => endpoint.insert("serviceName".into(), peer.into()),
        };
        if let Some(port) = port.and_then(|p| text(attributes, p)?.parse::<u16>().ok()) {
            endpoint.insert("port".into(), port.into());
        }
        Some(Value::Object(endpoint))
    })
}

/// The attribute `key` as text, if present and not empty.
fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    let kv = attributes.iter().find(|kv| kv.key == key)?;
    let text = tag(kv.value.as_ref());
    (!text.is_empty()).then_some(text)
}

/// An attribute as a Zipkin tag: primitives as text, booleans lower case,
/// arrays and maps as JSON.
fn tag(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BytesValue(b)) => hex(b),
        Some(Any::ArrayValue(_) | Any::KvlistValue(_)) => json_value(value).to_string(),
        // A profile's string-table index means nothing without its table.
        Some(Any::StringValueStrindex(_)) | None => String::new(),
    }
}

/// An attribute value as JSON, for arrays and event attributes.
fn json_value(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.as_str().into(),
        Some(Any::BoolValue(b)) => (*b).into(),
        Some(Any::IntValue(i)) => (*i).into(),
        Some(Any::DoubleValue(d)) => (*d).into(),
        Some(Any::BytesValue(b)) => hex(b).into(),
        Some(Any::ArrayValue(a)) => a.values.iter().map(|v| json_value(Some(v))).collect(),
        Some(Any::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), json_value(kv.value.as_ref())))
                .collect(),
        ),
        Some(Any::StringValueStrindex(_)) | None => Value::Null,
    }
}

/// Whole microseconds, as Zipkin counts time (1234 ns is 1 µs).
fn micros(nanos: u64) -> u64 {
    nanos / 1_000
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status, span::Event};

    use super::*;

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(text: &str) -> Any {
        Any::StringValue(text.into())
    }

    fn request(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service)), kv("host.name", s("box"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "flask".into(),
                    version: "0.1".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn span(kind: SpanKind) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            parent_span_id: vec![0x11; 8],
            name: "GET /todos".into(),
            kind: kind as i32,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_124_691_789,
            ..Default::default()
        }
    }

    #[test]
    fn a_server_span_maps_as_the_specification_says() {
        let mut server = span(SpanKind::Server);
        server.attributes = vec![
            kv("http.route", s("/todos")),
            kv("http.response.status_code", Any::IntValue(500)),
            kv("retry", Any::BoolValue(false)),
            kv("ratio", Any::DoubleValue(0.5)),
            kv(
                "tags",
                Any::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a")),
                        },
                        AnyValue {
                            value: Some(Any::IntValue(2)),
                        },
                    ],
                }),
            ),
            kv("error", Any::BoolValue(false)),
            kv("host.name", s("span's own")),
        ];
        server.events = vec![
            Event {
                time_unix_nano: 1_700_000_000_124_000_999,
                name: "exception".into(),
                attributes: vec![kv("exception.type", s("KeyError"))],
                ..Default::default()
            },
            Event {
                time_unix_nano: 1_700_000_000_124_500_000,
                name: "done".into(),
                ..Default::default()
            },
        ];
        server.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "boom".into(),
        });
        server.dropped_attributes_count = 3;
        let zipkin = spans(&[request("todo", vec![server])]);
        assert_eq!(
            zipkin,
            [json!({
                "traceId": "abababababababababababababababab",
                "id": "0102030405060708",
                "parentId": "1111111111111111",
                "name": "GET /todos",
                "kind": "SERVER",
                "timestamp": 1_700_000_000_123_456u64,
                "duration": 1_235,
                "localEndpoint": {"serviceName": "todo"},
                "annotations": [
                    {"timestamp": 1_700_000_000_124_000u64, "value": "\"exception\":{\"exception.type\":\"KeyError\"}"},
                    {"timestamp": 1_700_000_000_124_500u64, "value": "done"},
                ],
                "tags": {
                    "http.route": "/todos",
                    "http.response.status_code": "500",
                    "retry": "false",
                    "ratio": "0.5",
                    "tags": "[\"a\",2]",
                    "host.name": "span's own",
                    "otel.scope.name": "flask",
                    "otel.scope.version": "0.1",
                    "otel.dropped_attributes_count": "3",
                    "otel.status_code": "ERROR",
                    "error": "boom",
                },
            })]
        );
    }

    #[test]
    fn internal_spans_have_no_kind_and_unset_status_no_tag() {
        let mut root = span(SpanKind::Internal);
        root.parent_span_id.clear();
        let zipkin = &spans(&[request("svc", vec![root])])[0];
        assert!(zipkin.get("kind").is_none() && zipkin.get("parentId").is_none());
        assert!(zipkin.get("annotations").is_none());
        let tags = &zipkin["tags"];
        assert!(tags.get("otel.status_code").is_none() && tags.get("error").is_none());
        assert_eq!(tags["host.name"], "box", "resource attributes are tags");
        assert!(tags.get("service.name").is_none());
    }

    #[test]
    fn the_remote_endpoint_is_the_best_ranked_attribute() {
        let mut client = span(SpanKind::Client);
        client.attributes = vec![
            kv("db.name", s("todos")),
            kv("server.port", Any::IntValue(5432)),
            kv("server.address", s("db.local")),
        ];
        let zipkin = &spans(&[request("svc", vec![client.clone()])])[0];
        assert_eq!(zipkin["kind"], "CLIENT");
        assert_eq!(
            zipkin["remoteEndpoint"],
            json!({"serviceName": "db.local", "port": 5432})
        );
        let mut by_address = client.clone();
        by_address.attributes = vec![
            kv("network.peer.address", s("10.0.0.7")),
            kv("network.peer.port", Any::IntValue(5432)),
        ];
        let zipkin = &spans(&[request("svc", vec![by_address])])[0];
        assert_eq!(
            zipkin["remoteEndpoint"],
            json!({"ipv4": "10.0.0.7", "port": 5432})
        );
        client.attributes.push(kv("peer.service", s("postgres")));
        let zipkin = &spans(&[request("svc", vec![client.clone()])])[0];
        assert_eq!(zipkin["remoteEndpoint"], json!({"serviceName": "postgres"}));
        // A server's peer is its caller: no dependency is drawn from it.
        client.kind = SpanKind::Server as i32;
        let zipkin = &spans(&[request("svc", vec![client])])[0];
        assert!(zipkin.get("remoteEndpoint").is_none(), "{zipkin}");
    }

    #[test]
    fn each_resource_keeps_its_service() {
        let zipkin = spans(&[
            request("parent", vec![span(SpanKind::Internal)]),
            request(
                "child",
                vec![span(SpanKind::Producer), span(SpanKind::Consumer)],
            ),
        ]);
        let services: Vec<&Value> = zipkin
            .iter()
            .map(|z| &z["localEndpoint"]["serviceName"])
            .collect();
        assert_eq!(services, ["parent", "child", "child"]);
        assert_eq!(zipkin[1]["kind"], "PRODUCER");
        assert_eq!(zipkin[2]["kind"], "CONSUMER");
    }
}
