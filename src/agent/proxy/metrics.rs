//! The request duration histograms: `http.server.request.duration` for the reverse
//! proxy, `http.client.request.duration` for the forward proxy, in seconds with the
//! buckets the semantic conventions advise: cumulative from the proxy's start, or
//! delta (each export counts what happened since the previous one) when
//! OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE is `delta` or `lowmemory`, as
//! the specification has histograms follow both.

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::span::{Exchange, Kind, protocol_version};
use crate::telemetry::{kv, nanos};

/// The conventions' advised boundaries for HTTP durations, in seconds.
pub const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The attributes a data point is keyed by, in the order they are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    method: &'static str,
    status: Option<u16>,
    route: Option<String>,
    version: &'static str,
    error: Option<String>,
    server: Option<(String, u16)>,
}

#[derive(Debug, Clone)]
struct Point {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: [u64; BOUNDS.len() + 1],
}

impl Key {
    fn of(exchange: &Exchange, route: Option<&str>) -> Key {
        Key {
            kind: exchange.kind,
            method: exchange.method_name(),
            status: exchange.status,
            route: route.map(str::to_string),
            version: protocol_version(exchange.version),
            error: exchange.error_type(),
            // The client metric names its peer; the server's is always the proxy.
            server: (exchange.kind == Kind::Client).then(|| {
                let (host, port) = exchange.server();
                (host.into_owned(), port)
            }),
        }
    }

    /// Whether `exchange` has these attributes, without building its key.
    fn matches(&self, exchange: &Exchange, route: Option<&str>) -> bool {
        self.kind == exchange.kind
            && self.status == exchange.status
            && self.method == exchange.method_name()
            && self.version == protocol_version(exchange.version)
            && self.route.as_deref() == route
            && self.error == exchange.error_type()
            && match &self.server {
                None => exchange.kind != Kind::Client,
                Some((host, port)) => {
                    exchange.kind == Kind::Client && {
                        let (their_host, their_port) = exchange.server();
                        *host == their_host && *port == their_port
                    }
                }
            }
    }
}

impl Point {
    fn new() -> Point {
        Point {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: [0; BOUNDS.len() + 1],
        }
    }

    fn record(&mut self, seconds: f64) {
        self.count += 1;
        self.sum += seconds;
        self.min = self.min.min(seconds);
        self.max = self.max.max(seconds);
        let bucket = BOUNDS.partition_point(|b| *b < seconds);
        self.buckets[bucket] += 1;
    }

    fn absorb(&mut self, other: Point) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
    }
}

/// Both histograms, one data point per attribute set.
///
/// Requests in a row mostly share their attributes: the latest attribute set's
/// point is counted apart, and only joins the map (its key built and hashed)
/// when a request of another set comes, or the counts are read.
pub struct Durations {
    start: SystemTime,
    points: HashMap<Key, Point>,
    latest: Option<(Key, Point)>,
    delta: bool,
}

