//! From a request body to pipeline items, within bounds that are checked before
//! anything is decoded: the one decode path of the receiver, for OTLP/HTTP and
//! OTLP/gRPC alike (and the fuzz target).
//!
//! A walk over the encoding ([`super::wire`] for protobuf, [`super::json`] for
//! JSON) finds each resource, its records and what it will take once decoded;
//! resources are decoded one by one while they fit the bounds, and the records
//! of those that do not are rejected and counted.

use std::io::Read as _;
use std::mem::size_of;
use std::ops::Range;

use flate2::read::GzDecoder;

use super::{Routed, json, json_names, wire};
use crate::agent::pipeline::Bounds;

/// The largest body read, and the largest once decompressed.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub encoding: Encoding,
    pub gzip: bool,
}

/// One resource of a request, as a walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Where its encoding is in the (decompressed) request.
    pub range: Range<usize>,
    /// Spans, data points or log records, as the pipeline counts them (a metric
    /// without data points is one).
    pub items: usize,
    /// About what it takes once decoded: its structs and their contents.
    pub bytes: usize,
}

/// Why a request is not OTLP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// What a request decoded to.
#[derive(Debug)]
pub struct Decoded<T> {
    /// The resources accepted, each with the bytes the queue counts it for.
    pub accepted: Vec<(T, usize)>,
    /// Records in resources over the bounds, not decoded.
    pub rejected: u64,
    /// Records that held nothing to forward (see [`Routed::take_empty`]),
    /// taken out of the resources accepted: their names.
    pub empty: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad gzip body: {0}")]
    Gzip(std::io::Error),
    #[error("the request is larger than {} MiB (once decompressed)", MAX_REQUEST_BYTES >> 20)]
    Oversized,
    #[error("malformed OTLP {signal} request: {message}")]
    Malformed {
        signal: &'static str,
        message: String,
    },
    /// Not one of its resources fits.
    #[error(
        "a request of {items} {records} is larger than otel-run takes at once (at most {} {records} and {} MiB once decoded)",
        bounds.items,
        bounds.bytes >> 20
    )]
    TooLarge {
        records: &'static str,
        items: u64,
        bounds: Bounds,
    },
}

/// Decodes a request body of `T`'s signal: the resources that fit `bounds`, in
/// order, and the count of records rejected. Resources without records are
/// checked and left out: there is nothing to forward.
pub fn decode<T: Routed>(
    body: &[u8],
    format: Format,
    bounds: Bounds,
) -> Result<Decoded<T>, DecodeError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::Oversized);
    }
    let inflated;
    let body = if format.gzip {
        inflated = gunzip(body)?;
        &inflated[..]
    } else {
        body
    };
    let named;
    let body = match format.encoding {
        Encoding::Json => {
            named = json_names::lower_camel_keys(body);
            &named[..]
        }
        Encoding::Protobuf => body,
    };
    let signal = T::SIGNAL.name();
    let malformed = |message: String| DecodeError::Malformed { signal, message };
    let records = T::SIGNAL.records();
    let mut decoded = Decoded {
        accepted: Vec::new(),
        rejected: 0,
        empty: Vec::new(),
    };
    let (mut items, mut bytes) = (0usize, 0usize);
    let mut take = |part: Part| -> Result<(), DecodeError> {
        let fits = items.saturating_add(part.items) <= bounds.items
            && bytes.saturating_add(part.bytes) <= bounds.bytes;
        if !fits {
            decoded.rejected += part.items as u64;
            return Ok(());
        }
        let encoded = &body[part.range];
        let mut resource = match format.encoding {
            Encoding::Protobuf => <T::Resource as prost::Message>::decode(encoded)
                .map_err(|e| malformed(e.to_string()))?,
            Encoding::Json => serde_json::from_slice::<T::Resource>(encoded)
                .map_err(|e| malformed(e.to_string()))?,
        };
        T::take_empty(&mut resource, &mut decoded.empty);
        let item: T = resource.into();
        if item.count() > 0 {
            items += part.items;
            bytes += part.bytes;
            decoded.accepted.push((item, part.bytes));
        }
        Ok(())
    };
    let item_size = size_of::<T>();
    let walk_error = |e: Malformed| malformed(e.0.to_string());
    match format.encoding {
        Encoding::Protobuf => {
            for part in wire::parts(body, T::KIND, item_size) {
                take(part.map_err(walk_error)?)?;
            }
        }
        Encoding::Json => {
            for part in json::parts(body, T::JSON_FIELD, T::SHAPE, item_size) {
                take(part.map_err(walk_error)?)?;
            }
        }
    }
    if decoded.accepted.is_empty() && decoded.rejected > 0 {
        return Err(DecodeError::TooLarge {
            records,
            items: decoded.rejected,
            bounds,
        });
    }
    Ok(decoded)
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut inflated = Vec::new();
    GzDecoder::new(body)
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(DecodeError::Gzip)?;
    if inflated.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::Oversized);
    }
    Ok(inflated)
}

#[cfg(test)]
mod tests {
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
}
