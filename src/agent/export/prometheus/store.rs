//! What a scrape shows: the received metrics folded into one cumulative value
//! per series. A cumulative point replaces the value, a delta point adds to it,
//! a gauge is its latest point. Series are named and labelled as the
//! Prometheus compatibility rules say; each resource is one `target_info`
//! series whose `job` and `instance` its other series carry too.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, ResourceMetrics, metric::Data, number_data_point,
};

use super::names;

/// Labels of a series, sorted by name.
pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Number(f64),
    Histogram {
        count: u64,
        sum: f64,
        /// Upper bounds, without `+Inf`.
        bounds: Vec<f64>,
        /// Counts per bucket (not cumulative), one more than `bounds`.
        counts: Vec<u64>,
    },
    Summary {
        count: u64,
        sum: f64,
        quantiles: Vec<(f64, f64)>,
    },
}

#[derive(Debug)]
pub struct Family {
    pub kind: Kind,
    pub help: String,
    /// The unit in words as the name ends with it (OpenMetrics' `# UNIT`).
    pub unit: String,
    pub series: BTreeMap<Labels, Sample>,
}

/// Points a scrape cannot show: how many, and why, each reason said once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unshown {
    pub points: u64,
    /// Reasons not said yet.
    pub unsaid: Vec<String>,
    /// The kinds of reason said or to be said.
    kinds: Vec<&'static str>,
}

impl Unshown {
    fn note(&mut self, kind: &'static str, points: u64, why: impl FnOnce() -> String) {
        self.points += points;
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
            self.unsaid.push(why());
        }
    }
}

#[derive(Debug, Default)]
pub struct Store {
    /// By Prometheus name, as rendered (a counter's ends in `_total`).
    pub families: BTreeMap<String, Family>,
    /// `target_info`: one series per resource.
    pub targets: BTreeMap<Labels, Labels>,
    pub unshown: Unshown,
    /// Series and families held, `target_info`'s included.
    held: usize,
}

/// The series a scrape shows at most: a child that makes new label values
/// without end (an ID as a label) cannot make otel-run hold without end.
pub const MAX_SERIES: usize = 50_000;

