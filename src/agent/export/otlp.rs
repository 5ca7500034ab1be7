//! The `otlp` exporter: OTLP/gRPC over a tonic channel, OTLP/HTTP (protobuf or
//! JSON) over reqwest. Requests carry the received `Resource*` messages as they
//! are, so every child keeps its own resource and scope.

use std::io::Write;
use std::time::Duration;

use flate2::{Compression, write::GzEncoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{ExportError, Payload};
use crate::settings::otlp::{Protocol, Target};
use crate::settings::report::redact_url;

/// A configuration problem that keeps the exporter from being built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read `{path}`: {source}")]
    ReadPem {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid OTLP header name `{0}`")]
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
    transport: Transport,
}

impl Client {
    /// Builds the client; connections are made lazily, on the first export.
    pub fn new(target: Target) -> Result<Client, ClientError> {
        for (name, value) in &target.headers {
            if AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() {
                return Err(ClientError::HeaderName(name.clone()));
            }
            if AsciiMetadataValue::try_from(value.as_str()).is_err() {
                return Err(ClientError::HeaderValue(name.clone()));
            }
        }
        let transport = match target.protocol {
            Protocol::Grpc => Transport::Grpc(grpc_channel(&target)?),
            Protocol::HttpProtobuf | Protocol::HttpJson => Transport::Http(http_client(&target)?),
        };
        Ok(Client { target, transport })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} over {}",
            redact_url(self.target.url.as_str()),
            self.target.protocol.name()
        )
    }

    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        let request = T::request(batch.to_vec());
        let response = match &self.transport {
            Transport::Grpc(channel) => self.export_grpc::<T>(channel, request).await?,
            Transport::Http(client) => self.export_http::<T>(client, request).await?,
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
        body: T::Request,
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
        match T::grpc(channel.clone(), self.target.gzip, request).await {
            Ok(response) => Ok(Some(response)),
            Err(status) => Err(classify_grpc(&status)),
        }
    }

    async fn export_http<T: Payload>(
        &self,
        client: &reqwest::Client,
        body: T::Request,
    ) -> Result<Option<T::Response>, ExportError> {
        let (content_type, mut bytes) = match self.target.protocol {
            Protocol::HttpJson => (
                "application/json",
                serde_json::to_vec(&body).expect("OTLP messages serialize"),
            ),
            _ => (
                "application/x-protobuf",
                prost::Message::encode_to_vec(&body),
            ),
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
        let response = request.body(bytes).send().await.map_err(|e| {
            if e.is_connect() && is_refused(&e) {
                ExportError::Unreachable("connection refused".into())
            } else if e.is_connect() {
                ExportError::Retryable {
                    message: format!("cannot connect: {}", root_cause(&e)),
                    retry_after: None,
                }
            } else if e.is_timeout() {
                ExportError::Retryable {
                    message: format!("timed out after {:?}", self.target.timeout),
                    retry_after: None,
                }
            } else {
                ExportError::Retryable {
                    message: root_cause(&e),
                    retry_after: None,
                }
            }
        })?;
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
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let message = format!("HTTP {status}{}", snippet(&text));
        // The specification's retryable HTTP statuses.
        if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
            Err(ExportError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(ExportError::Permanent(message))
        }
    }
}

fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() || !body.is_ascii() {
        return String::new();
    }
    let cut: String = body.chars().take(200).collect();
    format!(": {cut}")
}

/// The specification's retryable gRPC codes; a connection that was refused is
/// told apart so it can be reported as "nothing listens there".
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
        _ => ExportError::Permanent(message),
    }
}

fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
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
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
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

fn grpc_channel(target: &Target) -> Result<Channel, ClientError> {
    let url = target.url.as_str().trim_end_matches('/').to_string();
    let endpoint_error = |message: String| ClientError::Endpoint {
        url: redact_url(&url),
        message,
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| endpoint_error(e.to_string()))?
        .connect_timeout(target.timeout.min(Duration::from_secs(5)))
        .timeout(target.timeout);
    if target.url.scheme() == "https" {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &target.certificate {
            tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca)?));
        }
        if let (Some(cert), Some(key)) = (&target.client_certificate, &target.client_key) {
            tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| endpoint_error(e.to_string()))?;
    }
    Ok(endpoint.connect_lazy())
}

fn http_client(target: &Target) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(target.timeout)
        .connect_timeout(target.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("otel-run/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &target.certificate {
        let cert =
            reqwest::Certificate::from_pem(&read_pem(ca)?).map_err(|e| ClientError::Endpoint {
                url: redact_url(target.url.as_str()),
                message: format!("bad CA certificate: {e}"),
            })?;
        builder = builder.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&target.client_certificate, &target.client_key) {
        let mut pem = read_pem(cert)?;
        pem.extend(read_pem(key)?);
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
