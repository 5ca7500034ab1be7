//! The receiver's decode path, for every signal and encoding: what is accepted,
//! rejected and counted, and that spans forwarded undecoded are what prost decodes.

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message as _;

use super::*;
use crate::telemetry::spans::Spans;

const PROTOBUF: Format = Format {
    encoding: Encoding::Protobuf,
    gzip: false,
};
const JSON: Format = Format {
    encoding: Encoding::Json,
    gzip: false,
};
const ROOMY: Bounds = Bounds {
    items: 1 << 20,
    bytes: 64 << 20,
};

/// [`super::decode`] of a body read into its own buffer, as the receiver reads it.
fn decode<T: Routed>(
    body: &[u8],
    format: Format,
    bounds: Bounds,
) -> Result<Decoded<T>, DecodeError> {
    super::decode(body.to_vec(), format, bounds)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn attributes() -> Vec<KeyValue> {
    vec![
        kv("http.route", Value::StringValue("/users/{id}".into())),
        kv("n", Value::IntValue(7)),
        kv(
            "list",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::BoolValue(true)),
                }],
            }),
        ),
        kv(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", Value::DoubleValue(1.5))],
            }),
        ),
    ]
}

fn resource(name: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", Value::StringValue(name.into()))],
        ..Default::default()
    })
}

fn resource_spans(spans: usize) -> ResourceSpans {
    let span = |i: usize| Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: format!("span {i}"),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        attributes: attributes(),
        events: vec![span::Event {
            name: "event".into(),
            attributes: attributes(),
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            ..Default::default()
        }],
        ..Default::default()
    };
    ResourceSpans {
        resource: resource("svc"),
        scope_spans: vec![
            ScopeSpans {
                spans: (0..spans / 2).map(span).collect(),
                ..Default::default()
            },
            ScopeSpans {
                spans: (spans / 2..spans).map(span).collect(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn traces(sizes: &[usize]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: sizes.iter().map(|n| resource_spans(*n)).collect(),
    }
    .encode_to_vec()
}

fn metrics() -> ResourceMetrics {
    let number = || NumberDataPoint {
        attributes: attributes(),
        ..Default::default()
    };
    let metric = |data| Metric {
        name: "m".into(),
        data,
        ..Default::default()
    };
    ResourceMetrics {
        resource: resource("svc"),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                metric(Some(Data::Gauge(Gauge {
                    data_points: vec![number(), number()],
                }))),
                metric(Some(Data::Sum(Sum {
                    data_points: vec![number()],
                    ..Default::default()
                }))),
                metric(Some(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![1.0, 2.0],
                        ..Default::default()
                    }],
                    ..Default::default()
                }))),
                metric(Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        positive: Some(Buckets {
                            offset: 1,
                            bucket_counts: vec![1, 300, 70_000],
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }))),
                metric(Some(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint::default(); 3],
                }))),
                metric(None),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn logs() -> ResourceLogs {
    ResourceLogs {
        resource: resource("svc"),
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::StringValue("hello".into())),
                    }),
                    attributes: attributes(),
                    ..Default::default()
                };
                4
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An OTLP/JSON request with protobuf's field names as its members
/// (`resource_spans`), as devices write it by hand.
fn field_names(json: &[u8]) -> Vec<u8> {
    fn rename(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(members) => {
                let old = std::mem::take(members);
                for (key, mut value) in old {
                    rename(&mut value);
                    let mut field = String::new();
                    for c in key.chars() {
                        if c.is_ascii_uppercase() {
                            field.push('_');
                        }
                        field.push(c.to_ascii_lowercase());
                    }
                    members.insert(field, value);
                }
            }
            serde_json::Value::Array(values) => values.iter_mut().for_each(rename),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(json).unwrap();
    rename(&mut value);
    let renamed = serde_json::to_vec(&value).unwrap();
    assert!(renamed.windows(8).any(|w| w == b"_value\":"), "renamed");
    renamed
}

/// Every format of one request decodes to the same items, counted alike:
/// protobuf and JSON, gzipped or not, and JSON with protobuf's field names.
fn decodes_alike<T: Routed>(protobuf: &[u8], json: &[u8], records: usize, empty: &[&str]) {
    let formats = [
        (PROTOBUF, protobuf.to_vec()),
        (JSON, json.to_vec()),
        (
            Format {
                gzip: true,
                ..PROTOBUF
            },
            gzip(protobuf),
        ),
        (Format { gzip: true, ..JSON }, gzip(json)),
    ];
    let mut formats = formats.to_vec();
    formats.push((JSON, field_names(json)));
    let mut decoded = formats.iter().map(|(format, body)| {
        let decoded = decode::<T>(body, *format, ROOMY).unwrap();
        assert_eq!(decoded.rejected, 0);
        assert_eq!(decoded.empty, empty, "{format:?}");
        let counted: usize = decoded.accepted.iter().map(|(item, _)| item.count()).sum();
        assert_eq!(counted, records, "{format:?}");
        decoded.accepted
    });
    let encoded = |items: Vec<(T, usize)>| -> Vec<Vec<u8>> {
        items.iter().map(|(item, _)| item.encode_to_vec()).collect()
    };
    let first = encoded(decoded.next().unwrap());
    for other in decoded {
        assert_eq!(encoded(other), first);
    }
}

#[test]
fn requests_of_every_signal_decode_with_their_records_counted() {
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(3), resource_spans(2)],
    };
    decodes_alike::<Spans>(
        &spans.encode_to_vec(),
        &serde_json::to_vec(&spans).unwrap(),
        5,
        &[],
    );
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![metrics()],
    };
    // 2 + 1 + 1 + 1 + 3 points; the metric without data is taken out.
    decodes_alike::<ResourceMetrics>(
        &metrics.encode_to_vec(),
        &serde_json::to_vec(&metrics).unwrap(),
        8,
        &["m"],
    );
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![logs(), logs()],
    };
    decodes_alike::<ResourceLogs>(
        &logs.encode_to_vec(),
        &serde_json::to_vec(&logs).unwrap(),
        8,
        &[],
    );
}

