//! The forward proxy the command's HTTP_PROXY points at: one CLIENT span per
//! outgoing request, `traceparent` injected; HTTPS goes through CONNECT tunnels,
//! spliced untouched (no TLS interception), one span per tunnel. It serves
//! loopback clients only, so it is never an open proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use super::relay::{self, Body};
use super::sink::Recorder;
use super::span::{Exchange, Kind, Requested};
use crate::telemetry::context::SpanContext;
use crate::telemetry::sampler::child_context;

/// What the forward proxy knows besides the shared settings.
pub struct Egress {
    /// The process span: the parent of requests that carry no context of their own.
    pub process: Option<SpanContext>,
    /// The agent's receiver: the child's exports to it are relayed, not recorded.
    pub agent: Option<SocketAddr>,
}

pub async fn serve(listener: TcpListener, egress: Egress, shared: Arc<Shared>) {
    let egress = Arc::new(egress);
    super::accept_loop(listener, shared.clone(), move |local, peer| {
        let (shared, egress) = (shared.clone(), egress.clone());
        move |request| handle(shared.clone(), egress.clone(), local, peer, request)
    })
    .await
}

async fn handle(
    shared: Arc<Shared>,
    egress: Arc<Egress>,
    local: SocketAddr,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if !peer.ip().is_loopback() {
        return Ok(refuse(
            StatusCode::FORBIDDEN,
            "only local programs may use this proxy",
        ));
    }
    let start = SystemTime::now();
    let Some(authority) = request.uri().authority().cloned() else {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "this is a forward proxy: send `http://host/path` or CONNECT",
        ));
    };
    let connect = request.method() == Method::CONNECT;
    if !connect && request.uri().scheme_str() != Some("http") {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "only http:// URLs, or CONNECT for https",
        ));
    }
    let to_agent = egress.agent.is_some_and(|a| {
        authority.port_u16() == Some(a.port())
            && authority
                .host()
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == a.ip() || ip.is_loopback())
    });
    let parent = shared
        .propagators
        .extract(request.headers())
        .or_else(|| egress.process.clone());
    let context = child_context(&shared.sampler, parent.as_ref());
    let exchange = Exchange::begin(
        Kind::Client,
        (context, parent.map(|p| p.span_id)),
        Requested::of(&request, None),
        (local, peer),
        start,
    );
    if connect {
        return Ok(tunnel(&shared, request, authority, exchange).await);
    }
    // The child's own telemetry to the agent would otherwise make spans of spans.
    let disabled;
    let recorder = if to_agent {
        disabled = Recorder::disabled();
        &disabled
    } else {
        shared
            .propagators
            .inject(request.headers_mut(), &exchange.context);
        &shared.recorder
    };
    let uri = request.uri().clone();
    relay::relay(
        |r| relay::pooled(&shared.client, r),
        request,
        uri,
        shared.bounds.timeout,
        exchange,
        recorder,
    )
    .await
}

/// CONNECT: opens the connection, answers 200, then splices the two sockets.
async fn tunnel(
    shared: &Shared,
    request: Request<Incoming>,
    authority: http::uri::Authority,
    mut exchange: Exchange,
) -> Response<Body> {
    let port = authority.port_u16().unwrap_or(443);
    let target = (authority.host().trim_matches(['[', ']']).to_string(), port);
    let upstream =
        match tokio::time::timeout(shared.bounds.timeout, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                exchange.error = Some(("502", format!("cannot connect to {authority}: {e}")));
                return relay::local(StatusCode::BAD_GATEWAY, exchange, &shared.recorder, None);
            }
            Err(_) => {
                exchange.error = Some(("504", format!("no connection to {authority} in time")));
                return relay::local(
                    StatusCode::GATEWAY_TIMEOUT,
                    exchange,
                    &shared.recorder,
                    None,
                );
            }
        };
    let _ = upstream.set_nodelay(true);
    exchange.status = Some(200);
    let recorder = shared.recorder.clone();
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            let mut client = TokioIo::new(upgraded);
            let mut upstream = upstream;
            if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
            {
                exchange.request_size = Some(up);
                exchange.response_size = Some(down);
            }
        }
        exchange.end = SystemTime::now();
        recorder.record(exchange);
    });
    Response::new(Body::empty())
}

/// A refusal that is not an exchange worth a span.
fn refuse(status: StatusCode, why: &'static str) -> Response<Body> {
    relay::plain(status, why)
}
