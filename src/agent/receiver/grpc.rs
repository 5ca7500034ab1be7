//! OTLP/gRPC on the receiver's port. OTLP's calls are unary: one length-prefixed
//! message each way, which is read here like an OTLP/HTTP body, so gRPC requests
//! pass the same limits, timeouts and decoding ([`super::accept`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body::Frame;

use super::decode::{Encoding, Format, MAX_REQUEST_BYTES};
use super::status::{Rejection, Why};
use super::{Receiver, Routed, accept, receive};

/// A message's prefix: compressed flag and length.
const PREFIX: usize = 5;

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub async fn export<T: Routed>(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let answer = async {
        if !is_grpc(&headers) {
            return Err(Rejection::new(
                Why::Unsupported,
                "gRPC requests are application/grpc",
            ));
        }
        let gzip = match headers.get("grpc-encoding").map(HeaderValue::to_str) {
            None | Some(Ok("identity")) => false,
            Some(Ok("gzip")) => true,
            Some(other) => {
                return Err(Rejection::new(
                    Why::Unsupported,
                    format!(
                        "grpc-encoding `{}` is not supported: use gzip or none",
                        other.unwrap_or("?")
                    ),
                ));
            }
        };
        let body = receive::<T>(&receiver, &headers, body, PREFIX + MAX_REQUEST_BYTES).await?;
        let body = Bytes::from(body.bytes);
        let (compressed, message) = unframe(&body)?;
        if compressed && !gzip {
            return Err(Rejection::new(
                Why::Malformed,
                "a compressed message without grpc-encoding",
            ));
        }
        let format = Format {
            encoding: Encoding::Protobuf,
            gzip: compressed,
        };
        accept::<T>(&receiver, body.slice_ref(message), format)
    };
    match answer.await {
        Ok(response) => ok(&response),
        Err(rejection) => rejection.grpc(),
    }
}

/// The one message of a unary request, and whether it is compressed.
fn unframe(body: &[u8]) -> Result<(bool, &[u8]), Rejection> {
    let malformed = |message| Err(Rejection::new(Why::Malformed, message));
    let Some((prefix, message)) = body.split_first_chunk::<PREFIX>() else {
        return malformed("a gRPC request without its message");
    };
    let [flag, len @ ..] = *prefix;
    if u32::from_be_bytes(len) as usize != message.len() {
        return malformed("a gRPC export holds one message");
    }
    match flag {
        0 => Ok((false, message)),
        1 => Ok((true, message)),
        _ => malformed("a gRPC message with an unknown compressed flag"),
    }
}

fn ok(response: &impl prost::Message) -> Response {
    let len = response.encoded_len();
    let mut data = Vec::with_capacity(PREFIX + len);
    data.push(0);
    data.extend_from_slice(&(len as u32).to_be_bytes());
    response.encode(&mut data).expect("a Vec grows");
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut answer = Response::new(axum::body::Body::new(Unary {
        data: Some(data.into()),
        trailers: Some(trailers),
    }));
    *answer.status_mut() = StatusCode::OK;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    answer
}

/// A unary response body: one message, then the trailers with the status.
struct Unary {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Unary {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
