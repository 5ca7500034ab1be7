//! The agent: a tokio runtime inside otel-run, alive for the child's lifetime.
//!
//! It owns one export pipeline per signal whose exporter is not `none`, and the
//! local receiver the child's SDK exports to. Everything (the child's telemetry,
//! otel-run's own process span) leaves through those pipelines, and is flushed
//! when the child has exited, bounded by the export timeouts.

pub mod command_args;
pub mod export;
pub mod open_files;
pub mod pipeline;
pub mod process_span;
pub mod receiver;
pub mod report;
pub mod sdk_report;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::time::Instant;

use crate::settings::otlp::{Signal, Target};
use crate::settings::{Settings, vars};
use export::{Exporter, Payload};
use pipeline::{BatchConfig, MAX_QUEUE_BYTES, Pipeline, Totals, Worker};
use receiver::{Receiver, Sinks};
use report::Reporter;
use sdk_report::{SdkDrops, SdkReport};
use spans::Spans;

pub struct Agent {
    runtime: tokio::runtime::Runtime,
    sinks: Arc<Sinks>,
    workers: Workers,
    endpoint: Option<String>,
    receiver: Option<Arc<Receiver>>,
    reporter: Arc<Reporter>,
    sdk_report: Option<SdkReport>,
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

#[derive(Default)]
struct Workers {
    traces: Option<(Worker, Duration)>,
    metrics: Option<(Worker, Duration)>,
    logs: Option<(Worker, Duration)>,
}

impl Agent {
    /// Starts the pipelines, and the receiver when `receive` is set. Returns `None`
    /// when every exporter is `none`: there is nothing to do.
    pub fn start(settings: &Settings, receive: bool) -> std::io::Result<Option<Agent>> {
        let exports = |signal: Signal| {
            !settings.disabled()
                && !settings
                    .list(signal.exporter_var())
                    .iter()
                    .all(|e| e == "none")
        };
        if !Signal::ALL.into_iter().any(exports) {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otel-run-agent")
            .enable_all()
            .build()?;
        // Clients spawn their connection tasks on this runtime.
        let _guard = runtime.enter();
        let reporter = Arc::new(Reporter::default());
        let exporters = |signal: Signal| exporters(settings, signal);
        let (traces, metrics, logs) = (
            exporters(Signal::Traces),
            exporters(Signal::Metrics),
            exporters(Signal::Logs),
        );
        let mut workers = Workers::default();
        let sinks = Sinks {
            traces: start_pipeline(settings, traces, &reporter, &mut workers.traces),
            metrics: start_pipeline(settings, metrics, &reporter, &mut workers.metrics),
            logs: start_pipeline(settings, logs, &reporter, &mut workers.logs),
        };
        let sinks = Arc::new(sinks);
        let (endpoint, receiver) = if receive {
            let listener = runtime.block_on(receiver::bind())?;
            let endpoint = format!("http://{}", listener.local_addr()?);
            let max_connections = open_files::connection_budget(receiver::MAX_CONNECTIONS);
            let receiver =
                receiver::serve(listener, sinks.clone(), reporter.clone(), max_connections);
            tracing::debug!("receiving OTLP on {endpoint}");
            (Some(endpoint), Some(receiver))
        } else {
            (None, None)
        };
        drop(_guard);
        // Only a command that sends to the receiver reports its SDK's drops.
        // Without the file the run goes on; only those drops go unsaid.
        let sdk_report = receive
            .then(|| {
                SdkReport::create()
                    .inspect_err(|e| {
                        tracing::debug!("no file for the command's SDK to report drops to: {e}")
                    })
                    .ok()
            })
            .flatten();
        Ok(Some(Agent {
            runtime,
            sinks,
            workers,
            endpoint,
            receiver,
            reporter,
            sdk_report,
        }))
    }

    /// The receiver's base URL, for the child's OTEL_EXPORTER_OTLP_ENDPOINT.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The file the command's SDKs report their drops to, for OTEL_RUN_SDK_REPORT.
    pub fn sdk_report(&self) -> Option<&std::path::Path> {
        self.sdk_report.as_ref().map(SdkReport::path)
    }

    /// Whether a signal is exported at all.
    pub fn exports(&self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => self.sinks.traces.is_some(),
            Signal::Metrics => self.sinks.metrics.is_some(),
            Signal::Logs => self.sinks.logs.is_some(),
        }
    }

