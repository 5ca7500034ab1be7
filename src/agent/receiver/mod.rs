//! The local OTLP receiver the child exports to: one loopback port serving
//! OTLP/HTTP (protobuf and JSON, optionally gzip) on `/v1/{traces,metrics,logs}`
//! and OTLP/gRPC (HTTP/2 without TLS) on the same port; `otel-run agent` serves
//! the same on each address it listens on, for other processes. Every signal is always
//! served, so a child is never pointed at an endpoint that answers 404; what
//! arrives goes into the signal's pipeline, or is discarded when its exporter is
//! `none`.
//!
//! Whoever can connect to the port must not be able to exhaust otel-run:
//! [`server`] bounds connections, timeouts and the bodies being read, and
//! [`decode`] what a request may decode to, before it is decoded. A request is
//! either queued whole, rejected for good (too large, malformed), or answered
//! with a retryable "come back later" when the queue is full: never
//! acknowledged and then dropped.

mod compact;
pub mod decode;
mod grpc;
pub mod json;
mod json_names;
mod server;
mod status;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::net::TcpListener;

use super::export::Payload;
use super::pipeline::{Pipeline, Refused};
use super::report::Reporter;
use crate::telemetry::spans::Spans;
pub use compact::Form as CompactForm;
pub use decode::{DecodeError, Decoded, Encoding, Format, MAX_REQUEST_BYTES, decode};
pub use server::MAX_CONNECTIONS;
use status::{Rejection, Why};

/// Where received telemetry goes, per signal.
#[derive(Default)]
pub struct Sinks {
    pub traces: Option<Pipeline<Spans>>,
    pub metrics: Option<Pipeline<ResourceMetrics>>,
    pub logs: Option<Pipeline<ResourceLogs>>,
}

/// A signal's pipeline, and how its requests are decoded.
pub trait Routed: Payload {
    /// The message of each resource in a request.
    type Resource: prost::Message + Default + serde::de::DeserializeOwned + Into<Self>;
    /// How the protobuf walk knows the resource.
    const KIND: wire::Kind;
    /// How the JSON walk finds its records.
    const SHAPE: json::Shape;
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>>;
    /// Takes out of `resource` the records there is nothing to forward of, and
    /// names each in `names`.
    fn take_empty(_resource: &mut Self::Resource, _names: &mut Vec<String>) {}
    /// The item of a resource of `items` records forwarded as it was received
    /// in protobuf, `encoded` (checked by the walk), when this signal's items can
    /// hold their encoding; else the resource is decoded.
    fn forwarded(_encoded: bytes::Bytes, _items: usize) -> Option<Self> {
        None
    }
    /// The resources of a body in otel-run's compact encoding
    /// ([`compact`]), when this signal has one.
    fn compact(_body: &[u8], _form: CompactForm) -> Option<Result<Vec<Self::Resource>, String>> {
        None
    }
}

impl Routed for Spans {
    type Resource = ResourceSpans;
    const KIND: wire::Kind = wire::Kind::ResourceSpans;
    const SHAPE: json::Shape = json::TRACES;
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>> {
        sinks.traces.as_ref()
    }
    /// Nothing in the agent changes a received span (the exporters that need
    /// the message decode it as they export), and `take_empty` keeps them all.
    fn forwarded(encoded: bytes::Bytes, items: usize) -> Option<Self> {
        Some(Spans::Encoded {
            bytes: encoded,
            count: items,
        })
    }
    fn compact(body: &[u8], form: CompactForm) -> Option<Result<Vec<ResourceSpans>, String>> {
        Some(compact::resources(body, form))
    }
}
impl Routed for ResourceMetrics {
    type Resource = ResourceMetrics;
    const KIND: wire::Kind = wire::Kind::ResourceMetrics;
    const SHAPE: json::Shape = json::METRICS;
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>> {
        sinks.metrics.as_ref()
    }
    /// A metric without data (its points under a member OTLP does not have,
    /// such as `data`) is no measurement: the sender is told, not thanked.
    fn take_empty(resource: &mut ResourceMetrics, names: &mut Vec<String>) {
        for scope in &mut resource.scope_metrics {
            scope.metrics.retain(|metric| {
                let keep = metric.data.is_some();
                if !keep {
                    names.push(metric.name.clone());
                }
                keep
            });
        }
    }
}
impl Routed for ResourceLogs {
    type Resource = ResourceLogs;
    const KIND: wire::Kind = wire::Kind::ResourceLogs;
    const SHAPE: json::Shape = json::LOGS;
    fn sink(sinks: &Sinks) -> Option<&Pipeline<Self>> {
        sinks.logs.as_ref()
    }
}

