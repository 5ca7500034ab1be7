//! Sending one request on to its upstream, shared by both proxies: hop-by-hop
//! headers, the response body that records the exchange when it ends, upgrades
//! (WebSocket) spliced through, and upstream failures as 502 / 504.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::sink::Recorder;
use super::span::Exchange;

/// A pooled HTTP/1.1 client to the upstreams.
pub type Client = LegacyClient<HttpConnector, Body>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends through the pool.
pub async fn pooled(
    client: &Client,
    request: Request<Body>,
) -> Result<Response<Incoming>, BoxError> {
    Ok(client.request(request).await?)
}

pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    LegacyClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether the request asks to switch protocols (`Connection: upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, and those `Connection` names; an upgrade keeps
/// `Connection: upgrade` and `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Sends `request` upstream and returns the response for the client; records the
/// exchange when the response body ends (or the client goes away).
pub async fn relay<F, Fut>(
    send: F,
    mut request: Request<Incoming>,
    upstream_uri: http::Uri,
    timeout: Duration,
    mut exchange: Exchange,
    recorder: &Recorder,
) -> Result<Response<Body>, Infallible>
where
    F: FnOnce(Request<Body>) -> Fut,
    Fut: Future<Output = Result<Response<Incoming>, BoxError>>,
{
    let upgrade = is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    parts.uri = upstream_uri;
    parts.version = http::Version::HTTP_11;
    let request_bytes =
        (!http_body::Body::is_end_stream(&body)).then(|| Arc::new(AtomicU64::new(0)));
    let body = Body {
        inner: Inner::Incoming(body),
        sent: 0,
        count: request_bytes.clone(),
        finish: None,
    };
    let outcome = tokio::time::timeout(timeout, send(Request::from_parts(parts, body))).await;
    let mut response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let reason = e.source().map_or_else(|| e.to_string(), |s| s.to_string());
            exchange.error = Some(("502", format!("upstream unreachable: {reason}")));
            return Ok(local(
                StatusCode::BAD_GATEWAY,
                exchange,
                recorder,
                request_bytes,
            ));
        }
        Err(_) => {
            exchange.error = Some((
                "504",
                format!(
                    "upstream sent no response within {} ms",
                    timeout.as_millis()
                ),
            ));
            return Ok(local(
                StatusCode::GATEWAY_TIMEOUT,
                exchange,
                recorder,
                request_bytes,
            ));
        }
    };
    exchange.status = Some(response.status().as_u16());
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = (client_upgrade.await, upstream_upgrade.await) {
                let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                    exchange.request_size = Some(up);
                    exchange.response_size = Some(down);
                }
            }
            exchange.end = SystemTime::now();
            recorder.record(exchange);
        });
        return Ok(response.map(|_| Body::empty()));
    }
    strip_hop_by_hop(response.headers_mut(), false);
    let finish = recorder.enabled().then(|| {
        Box::new(Finish {
            exchange,
            recorder: recorder.clone(),
            request_bytes,
        })
    });
    Ok(response.map(|body| Body {
        inner: Inner::Incoming(body),
        sent: 0,
        count: None,
        finish,
    }))
}

/// A response otel-run makes itself (502, 504, 400...), recorded as the exchange's.
pub fn local(
    status: StatusCode,
    mut exchange: Exchange,
    recorder: &Recorder,
    request_bytes: Option<Arc<AtomicU64>>,
) -> Response<Body> {
    exchange.status = Some(status.as_u16());
    let text = Bytes::from(format!("{status}\n"));
    let finish = recorder.enabled().then(|| {
        Box::new(Finish {
            exchange,
            recorder: recorder.clone(),
            request_bytes,
        })
    });
    let mut response = Response::new(Body {
        inner: Inner::Full(Some(text)),
        sent: 0,
        count: None,
        finish,
    });
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A response of otel-run's own that records nothing.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body {
        inner: Inner::Full(Some(Bytes::from_static(text.as_bytes()))),
        sent: 0,
        count: None,
        finish: None,
    });
    *response.status_mut() = status;
    response
}

/// A body passed through without buffering; it counts its bytes, and the response's
/// records the exchange when dropped, which hyper does when it is sent or abandoned.
pub struct Body {
    inner: Inner,
    sent: u64,
    count: Option<Arc<AtomicU64>>,
    finish: Option<Box<Finish>>,
}

enum Inner {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
}

struct Finish {
    exchange: Exchange,
    recorder: Recorder,
    request_bytes: Option<Arc<AtomicU64>>,
}

impl Body {
    pub fn empty() -> Body {
        Body {
            inner: Inner::Empty,
            sent: 0,
            count: None,
            finish: None,
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            let Finish {
                mut exchange,
                recorder,
                request_bytes,
            } = *finish;
            exchange.end = SystemTime::now();
            exchange.response_size = Some(self.sent);
            if let Some(n) = request_bytes {
                exchange.request_size = Some(n.load(Ordering::Relaxed));
            }
            recorder.record(exchange);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = match &mut self.inner {
            Inner::Empty => return Poll::Ready(None),
            Inner::Full(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Incoming(body) => std::task::ready!(Pin::new(body).poll_frame(cx)),
        };
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            let n = data.map_or(0, |d| d.len() as u64);
            self.sent += n;
            if let Some(count) = &self.count {
                count.fetch_add(n, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(data) => data.is_none(),
            Inner::Incoming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Incoming(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }
}