impl Store {
    /// Folds one received resource's metrics in.
    pub fn add(&mut self, resource: &ResourceMetrics) {
        let attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes);
        let target = target(attributes);
        let info: Labels = labels(
            attributes
                .iter()
                .filter(|kv| !IDENTIFYING.contains(&kv.key.as_str())),
        );
        if (!info.is_empty() || !target.is_empty())
            && (self.targets.contains_key(&target) || self.room())
            && self.targets.insert(target.clone(), info).is_none()
        {
            self.held += 1;
        }
        for scope in &resource.scope_metrics {
            let mut base = target.clone();
            if let Some(scope) = &scope.scope {
                for (key, value) in [
                    ("otel_scope_name", &scope.name),
                    ("otel_scope_version", &scope.version),
                ] {
                    if !value.is_empty() {
                        base.push((key.into(), value.clone()));
                    }
                }
            }
            for metric in &scope.metrics {
                self.metric(metric, &base);
            }
        }
    }

    fn metric(&mut self, metric: &Metric, base: &Labels) {
        let Some(data) = &metric.data else { return };
        let (kind, delta) = match data {
            Data::Gauge(_) => (Kind::Gauge, false),
            Data::Sum(s) => (
                if s.is_monotonic {
                    Kind::Counter
                } else {
                    Kind::Gauge
                },
                s.aggregation_temporality == AggregationTemporality::Delta as i32,
            ),
            Data::Histogram(h) => (
                Kind::Histogram,
                h.aggregation_temporality == AggregationTemporality::Delta as i32,
            ),
            Data::Summary(_) => (Kind::Summary, false),
            Data::ExponentialHistogram(h) => {
                self.unshow(
                    h.data_points.len(),
                    &metric.name,
                    "an exponential histogram",
                );
                return;
            }
        };
        let gauge = kind == Kind::Gauge;
        // Keyed as rendered: counter `x` and gauge `x_total` are one name.
        let name = names::metric(&metric.name, &metric.unit, kind == Kind::Counter, gauge);
        if !self.families.contains_key(&name) && self.held >= MAX_SERIES {
            self.unshown.note("full", points(data) as u64, full);
            return;
        }
        let unit = unit_of(
            &names::metric(&metric.name, &metric.unit, false, gauge),
            &metric.name,
        );
        let held = &mut self.held;
        let family = self.families.entry(name).or_insert_with(|| {
            *held += 1;
            Family {
                kind,
                help: metric.description.clone(),
                unit,
                series: BTreeMap::new(),
            }
        });
        if family.kind != kind {
            let name = &metric.name;
            self.unshown.note("clash", points(data) as u64, || {
                format!("`{name}` has the name of a metric of another type")
            });
            return;
        }
        let series = &mut family.series;
        let (held, unshown) = (&mut self.held, &mut self.unshown);
        let mut put = |attributes: &[KeyValue], sample: Sample| {
            let mut labels = base.clone();
            labels.extend(self::labels(attributes.iter()));
            labels.sort();
            labels.dedup_by(|a, b| a.0 == b.0);
            match series.get_mut(&labels) {
                Some(old) if delta => accumulate(old, sample),
                Some(old) => *old = sample,
                None if *held < MAX_SERIES => {
                    series.insert(labels, sample);
                    *held += 1;
                }
                None => unshown.note("full", 1, full),
            }
        };
        match data {
            Data::Gauge(g) => g
                .data_points
                .iter()
                .for_each(|p| put(&p.attributes, Sample::Number(number(p.value)))),
            Data::Sum(s) => s
                .data_points
                .iter()
                .for_each(|p| put(&p.attributes, Sample::Number(number(p.value)))),
            Data::Histogram(h) => h.data_points.iter().for_each(|p| {
                let sample = Sample::Histogram {
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0),
                    bounds: p.explicit_bounds.clone(),
                    counts: p.bucket_counts.clone(),
                };
                put(&p.attributes, sample)
            }),
            Data::Summary(s) => s.data_points.iter().for_each(|p| {
                let sample = Sample::Summary {
                    count: p.count,
                    sum: p.sum,
                    quantiles: p
                        .quantile_values
                        .iter()
                        .map(|q| (q.quantile, q.value))
                        .collect(),
                };
                put(&p.attributes, sample)
            }),
            Data::ExponentialHistogram(_) => {}
        }
    }

    fn room(&mut self) -> bool {
        let room = self.held < MAX_SERIES;
        if !room {
            self.unshown.note("full", 0, full);
        }
        room
    }

    fn unshow(&mut self, points: usize, name: &str, what: &str) {
        self.unshown.note("kind", points as u64, || {
            format!("`{name}` is {what}, which the text format cannot show")
        });
    }
}

fn full() -> String {
    format!(
        "a scrape shows at most {MAX_SERIES} series (labels that never repeat, such as an ID, make new ones)"
    )
}

/// A delta point added to the value so far. Histograms whose bounds changed
/// start again from the new point.
fn accumulate(old: &mut Sample, new: Sample) {
    match (old, new) {
        (Sample::Number(old), Sample::Number(new)) => *old += new,
        (
            Sample::Histogram {
                count,
                sum,
                bounds,
                counts,
            },
            Sample::Histogram {
                count: c,
                sum: s,
                bounds: b,
                counts: n,
            },
        ) if *bounds == b && counts.len() == n.len() => {
            // Counts from the network: they saturate, never overflow.
            *count = count.saturating_add(c);
            *sum += s;
            counts
                .iter_mut()
                .zip(n)
                .for_each(|(old, new)| *old = old.saturating_add(new));
        }
        (old, new) => *old = new,
    }
}

