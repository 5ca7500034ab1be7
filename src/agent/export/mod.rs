//! Exporters: where a batch of OTLP `Resource*` messages goes.
//!
//! One enum, one module per kind: `otlp` (gRPC, http/protobuf, http/json),
//! `zipkin`, `prometheus` (a scrape endpoint) and `console`; the viewer's
//! store ([`crate::agent::viewer`]) takes batches as one too. The three signals are made generic by [`Payload`].

pub mod console;
pub mod localhost;
pub mod otlp;
pub mod prometheus;
pub mod zipkin;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::settings::otlp::Signal;
use crate::telemetry::spans::Spans;

/// Why an export failed, and so whether to retry it.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Nothing accepted the connection.
    #[error("{0}")]
    Unreachable(String),
    /// A transient failure the specification says to retry.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying would not help (bad request, authentication, ...).
    #[error("{0}")]
    Permanent(String),
    /// The destination is gone for good (a console pipe whose reader exited):
    /// every later export fails the same way.
    #[error("{0}")]
    Closed(String),
    /// The destination does not take this signal (gRPC UNIMPLEMENTED, HTTP
    /// 404): every later export of it would fail the same way.
    #[error("{0}")]
    Unsupported(String),
}

/// A signal's OTLP message: what a pipeline carries and an exporter sends.
pub trait Payload:
    prost::Message + serde::Serialize + Clone + Default + Send + Sync + 'static
{
    const SIGNAL: Signal;
    type Request: prost::Message
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Default
        + Send
        + 'static;
    type Response: prost::Message + serde::Serialize + Default + Send + 'static;

    /// Spans, data points or log records in this message (what limits count).
    fn count(&self) -> usize;
    fn items(request: Self::Request) -> Vec<Self>;
    /// A response telling the sender that `rejected` records were not accepted.
    fn response(rejected: u64, message: String) -> Self::Response;
    /// Records the peer rejected, with its message.
    fn rejected(response: &Self::Response) -> Option<(i64, String)>;
    /// This message's console form, one text per record as Python's console
    /// exporter prints it.
    fn to_console(&self) -> Vec<String>;
    /// This message's protobuf encoding, when it is held encoded already.
    fn encoded(&self) -> Option<bytes::Bytes> {
        None
    }
    /// The spans, for exporters of spans only (Zipkin).
    fn as_spans(&self) -> Option<std::borrow::Cow<'_, ResourceSpans>> {
        None
    }
    /// The metrics, for exporters of metrics only (Prometheus).
    fn as_metrics(&self) -> Option<&ResourceMetrics> {
        None
    }
    /// The logs, for the viewer's store.
    fn as_logs(&self) -> Option<&ResourceLogs> {
        None
    }
    /// The gRPC method the request goes to.
    const GRPC_PATH: &'static str;
    /// The request's one field in OTLP/JSON.
    const JSON_FIELD: &'static str;
}

/// The parts of [`Payload`] that differ between signals only by name.
macro_rules! otlp_messages {
    ($signal:expr, $request:ident { $items:ident: $json:literal }, $response:ident, $partial:ident { $rejected:ident }, $service:literal) => {
        const SIGNAL: Signal = $signal;
        type Request = $request;
        type Response = $response;
        const GRPC_PATH: &'static str =
            concat!("/opentelemetry.proto.collector.", $service, "/Export");
        const JSON_FIELD: &'static str = $json;

        fn items(request: Self::Request) -> Vec<Self> {
            request.$items.into_iter().map(Into::into).collect()
        }
        fn response(rejected: u64, error_message: String) -> Self::Response {
            $response {
                partial_success: (rejected > 0).then_some($partial {
                    $rejected: rejected as i64,
                    error_message,
                }),
            }
        }
        fn rejected(response: &Self::Response) -> Option<(i64, String)> {
            let p = response.partial_success.as_ref()?;
            (p.$rejected > 0 || !p.error_message.is_empty())
                .then(|| (p.$rejected, p.error_message.clone()))
        }
    };
}

impl Payload for Spans {
    otlp_messages!(
        Signal::Traces,
        ExportTraceServiceRequest {
            resource_spans: "resourceSpans"
        },
        ExportTraceServiceResponse,
        ExportTracePartialSuccess { rejected_spans },
        "trace.v1.TraceService"
    );

    fn count(&self) -> usize {
        Spans::count(self)
    }
    fn encoded(&self) -> Option<bytes::Bytes> {
        match self {
            Spans::Encoded { bytes, .. } => Some(bytes.clone()),
            Spans::Message(_) => None,
        }
    }
    fn to_console(&self) -> Vec<String> {
        console::spans::records(&self.message())
    }
    fn as_spans(&self) -> Option<std::borrow::Cow<'_, ResourceSpans>> {
        Some(self.message())
    }
}

impl Payload for ResourceMetrics {
    otlp_messages!(
        Signal::Metrics,
        ExportMetricsServiceRequest {
            resource_metrics: "resourceMetrics"
        },
        ExportMetricsServiceResponse,
        ExportMetricsPartialSuccess {
            rejected_data_points
        },
        "metrics.v1.MetricsService"
    );

    /// Data points; a metric without any counts as one.
    fn count(&self) -> usize {
        let points = |d: &Option<Data>| match d {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        };
        self.scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(|m| points(&m.data).max(1))
            .sum()
    }
    fn to_console(&self) -> Vec<String> {
        vec![console::metrics::record(self)]
    }
    fn as_metrics(&self) -> Option<&ResourceMetrics> {
        Some(self)
    }
}

impl Payload for ResourceLogs {
    otlp_messages!(
        Signal::Logs,
        ExportLogsServiceRequest {
            resource_logs: "resourceLogs"
        },
        ExportLogsServiceResponse,
        ExportLogsPartialSuccess {
            rejected_log_records
        },
        "logs.v1.LogsService"
    );

    fn count(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
    }
    fn to_console(&self) -> Vec<String> {
        console::logs::records(self)
    }
    fn as_logs(&self) -> Option<&ResourceLogs> {
        Some(self)
    }
}

/// One destination of a pipeline.
pub enum Exporter {
    Otlp(Box<otlp::Client>),
    Zipkin(zipkin::Client),
    Prometheus(prometheus::Scrape),
    Console(console::Console),
    /// The built-in viewer's store (`--ui`).
    Viewer(std::sync::Arc<crate::agent::viewer::Viewer>),
}

impl Exporter {
    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        match self {
            Exporter::Otlp(client) => client.export(batch).await,
            Exporter::Zipkin(client) => client.export(batch).await,
            Exporter::Prometheus(scrape) => {
                scrape.add(batch.iter().filter_map(Payload::as_metrics));
                Ok(())
            }
            Exporter::Console(console) => console.export(batch).await,
            Exporter::Viewer(viewer) => viewer.export(batch).await,
        }
    }

    /// How long one export may take before it is given up: the OTLP timeout
    /// (OTEL_EXPORTER_OTLP_TIMEOUT and its per-signal forms); the console has none.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Exporter::Otlp(client) => Some(client.timeout()),
            Exporter::Zipkin(client) => Some(client.timeout()),
            Exporter::Prometheus(_) | Exporter::Console(_) | Exporter::Viewer(_) => None,
        }
    }

    /// Where it sends, for messages (credentials redacted).
    pub fn describe(&self) -> String {
        match self {
            Exporter::Otlp(client) => client.describe(),
            Exporter::Zipkin(client) => client.describe(),
            Exporter::Prometheus(scrape) => scrape.describe(),
            Exporter::Console(console) => console.describe(),
            Exporter::Viewer(viewer) => viewer.describe(),
        }
    }
}
