//! Whether the OTLP endpoints answer, as a run would find out on its first
//! export: a host name that does not resolve, or nothing listening there
//! (the agent's `unresolvable` and "no OTLP collector at" messages).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::runtime::Note;
use crate::settings::Settings;
use crate::settings::otlp::{ExporterKind, Signal, Target};

/// How long a connection may take before the endpoint counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One note per endpoint that would drop what is exported to it, naming the
/// signals. `exported` says which signals have an OTLP exporter.
pub fn problems(settings: &Settings, exported: &dyn Fn(Signal) -> bool) -> Vec<Note> {
    // host:port -> (url shown, signals), in signal order.
    let mut endpoints: BTreeMap<(String, u16), (String, Vec<&str>)> = BTreeMap::new();
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        let otlp = settings.exporters(signal).contains(&ExporterKind::Otlp);
        if !exported(signal) || !otlp {
            continue;
        }
        let url = Target::of(settings, signal).url;
        let Some(host) = url.host_str() else { continue };
        let port = url.port_or_known_default().unwrap_or(4317);
        let shown = crate::settings::report::redact_url(url.as_str());
        endpoints
            .entry((host.trim_matches(['[', ']']).to_string(), port))
            .or_insert_with(|| (shown, Vec::new()))
            .1
            .push(signal.name());
    }
    let mut notes = Vec::new();
    for ((host, port), (url, signals)) in endpoints {
        let signals = signals.join(", ");
        let hint = "start a collector there, set `--exporter-otlp-endpoint`, or print them with `--traces-exporter console`";
        match reach(&host, port) {
            Reach::Answers => {}
            Reach::Unresolvable => notes.push(Note::new(
                format!(
                    "no OTLP collector at {url} (the host name `{host}` does not resolve); {signals} are dropped"
                ),
                hint,
            )),
            Reach::NoAnswer(why) => notes.push(Note::new(
                format!("no OTLP collector at {url} ({why}); {signals} are dropped"),
                hint,
            )),
        }
    }
    notes
}

enum Reach {
    Answers,
    Unresolvable,
    NoAnswer(String),
}

/// Resolves `host` and tries a TCP connection to each address until one answers.
fn reach(host: &str, port: u16) -> Reach {
    let addresses: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(addresses) => addresses.collect(),
        Err(_) => return Reach::Unresolvable,
    };
    if addresses.is_empty() {
        return Reach::Unresolvable;
    }
    let mut why = String::new();
    for address in addresses {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(_) => return Reach::Answers,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                why = "connection refused".into();
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                why = format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
            }
            Err(e) => why = e.to_string(),
        }
    }
    Reach::NoAnswer(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_answers_a_closed_port_and_an_unknown_host_do_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(matches!(reach("127.0.0.1", port), Reach::Answers));
        drop(listener);
        assert!(
            matches!(reach("127.0.0.1", port), Reach::NoAnswer(ref why) if why == "connection refused")
        );
        assert!(matches!(
            reach("no-such-host.invalid", 4317),
            Reach::Unresolvable
        ));
    }
}
