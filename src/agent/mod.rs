//! The agent: a tokio runtime inside otel-run, alive for the child's lifetime.
//!
//! It owns one export pipeline per signal whose exporter is not `none`, the
//! local receiver the child's SDK exports to, and the producers of otel-run's
//! own spans that feed those pipelines: the process span, the [`proxy`] and the
//! [`probes`]. Everything leaves through the pipelines, and is flushed when the
//! child has exited, bounded by the export timeouts. A run drives it all through
//! one [`session::Session`]; `otel-run agent` runs it alone ([`standalone`]),
//! receiving on the addresses it is given until it is stopped.

pub mod command_args;
pub mod export;
mod idle;
pub mod open_files;
pub mod pipeline;
pub mod probes;
pub mod process_span;
pub mod processes;
pub mod proxy;
pub mod receiver;
pub mod report;
pub mod sdk_report;
pub mod session;
pub mod standalone;
pub mod viewer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::time::Instant;

use crate::settings::otlp::{ExporterKind, Signal, Target};
use crate::settings::report::redact_url;
use crate::telemetry::spans::Spans;
use export::{Exporter, Payload};
use pipeline::{BatchConfig, Pipeline, Totals, Worker};
use receiver::{Receiver, Sinks};
use report::Reporter;
use sdk_report::{SdkDrops, SdkReport};

/// What the agent exports and how, resolved from the settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run the local receiver for the command's SDK (`--no-agent` turns it off).
    pub receive: bool,
    /// Per signal, in the order of [`Signal::ALL`].
    pub signals: [SignalConfig; 3],
    /// Where the console exporter writes.
    pub console_output: String,
    /// Lost telemetry fails the step (`--fail-on-export-error`).
    pub fail_on_export_error: bool,
    pub zipkin: export::zipkin::Config,
    pub prometheus: export::prometheus::Config,
    /// `--console-format tree`: spans printed as one tree per trace.
    pub console_tree: bool,
    /// `--ui`: keep every signal for the built-in viewer.
    pub viewer: Option<viewer::Config>,
}

/// One signal's exporters, OTLP target and batching.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    /// Empty when the signal is not exported.
    pub exporters: Vec<ExporterKind>,
    pub target: Target,
    pub batch: BatchConfig,
}

impl Config {
    pub fn signal(&self, signal: Signal) -> &SignalConfig {
        let i = Signal::ALL.iter().position(|s| *s == signal);
        &self.signals[i.expect("every signal is in ALL")]
    }

    /// Whether a signal has an exporter that is not `none`, or the viewer keeps it.
    pub fn exports(&self, signal: Signal) -> bool {
        self.viewer.is_some()
            || self
                .signal(signal)
                .exporters
                .iter()
                .any(|e| *e != ExporterKind::None)
    }
}

pub struct Agent {
    shared: Arc<Shared>,
    /// Waits for the receiver's first connection, until the agent has started.
    watcher: Option<idle::Watcher>,
    endpoint: Option<String>,
    sdk_report: Option<SdkReport>,
    /// Say the exit summary even when nothing was dropped: a standalone
    /// agent's user sees nothing else of what it forwarded.
    summarize: bool,
    /// Per signal of [`Signal::ALL`], whether it has an exporter.
    exported: [bool; 3],
}

/// What the agent starts from, and what runs once it has.
struct Shared {
    config: Config,
    /// The receiver's sockets: bound at once, served once the agent runs.
    listeners: Mutex<Vec<std::net::TcpListener>>,
    /// Each signal's exporters, made at once (their problems are said at the
    /// start), run once the agent runs.
    exporters: Mutex<Option<PerSignal>>,
    /// Started at the first thing to export (see [`idle`]); `None` inside
    /// when the runtime could not be made.
    running: OnceLock<Option<Running>>,
    /// The command has exited: a runtime started now only flushes, on the
    /// thread that waits for it (see [`Agent::record_at_exit`]).
    at_exit: AtomicBool,
}

/// The runtime, the pipelines and the receiver.
struct Running {
    runtime: tokio::runtime::Runtime,
    sinks: Arc<Sinks>,
    workers: Workers,
    receiver: Option<Arc<Receiver>>,
    reporter: Arc<Reporter>,
    /// Where the viewer's UI is served (`--ui`).
    viewer_url: Option<String>,
}

/// What was exported and dropped, once the agent has flushed.
pub struct Finished {
    /// The agent's own pipelines.
    pub totals: Vec<(Signal, Totals)>,
    /// What the command's SDKs dropped before sending.
    pub sdk: SdkDrops,
}