/// A running receiver.
pub struct Receiver {
    sinks: Arc<Sinks>,
    limits: Arc<server::Limits>,
    reporter: Arc<Reporter>,
    /// Set to stop accepting connections.
    stop: tokio::sync::watch::Sender<bool>,
    /// The accept loops, each ending once it has stopped and taken what waited.
    acceptors: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Receiver {
    /// Connections closed as soon as they were accepted, because of the limits.
    pub fn refused_connections(&self) -> u64 {
        self.limits.refused()
    }

    /// Stops accepting connections and waits, at most `grace`, until every one
    /// accepted (those waiting in the backlog too) is closed: what a command
    /// sent just before it exited (its sockets are closed with it) is then in
    /// the pipelines before they are flushed.
    pub async fn settle(&self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.stop.send_replace(true);
        let acceptors = std::mem::take(&mut *self.acceptors.lock().expect("acceptors lock"));
        for acceptor in acceptors {
            if tokio::time::timeout_at(deadline, acceptor).await.is_err() {
                return;
            }
        }
        while self.limits.open() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

/// A run's receiver: a port on loopback that the system picks.
pub const EPHEMERAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// An address the receiver could not listen on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {error}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub error: std::io::Error,
}

impl crate::diag::Hint for BindError {
    fn hint(&self) -> Option<String> {
        let port = self.addr.port();
        match self.error.kind() {
            std::io::ErrorKind::AddrInUse => Some(format!(
                "another process listens on port {port} (a collector, another `otel-run agent`): stop it, or listen elsewhere with `--listen ADDR`"
            )),
            std::io::ErrorKind::PermissionDenied => {
                Some("ports below 1024 need privileges: choose another with `--listen`".to_string())
            }
            std::io::ErrorKind::AddrNotAvailable => Some(format!(
                "{} is no address of this machine: `--listen` takes a local address, e.g. `127.0.0.1:{port}` or `0.0.0.0:{port}`",
                self.addr.ip()
            )),
            _ => None,
        }
    }
}

/// Binds one of the receiver's addresses.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    use socket2::{Domain, Socket, Type};
    let listen = || {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // As tokio's bind did: the address reusable at once after a restart,
        // and a backlog of 1024 (std's is 128) for a burst of senders.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(server::BACKLOG as i32)?;
        socket.set_nonblocking(true)?;
        Ok(std::net::TcpListener::from(socket))
    };
    listen().map_err(|error| BindError { addr, error })
}

/// Serves every listener until [`Receiver::settle`]; `max_connections` may
/// be open at once, on all of them together.
pub fn serve(
    listeners: Vec<std::net::TcpListener>,
    sinks: Arc<Sinks>,
    reporter: Arc<Reporter>,
    max_connections: usize,
) -> Arc<Receiver> {
    let receiver = Arc::new(Receiver {
        sinks,
        limits: Arc::new(server::Limits::new(max_connections, reporter.clone())),
        reporter,
        stop: tokio::sync::watch::channel(false).0,
        acceptors: Default::default(),
    });
    use axum::routing::post;
    let app = Router::new()
        .route("/v1/traces", post(http_export::<Spans>))
        .route("/v1/metrics", post(http_export::<ResourceMetrics>))
        .route("/v1/logs", post(http_export::<ResourceLogs>))
        .route(Spans::GRPC_PATH, post(grpc::export::<Spans>))
        .route(
            ResourceMetrics::GRPC_PATH,
            post(grpc::export::<ResourceMetrics>),
        )
        .route(ResourceLogs::GRPC_PATH, post(grpc::export::<ResourceLogs>))
        .fallback(not_found)
        .with_state(receiver.clone());
    for listener in listeners {
        match TcpListener::from_std(listener) {
            Ok(listener) => {
                let acceptor = server::spawn(
                    listener,
                    app.clone(),
                    receiver.limits.clone(),
                    receiver.stop.subscribe(),
                );
                receiver
                    .acceptors
                    .lock()
                    .expect("acceptors lock")
                    .push(acceptor);
            }
            Err(e) => tracing::warn!("the local OTLP receiver cannot serve a socket: {e}"),
        }
    }
    receiver
}

/// Unknown paths: gRPC's UNIMPLEMENTED for gRPC clients, 404 for HTTP ones.
async fn not_found(headers: HeaderMap) -> Response {
    if grpc::is_grpc(&headers) {
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

async fn http_export<T: Routed>(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Body,
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
        compact::CONTENT_TYPE => Encoding::CompactSpans(CompactForm::Json),
        compact::MARSHAL_CONTENT_TYPE => Encoding::CompactSpans(CompactForm::Marshal),
        other => {
            return Rejection::new(
                Why::Unsupported,
                format!(
                    "unsupported content type `{other}`: use application/x-protobuf or application/json"
                ),
            )
            .http(Encoding::Protobuf);
        }
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let format = Format { encoding, gzip };
    let accepted = async {
        let body = receive::<T>(&receiver, &headers, body, MAX_REQUEST_BYTES).await?;
        accept::<T>(&receiver, body.bytes.into(), format)
    };
    let response = match accepted.await {
        Ok(response) => response,
        Err(rejection) => return rejection.http(encoding),
    };
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&response),
        )
            .into_response(),
        Encoding::Json | Encoding::CompactSpans(_) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&response).expect("OTLP messages serialize"),
        )
            .into_response(),
    }
}

