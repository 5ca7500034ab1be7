//! The local OTLP receiver the child exports to: one loopback port serving
//! OTLP/HTTP (protobuf and JSON, optionally gzip) on `/v1/{traces,metrics,logs}`
//! and OTLP/gRPC (HTTP/2 without TLS) on the same port. Every signal is always
//! served, so a child is never pointed at an endpoint that answers 404; what
//! arrives goes into the signal's pipeline, or is discarded when its exporter is
//! `none`.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;

use super::export::Payload;
use super::pipeline::Pipeline;
use super::spans::Spans;

/// Largest request accepted, compressed or not.
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Where received telemetry goes, per signal.
#[derive(Default)]
pub struct Sinks {
    pub traces: Option<Pipeline<Spans>>,
    pub metrics: Option<Pipeline<ResourceMetrics>>,
    pub logs: Option<Pipeline<ResourceLogs>>,
}

/// The pipeline of a payload's signal.
pub trait Routed: Payload {
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>>;
}

impl Routed for Spans {
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>> {
        sinks.traces.as_ref()
    }
}
impl Routed for ResourceMetrics {
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>> {
        sinks.metrics.as_ref()
    }
}
impl Routed for ResourceLogs {
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>> {
        sinks.logs.as_ref()
    }
}

/// Queues a request's items and builds the response, with a partial success
/// naming what the full queue rejected.
fn accept<T: Routed>(sinks: &Sinks, request: T::Request) -> T::Response {
    let Some(pipeline) = T::sink(sinks) else {
        return T::Response::default();
    };
    let rejected: u64 = T::items(request)
        .into_iter()
        .map(|item| pipeline.forward(item))
        .sum();
    T::response(
        rejected,
        if rejected > 0 {
            "otel-run's export queue is full".into()
        } else {
            String::new()
        },
    )
}

/// Binds the receiver's port on loopback.
pub async fn bind() -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Serves until the runtime shuts down.
pub fn serve(listener: TcpListener, sinks: Arc<Sinks>) {
    let grpc = GrpcSink(sinks.clone());
    let grpc_routes = tonic::service::Routes::new(
        TraceServiceServer::new(grpc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
    )
    .add_service(
        MetricsServiceServer::new(grpc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
    )
    .add_service(
        LogsServiceServer::new(grpc)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
    );
    let http = Router::new()
        .route("/v1/traces", axum::routing::post(http_export::<Spans>))
        .route(
            "/v1/metrics",
            axum::routing::post(http_export::<ResourceMetrics>),
        )
        .route("/v1/logs", axum::routing::post(http_export::<ResourceLogs>))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(sinks);
    let app = grpc_routes
        .into_axum_router()
        .merge(http)
        .fallback(not_found);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the local OTLP receiver stopped: {e}");
        }
    });
}

/// Unknown paths: gRPC's UNIMPLEMENTED for gRPC clients, 404 for HTTP ones.
async fn not_found(headers: HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        tonic::Status::unimplemented("otel-run receives only OTLP traces, metrics and logs")
            .into_http()
    } else {
        (
            StatusCode::NOT_FOUND,
            "otel-run receives OTLP on /v1/traces, /v1/metrics and /v1/logs\n",
        )
            .into_response()
    }
}

/// google.rpc.Status, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

async fn http_export<T: Routed>(
    State(sinks): State<Arc<Sinks>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return error(
                Encoding::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type `{other}`: use application/x-protobuf or application/json"
                ),
            );
        }
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let body = if gzip {
        let mut decoded = Vec::new();
        let read = GzDecoder::new(body.as_ref())
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_to_end(&mut decoded);
        match read {
            Ok(n) if n <= MAX_REQUEST_BYTES => Bytes::from(decoded),
            Ok(_) => {
                return error(
                    encoding,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request too large once decompressed".into(),
                );
            }
            Err(e) => {
                return error(
                    encoding,
                    StatusCode::BAD_REQUEST,
                    format!("bad gzip body: {e}"),
                );
            }
        }
    } else {
        body
    };
    let request = match encoding {
        Encoding::Protobuf => {
            <T::Request as prost::Message>::decode(body).map_err(|e| e.to_string())
        }
        Encoding::Json => serde_json::from_slice::<T::Request>(&body).map_err(|e| e.to_string()),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return error(
                encoding,
                StatusCode::BAD_REQUEST,
                format!("malformed OTLP {} request: {e}", T::SIGNAL.name()),
            );
        }
    };
    let response = accept::<T>(&sinks, request);
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&response),
        )
            .into_response(),
        Encoding::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&response).expect("OTLP messages serialize"),
        )
            .into_response(),
    }
}

fn error(encoding: Encoding, status: StatusCode, message: String) -> Response {
    tracing::debug!("rejected an OTLP request: {message}");
    // google.rpc.Code: INVALID_ARGUMENT for bad input.
    let body = RpcStatus { code: 3, message };
    match encoding {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&body),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&body).expect("status serializes"),
        )
            .into_response(),
    }
}

#[derive(Clone)]
struct GrpcSink(Arc<Sinks>);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(accept::<Spans>(
            &self.0,
            request.into_inner(),
        )))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(accept::<ResourceMetrics>(
            &self.0,
            request.into_inner(),
        )))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(accept::<ResourceLogs>(
            &self.0,
            request.into_inner(),
        )))
    }
}
