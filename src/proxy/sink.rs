//! Where the proxies' records go: a bounded channel, so a request never waits for
//! telemetry, and one task that writes records as spans (batched into one
//! `ResourceSpans` with otel-run's resource, see [`SpanBatch`]) and the duration histograms, exported
//! every OTEL_METRIC_EXPORT_INTERVAL and when the proxies stop.
//!
//! A reverse-proxy thread keeps its records and sends them a batch at a time
//! ([`Recorder::batch_on_this_thread`]): waking the sink's thread for every
//! request would cost more than the request itself.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::{mpsc, watch};

use super::metrics::Durations;
use super::route::Routes;
use super::span::Exchange;
use crate::agent::Recorder as AgentRecorder;
use crate::agent::process_span::Limits;
use crate::agent::spans::SpanBatch;
use crate::settings::otlp::Signal;

/// Messages (a record, or a thread's batch of them) that may wait for the sink
/// task; beyond, their records are dropped and counted.
const CAPACITY: usize = 512;
/// A proxy thread sends its records in batches of this many, or after `LOCAL_DELAY`.
const LOCAL_BATCH: usize = 128;
const LOCAL_DELAY: Duration = Duration::from_millis(100);
/// Spans go to the export pipeline in batches of this many, or after `SPAN_DELAY`.
const SPAN_BATCH: usize = 512;
const SPAN_DELAY: Duration = Duration::from_millis(200);

/// What reaches the sink: records, and a batching thread's last ones at stop.
enum Message {
    Records(Vec<Exchange>),
    Last(Vec<Exchange>),
}

/// The proxies' handle on the sink: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    inner: Option<Arc<Channel>>,
    dropped: Arc<AtomicU64>,
}

struct Channel {
    tx: mpsc::Sender<Message>,
    /// Threads batching their records, each of which sends `Last` at stop.
    batching: AtomicUsize,
    stop: watch::Receiver<bool>,
}

thread_local! {
    /// This thread's records not yet sent, and the channel they are for.
    static BATCH: RefCell<Option<(Arc<Channel>, Vec<Exchange>)>> = const { RefCell::new(None) };
}

impl Recorder {
    /// A recorder that records nothing.
    pub fn disabled() -> Recorder {
        Recorder {
            inner: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether anything is recorded at all; without, spans need not be built.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn record(&self, exchange: Exchange) {
        let Some(channel) = &self.inner else {
            return;
        };
        let full = BATCH.with_borrow_mut(|local| match local {
            Some((mine, batch)) if Arc::ptr_eq(mine, channel) => {
                batch.push(exchange);
                (batch.len() >= LOCAL_BATCH)
                    .then(|| std::mem::replace(batch, Vec::with_capacity(LOCAL_BATCH)))
            }
            _ => Some(vec![exchange]),
        });
        if let Some(batch) = full {
            self.send(channel, Message::Records(batch));
        }
    }

    fn send(&self, channel: &Channel, message: Message) {
        if let Err(e) = channel.tx.try_send(message) {
            let (Message::Records(lost) | Message::Last(lost)) = e.into_inner();
            self.dropped.fetch_add(lost.len() as u64, Ordering::Relaxed);
        }
    }

    /// Makes the current thread keep its records and send them in batches. The
    /// returned task, spawned on this thread's runtime, sends what waits every
    /// `LOCAL_DELAY`, and the rest when the sink stops.
    pub fn batch_on_this_thread(&self) -> Option<impl Future<Output = ()> + use<>> {
        let channel = self.inner.clone()?;
        channel.batching.fetch_add(1, Ordering::SeqCst);
        BATCH.set(Some((channel.clone(), Vec::with_capacity(LOCAL_BATCH))));
        let recorder = self.clone();
        Some(async move {
            let mut stop = channel.stop.clone();
            let mut tick = tokio::time::interval(LOCAL_DELAY);
            let take = || {
                BATCH.with_borrow_mut(|local| {
                    local
                        .as_mut()
                        .map(|(_, batch)| std::mem::replace(batch, Vec::with_capacity(LOCAL_BATCH)))
                        .unwrap_or_default()
                })
            };
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let batch = take();
                        if !batch.is_empty() {
                            recorder.send(&channel, Message::Records(batch));
                        }
                    }
                    _ = stop.wait_for(|stop| *stop) => break,
                }
            }
            // Later records go one by one; the last batch waits for room
            // rather than be lost.
            let last = take();
            BATCH.set(None);
            let _ = channel.tx.send(Message::Last(last)).await;
        })
    }
}

