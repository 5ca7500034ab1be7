//! `otel-run agent`: the agent alone, a receiver for other processes and
//! devices, forwarding to the configured exporters until it is stopped.
//!
//! It listens on the standard OTLP ports of loopback unless told otherwise;
//! an address beyond loopback is only ever one the user named, and is said to
//! accept from the network. An OTLP exporter that would send back to one of the
//! agent's own addresses is refused before anything listens: the agent would
//! receive its own exports, and export them again, forever.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _, UdpSocket};

use super::{Agent, Config, Listen, StartError};
use crate::settings::otlp::Signal;

/// Where `otel-run agent` listens by default: the ports OTLP's exporters send
/// to by default, gRPC's and HTTP's (each port takes both).
pub const DEFAULT_LISTEN: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4317),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4318),
];

/// Why the standalone agent does not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the OTLP exporter of {signal} sends to {url}, which is this agent's own address {addr}: it would receive its own exports forever"
    )]
    Loop {
        signal: &'static str,
        url: String,
        addr: SocketAddr,
    },
    #[error(
        "every exporter is `none` (or OTEL_SDK_DISABLED is true): the agent would discard all it receives"
    )]
    NothingExported,
    #[error(transparent)]
    Start(#[from] StartError),
}

impl crate::diag::Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Loop { .. } => Some(
                "set `--exporter-otlp-endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT) to the backend the agent forwards to, or listen elsewhere with `--listen ADDR`".to_string(),
            ),
            Error::NothingExported => Some(
                "name an exporter: `--traces-exporter otlp` with `--exporter-otlp-endpoint URL`, or `console`".to_string(),
            ),
            Error::Start(e) => e.hint(),
        }
    }

    /// Settings that contradict each other are a usage error; an address
    /// that cannot be bound (in use, not this machine's) is the machine's
    /// state, not the command's: the same command works once it is free.
    fn exit_code(&self) -> u8 {
        match self {
            Error::Loop { .. } | Error::NothingExported => crate::diag::USAGE,
            Error::Start(_) => 1,
        }
    }
}

/// `--listen`'s value: `IP:PORT`, or `localhost:PORT` for loopback.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Some(Ok(port)) = text.strip_prefix("localhost:").map(str::parse::<u16>) {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| {
        format!(
            "expected IP:PORT, e.g. `127.0.0.1:4317`, `0.0.0.0:4318` or `[::1]:4317`; got `{text}`"
        )
    })
}

/// Starts the agent on `listen` (each address once), after refusing an
/// exporter that would loop back. `printed` are the signals that print what
/// arrives because nothing named a destination for them.
pub fn start(config: &Config, listen: &[SocketAddr], printed: &[Signal]) -> Result<Agent, Error> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in listen {
        if !addrs.contains(addr) {
            addrs.push(*addr);
        }
    }
    refuse_loops(config, &addrs)?;
    let agent = Agent::start(config, Listen::At(&addrs))?.ok_or(Error::NothingExported)?;
    let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    crate::diag::notice(&format!(
        "receiving OTLP (gRPC and HTTP) on {}; Ctrl-C or SIGTERM flushes and stops",
        list.join(", ")
    ));
    let public: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(SocketAddr::to_string)
        .collect();
    if !public.is_empty() {
        tracing::warn!(
            "{} accepts OTLP from the network: any host that reaches it can send telemetry",
            public.join(", ")
        );
    }
    if !printed.is_empty() {
        let names: Vec<&str> = printed.iter().map(|s| s.name()).collect();
        crate::diag::notice(&format!(
            "no destination is set: the {} received are printed on stdout (`console`); `--exporter-otlp-endpoint URL` forwards them",
            names.join(", ")
        ));
    }
    Ok(agent)
}

fn refuse_loops(config: &Config, listening: &[SocketAddr]) -> Result<(), Error> {
    if !Signal::ALL.into_iter().any(|s| config.exports(s)) {
        return Err(Error::NothingExported);
    }
    for signal in Signal::ALL {
        let of_signal = config.signal(signal);
        if !of_signal.exporters.iter().any(|kind| kind.is_otlp()) {
            continue;
        }
        let url = &of_signal.target.url;
        if let Some(addr) = loops_back(url, listening) {
            return Err(Error::Loop {
                signal: signal.name(),
                url: url.to_string(),
                addr,
            });
        }
    }
    Ok(())
}

/// The listening address an export to `url` would reach, if any. The host is
/// resolved only when its port is one the agent listens on.
fn loops_back(url: &url::Url, listening: &[SocketAddr]) -> Option<SocketAddr> {
    let port = url.port_or_known_default()?;
    if !listening.iter().any(|l| l.port() == port) {
        return None;
    }
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let targets: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    listening.iter().copied().find(|listen| {
        targets.iter().any(|target| {
            target.port() == listen.port()
                && (target.ip() == listen.ip()
                    // 0.0.0.0 (or ::) as a destination is this machine.
                    || target.ip().is_unspecified()
                    // Listening on every address: any of this machine's is ours.
                    || (listen.ip().is_unspecified() && is_local(target.ip())))
        })
    })
}

/// Whether `ip` is one of this machine's addresses: only those can be bound.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    #[test]
    fn the_default_endpoint_loops_back_to_the_default_listen() {
        let found = loops_back(&url("http://localhost:4317/"), &DEFAULT_LISTEN);
        assert_eq!(found, Some(DEFAULT_LISTEN[0]));
        let found = loops_back(&url("http://127.0.0.1:4318/v1/traces"), &DEFAULT_LISTEN);
        assert_eq!(found, Some(DEFAULT_LISTEN[1]));
    }

    #[test]
    fn another_port_or_host_is_no_loop() {
        assert_eq!(
            loops_back(&url("http://localhost:14317/"), &DEFAULT_LISTEN),
            None
        );
        // 127.0.0.2 is loopback, but not the address listened on.
        assert_eq!(
            loops_back(&url("http://127.0.0.2:4317/"), &DEFAULT_LISTEN),
            None
        );
        // https's known port is 443, not the agent's.
        assert_eq!(
            loops_back(&url("https://collector.invalid/"), &DEFAULT_LISTEN),
            None
        );
    }

    #[test]
    fn listening_on_every_address_catches_any_local_one() {
        let all = [SocketAddr::from(([0, 0, 0, 0], 4317))];
        assert_eq!(
            loops_back(&url("http://127.0.0.1:4317"), &all),
            Some(all[0])
        );
        assert_eq!(loops_back(&url("http://0.0.0.0:4317"), &all), Some(all[0]));
        assert_eq!(loops_back(&url("http://127.0.0.1:4318"), &all), None);
    }

    #[test]
    fn listen_addresses_parse_with_a_clear_message() {
        assert_eq!(parse_listen("localhost:4317"), Ok(DEFAULT_LISTEN[0]));
        assert_eq!(
            parse_listen("0.0.0.0:9000"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 9000)))
        );
        assert!(parse_listen("[::1]:4317").is_ok());
        let err = parse_listen("4317").unwrap_err();
        assert!(err.contains("IP:PORT") && err.contains("`4317`"), "{err}");
    }
}