#[test]
fn the_walks_count_what_the_pipeline_counts() {
    let request = traces(&[3, 0, 4]);
    let parts: Vec<Part> = wire::parts(&request, wire::Kind::ResourceSpans, 0)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(parts.iter().map(|p| p.items).collect::<Vec<_>>(), [3, 0, 4]);
    for part in &parts {
        let message = ResourceSpans::decode(&request[part.range.clone()]).unwrap();
        assert_eq!(Spans::from(message.clone()).count(), part.items);
        // Each attribute costs its structs, not the few bytes it takes on the wire.
        assert!(part.bytes > message.encoded_len(), "{part:?}");
    }
    let json = serde_json::to_vec(&ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(3), resource_spans(0), resource_spans(4)],
    })
    .unwrap();
    let parts: Vec<Part> = json::parts(&json, "resourceSpans", json::TRACES, 0)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(parts.iter().map(|p| p.items).collect::<Vec<_>>(), [3, 0, 4]);
    assert!(parts.iter().all(|p| p.bytes > 0));
}

#[test]
fn resources_over_the_bounds_are_rejected_and_counted() {
    let bounds = Bounds {
        items: 5,
        bytes: 64 << 20,
    };
    // 2 and 3 fit; 4 would make 9; 0 is nothing to forward.
    let decoded = decode::<Spans>(&traces(&[2, 3, 4, 0]), PROTOBUF, bounds).unwrap();
    let kept: Vec<usize> = decoded.accepted.iter().map(|(i, _)| i.count()).collect();
    assert_eq!(kept, [2, 3]);
    assert_eq!(decoded.rejected, 4);
    // When nothing fits, the request is too large.
    let err = decode::<Spans>(&traces(&[6]), PROTOBUF, bounds).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { items: 6, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "a request of 6 spans is larger than otel-run takes at once (at most 5 spans and 64 MiB once decoded)"
    );
    // The bytes a resource takes once decoded bound it as well.
    let one = decode::<Spans>(&traces(&[1]), PROTOBUF, ROOMY).unwrap();
    let size = one.accepted[0].1;
    let bounds = Bounds {
        items: 100,
        bytes: size * 2,
    };
    let decoded = decode::<Spans>(&traces(&[1, 1, 1]), PROTOBUF, bounds).unwrap();
    assert_eq!(decoded.accepted.len(), 2);
    assert_eq!(decoded.rejected, 1);
}