/// What the sink task needs besides its records.
pub struct Options {
    pub agent: Option<AgentRecorder>,
    pub resource: Resource,
    pub routes: Routes,
    pub redact_query: bool,
    pub metric_interval: Duration,
    /// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, if set.
    pub temporality: Option<String>,
    /// Limits applied to each span's attributes.
    pub limits: Limits,
}

/// The running sink; `stop` flushes it.
pub struct Sink {
    stop: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
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
            inner: None,
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let channel = Arc::new(Channel {
        tx,
        batching: AtomicUsize::new(0),
        stop: stop_rx,
    });
    let task = tokio::spawn(run(options, rx, channel.clone()));
    (
        Recorder {
            inner: Some(channel),
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
            let _ = stop.send(true);
            let _ = task.await;
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!("{dropped} proxy requests were not recorded: too many at once");
        }
    }
}

async fn run(options: Options, mut rx: mpsc::Receiver<Message>, channel: Arc<Channel>) {
    let Some(agent) = options.agent.clone() else {
        return;
    };
    let traces = agent.exports(Signal::Traces);
    let metrics = agent.exports(Signal::Metrics);
    let mut durations = Durations::new(options.temporality.as_deref());
    let scope = InstrumentationScope {
        name: "otel-run/proxy".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let mut spans = SpanBatch::new(&options.resource, &scope, options.limits);
    let mut messages = Vec::with_capacity(64);
    let mut span_tick = tokio::time::interval(SPAN_DELAY);
    let mut metric_tick = tokio::time::interval(options.metric_interval);
    metric_tick.tick().await;
    let mut stop = channel.stop.clone();
    let mut stopping = false;
    let mut lasts = 0;
    // How long, at stop, the threads' last records are waited for.
    let last_wait = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(last_wait);
    let flush_spans = |spans: &mut SpanBatch| {
        if !spans.is_empty() {
            agent.spans(spans.take());
        }
    };
    let receive = |messages: &mut Vec<Message>,
                   spans: &mut SpanBatch,
                   durations: &mut Durations,
                   lasts: &mut usize| {
        for message in messages.drain(..) {
            let batch = match message {
                Message::Records(batch) => batch,
                Message::Last(batch) => {
                    *lasts += 1;
                    batch
                }
            };
            take(&options, (traces, metrics), batch, spans, durations);
        }
    };
    // At stop, waits for every batching thread's last records.
    while !(stopping && lasts >= channel.batching.load(Ordering::SeqCst)) {
        tokio::select! {
            n = rx.recv_many(&mut messages, 64) => {
                if n == 0 {
                    break;
                }
                receive(&mut messages, &mut spans, &mut durations, &mut lasts);
                if spans.len() >= SPAN_BATCH {
                    flush_spans(&mut spans);
                }
            }
            _ = span_tick.tick() => flush_spans(&mut spans),
            _ = metric_tick.tick(), if !stopping => {
                if !durations.is_empty() {
                    agent.metrics(durations.export(&options.resource));
                }
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                last_wait
                    .as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            _ = &mut last_wait, if stopping => break,
        }
    }
    while let Ok(message) = rx.try_recv() {
        messages.push(message);
    }
    receive(&mut messages, &mut spans, &mut durations, &mut lasts);
    flush_spans(&mut spans);
    if !durations.is_empty() {
        agent.metrics(durations.export(&options.resource));
    }
}

/// Turns records into spans and histogram counts.
fn take(
    options: &Options,
    (traces, metrics): (bool, bool),
    batch: Vec<Exchange>,
    spans: &mut SpanBatch,
    durations: &mut Durations,
) {
    for exchange in batch {
        let route = match exchange.kind {
            super::span::Kind::Server => options.routes.find(exchange.uri.path()),
            super::span::Kind::Client => None,
        };
        if metrics {
            durations.add(&exchange, route);
        }
        if traces && exchange.context.sampled {
            exchange.write(route, options.redact_query, spans);
        }
    }
}