impl Finished {
    /// Items lost anywhere on the way.
    pub fn dropped(&self) -> u64 {
        self.totals.iter().map(|(_, t)| t.dropped()).sum::<u64>() + self.sdk.total()
    }
}

/// How long the flush waits for the receiver's connections to close: a
/// command's sockets close when it exits, but what it sent last may still be
/// on its way (or, when it started the agent just then, in the backlog).
const SETTLE: Duration = Duration::from_millis(250);

/// Each signal's exporters, in the order of [`Signal::ALL`].
type PerSignal = [Vec<Exporter>; 3];

#[derive(Default)]
struct Workers {
    traces: Option<(Worker, Duration)>,
    metrics: Option<(Worker, Duration)>,
    logs: Option<(Worker, Duration)>,
}

/// Where the agent's receiver listens.
#[derive(Debug, Clone, Copy)]
pub enum Listen<'a> {
    /// No receiver: only otel-run's own telemetry is exported.
    Nowhere,
    /// A loopback port the system picks, for a run's command.
    Ephemeral,
    /// The addresses `otel-run agent` was given, for other processes.
    At(&'a [SocketAddr]),
}

impl Listen<'_> {
    /// A run's receiver, unless `--no-agent` turned it off.
    pub fn ephemeral_if(receive: bool) -> Listen<'static> {
        if receive {
            Listen::Ephemeral
        } else {
            Listen::Nowhere
        }
    }
}

