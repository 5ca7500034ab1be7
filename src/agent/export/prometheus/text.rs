//! A scrape's body: the Prometheus text format (0.0.4), or OpenMetrics 1.0
//! when the scraper asks for it.

use std::fmt::Write as _;

use super::store::{Family, Kind, Labels, Sample, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn accepted(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

pub fn render(store: &Store, format: Format) -> String {
    let mut out = String::new();
    if !store.targets.is_empty() {
        let _ = writeln!(out, "# HELP target_info Target metadata");
        let _ = writeln!(out, "# TYPE target_info gauge");
        for (target, info) in &store.targets {
            let mut labels = target.clone();
            labels.extend(info.iter().cloned());
            labels.sort();
            sample(&mut out, "target_info", &labels, None, 1.0);
        }
    }
    for (name, family) in &store.families {
        family_text(&mut out, name, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn family_text(out: &mut String, name: &str, family: &Family, format: Format) {
    let kind = match family.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
        Kind::Summary => "summary",
    };
    // OpenMetrics names a counter's family without `_total`; the text format
    // names it as its samples.
    let family_name = match (format, family.kind) {
        (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let sample_name = name;
    if !family.help.is_empty() {
        let _ = writeln!(out, "# HELP {family_name} {}", escape(&family.help, false));
    }
    let _ = writeln!(out, "# TYPE {family_name} {kind}");
    if format == Format::OpenMetrics && !family.unit.is_empty() {
        let _ = writeln!(out, "# UNIT {family_name} {}", family.unit);
    }
    for (labels, value) in &family.series {
        match value {
            Sample::Number(v) => sample(out, sample_name, labels, None, *v),
            Sample::Histogram {
                count,
                sum,
                bounds,
                counts,
            } => {
                let mut cumulative = 0u64;
                for (i, bound) in bounds.iter().enumerate() {
                    cumulative += counts.get(i).copied().unwrap_or(0);
                    let le = number(*bound);
                    sample(
                        out,
                        &format!("{name}_bucket"),
                        labels,
                        Some(("le", &le)),
                        cumulative as f64,
                    );
                }
                sample(
                    out,
                    &format!("{name}_bucket"),
                    labels,
                    Some(("le", "+Inf")),
                    *count as f64,
                );
                sample(out, &format!("{name}_sum"), labels, None, *sum);
                sample(out, &format!("{name}_count"), labels, None, *count as f64);
            }
            Sample::Summary {
                count,
                sum,
                quantiles,
            } => {
                for (quantile, value) in quantiles {
                    let q = number(*quantile);
                    sample(out, name, labels, Some(("quantile", &q)), *value);
                }
                sample(out, &format!("{name}_sum"), labels, None, *sum);
                sample(out, &format!("{name}_count"), labels, None, *count as f64);
            }
        }
    }
}

fn sample(out: &mut String, name: &str, labels: &Labels, extra: Option<(&str, &str)>, value: f64) {
    out.push_str(name);
    let extra = extra.map(|(k, v)| (k.to_string(), v.to_string()));
    let all = labels.iter().chain(extra.iter());
    let mut first = true;
    for (key, value) in all {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{key}=\"{}\"", escape(value, true));
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// A number as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, integers without
/// a fraction.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// Backslash, newline and (in label values) double quote escaped.
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn point(value: i64, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            value: Some(number_data_point::Value::AsInt(value)),
            ..Default::default()
        }
    }

    fn request(metrics: Vec<Metric>) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "todo"),
                    kv("service.namespace", "shop"),
                    kv("service.instance.id", "i-1"),
                    kv("host.name", "box"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "app".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn orders(value: i64) -> Metric {
        Metric {
            name: "orders.placed".into(),
            description: "Orders \\ placed\nso far".into(),
            unit: "{order}".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![point(value, vec![kv("shop.region", "eu \"west\"")])],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn store() -> Store {
        let mut store = Store::default();
        let duration = Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("http.route", "/todos")],
                    count: 3,
                    sum: Some(0.75),
                    explicit_bounds: vec![0.1, 0.5],
                    bucket_counts: vec![1, 1, 1],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let utilization = Metric {
            name: "cpu.utilization".into(),
            unit: "1".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsDouble(0.25)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        store.add(&request(vec![orders(2), duration, utilization]));
        store.add(&request(vec![orders(3)]));
        store
    }

    #[test]
    fn the_text_format_shows_one_cumulative_value_per_series() {
        let expected = r#"# HELP target_info Target metadata
# TYPE target_info gauge
target_info{host_name="box",instance="i-1",job="shop/todo"} 1
# TYPE cpu_utilization_ratio gauge
cpu_utilization_ratio{instance="i-1",job="shop/todo",otel_scope_name="app"} 0.25
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_route="/todos",instance="i-1",job="shop/todo",otel_scope_name="app",le="0.1"} 1
http_server_request_duration_seconds_bucket{http_route="/todos",instance="i-1",job="shop/todo",otel_scope_name="app",le="0.5"} 2
http_server_request_duration_seconds_bucket{http_route="/todos",instance="i-1",job="shop/todo",otel_scope_name="app",le="+Inf"} 3
http_server_request_duration_seconds_sum{http_route="/todos",instance="i-1",job="shop/todo",otel_scope_name="app"} 0.75
http_server_request_duration_seconds_count{http_route="/todos",instance="i-1",job="shop/todo",otel_scope_name="app"} 3
# HELP orders_placed_total Orders \\ placed\nso far
# TYPE orders_placed_total counter
orders_placed_total{instance="i-1",job="shop/todo",otel_scope_name="app",shop_region="eu \"west\""} 5
"#;
        assert_eq!(render(&store(), Format::Text), expected);
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = render(&store(), Format::OpenMetrics);
        assert!(text.contains("# TYPE orders_placed counter\n"), "{text}");
        assert!(text.contains("\norders_placed_total{"), "{text}");
        assert!(
            text.contains("# UNIT http_server_request_duration_seconds seconds\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            Format::accepted("application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(Format::accepted("*/*"), Format::Text);
    }
}