/// `n` empty spans in one scope of one resource: two bytes each.
fn empty_spans(n: usize) -> Vec<u8> {
    let scope = b"\x12\x00".repeat(n);
    let mut resource = Vec::new();
    prost::encoding::bytes::encode(2, &scope, &mut resource);
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &resource, &mut request);
    request
}

#[test]
fn empty_spans_are_priced_as_the_structs_they_decode_to() {
    let request = empty_spans(3);
    let decoded = decode::<Spans>(&request, PROTOBUF, ROOMY).unwrap();
    assert_eq!(decoded.accepted[0].0.count(), 3);
    assert!(decoded.accepted[0].1 >= 3 * size_of::<Span>());
    // 7 MiB of them would be gigabytes once decoded: refused before that.
    let n = 7 << 19;
    let bomb = gzip(&empty_spans(n));
    assert!(bomb.len() < 40 << 10, "{} bytes", bomb.len());
    let gzip = Format {
        gzip: true,
        ..PROTOBUF
    };
    let err = decode::<Spans>(&bomb, gzip, ROOMY).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { items, .. } if items == n as u64),
        "{err}"
    );
}

#[test]
fn json_objects_are_priced_and_counted_where_they_stand() {
    let spans = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        vec!["{}"; 1000].join(",")
    );
    let decoded = decode::<Spans>(spans.as_bytes(), JSON, ROOMY).unwrap();
    assert_eq!(decoded.accepted[0].0.count(), 1000);
    assert!(decoded.accepted[0].1 >= 1000 * size_of::<Span>());
    let bounds = Bounds {
        items: 999,
        bytes: 64 << 20,
    };
    let err = decode::<Spans>(spans.as_bytes(), JSON, bounds).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { items: 1000, .. }));
    // Escaped names are the same names.
    let escaped = r#"{"resource\u0053pans":[{"scope\u0053pans":[{"sp\u0061ns":[{},{}]}]}]}"#;
    let decoded = decode::<Spans>(escaped.as_bytes(), JSON, ROOMY).unwrap();
    assert_eq!(decoded.accepted[0].0.count(), 2);
    let err = decode::<Spans>(escaped.as_bytes(), JSON, bounds_of(1)).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { items: 2, .. }));
}

fn bounds_of(items: usize) -> Bounds {
    Bounds {
        items,
        bytes: 64 << 20,
    }
}

