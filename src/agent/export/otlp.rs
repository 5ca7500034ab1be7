//! The `otlp` exporter: OTLP/gRPC over a tonic channel, OTLP/HTTP (protobuf or
//! JSON) over reqwest. Requests carry the received `Resource*` messages as they
//! are, so every child keeps its own resource and scope.
//!
//! The system's root certificates are read only for an `https://` endpoint,
//! once per process for every exporter ([`roots`]), and on the first export,
//! in the agent: reading them takes longer than the rest of a launch.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use flate2::{Compression, write::GzEncoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{ExportError, Payload};
use crate::settings::otlp::{Protocol, Target};
use crate::settings::parse::MAX_DURATION;
use crate::settings::report::{redact_part, redact_url};

/// A configuration problem that keeps the exporter from being built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read `{path}`: {source}")]
    ReadPem {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The settings check header names; the name is shown cut all the same,
    /// since a malformed one may hold the secret.
    #[error("invalid OTLP header name `{}`", redact_part(.0))]
    HeaderName(String),
    #[error("invalid value for OTLP header `{0}`")]
    HeaderValue(String),
    #[error("invalid OTLP endpoint `{url}`: {message}")]
    Endpoint { url: String, message: String },
}

enum Transport {
    Grpc(Channel),
    Http(reqwest::Client),
}

pub struct Client {
    target: Target,
    pems: Pems,
    /// Built in `new` for `http://`; for `https://`, on the first export.
    transport: tokio::sync::OnceCell<Transport>,
}

/// The certificate files the target names, read when the client is made (a
/// missing file is said at start), used when the transport is built.
#[derive(Default)]
struct Pems {
    ca: Option<Vec<u8>>,
    /// The client's certificate and key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The system's root certificates that parse, read once per process.
pub(super) struct Roots {
    /// As rustls holds them, for tonic.
    anchors: rustls::RootCertStore,
    /// The same certificates in DER, for reqwest.
    pub(super) ders: Vec<rustls::pki_types::CertificateDer<'static>>,
}

static ROOTS: OnceLock<Roots> = OnceLock::new();

/// The system's roots, read on the first call (a blocking read of many files).
pub(super) fn roots() -> &'static Roots {
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!("reading the system's root certificates: {error}");
        }
        let mut anchors = rustls::RootCertStore::empty();
        let mut ders = Vec::new();
        // Native stores hold some certificates rustls cannot use; they are skipped.
        for der in loaded.certs {
            if anchors.add(der.clone()).is_ok() {
                ders.push(der);
            }
        }
        Roots { anchors, ders }
    })
}

impl Client {
    /// Makes the client; connections are made lazily, on the first export.
    pub fn new(target: Target) -> Result<Client, ClientError> {
        for (name, value) in &target.headers {
            if AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() {
                return Err(ClientError::HeaderName(name.clone()));
            }
            if AsciiMetadataValue::try_from(value.as_str()).is_err() {
                return Err(ClientError::HeaderValue(name.clone()));
            }
        }
        let pems = Pems {
            ca: target.certificate.as_deref().map(read_pem).transpose()?,
            identity: match (&target.client_certificate, &target.client_key) {
                (Some(cert), Some(key)) => Some((read_pem(cert)?, read_pem(key)?)),
                _ => None,
            },
        };
        Ok(Client {
            target,
            pems,
            transport: tokio::sync::OnceCell::new(),
        })
    }

    fn is_https(&self) -> bool {
        self.target.url.scheme() == "https"
    }