impl Durations {
    /// Histograms from now on; `temporality` is the preference's value, if set.
    pub fn new(temporality: Option<&str>) -> Durations {
        Durations {
            start: SystemTime::now(),
            points: HashMap::new(),
            latest: None,
            delta: temporality.is_some_and(|t| {
                t.eq_ignore_ascii_case("delta") || t.eq_ignore_ascii_case("lowmemory")
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.latest.is_none()
    }

    pub fn add(&mut self, exchange: &Exchange, route: Option<&str>) {
        let seconds = exchange.duration_secs();
        match &mut self.latest {
            Some((key, point)) if key.matches(exchange, route) => point.record(seconds),
            _ => {
                self.settle();
                let mut point = Point::new();
                point.record(seconds);
                self.latest = Some((Key::of(exchange, route), point));
            }
        }
    }

    /// Puts the latest attribute set's point in the map.
    fn settle(&mut self) {
        if let Some((key, point)) = self.latest.take() {
            self.points
                .entry(key)
                .or_insert_with(Point::new)
                .absorb(point);
        }
    }

    /// The counts so far, which this leaves empty: for another thread's
    /// histograms to [`merge`](Durations::merge).
    pub fn take(&mut self) -> Durations {
        self.settle();
        Durations {
            start: self.start,
            points: std::mem::take(&mut self.points),
            latest: None,
            delta: self.delta,
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, mut other: Durations) {
        other.settle();
        for (key, point) in other.points {
            self.points
                .entry(key)
                .or_insert_with(Point::new)
                .absorb(point);
        }
    }

    /// The histograms as they stand now, for `resource`. With delta temporality
    /// the next export starts from nothing, now.
    pub fn export(&mut self, resource: &Resource) -> ResourceMetrics {
        self.settle();
        let exported_at = SystemTime::now();
        let (start, now) = (nanos(self.start), nanos(exported_at));
        let mut metrics = Vec::new();
        for (kind, name, description) in [
            (
                Kind::Server,
                "http.server.request.duration",
                "Duration of HTTP server requests.",
            ),
            (
                Kind::Client,
                "http.client.request.duration",
                "Duration of HTTP client requests.",
            ),
        ] {
            let data_points: Vec<HistogramDataPoint> = self
                .points
                .iter()
                .filter(|(key, _)| key.kind == kind)
                .map(|(key, point)| HistogramDataPoint {
                    attributes: attributes(key),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: point.count,
                    sum: Some(point.sum),
                    bucket_counts: point.buckets.to_vec(),
                    explicit_bounds: BOUNDS.to_vec(),
                    min: Some(point.min),
                    max: Some(point.max),
                    ..Default::default()
                })
                .collect();
            if data_points.is_empty() {
                continue;
            }
            metrics.push(Metric {
                name: name.into(),
                description: description.into(),
                unit: "s".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality: if self.delta {
                        AggregationTemporality::Delta
                    } else {
                        AggregationTemporality::Cumulative
                    } as i32,
                })),
                ..Default::default()
            });
        }
        if self.delta {
            self.points.clear();
            self.start = exported_at;
        }
        ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "otel-run".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    let string = |s: &str| Value::StringValue(s.to_string());
    let mut out = vec![kv("http.request.method", string(key.method))];
    if let Some(status) = key.status {
        out.push(kv(
            "http.response.status_code",
            Value::IntValue(status.into()),
        ));
    }
    if let Some(route) = &key.route {
        out.push(kv("http.route", string(route)));
    }
    if let Some(error) = &key.error {
        out.push(kv("error.type", string(error)));
    }
    if let Some((address, port)) = &key.server {
        out.push(kv("server.address", string(address)));
        out.push(kv("server.port", Value::IntValue((*port).into())));
    }
    out.push(kv("url.scheme", string("http")));
    out.push(kv("network.protocol.version", string(key.version)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_of_a_duration() {
        // 7 ms falls in (0.005, 0.01]: bucket 1; exactly on a bound counts below it.
        assert_eq!(BOUNDS.partition_point(|b| *b < 0.007), 1);
        assert_eq!(BOUNDS.partition_point(|b| *b < 0.005), 0);
        assert_eq!(BOUNDS.partition_point(|b| *b < 11.0), BOUNDS.len());
    }

    fn request() -> Exchange {
        let start = SystemTime::now();
        Exchange {
            kind: Kind::Server,
            context: crate::telemetry::context::SpanContext::new([1; 16], [2; 8], true),
            parent: None,
            method: http::Method::GET,
            uri: "/".parse().unwrap(),
            version: http::Version::HTTP_11,
            host: None,
            local: "127.0.0.1:8080".parse().unwrap(),
            client: "127.0.0.1:9".parse().unwrap(),
            user_agent: None,
            status: Some(200),
            error: None,
            request_size: None,
            response_size: Some(3),
            start,
            end: start + std::time::Duration::from_millis(7),
        }
    }

    /// (temporality, start, count) of the one data point exported, if any.
    fn point(metrics: &ResourceMetrics) -> Option<(i32, u64, u64)> {
        let metric = metrics.scope_metrics[0].metrics.first()?;
        let Some(Data::Histogram(h)) = &metric.data else {
            panic!("a histogram");
        };
        let p = &h.data_points[0];
        Some((h.aggregation_temporality, p.start_time_unix_nano, p.count))
    }

    #[test]
    fn cumulative_by_default_delta_when_preferred() {
        let resource = Resource::default();
        let mut cumulative = Durations::new(None);
        cumulative.add(&request(), None);
        let (temporality, start, count) = point(&cumulative.export(&resource)).unwrap();
        assert_eq!(temporality, AggregationTemporality::Cumulative as i32);
        assert_eq!(count, 1);
        cumulative.add(&request(), None);
        assert_eq!(
            point(&cumulative.export(&resource)),
            Some((temporality, start, 2))
        );

        for preference in ["delta", "LowMemory"] {
            let mut delta = Durations::new(Some(preference));
            delta.add(&request(), None);
            let first = delta.export(&resource);
            let (temporality, start, count) = point(&first).unwrap();
            assert_eq!(temporality, AggregationTemporality::Delta as i32);
            assert_eq!(count, 1);
            assert!(delta.is_empty(), "a delta export starts over");
            assert_eq!(point(&delta.export(&resource)), None);
            delta.add(&request(), None);
            let (_, next_start, count) = point(&delta.export(&resource)).unwrap();
            assert_eq!(count, 1);
            assert!(
                next_start > start,
                "the next point starts at the last export"
            );
        }
    }

    /// Each data point's count by its attributes, `key=value` joined by `,`.
    fn counts(metrics: &ResourceMetrics) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = metrics.scope_metrics[0]
            .metrics
            .iter()
            .flat_map(|metric| {
                let Some(Data::Histogram(h)) = &metric.data else {
                    panic!("a histogram");
                };
                h.data_points.iter().map(|p| {
                    let attributes: Vec<String> = p
                        .attributes
                        .iter()
                        .map(
                            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(Value::StringValue(s)) => format!("{}={s}", kv.key),
                                Some(Value::IntValue(i)) => format!("{}={i}", kv.key),
                                other => panic!("{other:?}"),
                            },
                        )
                        .filter(|a| a.starts_with("http.r") || a.starts_with("server."))
                        .collect();
                    (attributes.join(","), p.count)
                })
            })
            .collect();
        counts.sort();
        counts
    }

    #[test]
    fn requests_of_alternating_attribute_sets_are_each_counted() {
        let ok = request();
        let mut not_found = request();
        not_found.status = Some(404);
        let client = |authority: &str| {
            let mut client = request();
            client.kind = Kind::Client;
            client.uri = format!("http://{authority}/").parse().unwrap();
            client
        };
        let mut durations = Durations::new(None);
        for _ in 0..3 {
            durations.add(&ok, None);
            durations.add(&not_found, None);
            durations.add(&not_found, None);
        }
        durations.add(&ok, None);
        durations.add(&ok, Some("/users/{id}"));
        durations.add(&client("a:1"), None);
        durations.add(&client("b:1"), None);
        durations.add(&client("b:2"), None);
        durations.add(&client("b:2"), None);
        let counts = counts(&durations.export(&Resource::default()));
        let expected = [
            ("http.request.method=GET,http.response.status_code=200", 4),
            ("http.request.method=GET,http.response.status_code=200,http.route=/users/{id}", 1),
            ("http.request.method=GET,http.response.status_code=200,server.address=a,server.port=1", 1),
            ("http.request.method=GET,http.response.status_code=200,server.address=b,server.port=1", 1),
            ("http.request.method=GET,http.response.status_code=200,server.address=b,server.port=2", 2),
            ("http.request.method=GET,http.response.status_code=404", 6),
        ]
        .map(|(a, n)| (a.to_string(), n));
        assert_eq!(counts, expected);
    }

    #[test]
    fn counts_taken_on_one_thread_merge_into_another() {
        let mut thread = Durations::new(None);
        thread.add(&request(), None);
        let mut slow = request();
        slow.end = slow.start + std::time::Duration::from_secs(3);
        thread.add(&slow, None);
        let mut not_found = request();
        not_found.status = Some(404);
        thread.add(&not_found, None);

        let mut sink = Durations::new(None);
        sink.add(&request(), None);
        sink.merge(thread.take());
        assert!(thread.is_empty(), "taking leaves nothing to send twice");
        let exported = sink.export(&Resource::default());
        let Some(Data::Histogram(h)) = &exported.scope_metrics[0].metrics[0].data else {
            panic!("a histogram");
        };
        let mut points: Vec<_> = h.data_points.iter().collect();
        points.sort_by_key(|p| p.count);
        let [not_found, ok] = points[..] else {
            panic!("two attribute sets: {points:?}");
        };
        assert_eq!(not_found.count, 1);
        assert_eq!(ok.count, 3);
        assert_eq!(ok.min, Some(0.007));
        assert_eq!(ok.max, Some(3.0));
        assert!((ok.sum.unwrap() - 3.014).abs() < 1e-9);
        // 7 ms twice in (0.005, 0.01], 3 s once in (2.5, 5].
        assert_eq!(ok.bucket_counts[1], 2);
        assert_eq!(ok.bucket_counts[11], 1);
    }
}