#[test]
fn what_is_not_otlp_is_malformed() {
    let request = traces(&[2]);
    let malformed = |body: &[u8], format| {
        matches!(
            decode::<Spans>(body, format, ROOMY),
            Err(DecodeError::Malformed { .. })
        )
    };
    assert!(malformed(&request[..request.len() - 1], PROTOBUF));
    assert!(malformed(b"garbage-bytes", PROTOBUF));
    // A span that is a number.
    assert!(malformed(b"\x0a\x04\x12\x02\x10\x01", PROTOBUF));
    assert!(malformed(b"{not json", JSON));
    assert!(malformed(br#"{"resourceSpans":[]} x"#, JSON));
    assert!(malformed(
        br#"{"resourceSpans":[],"resourceSpans":[]}"#,
        JSON
    ));
    assert!(malformed(br#"{"resourceSpans":[{"scopeSpans":7}]}"#, JSON));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep = format!(r#"{{"resourceSpans":[{{"x":{deep}}}]}}"#);
    assert!(malformed(deep.as_bytes(), JSON));
    assert!(matches!(
        decode::<Spans>(
            b"not gzip",
            Format {
                gzip: true,
                ..PROTOBUF
            },
            ROOMY
        ),
        Err(DecodeError::Gzip(_))
    ));
    // Nothing but unknown fields is an empty request.
    let empty = decode::<Spans>(br#"{"other":{"a":[1,"b"]}}"#, JSON, ROOMY).unwrap();
    assert!(empty.accepted.is_empty() && empty.rejected == 0);
}

#[test]
fn more_than_the_largest_request_is_refused_before_it_is_read() {
    let big = vec![0u8; MAX_REQUEST_BYTES + 1];
    assert!(matches!(
        decode::<Spans>(&big, PROTOBUF, ROOMY),
        Err(DecodeError::Oversized)
    ));
    let bomb = gzip(&vec![0u8; MAX_REQUEST_BYTES + 1]);
    assert!(matches!(
        decode::<Spans>(
            &bomb,
            Format {
                gzip: true,
                ..PROTOBUF
            },
            ROOMY
        ),
        Err(DecodeError::Oversized)
    ));
}

/// Whether `item` is a slice of `body`, not a copy.
fn within(item: &Spans, body: &Bytes) -> bool {
    let Spans::Encoded { bytes, .. } = item else {
        return false;
    };
    let range = body.as_ptr_range();
    range.contains(&bytes.as_ptr()) && bytes.as_ptr_range().end <= range.end
}

#[test]
fn spans_in_protobuf_are_forwarded_as_the_bytes_received() {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(3), resource_spans(0), resource_spans(4)],
    };
    let body = Bytes::from(request.encode_to_vec());
    let decoded = super::decode::<Spans>(body.clone(), PROTOBUF, ROOMY).unwrap();
    // The resource without spans is left out, as when decoded.
    assert_eq!(decoded.accepted.len(), 2);
    for ((item, bytes), want) in decoded.accepted.iter().zip([0, 2]) {
        assert!(within(item, &body), "sliced from the body, not copied");
        let want = &request.resource_spans[want];
        assert_eq!(item.encode_to_vec(), want.encode_to_vec());
        assert_eq!(item.count(), Spans::from(want.clone()).count());
        // Counted for what an exporter may decode it to, which is more than it holds.
        assert!(*bytes > item.encoded_len(), "{bytes}");
    }
    // Batched, the items are the request again.
    let items: Vec<Spans> = decoded.accepted.into_iter().map(|(i, _)| i).collect();
    let sent = ExportTraceServiceRequest {
        resource_spans: items.iter().map(|i| i.message().into_owned()).collect(),
    };
    let mut joined = Vec::new();
    for item in &items {
        prost::encoding::message::encode(1, item, &mut joined);
    }
    assert_eq!(
        ExportTraceServiceRequest::decode(&joined[..]).unwrap(),
        sent
    );
}

#[test]
fn forwarded_spans_do_not_keep_what_was_rejected_of_their_body() {
    let body = Bytes::from(traces(&[2, 40]));
    let decoded = super::decode::<Spans>(body.clone(), PROTOBUF, bounds_of(10)).unwrap();
    assert_eq!(decoded.rejected, 40);
    let (item, bytes) = &decoded.accepted[0];
    assert!(!within(item, &body), "copied out of the body");
    let sent = ExportTraceServiceRequest::decode(&traces(&[2])[..]).unwrap();
    assert_eq!(*item.message(), sent.resource_spans[0]);
    assert!(*bytes >= item.encoded_len());
    // Gzipped, the inflated body is what the items share.
    let gzip = Format {
        gzip: true,
        ..PROTOBUF
    };
    let decoded = decode::<Spans>(&self::gzip(&traces(&[2, 3])), gzip, ROOMY).unwrap();
    let counts: Vec<usize> = decoded.accepted.iter().map(|(i, _)| i.count()).collect();
    assert_eq!(counts, [2, 3]);
}

/// A span with every field of the traces schema set.
fn full_request() -> ExportTraceServiceRequest {
    let mut resource = resource_spans(2);
    resource.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
    let scope = &mut resource.scope_spans[0];
    scope.schema_url = "s".into();
    scope.scope = Some(
        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
            name: "scope".into(),
            version: "1.0".into(),
            attributes: attributes(),
            dropped_attributes_count: 1,
        },
    );
    let span = &mut scope.spans[0];
    span.trace_state = "k=v".into();
    span.parent_span_id = vec![5; 8];
    span.flags = 0x301;
    span.kind = 2;
    span.end_time_unix_nano = 1_700_000_000_000_123_456;
    span.dropped_attributes_count = 1;
    span.dropped_events_count = 2;
    span.dropped_links_count = 3;
    span.events[0].time_unix_nano = 1_700_000_000_000_000_001;
    span.events[0].dropped_attributes_count = 4;
    span.links[0].trace_state = "a=b".into();
    span.links[0].flags = 1;
    span.links[0].dropped_attributes_count = 5;
    span.links[0].attributes = vec![kv("bytes", Value::BytesValue(vec![0xff, 0]))];
    span.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        message: "ünïcode".into(),
        code: 2,
    });
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(1), resource],
    }
}