/// Reads a request's body of at most `limit` bytes, unless the request is
/// refused first: declared too large, or arriving while the queue is full.
async fn receive<T: Routed>(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<server::Body, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(server::too_large(limit));
    }
    if T::sink(&receiver.sinks).is_some_and(|pipeline| !pipeline.has_room(1, 1)) {
        return Err(queue_full::<T>(receiver));
    }
    let declared = declared.and_then(|len| usize::try_from(len).ok());
    server::read(body, limit, declared, &receiver.limits).await
}

/// Decodes a request's body and queues what it holds: the response to send, with
/// a partial success naming the records rejected, or why nothing was taken.
fn accept<T: Routed>(
    receiver: &Receiver,
    body: bytes::Bytes,
    format: Format,
) -> Result<T::Response, Rejection> {
    // A signal whose exporter is `none` is discarded as the user asked.
    let Some(pipeline) = T::sink(&receiver.sinks) else {
        return Ok(T::Response::default());
    };
    let bounds = pipeline.bounds();
    let too_large = |items: u64, message: &str| {
        pipeline.drop_too_large(items);
        receiver.reporter.too_large(T::SIGNAL, message);
    };
    let Decoded {
        accepted,
        rejected,
        empty,
    } = decode::<T>(body, format, bounds).map_err(|e| {
        let message = e.to_string();
        match e {
            DecodeError::TooLarge { items, .. } => {
                too_large(items, &message);
                Rejection::new(Why::TooLarge, message)
            }
            DecodeError::Oversized => Rejection::new(Why::TooLarge, message),
            DecodeError::Gzip(_) | DecodeError::Malformed { .. } => {
                Rejection::new(Why::Malformed, message)
            }
        }
    })?;
    if !accepted.is_empty() {
        pipeline.offer(accepted).map_err(|refused| match refused {
            Refused::Full => queue_full::<T>(receiver),
            Refused::Closed => Rejection::new(Why::Unavailable, "otel-run is shutting down"),
        })?;
    }
    let mut messages = Vec::new();
    if rejected > 0 {
        let message = format!(
            "{rejected} {} rejected: a request may hold at most {} of them and {} MiB once decoded",
            T::SIGNAL.records(),
            bounds.items,
            bounds.bytes >> 20
        );
        too_large(rejected, &message);
        messages.push(message);
    }
    if let Some(first) = empty.first() {
        let message = empty_message(&empty, first);
        pipeline.drop_empty(empty.len() as u64);
        receiver.reporter.empty(T::SIGNAL, &message);
        messages.push(message);
    }
    Ok(T::response(
        rejected + empty.len() as u64,
        messages.join("; "),
    ))
}

/// Why metrics without data were rejected, naming the first.
fn empty_message(names: &[String], first: &str) -> String {
    let others = match names.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    format!(
        "metric `{first}`{others} without data rejected: OTLP puts data points under `gauge`, `sum`, `histogram`, `exponentialHistogram` or `summary`"
    )
}

fn queue_full<T: Routed>(receiver: &Receiver) -> Rejection {
    receiver.reporter.backpressure(T::SIGNAL);
    Rejection::new(
        Why::QueueFull,
        format!("otel-run's {} queue is full; retry later", T::SIGNAL.name()),
    )
}

#[cfg(test)]
mod tests;
