//! Exporters: where a batch of OTLP `Resource*` messages goes.
//!
//! One enum, one file per kind: `otlp` (gRPC, http/protobuf, http/json) and
//! `console`. The three signals are made generic by [`Payload`].

pub mod console;
pub mod otlp;

use std::future::Future;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_client::LogsServiceClient,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_client::MetricsServiceClient,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_client::TraceServiceClient,
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

/// The parts of [`Payload`] that differ between signals only by name.
macro_rules! otlp_messages {
    ($signal:expr, $request:ident { $items:ident }, $response:ident, $partial:ident { $rejected:ident }, $client:ident) => {
        const SIGNAL: Signal = $signal;
        type Request = $request;
        type Response = $response;

        fn request($items: Vec<Self>) -> Self::Request {
            $request { $items }
        }
        fn items(request: Self::Request) -> Vec<Self> {
            request.$items
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
        async fn grpc(
            channel: Channel,
            gzip: bool,
            request: tonic::Request<Self::Request>,
        ) -> Result<Self::Response, tonic::Status> {
            // Collectors answer a compressed request with a compressed response.
            let mut client = $client::new(channel).accept_compressed(CompressionEncoding::Gzip);
            if gzip {
                client = client.send_compressed(CompressionEncoding::Gzip);
            }
            client
                .export(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
}

impl Payload for ResourceSpans {
    otlp_messages!(
        Signal::Traces,
        ExportTraceServiceRequest { resource_spans },
        ExportTraceServiceResponse,
        ExportTracePartialSuccess { rejected_spans },
        TraceServiceClient
    );

    fn count(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
    /// Spans print one JSON object each, as Python's ConsoleSpanExporter does.
    fn to_console(&self, out: &mut String) {
        console::spans(self, out);
    }
}

impl Payload for ResourceMetrics {
    otlp_messages!(
        Signal::Metrics,
        ExportMetricsServiceRequest { resource_metrics },
        ExportMetricsServiceResponse,
        ExportMetricsPartialSuccess {
            rejected_data_points
        },
        MetricsServiceClient
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
}

impl Payload for ResourceLogs {
    otlp_messages!(
        Signal::Logs,
        ExportLogsServiceRequest { resource_logs },
        ExportLogsServiceResponse,
        ExportLogsPartialSuccess {
            rejected_log_records
        },
        LogsServiceClient
    );

    fn count(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
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