    fn build(&self, roots: Option<&Roots>) -> Result<Transport, ClientError> {
        Ok(match self.target.protocol {
            Protocol::Grpc => Transport::Grpc(grpc_channel(&self.target, &self.pems, roots)?),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                Transport::Http(http_client(&self.target, &self.pems, roots)?)
            }
        })
    }

    /// The transport, built on the first call, on the agent's runtime (a
    /// gRPC channel lives on one): a run that never exports never builds it.
    /// For `https://` with the system's roots, read off the start-up path.
    async fn transport(&self) -> Result<&Transport, ExportError> {
        self.transport
            .get_or_try_init(|| async {
                let roots = if self.is_https() {
                    let roots = tokio::task::spawn_blocking(roots)
                        .await
                        .map_err(|e| ExportError::Permanent(e.to_string()))?;
                    Some(roots)
                } else {
                    None
                };
                self.build(roots)
                    .map_err(|e| ExportError::Permanent(e.to_string()))
            })
            .await
    }

    pub fn timeout(&self) -> Duration {
        self.target.timeout
    }

    pub fn describe(&self) -> String {
        format!(
            "{} over {}",
            redact_url(self.target.url.as_str()),
            self.target.protocol.name()
        )
    }

    /// Sends `batch` as one request. It is encoded straight from the batch,
    /// which the pipeline keeps for retries and other exporters: never copied.
    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        let response = match self.transport().await? {
            Transport::Grpc(channel) => {
                self.export_grpc::<T>(channel, protobuf_parts(batch))
                    .await?
            }
            Transport::Http(client) => self.export_http::<T>(client, batch).await?,
        };
        if let Some((rejected, message)) = response.as_ref().and_then(T::rejected) {
            tracing::warn!(
                "the OTLP endpoint rejected {rejected} {} records: {message}",
                T::SIGNAL.name()
            );
        }
        Ok(())
    }

    async fn export_grpc<T: Payload>(
        &self,
        channel: &Channel,
        body: Vec<bytes::Bytes>,
    ) -> Result<Option<T::Response>, ExportError> {
        let mut request = tonic::Request::new(body);
        request.set_timeout(self.target.timeout);
        for (name, value) in &self.target.headers {
            // Both were checked in `new`.
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .expect("checked header name");
            let value = AsciiMetadataValue::try_from(value.as_str()).expect("checked header value");
            request.metadata_mut().insert(key, value);
        }
        match grpc_unary::<T>(channel.clone(), self.target.gzip, request).await {
            Ok(response) => Ok(Some(response)),
            Err(status) => match classify_grpc(&status) {
                ExportError::Retryable { .. } if status.code() == tonic::Code::Unavailable => {
                    Err(self
                        .unresolvable()
                        .await
                        .unwrap_or_else(|| classify_grpc(&status)))
                }
                other => Err(other),
            },
        }
    }

    /// After a failed connection: a host name that does not resolve is like a
    /// refused connection (nothing to retry), not a transient failure.
    async fn unresolvable(&self) -> Option<ExportError> {
        let url::Host::Domain(host) = self.target.url.host()? else {
            return None;
        };
        let port = self.target.url.port_or_known_default().unwrap_or(4317);
        match tokio::net::lookup_host((host, port)).await {
            Ok(_) => None,
            Err(_) => Some(ExportError::Unreachable(format!(
                "the host name `{host}` does not resolve"
            ))),
        }
    }

    async fn export_http<T: Payload>(
        &self,
        client: &reqwest::Client,
        batch: &[T],
    ) -> Result<Option<T::Response>, ExportError> {
        let (content_type, mut bytes) = match self.target.protocol {
            Protocol::HttpJson => ("application/json", encode_json(batch)),
            _ => ("application/x-protobuf", encode_protobuf(batch)),
        };
        let mut request = client
            .post(self.target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if self.target.gzip {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(&bytes).expect("writing to memory");
            bytes = encoder.finish().expect("writing to memory");
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.target.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let sent = request.body(bytes).send().await;
        if let Err(e) = &sent
            && e.is_connect()
            && !is_refused(e)
            && let Some(unreachable) = self.unresolvable().await
        {
            return Err(unreachable);
        }
        let response = sent.map_err(|e| send_error(e, self.target.timeout))?;
        let status = response.status();
        if status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Ok(<T::Response as prost::Message>::decode(body.as_ref()).ok());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            // The pipeline adds it to the clock: a year is "later than any budget".
            .map(|secs| Duration::from_secs(secs).min(MAX_DURATION));
        let text = response.text().await.unwrap_or_default();
        let message = format!("HTTP {status}{}", snippet(&text));
        Err(http_status_error(status, message, retry_after))
    }
}

/// An HTTP request that got no response, as an export error: nothing
/// listening is given up, the rest retried.
pub(super) fn send_error(e: reqwest::Error, timeout: Duration) -> ExportError {
    // The URL may carry credentials; the destination is described redacted elsewhere.
    let e = e.without_url();
    let message = if e.is_connect() && is_refused(&e) {
        return ExportError::Unreachable("connection refused".into());
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(&e))
    } else if e.is_timeout() {
        format!("timed out after {timeout:?}")
    } else {
        root_cause(&e)
    };
    ExportError::Retryable {
        message,
        retry_after: None,
    }
}

/// A failed HTTP status as an export error: the specification's retryable
/// statuses are retried, a path the destination does not serve is given up.
pub(super) fn http_status_error(
    status: reqwest::StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> ExportError {
    match status.as_u16() {
        429 | 502 | 503 | 504 => ExportError::Retryable {
            message,
            retry_after,
        },
        404 => ExportError::Unsupported(message),
        _ => ExportError::Permanent(message),
    }
}

pub(super) fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() || !body.is_ascii() {
        return String::new();
    }
    let cut: String = body.chars().take(200).collect();
    format!(": {cut}")
}

