//! `localhost` without the system's resolver.
//!
//! The default OTLP endpoint is `http://localhost:4317`. Resolving that name
//! through `getaddrinfo` costs a thread of the runtime's blocking pool and
//! reading `nsswitch.conf`, `host.conf`, `resolv.conf` and `/etc/hosts` on
//! every run: for one process span exported at exit, most of the time the
//! export takes. `localhost` names the loopback (RFC 6761 §6.3), so it is
//! answered here; any other name goes to the system's resolver as before.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// Where `localhost` goes: IPv4 first, where collectors listen by default,
/// then IPv6. The port is the URL's (0 here means "the URL's" to reqwest).
pub const LOOPBACK: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
];

/// Whether `host` is `localhost` itself. Names under it (`api.localhost`) go
/// to the system, as reqwest's override (exact names only) sends them there
/// too: both transports resolve a name alike.
pub fn is_localhost(host: &str) -> bool {
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
}

/// A resolver that answers `localhost` itself and asks the system otherwise.
#[derive(Clone)]
pub struct Resolver(GaiResolver);

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver(GaiResolver::new())
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if is_localhost(name.as_str()) {
            return Box::pin(std::future::ready(Ok(LOOPBACK.to_vec().into_iter())));
        }
        let resolving = self.0.call(name);
        Box::pin(async move { Ok(resolving.await?.collect::<Vec<_>>().into_iter()) })
    }
}

/// The TCP connector of a gRPC channel, as tonic would make it (no Nagle),
/// with [`Resolver`].
pub fn connector() -> HttpConnector<Resolver> {
    let mut http = HttpConnector::new_with_resolver(Resolver::default());
    http.enforce_http(false);
    http.set_nodelay(true);
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_localhost_itself_is_the_loopback() {
        for host in ["localhost", "LocalHost", "localhost."] {
            assert!(is_localhost(host), "{host}");
        }
        for host in [
            "localhost.example",
            "api.localhost",
            "notlocalhost",
            "example.com",
            "127.0.0.1",
            "",
        ] {
            assert!(!is_localhost(host), "{host}");
        }
    }

    #[tokio::test]
    async fn localhost_is_answered_without_the_system_and_other_names_are_not() {
        use tower_service::Service as _;
        let mut resolver = Resolver::default();
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = resolver.call(name).await.unwrap().collect();
        assert_eq!(addrs, LOOPBACK);
        // Any other name is the system's: a numeric one resolves to itself.
        let name: Name = "127.0.0.2".parse().unwrap();
        let addrs: Vec<_> = resolver.call(name).await.unwrap().collect();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 2], 0))]);
    }
}
