//! Where the proxies' records go: a bounded channel, so a request never waits for
//! telemetry, and one task that turns records into spans (batched into one
//! `ResourceSpans` with otel-run's resource) and the duration histograms, exported
//! every OTEL_METRIC_EXPORT_INTERVAL and when the proxies stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::{mpsc, oneshot};

use super::metrics::Durations;
use super::route::Routes;
use super::span::Exchange;
use crate::agent::Recorder as AgentRecorder;
use crate::settings::otlp::Signal;

/// Records that may wait for the sink task; beyond, they are dropped and counted.
const CAPACITY: usize = 16384;
/// Spans go to the export pipeline in batches of this many, or after `SPAN_DELAY`.
const SPAN_BATCH: usize = 512;
const SPAN_DELAY: Duration = Duration::from_millis(200);

/// The proxies' handle on the sink: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Exchange>>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder that records nothing.
    pub fn disabled() -> Recorder {
        Recorder {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether anything is recorded at all; without, spans need not be built.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, exchange: Exchange) {
        if let Some(tx) = &self.tx
            && tx.try_send(exchange).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the sink task needs besides its records.
pub struct Options {
    pub agent: Option<AgentRecorder>,
    pub resource: Resource,
    pub routes: Routes,
    pub redact_query: bool,
    pub metric_interval: Duration,
    /// Limits applied to each span's attributes.
    pub limit: Box<dyn Fn(Span) -> Span + Send>,
}

/// The running sink; `stop` flushes it.
pub struct Sink {
    stop: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    dropped: Arc<AtomicU64>,
}

/// Starts the sink task on the current runtime.
pub fn start(options: Options) -> (Recorder, Sink) {
    let dropped = Arc::new(AtomicU64::new(0));
    let wanted = options
        .agent
        .as_ref()
        .is_some_and(|a| a.exports(Signal::Traces) || a.exports(Signal::Metrics));
    if !wanted {
        let recorder = Recorder {
            tx: None,
            dropped: dropped.clone(),
        };
        return (
            recorder,
            Sink {
                stop: None,
                dropped,
            },
        );
    }
    let (tx, rx) = mpsc::channel(CAPACITY);
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(options, rx, stop_rx));
    (
        Recorder {
            tx: Some(tx),
            dropped: dropped.clone(),
        },
        Sink {
            stop: Some((stop_tx, task)),
            dropped,
        },
    )
}

impl Sink {
    /// Flushes what was recorded into the agent's pipelines.
    pub async fn stop(mut self) {
        if let Some((stop, task)) = self.stop.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!("{dropped} proxy requests were not recorded: too many at once");
        }
    }
}

async fn run(options: Options, mut rx: mpsc::Receiver<Exchange>, mut stop: oneshot::Receiver<()>) {
    let Some(agent) = options.agent.clone() else {
        return;
    };
    let traces = agent.exports(Signal::Traces);
    let metrics = agent.exports(Signal::Metrics);
    let mut durations = Durations::default();
    let mut spans: Vec<Span> = Vec::new();
    let mut batch = Vec::with_capacity(256);
    let mut span_tick = tokio::time::interval(SPAN_DELAY);
    let mut metric_tick = tokio::time::interval(options.metric_interval);
    metric_tick.tick().await;
    let flush_spans = |spans: &mut Vec<Span>| {
        if !spans.is_empty() {
            agent.spans(resource_spans(&options.resource, std::mem::take(spans)));
        }
    };
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                take(&options, (traces, metrics), &mut batch, &mut spans, &mut durations);
                if spans.len() >= SPAN_BATCH {
                    flush_spans(&mut spans);
                }
            }
            _ = span_tick.tick() => flush_spans(&mut spans),
            _ = metric_tick.tick() => {
                if !durations.is_empty() {
                    agent.metrics(durations.export(&options.resource));
                }
            }
            _ = &mut stop => break,
        }
    }
    while let Ok(exchange) = rx.try_recv() {
        batch.push(exchange);
    }
    take(
        &options,
        (traces, metrics),
        &mut batch,
        &mut spans,
        &mut durations,
    );
    flush_spans(&mut spans);
    if !durations.is_empty() {
        agent.metrics(durations.export(&options.resource));
    }
}

/// Turns records into spans and histogram counts.
fn take(
    options: &Options,
    (traces, metrics): (bool, bool),
    batch: &mut Vec<Exchange>,
    spans: &mut Vec<Span>,
    durations: &mut Durations,
) {
    for exchange in batch.drain(..) {
        let route = match exchange.kind {
            super::span::Kind::Server => options.routes.find(exchange.uri.path()),
            super::span::Kind::Client => None,
        };
        if metrics {
            durations.add(&exchange, route);
        }
        if traces && exchange.context.sampled {
            spans.push((options.limit)(
                exchange.to_span(route, options.redact_query),
            ));
        }
    }
}

fn resource_spans(resource: &Resource, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(resource.clone()),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "otel-run/proxy".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}
