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
use super::relay::{self, Body, Dedicated};
use super::span::{Exchange, Kind, child_context};

/// Accepts connections until the runtime stops.
pub async fn serve(listener: TcpListener, upstream: Authority, shared: Arc<Shared>) {
    let upstream = Arc::new(upstream);
    super::accept_loop(listener, shared.clone(), move |local, peer| {
        let (shared, upstream) = (shared.clone(), upstream.clone());
        let dedicated = Arc::new(Dedicated::new((*upstream).clone()));
        move |request| {
            handle(
                shared.clone(),
                upstream.clone(),
                dedicated.clone(),
                local,
                peer,
                request,
            )
        }
    })
    .await
}

async fn handle(
    shared: Arc<Shared>,
    upstream: Arc<Authority>,
    dedicated: Arc<Dedicated>,
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
    let exchange = Exchange::begin(
        Kind::Server,
        (context, parent.map(|p| p.span_id)),
        &request,
        host,
        (local, peer),
        start,
    );
    let one_at_a_time =
        request.version() != http::Version::HTTP_2 && !relay::is_upgrade(request.headers());
    // HTTP/1.0 clients may send no Host; the upstream speaks HTTP/1.1 and needs one.
    if one_at_a_time
        && !request.headers().contains_key(header::HOST)
        && let Ok(host) = header::HeaderValue::from_str(upstream.as_str())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    // HTTP/1.1 requests share their connection's upstream connection; HTTP/2
    // streams (concurrent) and upgrades (which take the connection) use the pool.
    if one_at_a_time {
        let Ok(uri) = Uri::try_from(path) else {
            return Ok(bad_target(exchange, &shared));
        };
        return relay::relay(
            |r| dedicated.send(r),
            request,
            uri,
            shared.timeout,
            exchange,
            &shared.recorder,
        )
        .await;
    }
    let uri = Uri::builder()
        .scheme("http")
        .authority((*upstream).clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return Ok(bad_target(exchange, &shared));
    };
    relay::relay(
        |r| relay::pooled(&shared.client, r),
        request,
        uri,
        shared.timeout,
        exchange,
        &shared.recorder,
    )
    .await
}

fn bad_target(mut exchange: Exchange, shared: &Shared) -> Response<Body> {
    exchange.error = Some(("400", "the request target is not a path".into()));
    relay::local(StatusCode::BAD_REQUEST, exchange, &shared.recorder, None)
}
