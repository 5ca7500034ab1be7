//! What the receiver answers when it does not take a request, in OTLP/HTTP
//! (a status code and a `google.rpc.Status` body) and in OTLP/gRPC (a status
//! code, with `RetryInfo` when the sender should come back).
//!
//! The kind of answer tells an OTLP sender what to do: retry later (HTTP 429
//! and 503, gRPC RESOURCE_EXHAUSTED and UNAVAILABLE with a delay), or give up
//! (HTTP 400 and 413, gRPC INVALID_ARGUMENT).

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::decode::Encoding;

/// How long a sender is asked to wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Not OTLP: retrying cannot help.
    Malformed,
    /// An encoding the receiver does not read.
    Unsupported,
    /// More than a request may hold: retrying cannot help.
    TooLarge,
    /// The queue is full; the exporter will make room.
    QueueFull,
    /// Too many bodies are being read at once, or otel-run is shutting down.
    Unavailable,
    /// The body did not arrive within the body timeout.
    TimedOut,
}

/// A request not taken, and the message that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub why: Why,
    pub message: String,
}

impl Rejection {
    pub fn new(why: Why, message: impl Into<String>) -> Rejection {
        Rejection {
            why,
            message: message.into(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        matches!(self.why, Why::QueueFull | Why::Unavailable).then_some(RETRY_AFTER)
    }

    fn code(&self) -> Code {
        match self.why {
            Why::Malformed | Why::TooLarge => Code::InvalidArgument,
            Why::Unsupported => Code::Unimplemented,
            Why::QueueFull => Code::ResourceExhausted,
            Why::Unavailable => Code::Unavailable,
            Why::TimedOut => Code::DeadlineExceeded,
        }
    }

    /// The OTLP/HTTP answer, its body in the request's encoding.
    pub fn http(self, encoding: Encoding) -> Response {
        tracing::debug!("rejected an OTLP request: {}", self.message);
        let status = match self.why {
            Why::Malformed => StatusCode::BAD_REQUEST,
            Why::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Why::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Why::QueueFull => StatusCode::TOO_MANY_REQUESTS,
            Why::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Why::TimedOut => StatusCode::REQUEST_TIMEOUT,
        };
        let retry_after = self.retry_after();
        let body = self.rpc_status();
        let mut response = match encoding {
            Encoding::Protobuf => (
                status,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                prost::Message::encode_to_vec(&body),
            )
                .into_response(),
            Encoding::Json | Encoding::CompactSpans(_) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&body).expect("status serializes"),
            )
                .into_response(),
        };
        if let Some(delay) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, delay.as_secs().into());
        }
        response
    }

    /// The OTLP/gRPC answer: a trailers-only response.
    pub fn grpc(self) -> Response {
        tracing::debug!("rejected an OTLP/gRPC request: {}", self.message);
        let code = self.code();
        let status = match self.retry_after() {
            Some(_) => {
                let body = self.rpc_status();
                let mut metadata = MetadataMap::new();
                // Where the Python exporter looks for the delay; other clients
                // read it from the status details.
                if let Some(info) = body.details.first() {
                    metadata.insert_bin(
                        "google.rpc.retryinfo-bin",
                        MetadataValue::from_bytes(&info.value),
                    );
                }
                let details = prost::Message::encode_to_vec(&body);
                tonic::Status::with_details_and_metadata(
                    code,
                    body.message,
                    details.into(),
                    metadata,
                )
            }
            None => tonic::Status::new(code, self.message),
        };
        status.into_http()
    }

    fn rpc_status(self) -> RpcStatus {
        let details = self
            .retry_after()
            .map(|delay| RpcAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: prost::Message::encode_to_vec(&RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: delay.as_secs() as i64,
                        nanos: delay.subsec_nanos() as i32,
                    }),
                }),
            })
            .into_iter()
            .collect();
        RpcStatus {
            code: self.code() as i32,
            message: self.message,
            details,
        }
    }
}

/// google.rpc.Status. Its details are left out of JSON, where an `Any` would
/// need its type's JSON form: the Retry-After header says the same.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    pub details: Vec<RpcAny>,
}

/// google.protobuf.Any.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// google.rpc.RetryInfo.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// google.protobuf.Duration.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}