/// Why the agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error(transparent)]
    Bind(#[from] receiver::BindError),
    #[error(transparent)]
    Viewer(#[from] viewer::Error),
}

impl crate::diag::Hint for StartError {
    fn hint(&self) -> Option<String> {
        match self {
            StartError::Runtime(_) => None,
            StartError::Bind(e) => e.hint(),
            StartError::Viewer(e) => e.hint(),
        }
    }
}

impl Agent {
    /// Binds the receiver where `listen` says. Returns `None` when every
    /// exporter is `none`: there is nothing to do.
    ///
    /// The runtime, the exporters and the pipelines start at the first thing
    /// to export: the receiver's first connection, or the first of otel-run's
    /// own spans (the proxy and the probes ask for it as they start). A
    /// standalone agent, and a Prometheus exporter whose port must be open
    /// while the command runs, start at once.
    pub fn start(config: &Config, listen: Listen) -> Result<Option<Agent>, StartError> {
        if !Signal::ALL.into_iter().any(|s| config.exports(s)) {
            return Ok(None);
        }
        let addrs = match listen {
            Listen::Nowhere => &[][..],
            Listen::Ephemeral => &[receiver::EPHEMERAL][..],
            Listen::At(addrs) => addrs,
        };
        let listeners = addrs
            .iter()
            .map(|addr| receiver::bind(*addr))
            .collect::<Result<Vec<_>, _>>()?;
        // A run's command is told where its receiver is: the one port picked.
        let endpoint = match (listen, listeners.first()) {
            (Listen::Ephemeral, Some(listener)) => {
                Some(format!("http://{}", listener.local_addr()?))
            }
            _ => None,
        };
        for listener in &listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::debug!("receiving OTLP on http://{addr}");
            }
        }
        let waits = !listeners.is_empty();
        // A scrape endpoint is served on the runtime, from the start.
        let prometheus = Signal::ALL.into_iter().any(|s| {
            config
                .signal(s)
                .exporters
                .contains(&ExporterKind::Prometheus)
        });
        // So is the viewer's UI, whose address is printed at the start.
        let eager = matches!(listen, Listen::At(_)) || prometheus || config.viewer.is_some();
        let shared = Arc::new(Shared {
            config: config.clone(),
            listeners: Mutex::new(listeners),
            exporters: Mutex::new((!eager).then(|| Signal::ALL.map(|s| exporters(config, s)))),
            running: OnceLock::new(),
            at_exit: AtomicBool::new(false),
        });
        let mut watcher = None;
        // What has exporters: the running pipelines, or the exporters made
        // now (read before the watcher may take them).
        let exported = if eager {
            let listeners =
                std::mem::take(&mut *shared.listeners.lock().unwrap_or_else(|e| e.into_inner()));
            let running = Running::start(config, None, listeners, Flavor::Serving)?;
            let exported = Signal::ALL.map(|s| Recorder(running.sinks.clone()).exports(s));
            let _ = shared.running.set(Some(running));
            exported
        } else {
            let pending = shared.exporters.lock().unwrap_or_else(|e| e.into_inner());
            let pending = pending.as_ref();
            [0, 1, 2].map(|i| pending.is_some_and(|p| !p[i].is_empty()))
        };
        if !eager && waits {
            let listeners = shared.listeners.lock().unwrap_or_else(|e| e.into_inner());
            let on_connection = {
                let shared = shared.clone();
                move || {
                    shared.running();
                }
            };
            match idle::Watcher::spawn(&listeners, on_connection) {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::debug!("no thread to wait for a connection ({e}): serving at once");
                    drop(listeners);
                    shared.running();
                }
            }
        }
        // Only a run's command, which sends to the receiver, reports its SDK's
        // drops. Without the file the run goes on; only those drops go unsaid.
        let sdk_report = matches!(listen, Listen::Ephemeral)
            .then(|| {
                SdkReport::create()
                    .inspect_err(|e| {
                        tracing::debug!("no file for the command's SDK to report drops to: {e}")
                    })
                    .ok()
            })
            .flatten();
        Ok(Some(Agent {
            shared,
            watcher,
            endpoint,
            sdk_report,
            summarize: matches!(listen, Listen::At(_)),
            exported,
        }))
    }

    /// The receiver's base URL, for the child's OTEL_EXPORTER_OTLP_ENDPOINT.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Where the viewer's UI is served (`--ui`).
    pub fn viewer_url(&self) -> Option<&str> {
        let running = self.shared.running.get()?.as_ref()?;
        running.viewer_url.as_deref()
    }

    /// The file the command's SDKs report their drops to, for OTEL_RUN_SDK_REPORT.
    pub fn sdk_report(&self) -> Option<&std::path::Path> {
        self.sdk_report.as_ref().map(SdkReport::path)
    }

    /// Whether a signal is exported at all: an exporter of it could be made
    /// (or the viewer keeps it).
    pub fn exports(&self, signal: Signal) -> bool {
        let i = Signal::ALL.iter().position(|s| *s == signal);
        self.exported[i.expect("every signal is in ALL")]
    }

    /// Queues one of otel-run's own spans.
    pub fn record(&self, spans: ResourceSpans) {
        if self.exports(Signal::Traces) {
            self.recorder().spans(spans);
        }
    }

    /// Queues the last of otel-run's own spans, once the command has exited.
    /// An agent that nothing has started yet starts only to flush them: on a
    /// runtime of the calling thread, which is the one that flushes.
    pub fn record_at_exit(&self, spans: ResourceSpans) {
        self.shared.at_exit.store(true, Ordering::Relaxed);
        self.record(spans);
    }

    /// A handle that records otel-run's own telemetry from any task.
    pub fn recorder(&self) -> Recorder {
        let sinks = self.shared.running().map(|r| r.sinks.clone());
        Recorder(sinks.unwrap_or_default())
    }

    /// The agent's runtime, for otel-run's own servers (the proxy); `None`
    /// when it could not be made.
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.shared.running().map(|r| r.runtime.handle().clone())
    }

    /// Where spans made outside the agent's runtime go (the probes' reader
    /// thread); `None` when traces are not exported.
    pub fn traces_sink(&self) -> Option<SpanSink> {
        if !self.exports(Signal::Traces) {
            return None;
        }
        let running = self.shared.running()?;
        running.sinks.traces.clone().map(SpanSink)
    }

    /// Flushes every pipeline, each bounded by its export timeout, and reports
    /// what was exported and dropped, here and by the command's SDKs (which have
    /// all written their reports: the command has exited).
    pub fn finish(self) -> Finished {
        let Agent {
            shared,
            watcher,
            sdk_report,
            summarize,
            ..
        } = self;
        // After this, nothing else holds `shared`.
        if let Some(watcher) = watcher
            && watcher.stop()
        {
            // A connection came as the watcher stopped: it is served, and
            // what it sends flushed with the rest.
            shared.running();
        }
        let running = Arc::into_inner(shared).and_then(|s| s.running.into_inner().flatten());
        let (totals, reporter) = match running {
            Some(running) => running.finish(),
            // Nothing was ever sent or recorded: nothing to flush.
            None => (Vec::new(), Arc::new(Reporter::default())),
        };
        reporter.summary(&totals, summarize);
        let sdk = sdk_report.map(|r| r.read()).unwrap_or_default();
        reporter.sdk_dropped(&sdk);
        Finished { totals, sdk }
    }
}