/// The specification's retryable gRPC codes; a connection that was refused is
/// told apart so it can be reported as "nothing listens there".
/// An `Export*ServiceRequest` in protobuf, from its items: the request's one
/// field (number 1, repeated) is each item as a length-delimited record.
fn encode_protobuf<T: Payload>(batch: &[T]) -> Vec<u8> {
    use prost::encoding::message;
    let len = batch.iter().map(|item| message::encoded_len(1, item)).sum();
    let mut buf = Vec::with_capacity(len);
    for item in batch {
        message::encode(1, item, &mut buf);
    }
    buf
}

/// The same request as [`encode_protobuf`], in parts: items held encoded are
/// not copied, only framed (gRPC copies the parts into its own buffer).
fn protobuf_parts<T: Payload>(batch: &[T]) -> Vec<bytes::Bytes> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut parts = Vec::with_capacity(2 * batch.len());
    for item in batch {
        let body = item
            .encoded()
            .unwrap_or_else(|| item.encode_to_vec().into());
        let mut key = Vec::with_capacity(6);
        encode_key(1, WireType::LengthDelimited, &mut key);
        encode_varint(body.len() as u64, &mut key);
        parts.push(key.into());
        parts.push(body);
    }
    parts
}

/// An `Export*ServiceRequest` in OTLP/JSON, from its items.
fn encode_json<T: Payload>(batch: &[T]) -> Vec<u8> {
    struct Request<'a, T>(&'a [T]);
    impl<T: Payload> serde::Serialize for Request<'_, T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(T::JSON_FIELD, self.0)?;
            map.end()
        }
    }
    serde_json::to_vec(&Request(batch)).expect("OTLP messages serialize")
}

/// One unary OTLP/gRPC call with an already encoded request. Collectors answer
/// a compressed request with a compressed response.
async fn grpc_unary<T: Payload>(
    channel: Channel,
    gzip: bool,
    request: tonic::Request<Vec<bytes::Bytes>>,
) -> Result<T::Response, tonic::Status> {
    use tonic::codec::CompressionEncoding;
    let mut grpc = tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("the channel was not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(T::GRPC_PATH);
    grpc.unary(request, path, codec::Raw::<T::Response>::default())
        .await
        .map(tonic::Response::into_inner)
}

/// A gRPC codec that sends a request's parts as they are and decodes a prost response.
mod codec {
    use std::marker::PhantomData;

    use bytes::BufMut as _;
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    pub struct Raw<R>(PhantomData<R>);

    impl<R> Default for Raw<R> {
        fn default() -> Self {
            Raw(PhantomData)
        }
    }

    impl<R: prost::Message + Default + Send + 'static> Codec for Raw<R> {
        type Encode = Vec<bytes::Bytes>;
        type Decode = R;
        type Encoder = Bytes;
        type Decoder = Prost<R>;

        fn encoder(&mut self) -> Bytes {
            Bytes
        }
        fn decoder(&mut self) -> Prost<R> {
            Prost(PhantomData)
        }
    }

    pub struct Bytes;

    impl Encoder for Bytes {
        type Item = Vec<bytes::Bytes>;
        type Error = Status;

        fn encode(&mut self, parts: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.reserve(parts.iter().map(bytes::Bytes::len).sum());
            for part in parts {
                dst.put(part);
            }
            Ok(())
        }
    }

    pub struct Prost<R>(PhantomData<R>);

    impl<R: prost::Message + Default> Decoder for Prost<R> {
        type Item = R;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
            R::decode(src)
                .map(Some)
                .map_err(|e| Status::internal(format!("cannot decode the response: {e}")))
        }
    }
}

fn classify_grpc(status: &tonic::Status) -> ExportError {
    use tonic::Code;
    let message = format!("gRPC {:?}: {}", status.code(), root_cause(status));
    match status.code() {
        Code::Unavailable if is_refused(status) => {
            ExportError::Unreachable("connection refused".into())
        }
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable {
            message,
            retry_after: None,
        },
        Code::Unimplemented => ExportError::Unsupported(message),
        _ => ExportError::Permanent(message),
    }
}

pub(super) fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The innermost error's text, which says what actually went wrong.
pub(super) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    if text.is_empty() {
        err.to_string()
    } else {
        text
    }
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadPem {
        path: path.to_path_buf(),
        source,
    })
}

fn grpc_channel(
    target: &Target,
    pems: &Pems,
    roots: Option<&Roots>,
) -> Result<Channel, ClientError> {
    let url = target.url.as_str().trim_end_matches('/').to_string();
    let endpoint_error = |message: String| ClientError::Endpoint {
        url: redact_url(&url),
        message,
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| endpoint_error(e.to_string()))?
        .connect_timeout(target.timeout.min(Duration::from_secs(5)))
        .timeout(target.timeout);
    if let Some(roots) = roots {
        let mut tls = ClientTlsConfig::new().trust_anchors(roots.anchors.roots.iter().cloned());
        if let Some(ca) = &pems.ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &pems.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| endpoint_error(e.to_string()))?;
    }
    Ok(endpoint.connect_with_connector_lazy(super::localhost::connector()))
}