    /// Queues one of otel-run's own spans.
    pub fn record(&self, spans: ResourceSpans) {
        self.recorder().spans(spans);
    }

    /// A handle that records otel-run's own telemetry from any task.
    pub fn recorder(&self) -> Recorder {
        Recorder(self.sinks.clone())
    }

    /// The agent's runtime, for otel-run's own servers (the proxy).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Where spans made outside the agent's runtime go (the probes' reader
    /// thread); `None` when traces are not exported.
    pub fn traces_sink(&self) -> Option<SpanSink> {
        self.sinks.traces.clone().map(SpanSink)
    }

    /// Flushes every pipeline, each bounded by its export timeout, and reports
    /// what was exported and dropped, here and by the command's SDKs (which have
    /// all written their reports: the command has exited).
    pub fn finish(self) -> Finished {
        let Agent {
            runtime,
            sinks,
            workers,
            receiver,
            reporter,
            sdk_report,
            ..
        } = self;
        let totals = runtime.block_on(async {
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
        reporter.summary(&totals);
        if let Some(receiver) = receiver {
            reporter.connections_refused(receiver.refused_connections());
        }
        let sdk = sdk_report.map(|r| r.read()).unwrap_or_default();
        reporter.sdk_dropped(&sdk);
        Finished { totals, sdk }
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
    settings: &Settings,
    exporters: Vec<Exporter>,
    reporter: &Arc<Reporter>,
    worker_slot: &mut Option<(Worker, Duration)>,
) -> Option<Pipeline<T>> {
    if exporters.is_empty() {
        return None;
    }
    let config = batch_config(settings, T::SIGNAL);
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

/// Batching per signal: spans follow OTEL_BSP_*, logs OTEL_BLRP_*. Metrics arrive
/// already aggregated by the child's reader, so they are forwarded within a second.
fn batch_config(settings: &Settings, signal: Signal) -> BatchConfig {
    let ms = |var, default| {
        settings
            .millis(var)
            .unwrap_or(Duration::from_millis(default))
    };
    let n = |var, default| settings.count(var).unwrap_or(default).max(1) as usize;
    match signal {
        Signal::Traces => BatchConfig {
            schedule_delay: ms(&vars::BSP_SCHEDULE_DELAY, 5000),
            max_queue: n(&vars::BSP_MAX_QUEUE_SIZE, 2048),
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_batch: n(&vars::BSP_MAX_EXPORT_BATCH_SIZE, 512),
            export_timeout: ms(&vars::BSP_EXPORT_TIMEOUT, 30000),
        },
        Signal::Logs => BatchConfig {
            schedule_delay: ms(&vars::BLRP_SCHEDULE_DELAY, 1000),
            max_queue: n(&vars::BLRP_MAX_QUEUE_SIZE, 2048),
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_batch: n(&vars::BLRP_MAX_EXPORT_BATCH_SIZE, 512),
            export_timeout: ms(&vars::BLRP_EXPORT_TIMEOUT, 30000),
        },
        Signal::Metrics => BatchConfig {
            schedule_delay: Duration::from_secs(1),
            max_queue: 65536,
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_batch: 8192,
            export_timeout: ms(&vars::METRIC_EXPORT_TIMEOUT, 30000),
        },
    }
}

/// The exporters of a signal. One that cannot be built is left out with a warning:
/// the child still runs.
fn exporters(settings: &Settings, signal: Signal) -> Vec<Exporter> {
    settings
        .list(signal.exporter_var())
        .iter()
        .filter_map(|name| {
            let built = match name.as_str() {
                "otlp" => export::otlp::Client::new(Target::of(settings, signal))
                    .map(|c| Exporter::Otlp(Box::new(c)))
                    .map_err(|e| e.to_string()),
                "console" => {
                    let output = settings.text(&vars::CONSOLE_OUTPUT).unwrap_or("stdout");
                    export::console::Console::open(output)
                        .map(Exporter::Console)
                        .map_err(|e| format!("cannot open console output `{output}`: {e}"))
                }
                _ => return None,
            };
            built
                .inspect(|e| tracing::info!("exporting {} to {}", signal.name(), e.describe()))
                .map_err(|e| tracing::warn!("{} are not exported: {e}", signal.name()))
                .ok()
        })
        .collect()
}
