//! The metrics the viewer shows: per series (service, metric, point
//! attributes) the latest point, and for sums and histograms a short history
//! for a small chart. Bounded by series; a series over the bound is counted and
//! not kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};
use serde_json::{Value, json};

use super::jaeger::{any_value_json, service_name};

/// Series kept at most: far more than one program's instruments make.
pub const MAX_SERIES: usize = 10_000;
/// Points of history kept per series of a sum or histogram.
pub const HISTORY: usize = 60;

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By (service, metric name): the metric's description and its series.
    metrics: BTreeMap<(String, String), Metric>,
    series: usize,
    dropped_series: u64,
}

struct Metric {
    scope: String,
    description: String,
    unit: String,
    kind: &'static str,
    /// By the point's attributes, as JSON text.
    series: BTreeMap<String, Series>,
}

struct Series {
    attributes: Value,
    time: u64,
    latest: Value,
    /// (time in µs, value) of the latest points, oldest first.
    history: VecDeque<(u64, f64)>,
}

impl Metrics {
    pub fn add(&self, message: &ResourceMetrics) {
        let service = service_name(message.resource.as_ref());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for scope_metrics in &message.scope_metrics {
            let scope = scope_metrics
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for metric in &scope_metrics.metrics {
                let Some(data) = &metric.data else { continue };
                let points = points(data);
                let key = (service.clone(), metric.name.clone());
                for (attributes, time, latest, charted) in points {
                    let Inner {
                        metrics,
                        series,
                        dropped_series,
                    } = &mut *inner;
                    let entry = metrics.entry(key.clone()).or_insert_with(|| Metric {
                        scope: scope.clone(),
                        description: metric.description.clone(),
                        unit: metric.unit.clone(),
                        kind: kind(data),
                        series: BTreeMap::new(),
                    });
                    let attrs = attributes_json(attributes);
                    let id = attrs.to_string();
                    if !entry.series.contains_key(&id) {
                        if *series >= MAX_SERIES {
                            *dropped_series += 1;
                            continue;
                        }
                        *series += 1;
                    }
                    let s = entry.series.entry(id).or_insert_with(|| Series {
                        attributes: attrs,
                        time: 0,
                        latest: Value::Null,
                        history: VecDeque::new(),
                    });
                    if time < s.time {
                        continue;
                    }
                    s.time = time;
                    s.latest = latest;
                    if let Some(value) = charted {
                        if s.history.len() == HISTORY {
                            s.history.pop_front();
                        }
                        s.history.push_back((time / 1000, value));
                    }
                }
            }
        }
    }

    /// (series kept, series dropped over the bound).
    pub fn counts(&self) -> (usize, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.series, inner.dropped_series)
    }

    /// `/api/otel-run/metrics`'s `data`.
    pub fn to_json(&self) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let metrics = inner.metrics.iter().map(|((service, name), m)| {
            let series: Vec<Value> = m
                .series
                .values()
                .map(|s| {
                    json!({
                        "attributes": s.attributes,
                        "time": s.time / 1000,
                        "value": s.latest,
                        "history": s.history.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "service": service,
                "scope": m.scope,
                "name": name,
                "description": m.description,
                "unit": m.unit,
                "type": m.kind,
                "series": series,
            })
        });
        Value::Array(metrics.collect())
    }
}

fn kind(data: &Data) -> &'static str {
    match data {
        Data::Gauge(_) => "gauge",
        Data::Sum(_) => "sum",
        Data::Histogram(_) => "histogram",
        Data::ExponentialHistogram(_) => "exponential_histogram",
        Data::Summary(_) => "summary",
    }
}

fn number(value: &Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// Each point: its attributes, time, latest value as JSON, and the number
/// charted (sums and histograms only: a gauge's history is not kept).
fn points(data: &Data) -> Vec<(&[KeyValue], u64, Value, Option<f64>)> {
    match data {
        Data::Gauge(g) => g
            .data_points
            .iter()
            .map(|p| {
                (
                    &p.attributes[..],
                    p.time_unix_nano,
                    json!(number(&p.value)),
                    None,
                )
            })
            .collect(),
        Data::Sum(s) => s
            .data_points
            .iter()
            .map(|p| {
                let v = number(&p.value);
                (&p.attributes[..], p.time_unix_nano, json!(v), Some(v))
            })
            .collect(),
        Data::Histogram(h) => h
            .data_points
            .iter()
            .map(|p| {
                let latest = json!({
                    "count": p.count,
                    "sum": p.sum,
                    "min": p.min,
                    "max": p.max,
                    "bucketCounts": p.bucket_counts,
                    "explicitBounds": p.explicit_bounds,
                });
                (
                    &p.attributes[..],
                    p.time_unix_nano,
                    latest,
                    Some(p.count as f64),
                )
            })
            .collect(),
        Data::ExponentialHistogram(h) => h
            .data_points
            .iter()
            .map(|p| {
                let latest = json!({"count": p.count, "sum": p.sum, "min": p.min, "max": p.max});
                (
                    &p.attributes[..],
                    p.time_unix_nano,
                    latest,
                    Some(p.count as f64),
                )
            })
            .collect(),
        Data::Summary(s) => s
            .data_points
            .iter()
            .map(|p| {
                let quantiles: Vec<Value> = p
                    .quantile_values
                    .iter()
                    .map(|q| json!([q.quantile, q.value]))
                    .collect();
                let latest = json!({"count": p.count, "sum": p.sum, "quantiles": quantiles});
                (&p.attributes[..], p.time_unix_nano, latest, None)
            })
            .collect(),
    }
}

fn attributes_json(attributes: &[KeyValue]) -> Value {
    let map: serde_json::Map<String, Value> = attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value_json(kv.value.as_ref())))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint, ScopeMetrics, Sum};

    fn sum(value: i64, time: u64) -> ResourceMetrics {
        ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_sum_keeps_its_latest_value_and_a_history() {
        let metrics = Metrics::default();
        metrics.add(&sum(1, 1_000));
        metrics.add(&sum(5, 2_000));
        let json = metrics.to_json();
        let series = &json[0]["series"][0];
        assert_eq!(json[0]["type"], "sum");
        assert_eq!(series["value"], 5.0);
        assert_eq!(series["history"], json!([[1, 1.0], [2, 5.0]]));
        assert_eq!(metrics.counts(), (1, 0));
    }
}