fn points(data: &Data) -> usize {
    match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

fn number(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

/// The resource attributes that name the target rather than describe it.
const IDENTIFYING: &[&str] = &["service.name", "service.namespace", "service.instance.id"];

/// `job` (`service.namespace/service.name`) and `instance`
/// (`service.instance.id`), as far as the resource has them.
fn target(attributes: &[KeyValue]) -> Labels {
    let get = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(text)
            .filter(|v| !v.is_empty())
    };
    let mut labels = Vec::new();
    let job = match (get("service.namespace"), get("service.name")) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, name) => name,
        (Some(ns), None) => Some(ns),
    };
    if let Some(instance) = get("service.instance.id") {
        labels.push(("instance".to_string(), instance));
    }
    if let Some(job) = job {
        labels.push(("job".to_string(), job));
    }
    labels
}

/// Attributes as labels; two attributes whose label names collide are one
/// label, their values joined by `;` in the order of their keys.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> Labels {
    let mut by_name: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for kv in attributes {
        by_name
            .entry(names::label(&kv.key))
            .or_default()
            .push((&kv.key, text(kv)));
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            values.sort();
            let joined: Vec<String> = values.into_iter().map(|(_, v)| v).collect();
            (name, joined.join(";"))
        })
        .collect()
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The unit words the rules appended to `name` (what OpenMetrics' `# UNIT`
/// states): the end of the Prometheus name that the OpenTelemetry name lacks.
fn unit_of(name: &str, original: &str) -> String {
    let base = names::metric(original, "", false, false);
    name.strip_prefix(&base)
        .map(|rest| rest.trim_start_matches('_').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, ScopeMetrics};

    use super::*;

    #[test]
    fn series_are_bounded_and_what_is_left_out_is_counted() {
        let points = (0..MAX_SERIES + 10)
            .map(|i| NumberDataPoint {
                attributes: vec![KeyValue {
                    key: "request.id".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(i.to_string())),
                    }),
                    ..Default::default()
                }],
                value: Some(number_data_point::Value::AsInt(1)),
                ..Default::default()
            })
            .collect();
        let resource = ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "ids".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut store = Store::default();
        store.add(&resource);
        // The family is held too.
        assert_eq!(store.families["ids"].series.len(), MAX_SERIES - 1);
        assert_eq!(store.unshown.points, 11);
        assert_eq!(store.unshown.unsaid.len(), 1, "said once");
        assert!(store.unshown.unsaid[0].contains("at most"));
        // A series already held is still updated.
        store.add(&resource);
        assert_eq!(store.families["ids"].series.len(), MAX_SERIES - 1);
        assert_eq!(store.unshown.points, 22);
    }

    fn resource(metrics: Vec<Metric>) -> ResourceMetrics {
        ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_counter_and_a_gauge_of_one_rendered_name_are_one_family() {
        use opentelemetry_proto::tonic::metrics::v1::Sum;
        let point = || NumberDataPoint {
            value: Some(number_data_point::Value::AsInt(1)),
            ..Default::default()
        };
        let counter = Metric {
            name: "x".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![point()],
                is_monotonic: true,
                ..Default::default()
            })),
            ..Default::default()
        };
        let gauge = Metric {
            name: "x_total".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![point()],
            })),
            ..Default::default()
        };
        let mut store = Store::default();
        store.add(&resource(vec![counter, gauge]));
        assert_eq!(store.families.keys().collect::<Vec<_>>(), ["x_total"]);
        assert_eq!(store.families["x_total"].kind, Kind::Counter);
        assert_eq!(store.unshown.points, 1);
        assert!(store.unshown.unsaid[0].contains("another type"));
    }

    #[test]
    fn delta_histograms_saturate_instead_of_overflowing() {
        use opentelemetry_proto::tonic::metrics::v1::{Histogram, HistogramDataPoint};
        let histogram = || Metric {
            name: "h".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: u64::MAX,
                    bucket_counts: vec![u64::MAX],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        };
        let mut store = Store::default();
        store.add(&resource(vec![histogram()]));
        store.add(&resource(vec![histogram()]));
        let series = &store.families["h"].series;
        let Some(Sample::Histogram { count, counts, .. }) = series.values().next() else {
            panic!("{series:?}");
        };
        assert_eq!((*count, counts[0]), (u64::MAX, u64::MAX));
    }
}
