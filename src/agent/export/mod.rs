//! Exporters: where a batch of OTLP `Resource*` messages goes.
//!
//! One enum, one file per kind: `otlp` (gRPC, http/protobuf, http/json) and
//! `console`. The three signals are made generic by [`Payload`].

pub mod console;
pub mod otlp;

use std::future::Future;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse, logs_service_client::LogsServiceClient,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_client::MetricsServiceClient,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::settings::otlp::Signal;

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
    fn request(batch: Vec<Self>) -> Self::Request;
    fn items(request: Self::Request) -> Vec<Self>;
    /// A response telling the sender that `rejected` records were not accepted.
    fn response(rejected: u64, message: String) -> Self::Response;
    /// Records the peer rejected, with its message.
    fn rejected(response: &Self::Response) -> Option<(i64, String)>;
    /// Appends this message's console form: one OTLP/JSON line by default.
    fn to_console(&self, out: &mut String) {
        out.push_str(&serde_json::to_string(self).expect("OTLP messages serialize"));
        out.push('\n');
    }
    /// Sends one request over an OTLP/gRPC channel.
    fn grpc(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self::Request>,
    ) -> impl Future<Output = Result<Self::Response, tonic::Status>> + Send;
}

impl Payload for ResourceSpans {
    const SIGNAL: Signal = Signal::Traces;
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;

    fn count(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
    /// Spans print one JSON object each, as Python's ConsoleSpanExporter does.
    fn to_console(&self, out: &mut String) {
        console::spans(self, out);
    }
    fn request(resource_spans: Vec<Self>) -> Self::Request {
        ExportTraceServiceRequest { resource_spans }
    }
    fn items(request: Self::Request) -> Vec<Self> {
        request.resource_spans
    }
    fn response(rejected: u64, error_message: String) -> Self::Response {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
        ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message,
            }),
        }
    }
    fn rejected(response: &Self::Response) -> Option<(i64, String)> {
        let p = response.partial_success.as_ref()?;
        (p.rejected_spans > 0 || !p.error_message.is_empty())
            .then(|| (p.rejected_spans, p.error_message.clone()))
    }
    async fn grpc(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self::Request>,
    ) -> Result<Self::Response, tonic::Status> {
        // Collectors answer a compressed request with a compressed response.
        let mut client =
            TraceServiceClient::new(channel).accept_compressed(CompressionEncoding::Gzip);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client
            .export(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

impl Payload for ResourceMetrics {
    const SIGNAL: Signal = Signal::Metrics;
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;

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
    fn request(resource_metrics: Vec<Self>) -> Self::Request {
        ExportMetricsServiceRequest { resource_metrics }
    }
    fn items(request: Self::Request) -> Vec<Self> {
        request.resource_metrics
    }
    fn response(rejected: u64, error_message: String) -> Self::Response {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message,
            }),
        }
    }
    fn rejected(response: &Self::Response) -> Option<(i64, String)> {
        let p = response.partial_success.as_ref()?;
        (p.rejected_data_points > 0 || !p.error_message.is_empty())
            .then(|| (p.rejected_data_points, p.error_message.clone()))
    }
    async fn grpc(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self::Request>,
    ) -> Result<Self::Response, tonic::Status> {
        // Collectors answer a compressed request with a compressed response.
        let mut client =
            MetricsServiceClient::new(channel).accept_compressed(CompressionEncoding::Gzip);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client
            .export(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

impl Payload for ResourceLogs {
    const SIGNAL: Signal = Signal::Logs;
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;

    fn count(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
    }
    fn request(resource_logs: Vec<Self>) -> Self::Request {
        ExportLogsServiceRequest { resource_logs }
    }
    fn items(request: Self::Request) -> Vec<Self> {
        request.resource_logs
    }
    fn response(rejected: u64, error_message: String) -> Self::Response {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected as i64,
                error_message,
            }),
        }
    }
    fn rejected(response: &Self::Response) -> Option<(i64, String)> {
        let p = response.partial_success.as_ref()?;
        (p.rejected_log_records > 0 || !p.error_message.is_empty())
            .then(|| (p.rejected_log_records, p.error_message.clone()))
    }
    async fn grpc(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self::Request>,
    ) -> Result<Self::Response, tonic::Status> {
        // Collectors answer a compressed request with a compressed response.
        let mut client =
            LogsServiceClient::new(channel).accept_compressed(CompressionEncoding::Gzip);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client
            .export(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// One destination of a pipeline.
pub enum Exporter {
    Otlp(Box<otlp::Client>),
    Console(console::Console),
}

impl Exporter {
    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        match self {
            Exporter::Otlp(client) => client.export(batch).await,
            Exporter::Console(console) => console.export(batch),
        }
    }

    /// Where it sends, for messages (credentials redacted).
    pub fn describe(&self) -> String {
        match self {
            Exporter::Otlp(client) => client.describe(),
            Exporter::Console(console) => console.describe(),
        }
    }
}
