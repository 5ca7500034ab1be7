//! The built-in trace viewer (`otel-run agent --ui`, `otel-run --ui -- COMMAND`):
//! a bounded store of what the agent receives, a query API that answers
//! Jaeger's paths with Jaeger's JSON, and a web UI whose assets are embedded
//! in the binary.
//!
//! The API, which the UI in `ui/` reads:
//! - Jaeger's query API: `/api/services`, `/api/services/{service}/operations`,
//!   `/api/traces?service=&operation=&tags=&minDuration=&maxDuration=&limit=&start=&end=`,
//!   `/api/traces/{traceID}`, each answering `{"data": ..., "total", "limit",
//!   "offset", "errors"}` as Jaeger does. Span kind, status and the error mark
//!   are tags (`span.kind`, `otel.status_code`, `otel.status_description`,
//!   `error`), as Jaeger writes them for OTLP spans; span events are `logs`;
//!   the resource is the trace's `processes`.
//!   A bad query answers 400 and an unknown trace 404, with the message in
//!   `errors` as Jaeger's do. `/api/operations?service=&spanKind=` answers
//!   `[{"name", "spanKind"}]` as Jaeger's does too.
//! - otel-run's own, under `/api/otel-run/`: `summary` (what the store holds and
//!   has evicted: `traces`, `spans`, `logs`, `bytes`, `received_spans` (every
//!   span ever stored: a change means new spans), `max_spans`, `max_bytes`,
//!   `evicted_traces`, `evicted_spans`, `evicted_logs`, `rejected_spans`,
//!   `metric_series`, `dropped_metric_series`; a plain object), `logs?traceID=`
//!   (the logs of one trace, in Jaeger's envelope, each `{timestamp,
//!   observedTimestamp, severityText, severityNumber, body, attributes, traceID,
//!   spanID, serviceName, scope}`, times in microseconds; without `traceID`, the
//!   latest logs of no trace) and `metrics` (every metric received, in Jaeger's
//!   envelope, each `{service, scope, name, description, unit, type, series}`,
//!   `type` one of `gauge`, `sum`, `histogram`, `exponential_histogram`,
//!   `summary`, each series `{attributes, time, value, history}`: `value` a
//!   number, or for histograms `{count, sum, min, max, bucketCounts,
//!   explicitBounds}`; `history` `[[time_us, value], ...]`, the latest 60
//!   points of a sum (its value) or histogram (its count)).
//! - Every other path is a file of the UI ([`assets::get`]); a path it does
//!   not have that is not under `/api/` is its `index.html`.

pub mod assets;
mod jaeger;
mod metrics;
mod persist;
mod query;
mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::export::{ExportError, Payload};
use store::{Limits, Store};

/// Where the viewer listens by default: Jaeger's UI port, so the users'
/// documents' `http://localhost:16686` opens it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:16686";

/// Bytes kept at most, whatever the spans' count: spans with large attributes
/// cannot take more than this.
pub const MAX_BYTES: usize = 512 << 20;

/// The viewer's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_spans: usize,
    pub max_bytes: usize,
    /// `--store PATH`: keep the store in this file across restarts.
    pub store: Option<PathBuf>,
}

/// Why the viewer did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve the viewer on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot use the store file `{path}`: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl crate::diag::Hint for Error {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Bind { .. } => "`--ui-listen ADDR` (OTEL_RUN_UI_LISTEN) serves it elsewhere, e.g. `127.0.0.1:16687`".into(),
            Error::Store { .. } => "`--store PATH` (OTEL_RUN_STORE) names another file, or leave it unset to keep traces in memory only".into(),
        })
    }
}

/// After a run's command has exited: keep serving until Ctrl-C when stdout is
/// a terminal (someone is there to look), and return at once otherwise (a
/// script or CI must not hang).
pub fn hold_after_exit(url: &str) {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return;
    }
    crate::diag::notice(&format!(
        "the command has exited; the trace viewer stays on {url} until Ctrl-C"
    ));
    if let Err(e) = wait_for_stop() {
        tracing::warn!("cannot wait for Ctrl-C ({e}): the viewer stops with the command");
    }
}

/// The write end of the pipe the stopping signals are told through.
static STOP_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_stop(_: libc::c_int) {
    let fd = STOP_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; a full pipe only loses a wake-up
    // that is already pending.
    unsafe {
        libc::write(fd, b"x".as_ptr().cast(), 1);
    }
}

/// Blocks until SIGINT, SIGTERM or SIGHUP, then gives them their default
/// action back. Its own handlers, not the launcher's `signal_hook` ones: those
/// were reset behind `signal_hook`'s back when the command exited, and it
/// would not install them again.
fn wait_for_stop() -> std::io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    STOP_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    let mut signals = Vec::new();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_stop` only calls write(2). A signal otel-run was
        // started with ignored (nohup, a background job) stays ignored.
        unsafe {
            if libc::signal(signal, on_stop as *const () as libc::sighandler_t) == libc::SIG_IGN {
                libc::signal(signal, libc::SIG_IGN);
            } else {
                signals.push(signal);
            }
        }
    }
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a buffer of one.
        let n = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
        if n == 1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    // SAFETY: restoring default dispositions and closing the pipe's own fds.
    unsafe {
        for signal in signals {
            libc::signal(signal, libc::SIG_DFL);
        }
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    Ok(())
}

/// The store and its server: what the agent's pipelines export to.
pub struct Viewer {
    store: Arc<Store>,
    persist: Option<persist::Persist>,
    address: SocketAddr,
}

impl Viewer {
    /// Loads the store file if any, binds the server and serves it on the
    /// current tokio runtime.
    pub fn start(config: &Config) -> Result<Viewer, Error> {
        let store = Arc::new(Store::new(Limits {
            max_spans: config.max_spans.max(1),
            max_bytes: config.max_bytes,
        }));
        let persist = match &config.store {
            Some(path) => {
                Some(
                    persist::Persist::open(path, &store).map_err(|source| Error::Store {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let bind = |source| Error::Bind {
            addr: config.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        if !address.ip().is_loopback() {
            tracing::warn!(
                "the trace viewer on {address} serves every span it holds to any host that reaches it"
            );
        }
        let app = server::router(store.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Viewer {
            store,
            persist,
            address,
        })
    }

    /// The UI's address, for the one line that says where to open it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Keeps a batch of any signal, and appends its spans and logs to the file.
    pub async fn export<T: Payload>(&self, batch: &[T]) -> Result<(), ExportError> {
        let mut encoded = Vec::new();
        for item in batch {
            if let Some(spans) = item.as_spans() {
                self.store.add_spans(&spans);
            } else if let Some(logs) = item.as_logs() {
                self.store.add_logs(logs);
            } else if let Some(metrics) = item.as_metrics() {
                self.store.metrics.add(metrics);
                continue;
            }
            if self.persist.is_some() {
                encoded.push(item.encode_to_vec());
            }
        }
        if let Some(persist) = &self.persist
            && !encoded.is_empty()
        {
            let logs = T::SIGNAL == crate::settings::otlp::Signal::Logs;
            persist.append(logs, encoded).await.map_err(|e| {
                ExportError::Permanent(format!(
                    "cannot append to the store file `{}`: {e}",
                    persist.path().display()
                ))
            })?;
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!("the viewer on {}", self.url())
    }
}
