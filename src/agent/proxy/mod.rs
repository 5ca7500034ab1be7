//! The HTTP sidecar proxy: spans for programs that have no OpenTelemetry SDK, at
//! their network boundary.
//!
//! - [`reverse`]: `--proxy LISTEN=UPSTREAM` listens in front of the command; one
//!   SERVER span per request, the incoming context continued and the span's own
//!   injected upstream. A request without context starts its own trace: a server's
//!   requests never hang under the process span (a week-long server is not one trace).
//! - [`forward`]: `--egress-proxy` is the command's HTTP_PROXY; one CLIENT span per
//!   outgoing request, under the process span unless the request carries context.
//!
//! Both run on the agent's runtime. A request only queues a cheap record
//! ([`span::Exchange`]); [`sink`] builds spans and the duration histogram off the
//! request path and hands them to the agent's pipelines.

mod alarm;
pub mod forward;
pub mod h1;
pub mod metrics;
pub mod relay;
pub mod reverse;
pub mod route;
pub mod sink;
pub mod span;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};

use crate::agent::Agent;
use crate::telemetry::context::SpanContext;
use crate::telemetry::{Propagators, Sampler, Telemetry};
use relay::{Body, Client};
use route::Routes;
use sink::Recorder;

/// A bad `--proxy` or `--route` value: the flag (or variable, or key) and the fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid value `{value}` for {place}: {why}")]
pub struct ConfigError {
    place: String,
    value: String,
    why: String,
}

impl ConfigError {
    /// `value` of the setting at `place` (a flag, a variable, a key) is wrong: `why`.
    pub fn new(place: String, value: String, why: String) -> ConfigError {
        ConfigError { place, value, why }
    }
}

impl crate::diag::Hint for ConfigError {
    fn hint(&self) -> Option<String> {
        Some("`--proxy LISTEN=UPSTREAM`, e.g. `--proxy 8080=127.0.0.1:5000` (LISTEN: a port on loopback, or `ADDRESS:PORT`); `--route '/users/{id}'`".into())
    }

    fn exit_code(&self) -> u8 {
        crate::diag::USAGE
    }
}

/// One reverse proxy: where it listens, where it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub listen: SocketAddr,
    pub upstream: Authority,
    /// As the user wrote it, for messages.
    pub text: String,
}

/// The proxies to run, validated before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    pub reverse: Vec<Mapping>,
    pub egress: bool,
    pub routes: Routes,
    pub bounds: Bounds,
    pub redact_query: bool,
    /// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, if set.
    pub temporality: Option<String>,
    /// How often the request duration histograms are exported.
    pub metric_interval: Duration,
}

impl Mapping {
    /// `LISTEN=UPSTREAM`: a bare port is on loopback; an upstream may be `http://host:port`.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let Some((listen, upstream)) = text.split_once('=') else {
            return Err("expected LISTEN=UPSTREAM".into());
        };
        let (listen, upstream) = (listen.trim(), upstream.trim());
        let listen =
            if let Ok(port) = listen.parse::<u16>() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            } else if let Some(port) = listen.strip_prefix("localhost:") {
                let port = port
                    .parse()
                    .map_err(|_| format!("`{listen}` is not ADDRESS:PORT"))?;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            } else {
                listen.parse().map_err(|_| {
            format!("LISTEN `{listen}` is neither a port nor an ADDRESS:PORT such as 0.0.0.0:8080")
        })?
            };
        if upstream.starts_with("https://") {
            return Err(
                "the upstream is spoken to in plain HTTP; https:// upstreams are not supported"
                    .into(),
            );
        }
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream = if let Ok(port) = upstream.parse::<u16>() {
            format!("127.0.0.1:{port}")
        } else {
            upstream.to_string()
        };
        let authority: Authority = upstream
            .parse()
            .map_err(|_| format!("UPSTREAM `{upstream}` is not HOST:PORT"))?;
        if authority.port_u16().is_none() || upstream.contains('/') {
            return Err(format!("UPSTREAM `{upstream}` needs a port, as HOST:PORT"));
        }
        Ok(Mapping {
            listen,
            upstream: authority,
            text: text.to_string(),
        })
    }
}

/// How long and how much one proxied exchange may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// An upstream's connection and answer.
    pub timeout: Duration,
    /// A client's request head.
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
}

/// What every request handler shares: one per thread serving requests.
pub struct Shared {
    pub client: Client,
    pub recorder: Recorder,
    pub propagators: Propagators,
    pub sampler: Sampler,
    pub bounds: Bounds,
    builder: auto::Builder<TokioExecutor>,
}