/// Whether the receiver takes `body` (spans forwarded undecoded), and what
/// prost makes of it; they must agree, and what is taken must count and
/// decode as prost decodes it.
fn agrees_with_prost(body: &[u8]) -> bool {
    let prost = ExportTraceServiceRequest::decode(body);
    let walked = decode::<Spans>(body, PROTOBUF, ROOMY);
    match (&prost, &walked) {
        (Ok(request), Ok(decoded)) => {
            let spans = |r: &ResourceSpans| Spans::from(r.clone()).count();
            let want: Vec<&ResourceSpans> = request
                .resource_spans
                .iter()
                .filter(|r| spans(r) > 0)
                .collect();
            assert_eq!(decoded.accepted.len(), want.len());
            for ((item, _), want) in decoded.accepted.iter().zip(want) {
                assert_eq!(item.count(), spans(want));
                let Spans::Encoded { bytes, .. } = item else {
                    panic!("forwarded undecoded")
                };
                // Compared encoded: a NaN is not equal to itself.
                let forwarded = ResourceSpans::decode(bytes.clone()).unwrap();
                assert_eq!(forwarded.encode_to_vec(), want.encode_to_vec());
            }
            true
        }
        (Err(_), Err(DecodeError::Malformed { .. })) => false,
        _ => panic!(
            "prost: {:?}, receiver: {:?}, for {body:02x?}",
            prost.map(drop),
            walked.map(drop)
        ),
    }
}

#[test]
fn what_the_receiver_forwards_undecoded_is_what_prost_decodes() {
    let request = full_request().encode_to_vec();
    assert!(agrees_with_prost(&request));
    // Every byte changed, and the request cut at every byte.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    for at in 0..request.len() {
        for value in [random() as u8, request[at] ^ 0x80, request[at] ^ 0x07, 0xff] {
            let mut body = request.clone();
            body[at] = value;
            refused += usize::from(!agrees_with_prost(&body));
        }
        refused += usize::from(!agrees_with_prost(&request[..at]));
    }
    assert!(refused > request.len(), "{refused} refused");
}

#[test]
fn strings_that_are_not_utf8_are_refused() {
    let request = full_request().encode_to_vec();
    let strings = [
        "https://opentelemetry.io/schemas/1.26.0",
        "span 0",
        "k=v",
        "a=b",
        "event",
        "ünïcode",
        "scope",
        "http.route",
        "/users/{id}",
    ];
    for string in strings {
        let at = request
            .windows(string.len())
            .position(|w| w == string.as_bytes())
            .unwrap_or_else(|| panic!("{string} is in the request"));
        let mut body = request.clone();
        body[at] = 0xff;
        assert!(!agrees_with_prost(&body), "{string}");
        let err = decode::<Spans>(&body, PROTOBUF, ROOMY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed OTLP traces request: a string is not UTF-8"
        );
    }
    // Bytes are bytes.
    assert!(request.windows(2).any(|w| w == [0xff, 0]));
}

