//! Metrics in the shape of Python's `ConsoleMetricExporter` (`MetricsData.to_json()`):
//! one `{"resource_metrics": [...]}` object per export, with snake_case keys,
//! nanosecond times as integers, temporality as its OTLP number, and exemplar ids
//! as integers. OTLP's summaries, which Python cannot make, follow the same style.
//!
//! OTLP carries a histogram's sum, min and max as doubles whatever the instrument
//! records, where Python prints an integer instrument's (durations in whole
//! milliseconds, sizes in bytes) as integers. Integral ones are printed as
//! integers: that is Python's output for integer instruments, and differs only for
//! a float instrument whose sum, min or max happens to be whole.

use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets,
    metric::Data, number_data_point,
};

use super::json::{self, Bytes, Json, obj, text};

/// One record: what one export of one process's SDK holds.
pub fn record(resource_metrics: &ResourceMetrics) -> String {
    let scopes = resource_metrics
        .scope_metrics
        .iter()
        .map(|scope_metrics| {
            let scope = scope_metrics.scope.as_ref();
            let scope_attributes = scope.map_or(&[][..], |s| &s.attributes);
            obj(vec![
                (
                    "scope",
                    obj(vec![
                        ("name", text(scope.map_or("", |s| &s.name))),
                        (
                            "version",
                            json::text_or_null(scope.map_or("", |s| &s.version)),
                        ),
                        ("schema_url", text(&scope_metrics.schema_url)),
                        (
                            "attributes",
                            if scope_attributes.is_empty() {
                                Json::Null
                            } else {
                                json::attributes(scope_attributes, Bytes::Hex)
                            },
                        ),
                    ]),
                ),
                (
                    "metrics",
                    Json::Arr(scope_metrics.metrics.iter().map(metric).collect()),
                ),
                ("schema_url", text(&scope_metrics.schema_url)),
            ])
        })
        .collect();
    obj(vec![(
        "resource_metrics",
        Json::Arr(vec![obj(vec![
            (
                "resource",
                json::resource(
                    resource_metrics.resource.as_ref(),
                    &resource_metrics.schema_url,
                ),
            ),
            ("scope_metrics", Json::Arr(scopes)),
            ("schema_url", text(&resource_metrics.schema_url)),
        ])]),
    )])
    .record()
}

fn metric(metric: &Metric) -> Json {
    let points = |points: Vec<Json>| ("data_points", Json::Arr(points));
    let temporality = |t: i32| ("aggregation_temporality", Json::Int(i64::from(t)));
    let data = match &metric.data {
        Some(Data::Sum(sum)) => obj(vec![
            points(sum.data_points.iter().map(number_point).collect()),
            temporality(sum.aggregation_temporality),
            ("is_monotonic", Json::Bool(sum.is_monotonic)),
        ]),
        Some(Data::Gauge(gauge)) => obj(vec![points(
            gauge.data_points.iter().map(number_point).collect(),
        )]),
        Some(Data::Histogram(h)) => obj(vec![
            points(h.data_points.iter().map(histogram_point).collect()),
            temporality(h.aggregation_temporality),
        ]),
        Some(Data::ExponentialHistogram(h)) => obj(vec![
            points(h.data_points.iter().map(exponential_point).collect()),
            temporality(h.aggregation_temporality),
        ]),
        Some(Data::Summary(s)) => obj(vec![points(
            s.data_points.iter().map(summary_point).collect(),
        )]),
        None => Json::Null,
    };
    obj(vec![
        ("name", text(&metric.name)),
        ("description", text(&metric.description)),
        ("unit", text(&metric.unit)),
        ("data", data),
    ])
}

/// The fields every data point starts with. A start time OTLP leaves at 0
/// (gauges) is Python's `None`.
fn point_head(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    start: u64,
    time: u64,
) -> Vec<(&'static str, Json)> {
    vec![
        ("attributes", json::attributes(attributes, Bytes::Hex)),
        (
            "start_time_unix_nano",
            if start == 0 {
                Json::Null
            } else {
                Json::UInt(start.into())
            },
        ),
        ("time_unix_nano", Json::UInt(time.into())),
    ]
}