impl Shared {
    /// The running agent, started now if it was not.
    fn running(&self) -> Option<&Running> {
        self.running
            .get_or_init(|| {
                let listeners =
                    std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
                let exporters = self
                    .exporters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                let flavor = if self.at_exit.load(Ordering::Relaxed) {
                    Flavor::Flushing
                } else {
                    Flavor::Serving
                };
                Running::start(&self.config, exporters, listeners, flavor)
                    .inspect_err(|e| {
                        tracing::warn!(
                            "cannot start the local agent ({e}); telemetry is not exported"
                        )
                    })
                    .ok()
            })
            .as_ref()
    }
}

/// What the agent's runtime is started for.
#[derive(Clone, Copy)]
enum Flavor {
    /// Serving while the command runs: threads of its own.
    Serving,
    /// Only flushing, after the command has exited: the flush drives it on
    /// the thread that waits, so no thread is started for it.
    Flushing,
}

impl Running {
    /// Starts the runtime, and on it the pipelines of `exporters` (made now
    /// when `None`) and the receiver on `listeners`.
    fn start(
        config: &Config,
        exporters: Option<PerSignal>,
        listeners: Vec<std::net::TcpListener>,
        flavor: Flavor,
    ) -> Result<Running, StartError> {
        let runtime = match flavor {
            Flavor::Serving => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("otel-run-agent")
                .enable_all()
                .build()?,
            Flavor::Flushing => tokio::runtime::Builder::new_current_thread()
                .thread_name("otel-run-agent")
                .enable_all()
                .build()?,
        };
        // Clients spawn their connection tasks on this runtime.
        let _guard = runtime.enter();
        let reporter = Arc::new(Reporter::default());
        let mut per_signal =
            exporters.unwrap_or_else(|| Signal::ALL.map(|s| self::exporters(config, s)));
        let viewer = match &config.viewer {
            Some(at) => Some(Arc::new(viewer::Viewer::start(at)?)),
            None => None,
        };
        if let Some(viewer) = &viewer {
            crate::diag::notice(&format!("the trace viewer is on {}", viewer.url()));
            for exporters in &mut per_signal {
                exporters.push(Exporter::Viewer(viewer.clone()));
            }
        }
        let [traces, metrics, logs] = per_signal;
        let mut workers = Workers::default();
        let sinks = Sinks {
            traces: start_pipeline(config, traces, &reporter, &mut workers.traces),
            metrics: start_pipeline(config, metrics, &reporter, &mut workers.metrics),
            logs: start_pipeline(config, logs, &reporter, &mut workers.logs),
        };
        let sinks = Arc::new(sinks);
        let receiver = (!listeners.is_empty()).then(|| {
            let max_connections = open_files::connection_budget(receiver::MAX_CONNECTIONS);
            receiver::serve(listeners, sinks.clone(), reporter.clone(), max_connections)
        });
        drop(_guard);
        Ok(Running {
            runtime,
            sinks,
            workers,
            receiver,
            reporter,
            viewer_url: viewer.map(|v| v.url()),
        })
    }

    fn finish(self) -> (Vec<(Signal, Totals)>, Arc<Reporter>) {
        let Running {
            runtime,
            sinks,
            workers,
            receiver,
            reporter,
            ..
        } = self;
        let totals = runtime.block_on(async {
            if let Some(receiver) = &receiver {
                receiver.settle(SETTLE).await;
            }
            let (t, m, l) = tokio::join!(
                flush(sinks.traces.as_ref(), workers.traces),
                flush(sinks.metrics.as_ref(), workers.metrics),
                flush(sinks.logs.as_ref(), workers.logs),
            );
            [(Signal::Traces, t), (Signal::Metrics, m), (Signal::Logs, l)]
                .into_iter()
                .filter_map(|(s, t)| t.map(|t| (s, t)))
                .collect::<Vec<_>>()
        });
        // Connections still open are not worth waiting for.
        runtime.shutdown_background();
        if let Some(receiver) = receiver {
            reporter.connections_refused(receiver.refused_connections());
        }
        (totals, reporter)
    }
}

/// The traces queue, for a producer on its own thread. Never blocks: a full
/// queue drops and counts, and spans that would be dropped are not even built.
pub struct SpanSink(Pipeline<Spans>);

impl SpanSink {
    /// Queues the `n` spans `build` makes, or counts them dropped.
    pub fn push_with(&self, n: usize, build: impl FnOnce() -> ResourceSpans) {
        if self.0.has_room(n, 0) {
            self.0.push(build().into());
        } else {
            self.0.drop_full(n);
        }
    }
}