fn http_client(
    target: &Target,
    pems: &Pems,
    roots: Option<&Roots>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(target.timeout)
        .connect_timeout(target.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("otel-run/", env!("CARGO_PKG_VERSION")))
        // The roots are the shared ones, and only for `https://`.
        .tls_built_in_root_certs(false)
        .resolve_to_addrs("localhost", &super::localhost::LOOPBACK);
    for der in roots.map_or(&[][..], |r| &r.ders) {
        let cert = reqwest::Certificate::from_der(der).expect("a root rustls has parsed");
        builder = builder.add_root_certificate(cert);
    }
    if let Some(ca) = &pems.ca {
        let cert = reqwest::Certificate::from_pem(ca).map_err(|e| ClientError::Endpoint {
            url: redact_url(target.url.as_str()),
            message: format!("bad CA certificate: {e}"),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    if let Some((cert, key)) = &pems.identity {
        let mut pem = cert.clone();
        pem.extend(key);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| ClientError::Endpoint {
            url: redact_url(target.url.as_str()),
            message: format!("bad client certificate or key: {e}"),
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| ClientError::Endpoint {
        url: redact_url(target.url.as_str()),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;
    use crate::telemetry::spans::Spans;

    fn spans(name: &str) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(name.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: name.into(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_retry_after_too_long_for_the_clock_is_cut_to_the_longest_duration() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 18446744073709551615\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        });
        let client = Client::new(Target {
            signal: crate::settings::otlp::Signal::Traces,
            url: url::Url::parse(&url).unwrap(),
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            gzip: false,
            timeout: Duration::from_secs(5),
            certificate: None,
            client_key: None,
            client_certificate: None,
        })
        .unwrap();
        match client.export(&[Spans::from(spans("a"))]).await {
            Err(ExportError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(MAX_DURATION));
                assert!(
                    std::time::Instant::now()
                        .checked_add(MAX_DURATION)
                        .is_some()
                );
            }
            other => panic!("{other:?}"),
        }
    }

    fn target(url: &str, protocol: Protocol) -> Target {
        Target {
            signal: crate::settings::otlp::Signal::Traces,
            url: url::Url::parse(url).unwrap(),
            protocol,
            headers: Vec::new(),
            gzip: false,
            timeout: Duration::from_secs(5),
            certificate: None,
            client_key: None,
            client_certificate: None,
        }
    }

    /// The only test that exports to `https://`: the roots are the process's.
    #[tokio::test]
    async fn root_certificates_are_read_for_https_only_at_the_first_export() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let batch = [Spans::from(spans("a"))];
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson] {
            let client =
                Client::new(target(&format!("http://127.0.0.1:{port}"), protocol)).unwrap();
            assert!(client.export(&batch).await.is_err());
        }
        assert!(ROOTS.get().is_none(), "roots read for http://");
        let https = Client::new(target(
            &format!("https://127.0.0.1:{port}"),
            Protocol::HttpProtobuf,
        ))
        .unwrap();
        assert!(ROOTS.get().is_none(), "roots read before the first export");
        assert!(https.export(&batch).await.is_err());
        assert!(ROOTS.get().is_some());
    }

    #[test]
    fn requests_encoded_from_the_batch_equal_the_generated_messages() {
        // One message as received, one written by otel-run already encoded.
        let encoded = Spans::Encoded {
            bytes: prost::Message::encode_to_vec(&spans("b")).into(),
            count: 1,
        };
        let batch = vec![Spans::from(spans("a")), encoded];
        let request = ExportTraceServiceRequest {
            resource_spans: vec![spans("a"), spans("b")],
        };
        assert_eq!(
            encode_protobuf(&batch),
            prost::Message::encode_to_vec(&request)
        );
        assert_eq!(encode_json(&batch), serde_json::to_vec(&request).unwrap());
        assert_eq!(
            protobuf_parts(&batch).concat(),
            prost::Message::encode_to_vec(&request)
        );
        let decoded: ExportTraceServiceRequest =
            prost::Message::decode(encode_protobuf(&batch).as_slice()).unwrap();
        assert_eq!(decoded, request);

        let metrics = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let request = ExportMetricsServiceRequest {
            resource_metrics: metrics.clone(),
        };
        assert_eq!(
            encode_protobuf(&metrics),
            prost::Message::encode_to_vec(&request)
        );
        assert_eq!(encode_json(&metrics), serde_json::to_vec(&request).unwrap());
        assert_eq!(
            protobuf_parts(&metrics).concat(),
            prost::Message::encode_to_vec(&request)
        );
        assert!(encode_protobuf::<Spans>(&[]).is_empty());
    }
}