/// What a thread needs to make its [`Shared`].
#[derive(Clone)]
struct Base {
    recorder: Recorder,
    propagators: Propagators,
    sampler: Sampler,
    bounds: Bounds,
}

impl Base {
    /// The handlers' state, with a connection pool of its own.
    fn shared(&self) -> Arc<Shared> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.bounds.header_timeout)
            .max_buf_size(self.bounds.max_header_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.bounds.max_header_bytes as u32);
        Arc::new(Shared {
            client: relay::client(),
            recorder: self.recorder.clone(),
            propagators: self.propagators,
            sampler: self.sampler,
            bounds: self.bounds,
            builder,
        })
    }
}

/// The running proxies.
pub struct Proxies {
    handle: tokio::runtime::Handle,
    /// A runtime of their own when there is no agent (nothing is exported, but
    /// the command's traffic must still flow).
    own_runtime: Option<tokio::runtime::Runtime>,
    sink: sink::Sink,
    /// Variables for the command: HTTP_PROXY and friends.
    pub env: Vec<(String, String)>,
}

/// What the proxies need of the run besides their settings.
pub struct Run<'a> {
    pub agent: Option<&'a Agent>,
    /// The process span: the parent of the command's own outgoing requests.
    pub process: Option<SpanContext>,
    pub telemetry: &'a Telemetry,
}

/// Starts the proxies. A port that cannot be bound is a warning: the command
/// still runs, without that proxy.
pub fn start(config: &Config, run: Run) -> std::io::Result<Proxies> {
    let (handle, own_runtime) = match run.agent.and_then(Agent::handle) {
        Some(handle) => (handle, None),
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("otel-run-proxy")
                .enable_all()
                .build()?;
            (runtime.handle().clone(), Some(runtime))
        }
    };
    let _guard = handle.enter();
    let telemetry = run.telemetry;
    let (recorder, sink) = sink::start(sink::Options {
        agent: run.agent.map(Agent::recorder),
        config: config.clone(),
        telemetry: telemetry.clone(),
    });
    let base = Base {
        recorder,
        propagators: telemetry.propagators,
        sampler: telemetry.sampler,
        bounds: config.bounds,
    };
    start_reverse(&config.reverse, &base);
    let mut env = Vec::new();
    if config.egress {
        let agent_addr = run
            .agent
            .and_then(Agent::endpoint)
            .and_then(|e| e.trim_start_matches("http://").parse::<SocketAddr>().ok());
        match handle.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))) {
            Ok(listener) => {
                let url = format!("http://{}", listener.local_addr()?);
                tracing::info!("forward proxy for the command's HTTP requests at {url}");
                handle.spawn(forward::serve(
                    listener,
                    forward::Egress {
                        process: run.process,
                        agent: agent_addr,
                    },
                    base.shared(),
                ));
                env = egress_env(&url, agent_addr, |name| std::env::var(name).ok());
            }
            Err(e) => tracing::warn!(
                "cannot start the forward proxy ({e}); the command's requests are not traced"
            ),
        }
    }
    drop(_guard);
    Ok(Proxies {
        handle,
        own_runtime,
        sink,
        env,
    })
}

/// The reverse proxies run on threads of their own, one per core (at most 4),
/// each with a single-threaded runtime, its own upstream connection pool and its
/// own listening socket on the port (SO_REUSEPORT: the kernel spreads connections).
/// A request and its upstream exchange then stay on one thread, without the
/// cross-thread wake-ups a shared runtime costs on every request.
fn start_reverse(mappings: &[Mapping], base: &Base) {
    if mappings.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let mut per_thread: Vec<Vec<(TcpSocket, Authority)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for mapping in mappings {
        // A plain bind first: SO_REUSEPORT alone would share a port another
        // otel-run already proxies instead of saying it is taken.
        let sockets = std::net::TcpListener::bind(mapping.listen).and_then(|probe| {
            drop(probe);
            (0..threads)
                .map(|_| reuse_port_socket(mapping.listen))
                .collect::<std::io::Result<Vec<TcpSocket>>>()
        });
        match sockets {
            Ok(sockets) => {
                tracing::info!("proxying {} to {}", mapping.listen, mapping.upstream);
                for (thread, socket) in per_thread.iter_mut().zip(sockets) {
                    thread.push((socket, mapping.upstream.clone()));
                }
            }
            Err(e) => tracing::warn!(
                "cannot listen on {} for `--proxy {}` ({e}); the command runs without this proxy",
                mapping.listen,
                mapping.text
            ),
        }
    }
    for sockets in per_thread.into_iter().filter(|s| !s.is_empty()) {
        let base = base.clone();
        let spawned = std::thread::Builder::new()
            .name("otel-run-proxy".into())
            .spawn(move || serve_thread(sockets, base));
        if let Err(e) = spawned {
            tracing::warn!("cannot start a proxy thread: {e}");
        }
    }
}

fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// One proxy thread: serves its sockets until the process ends.
fn serve_thread(sockets: Vec<(TcpSocket, Authority)>, base: Base) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return tracing::warn!("cannot start a proxy thread: {e}"),
    };
    runtime.block_on(async move {
        let shared = base.shared();
        let mut servers = tokio::task::JoinSet::new();
        if let Some(flush) = shared.recorder.batch_on_this_thread() {
            tokio::spawn(flush);
        }
        for (socket, upstream) in sockets {
            match socket.listen(1024) {
                Ok(listener) => {
                    servers.spawn(reverse::serve(listener, upstream, shared.clone()));
                }
                Err(e) => tracing::warn!("proxy: cannot listen: {e}"),
            }
        }
        while servers.join_next().await.is_some() {}
    });
}

/// HTTP_PROXY, HTTPS_PROXY (both spellings) at the forward proxy; NO_PROXY keeps
/// what the user had and adds the agent's address, so the command's telemetry goes
/// straight to the agent.
fn egress_env(
    url: &str,
    agent: Option<SocketAddr>,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> =
        ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"]
            .into_iter()
            .map(|n| (n.to_string(), url.to_string()))
            .collect();
    let mut no_proxy: Vec<String> = env("NO_PROXY")
        .or_else(|| env("no_proxy"))
        .into_iter()
        .flat_map(|v| {
            v.split(',')
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(agent) = agent {
        no_proxy.push(agent.to_string());
        no_proxy.push(format!("localhost:{}", agent.port()));
    }
    if !no_proxy.is_empty() {
        let value = no_proxy.join(",");
        vars.push(("NO_PROXY".into(), value.clone()));
        vars.push(("no_proxy".into(), value));
    }
    vars
}

impl Proxies {
    /// Records what is left; connections still open are left to the runtime's end.
    pub fn stop(self) {
        let Proxies {
            handle,
            own_runtime,
            sink,
            ..
        } = self;
        handle.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), sink.stop()).await;
        });
        if let Some(runtime) = own_runtime {
            runtime.shutdown_background();
        }
    }
}

/// Serves each accepted connection with the handler `connection` makes for it:
/// HTTP/1.1 (keep-alive, upgrades) or HTTP/2 with prior knowledge (h2c), chosen
/// by what the client sends.
/// Accepts connections until the runtime stops; `connection` gets the proxy's
/// own address and the client's, and returns the connection's request handler.
async fn accept_loop<C, H, Fut>(listener: TcpListener, shared: Arc<Shared>, connection: C)
where
    C: Fn(SocketAddr, SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    loop {
        let (stream, peer) = accept(&listener).await;
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let handle = connection(local, peer);
        tokio::spawn(async move {
            let _ = shared
                .builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

/// The next connection; failures to accept (out of file descriptors and the
/// like) wait a little rather than spin.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::debug!("proxy accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings() {
        let m = Mapping::parse("8080=127.0.0.1:5000").unwrap();
        assert_eq!(m.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(m.upstream.as_str(), "127.0.0.1:5000");
        let m = Mapping::parse("0.0.0.0:8080=http://app:5000/").unwrap();
        assert_eq!(m.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(m.upstream.as_str(), "app:5000");
        assert_eq!(
            Mapping::parse("8080=5000").unwrap().upstream.as_str(),
            "127.0.0.1:5000"
        );
        for bad in [
            "8080",
            "x=127.0.0.1:5000",
            "8080=host",
            "8080=https://h:1",
            "8080=h:1/p",
        ] {
            assert!(Mapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_proxy_is_extended_with_the_agent() {
        let env = egress_env(
            "http://127.0.0.1:9",
            Some("127.0.0.1:4318".parse().unwrap()),
            |n| (n == "no_proxy").then(|| "example.com, .internal".to_string()),
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTP_PROXY"), Some("http://127.0.0.1:9"));
        assert_eq!(get("https_proxy"), Some("http://127.0.0.1:9"));
        assert_eq!(
            get("NO_PROXY"),
            Some("example.com,.internal,127.0.0.1:4318,localhost:4318")
        );
    }
}