/// Records otel-run's own spans and metrics into the agent's pipelines; cheap to
/// clone, usable from any thread. A full queue drops (and counts) what it cannot take.
#[derive(Clone)]
pub struct Recorder(Arc<Sinks>);

impl Recorder {
    pub fn spans(&self, spans: impl Into<Spans>) {
        if let Some(pipeline) = &self.0.traces {
            pipeline.push(spans.into());
        }
    }

    pub fn metrics(&self, metrics: ResourceMetrics) {
        if let Some(pipeline) = &self.0.metrics {
            pipeline.push(metrics);
        }
    }

    /// Whether a signal is exported at all.
    pub fn exports(&self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => self.0.traces.is_some(),
            Signal::Metrics => self.0.metrics.is_some(),
            Signal::Logs => self.0.logs.is_some(),
        }
    }
}

async fn flush<T: Payload>(
    pipeline: Option<&Pipeline<T>>,
    worker: Option<(Worker, Duration)>,
) -> Option<Totals> {
    let (pipeline, (worker, timeout)) = (pipeline?, worker?);
    Some(pipeline.shutdown(worker, Instant::now() + timeout).await)
}

fn start_pipeline<T: Payload>(
    config: &Config,
    exporters: Vec<Exporter>,
    reporter: &Arc<Reporter>,
    worker_slot: &mut Option<(Worker, Duration)>,
) -> Option<Pipeline<T>> {
    if exporters.is_empty() {
        return None;
    }
    let config = config.signal(T::SIGNAL).batch.clone();
    // The flush at exit ends within the exporters' own timeout: a backend that
    // never answers, or answers 503 forever, cannot hold otel-run longer.
    let exporters_timeout = exporters.iter().filter_map(Exporter::timeout).max();
    let timeout = config
        .export_timeout
        .min(exporters_timeout.unwrap_or(config.export_timeout));
    let (pipeline, worker) = Pipeline::start(config, exporters, reporter.clone());
    *worker_slot = Some((worker, timeout));
    Some(pipeline)
}

/// The exporters of a signal. One that cannot be built is left out with a warning:
/// the child still runs.
fn exporters(config: &Config, signal: Signal) -> Vec<Exporter> {
    let of_signal = config.signal(signal);
    let mut kinds = of_signal.exporters.clone();
    if kinds.contains(&ExporterKind::Jaeger) {
        tracing::warn!(
            "`jaeger`: Jaeger takes OTLP natively (and OpenTelemetry's Jaeger exporter is deprecated): spans go to {} as OTLP",
            redact_url(of_signal.target.url.as_str())
        );
    }
    // `jaeger` and `otlp` name one OTLP exporter: spans are sent once.
    let mut otlp_seen = false;
    kinds.retain(|kind| !kind.is_otlp() || !std::mem::replace(&mut otlp_seen, true));
    kinds
        .iter()
        .filter_map(|kind| {
            let built = match kind {
                ExporterKind::Otlp | ExporterKind::Jaeger => {
                    export::otlp::Client::new(of_signal.target.clone())
                        .map(|c| Exporter::Otlp(Box::new(c)))
                        .map_err(|e| e.to_string())
                }
                ExporterKind::Zipkin => export::zipkin::Client::new(config.zipkin.clone())
                    .map(Exporter::Zipkin)
                    .map_err(|e| format!("cannot make the Zipkin client: {e}")),
                ExporterKind::Prometheus => {
                    let at = &config.prometheus;
                    export::prometheus::Scrape::bind(at)
                        .map(Exporter::Prometheus)
                        .map_err(|e| {
                            format!(
                                "cannot serve a Prometheus scrape endpoint on {}:{} ({e})\nhint: `--exporter-prometheus-port` (OTEL_EXPORTER_PROMETHEUS_PORT) chooses another port",
                                at.host, at.port
                            )
                        })
                }
                ExporterKind::Console => {
                    let output = &config.console_output;
                    export::console::Console::open(output, config.console_tree)
                        .map(Exporter::Console)
                        .map_err(|e| format!("cannot open console output `{output}`: {e}"))
                }
                ExporterKind::None => return None,
            };
            built
                .inspect(|e| tracing::info!("exporting {} to {}", signal.name(), e.describe()))
                .map_err(|e| tracing::warn!("{} are not exported: {e}", signal.name()))
                .ok()
        })
        .collect()
}
