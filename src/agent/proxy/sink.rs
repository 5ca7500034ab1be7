//! Where the proxies' records go: a bounded channel, so a request never waits for
//! telemetry, and one task that writes records as spans (batched into one
//! `ResourceSpans` with otel-run's resource, see [`SpanBatch`]) and the duration histograms, exported
//! every OTEL_METRIC_EXPORT_INTERVAL and when the proxies stop.
//!
//! A reverse-proxy thread writes its records into spans and histogram counts
//! itself, and sends them a batch at a time ([`Recorder::batch_on_this_thread`]):
//! waking the sink's thread for every request would cost more than the request
//! itself, and a record read on another core than the one that made it costs
//! that core's cache misses.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::{mpsc, watch};

use super::Config;
use super::metrics::Durations;
use super::route::Routes;
use super::span::Exchange;
use crate::agent::Recorder as AgentRecorder;
use crate::settings::otlp::Signal;
use crate::telemetry::spans::{SpanBatch, Spans};
use crate::telemetry::{Limits, Telemetry};

/// Messages (a record, or a thread's batch of them) that may wait for the sink
/// task; beyond, their records are dropped and counted.
const CAPACITY: usize = 512;
/// A proxy thread sends what it wrote in batches of this many records, or after `LOCAL_DELAY`.
const LOCAL_BATCH: usize = 256;
const LOCAL_DELAY: Duration = Duration::from_millis(100);
/// Spans go to the export pipeline in batches of this many, or after `SPAN_DELAY`.
const SPAN_BATCH: usize = 512;
const SPAN_DELAY: Duration = Duration::from_millis(200);

/// What reaches the sink: records, or what a batching thread wrote of them.
enum Message {
    Records(Vec<Exchange>),
    Written(Box<Written>),
}

/// A batching thread's spans and histogram counts, of `records` records;
/// `last` at stop.
struct Written {
    spans: Option<Spans>,
    durations: Durations,
    records: usize,
    last: bool,
}

/// The proxies' handle on the sink: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    inner: Option<Arc<Channel>>,
    dropped: Arc<AtomicU64>,
}

struct Channel {
    tx: mpsc::Sender<Message>,
    writer: Writer,
    /// Threads batching their records, each of which sends a `last` batch at stop.
    batching: AtomicUsize,
    stop: watch::Receiver<bool>,
}

/// How records become spans and histogram counts, on whichever thread writes them.
struct Writer {
    traces: bool,
    metrics: bool,
    routes: Routes,
    redact_query: bool,
    resource: Resource,
    scope: InstrumentationScope,
    limits: Limits,
}

impl Writer {
    fn write(&self, exchange: Exchange, spans: &mut SpanBatch, durations: &mut Durations) {
        let route = match exchange.kind {
            super::span::Kind::Server => self.routes.find(exchange.uri.path()),
            super::span::Kind::Client => None,
        };
        if self.metrics {
            durations.add(&exchange, route);
        }
        if self.traces && exchange.context.sampled {
            exchange.write(route, self.redact_query, spans);
        }
    }

    fn spans(&self) -> SpanBatch {
        SpanBatch::new(&self.resource, &self.scope, self.limits)
    }
}

/// A batching thread's writing, not yet sent.
struct Local {
    channel: Arc<Channel>,
    spans: SpanBatch,
    durations: Durations,
    records: usize,
}

impl Local {
    fn take(&mut self, last: bool) -> Box<Written> {
        Box::new(Written {
            spans: (!self.spans.is_empty()).then(|| self.spans.take()),
            durations: self.durations.take(),
            records: std::mem::take(&mut self.records),
            last,
        })
    }
}

thread_local! {
    /// This thread's writing, and the channel it is for.
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
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
        let full = LOCAL.with_borrow_mut(|local| match local {
            Some(local) if Arc::ptr_eq(&local.channel, channel) => {
                channel
                    .writer
                    .write(exchange, &mut local.spans, &mut local.durations);
                local.records += 1;
                (local.records >= LOCAL_BATCH).then(|| Message::Written(local.take(false)))
            }
            _ => Some(Message::Records(vec![exchange])),
        });
        if let Some(message) = full {
            self.send(channel, message);
        }
    }

    fn send(&self, channel: &Channel, message: Message) {
        if let Err(e) = channel.tx.try_send(message) {
            let lost = match e.into_inner() {
                Message::Records(records) => records.len(),
                Message::Written(written) => written.records,
            };
            self.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        }
    }

    /// Makes the current thread write its records itself and send them in
    /// batches. The returned task, spawned on this thread's runtime, sends what
    /// waits every `LOCAL_DELAY`, and the rest when the sink stops.
    pub fn batch_on_this_thread(&self) -> Option<impl Future<Output = ()> + use<>> {
        let channel = self.inner.clone()?;
        channel.batching.fetch_add(1, Ordering::SeqCst);
        LOCAL.set(Some(Local {
            spans: channel.writer.spans(),
            durations: Durations::new(None),
            records: 0,
            channel: channel.clone(),
        }));
        let recorder = self.clone();
        Some(async move {
            let mut stop = channel.stop.clone();
            let mut tick = tokio::time::interval(LOCAL_DELAY);
            let take = |last| LOCAL.with_borrow_mut(|local| local.as_mut().map(|l| l.take(last)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Some(written) = take(false).filter(|w| w.records > 0) {
                            recorder.send(&channel, Message::Written(written));
                        }
                    }
                    _ = stop.wait_for(|stop| *stop) => break,
                }
            }
            // Later records go one by one; the last batch waits for room
            // rather than be lost.
            let last = take(true);
            LOCAL.set(None);
            if let Some(last) = last {
                let _ = channel.tx.send(Message::Written(last)).await;
            }
        })
    }
}

/// What the sink task needs besides its records.
pub struct Options {
    pub agent: Option<AgentRecorder>,
    pub config: Config,
    /// The resource and limits of the spans and histograms.
    pub telemetry: Telemetry,
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
    let agent = options.agent.as_ref();
    let writer = Writer {
        traces: agent.is_some_and(|a| a.exports(Signal::Traces)),
        metrics: agent.is_some_and(|a| a.exports(Signal::Metrics)),
        routes: options.config.routes.clone(),
        redact_query: options.config.redact_query,
        resource: options.telemetry.resource.clone(),
        scope: Telemetry::scope("otel-run/proxy"),
        limits: options.telemetry.limits,
    };
    let channel = Arc::new(Channel {
        tx,
        writer,
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
    let writer = &channel.writer;
    let mut durations = Durations::new(options.config.temporality.as_deref());
    let mut spans = writer.spans();
    let mut messages = Vec::with_capacity(64);
    let mut span_tick = tokio::time::interval(SPAN_DELAY);
    let mut metric_tick = tokio::time::interval(options.config.metric_interval);
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
            match message {
                Message::Records(batch) => {
                    for exchange in batch {
                        writer.write(exchange, spans, durations);
                    }
                }
                Message::Written(written) => {
                    if let Some(batch) = written.spans {
                        agent.spans(batch);
                    }
                    durations.merge(written.durations);
                    *lasts += usize::from(written.last);
                }
            }
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
                    agent.metrics(durations.export(&options.telemetry.resource));
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
        agent.metrics(durations.export(&options.telemetry.resource));
    }
}
