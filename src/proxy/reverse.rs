//! The reverse proxy: listens in front of the command and sends every request on
//! to it, with one SERVER span per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header;
use http::uri::{Authority, Uri};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::Shared;
use super::relay::{self, Body};
use super::span::{Exchange, Kind, child_context};

/// Accepts connections until the runtime stops.
pub async fn serve(listener: TcpListener, upstream: Authority, shared: Arc<Shared>) {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    let upstream = Arc::new(upstream);
    super::accept_loop(listener, shared, move |shared, peer, request| {
        handle(shared, upstream.clone(), local, peer, request)
    })
    .await
}

async fn handle(
    shared: Arc<Shared>,
    upstream: Arc<Authority>,
    local: SocketAddr,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = SystemTime::now();
    let parent = shared.propagators.extract(request.headers());
    let context = child_context(&shared.sampler, parent.as_ref());
    shared.propagators.inject(request.headers_mut(), &context);
    let host = request.headers().get(header::HOST).cloned().or_else(|| {
        let authority = request.uri().authority()?;
        header::HeaderValue::from_str(authority.as_str()).ok()
    });
    let mut exchange = Exchange {
        kind: Kind::Server,
        context,
        parent: parent.map(|p| p.span_id),
        method: request.method().clone(),
        uri: request.uri().clone(),
        version: request.version(),
        host,
        local,
        client: peer,
        user_agent: request.headers().get(header::USER_AGENT).cloned(),
        status: None,
        error: None,
        request_size: None,
        response_size: None,
        start,
        end: start,
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme("http")
        .authority((*upstream).clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        exchange.error = Some(("400", "the request target is not a path".into()));
        return Ok(relay::local(
            StatusCode::BAD_REQUEST,
            exchange,
            &shared.recorder,
            None,
        ));
    };
    relay::relay(
        &shared.client,
        request,
        uri,
        shared.timeout,
        exchange,
        &shared.recorder,
    )
    .await
}