#[test]
fn nesting_is_taken_as_deep_as_prost_decodes_the_request() {
    // An attribute whose value is arrays in arrays, `levels` deep.
    let nested = |levels: usize| {
        let mut value = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        for _ in 0..levels {
            value = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let mut resource = resource_spans(1);
        resource.scope_spans[0].spans.push(Span {
            attributes: vec![KeyValue {
                key: "deep".into(),
                value: Some(value),
                ..Default::default()
            }],
            ..Default::default()
        });
        ExportTraceServiceRequest {
            resource_spans: vec![resource],
        }
        .encode_to_vec()
    };
    let taken: Vec<bool> = (40..52).map(|n| agrees_with_prost(&nested(n))).collect();
    assert!(taken.contains(&true) && taken.contains(&false), "{taken:?}");
    // An unknown field where prost stops skipping, and a key over 32 bits.
    let mut body = nested(47);
    body.extend_from_slice(b"\x80\x80\x80\x80\x10\x00");
    agrees_with_prost(&body);
}

const COMPACT: Format = Format {
    encoding: Encoding::CompactSpans(crate::agent::receiver::CompactForm::Json),
    gzip: false,
};

/// Two resources of otel-run's compact encoding, with one and two spans.
fn compact_body() -> String {
    let span = |r: u32, id: u32| {
        format!(
            r#"[{r},0,"5b8efff798038103d269b633813fc60c","{id:016x}","","",1,"s{id}",2,1,2,{{"k":"v"}},0,[],0,[],0,0,""]"#
        )
    };
    format!(
        r#"[1,[[{{"service.name":"a"}},"",0],[{{"service.name":"b"}},"",0]],[["scope","","",{{}}]],[{},{},{}]]"#,
        span(0, 1),
        span(1, 2),
        span(1, 3)
    )
}

#[test]
fn compact_spans_are_decoded_and_bounded_like_otlp() {
    let body = compact_body();
    let all = decode::<Spans>(body.as_bytes(), COMPACT, ROOMY).unwrap();
    let counts: Vec<_> = all.accepted.iter().map(|(s, _)| s.count()).collect();
    assert_eq!(counts, [1, 2]);
    assert_eq!(all.rejected, 0);
    // As OTLP's resources are: each taken while it fits, in order.
    let one = Bounds {
        items: 1,
        bytes: 1 << 20,
    };
    let some = decode::<Spans>(body.as_bytes(), COMPACT, one).unwrap();
    assert_eq!(some.accepted.len(), 1);
    assert_eq!(some.rejected, 2);
    let tiny = Bounds {
        items: 100,
        bytes: 8,
    };
    assert!(matches!(
        decode::<Spans>(body.as_bytes(), COMPACT, tiny),
        Err(DecodeError::TooLarge { items: 3, .. })
    ));
    // And gzip is taken off first, as for OTLP.
    let gzipped = Format {
        gzip: true,
        ..COMPACT
    };
    let unzipped = decode::<Spans>(&gzip(body.as_bytes()), gzipped, ROOMY).unwrap();
    assert_eq!(unzipped.accepted.len(), 2);
}

#[test]
fn the_compact_encoding_holds_spans_only() {
    let body = compact_body();
    for error in [
        decode::<ResourceMetrics>(body.as_bytes(), COMPACT, ROOMY).unwrap_err(),
        decode::<ResourceLogs>(body.as_bytes(), COMPACT, ROOMY).unwrap_err(),
    ] {
        assert!(
            matches!(&error, DecodeError::Malformed { message, .. } if message.contains("holds only spans")),
            "{error}"
        );
    }
}