fn number_point(p: &NumberDataPoint) -> Json {
    let mut fields = point_head(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
    fields.push((
        "value",
        match p.value {
            Some(number_data_point::Value::AsInt(i)) => Json::Int(i),
            Some(number_data_point::Value::AsDouble(f)) => Json::Float(f),
            None => Json::Null,
        },
    ));
    fields.push(("exemplars", exemplars(&p.exemplars)));
    obj(fields)
}

fn histogram_point(p: &HistogramDataPoint) -> Json {
    let mut fields = point_head(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
    fields.extend([
        ("count", Json::UInt(p.count.into())),
        ("sum", recorded(p.sum)),
        (
            "bucket_counts",
            Json::Arr(
                p.bucket_counts
                    .iter()
                    .map(|c| Json::UInt((*c).into()))
                    .collect(),
            ),
        ),
        (
            "explicit_bounds",
            Json::Arr(p.explicit_bounds.iter().map(|b| Json::Float(*b)).collect()),
        ),
        ("min", recorded(p.min)),
        ("max", recorded(p.max)),
        ("exemplars", exemplars(&p.exemplars)),
    ]);
    obj(fields)
}

fn exponential_point(p: &ExponentialHistogramDataPoint) -> Json {
    let buckets = |b: Option<&Buckets>| {
        obj(vec![
            ("offset", Json::Int(b.map_or(0, |b| i64::from(b.offset)))),
            (
                "bucket_counts",
                Json::Arr(
                    b.map_or(&[][..], |b| &b.bucket_counts)
                        .iter()
                        .map(|c| Json::UInt((*c).into()))
                        .collect(),
                ),
            ),
        ])
    };
    let mut fields = point_head(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
    fields.extend([
        ("count", Json::UInt(p.count.into())),
        ("sum", recorded(p.sum)),
        ("scale", Json::Int(i64::from(p.scale))),
        ("zero_count", Json::UInt(p.zero_count.into())),
        ("positive", buckets(p.positive.as_ref())),
        ("negative", buckets(p.negative.as_ref())),
        ("flags", Json::UInt(p.flags.into())),
        ("min", recorded(p.min)),
        ("max", recorded(p.max)),
        ("exemplars", exemplars(&p.exemplars)),
    ]);
    obj(fields)
}

fn summary_point(p: &SummaryDataPoint) -> Json {
    let mut fields = point_head(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
    fields.extend([
        ("count", Json::UInt(p.count.into())),
        ("sum", Json::Float(p.sum)),
        (
            "quantile_values",
            Json::Arr(
                p.quantile_values
                    .iter()
                    .map(|q| {
                        obj(vec![
                            ("quantile", Json::Float(q.quantile)),
                            ("value", Json::Float(q.value)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]);
    obj(fields)
}

/// A histogram's sum, min or max (see the module header).
fn recorded(f: Option<f64>) -> Json {
    match f {
        None => Json::Null,
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::Int(f as i64),
        Some(f) => Json::Float(f),
    }
}

/// Python's `Exemplar` as `dataclasses.asdict` gives it: ids are integers, and
/// `null` when the measurement was made outside a span.
fn exemplars(exemplars: &[Exemplar]) -> Json {
    let id = |bytes: &[u8]| {
        if bytes.is_empty() {
            Json::Null
        } else {
            Json::UInt(bytes.iter().fold(0u128, |n, b| n << 8 | u128::from(*b)))
        }
    };
    Json::Arr(
        exemplars
            .iter()
            .map(|e| {
                obj(vec![
                    (
                        "filtered_attributes",
                        json::attributes(&e.filtered_attributes, Bytes::Hex),
                    ),
                    (
                        "value",
                        match e.value {
                            Some(exemplar::Value::AsInt(i)) => Json::Int(i),
                            Some(exemplar::Value::AsDouble(f)) => Json::Float(f),
                            None => Json::Null,
                        },
                    ),
                    ("time_unix_nano", Json::UInt(e.time_unix_nano.into())),
                    ("span_id", id(&e.span_id)),
                    ("trace_id", id(&e.trace_id)),
                ])
            })
            .collect(),
    )
}
