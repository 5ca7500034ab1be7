//! One signal's export pipeline: a bounded queue, a batching worker, retries with
//! backoff, and counters of what was exported and dropped.
//!
//! Items are OTLP `Resource*` messages exactly as received (or as otel-run built
//! them), so each keeps its own resource and scope when forwarded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::export::{ExportError, Exporter, Payload};
use super::report::Reporter;

/// Batching settings of one pipeline.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub schedule_delay: Duration,
    pub max_queue: usize,
    pub max_batch: usize,
    /// Budget of one batch's export, retries included.
    pub export_timeout: Duration,
}

/// What happened to the items of a pipeline, counted in spans, data points or
/// log records.
#[derive(Debug, Default)]
pub struct Counters {
    pub exported: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_export_failed: AtomicU64,
    pub in_flight: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_export_failed: u64,
}

impl Totals {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_failed
    }
}

struct Queue<T> {
    items: VecDeque<T>,
    count: usize,
    closed: bool,
    /// Holds items to export without waiting for the schedule (see [`Pipeline::forward`]).
    urgent: bool,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    wake: Notify,
    config: BatchConfig,
    exporters: Vec<Exporter>,
    counters: Counters,
    shutting_down: AtomicBool,
    /// Ends the wait before retrying an unreachable endpoint when shutdown starts.
    stop: watch::Sender<bool>,
    reporter: Arc<Reporter>,
}

/// A handle to a running pipeline; clones feed the same queue.
pub struct Pipeline<T: Payload> {
    shared: Arc<Shared<T>>,
}

impl<T: Payload> Clone for Pipeline<T> {
    fn clone(&self) -> Self {
        Pipeline {
            shared: self.shared.clone(),
        }
    }
}

/// The worker of a pipeline; awaited at shutdown.
pub struct Worker(tokio::task::JoinHandle<()>);

impl<T: Payload> Pipeline<T> {
    /// Starts the batching worker on the current tokio runtime.
    pub fn start(
        config: BatchConfig,
        exporters: Vec<Exporter>,
        reporter: Arc<Reporter>,
    ) -> (Self, Worker) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                count: 0,
                closed: false,
                urgent: false,
            }),
            wake: Notify::new(),
            config,
            exporters,
            counters: Counters::default(),
            shutting_down: AtomicBool::new(false),
            stop: watch::channel(false).0,
            reporter,
        });
        let worker = tokio::spawn(run(shared.clone()));
        (Pipeline { shared }, Worker(worker))
    }

    /// Queues an item. Returns how many of its records were rejected because the
    /// queue is full (0 when accepted); those are counted as dropped.
    pub fn push(&self, item: T) -> u64 {
        let n = item.count();
        let mut queue = self.shared.queue.lock().expect("queue lock");
        if queue.closed || queue.count + n > self.shared.config.max_queue {
            drop(queue);
            self.drop_full(n);
            return n as u64;
        }
        queue.count += n;
        queue.items.push_back(item);
        let full = queue.count >= self.shared.config.max_batch;
        drop(queue);
        if full {
            self.shared.wake.notify_one();
        }
        0
    }

    /// Queues an item that was batched already, by the SDK that sent it, and has
    /// the worker export it at once: batching it again would only add the schedule
    /// delay to the SDK's own. Returns what [`Self::push`] returns.
    pub fn forward(&self, item: T) -> u64 {
        let rejected = self.push(item);
        if rejected == 0 {
            self.shared.queue.lock().expect("queue lock").urgent = true;
            self.shared.wake.notify_one();
        }
        rejected
    }

    /// Whether `n` more records fit now: a hint for a producer that can skip
    /// building what would be dropped ([`Self::push`] still checks).
    pub fn has_room(&self, n: usize) -> bool {
        let queue = self.shared.queue.lock().expect("queue lock");
        !queue.closed && queue.count + n <= self.shared.config.max_queue
    }

    /// Counts `n` records dropped because the queue was full.
    pub fn drop_full(&self, n: usize) {
        self.shared
            .counters
            .dropped_queue_full
            .fetch_add(n as u64, Ordering::Relaxed);
        self.shared.reporter.queue_full(T::SIGNAL);
    }

    /// Stops accepting items and exports what is queued; returns the totals once
    /// the queue is empty or `deadline` passed (what is left then counts as dropped).
    pub async fn shutdown(&self, worker: Worker, deadline: Instant) -> Totals {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        self.shared.stop.send_replace(true);
        self.shared.queue.lock().expect("queue lock").closed = true;
        self.shared.wake.notify_one();
        let mut handle = worker.0;
        if timeout(
            deadline.saturating_duration_since(Instant::now()),
            &mut handle,
        )
        .await
        .is_err()
        {
            handle.abort();
            let counters = &self.shared.counters;
            let left = self.shared.queue.lock().expect("queue lock").count as u64
                + counters.in_flight.swap(0, Ordering::Relaxed);
            counters
                .dropped_export_failed
                .fetch_add(left, Ordering::Relaxed);
            self.shared.reporter.flush_timed_out(T::SIGNAL, left);
        }
        self.totals()
    }

    pub fn totals(&self) -> Totals {
        let c = &self.shared.counters;
        Totals {
            exported: c.exported.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: c.dropped_export_failed.load(Ordering::Relaxed),
        }
    }
}

async fn run<T: Payload>(shared: Arc<Shared<T>>) {
    loop {
        let batch_due = Instant::now() + shared.config.schedule_delay;
        // Wait until a batch is full, forwarded items wait, the schedule delay
        // passed, or shutdown.
        loop {
            {
                let queue = shared.queue.lock().expect("queue lock");
                if queue.closed || queue.urgent || queue.count >= shared.config.max_batch {
                    break;
                }
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = sleep_until(batch_due) => break,
            }
        }
        let (batch, n, closed) = take_batch(&shared);
        if !batch.is_empty() {
            shared.counters.in_flight.store(n as u64, Ordering::Relaxed);
            let ok = export_with_retry(&shared, batch).await;
            let counter = if ok {
                &shared.counters.exported
            } else {
                &shared.counters.dropped_export_failed
            };
            counter.fetch_add(n as u64, Ordering::Relaxed);
            shared.counters.in_flight.store(0, Ordering::Relaxed);
        }
        if closed && shared.queue.lock().expect("queue lock").count == 0 {
            return;
        }
    }
}

/// Takes whole items until the batch size is reached (an item larger than a batch
/// goes alone).
fn take_batch<T: Payload>(shared: &Shared<T>) -> (Vec<T>, usize, bool) {
    let mut queue = shared.queue.lock().expect("queue lock");
    let mut batch = Vec::new();
    let mut n = 0;
    while let Some(front) = queue.items.front() {
        let size = front.count();
        if !batch.is_empty() && n + size > shared.config.max_batch {
            break;
        }
        n += size;
        batch.push(queue.items.pop_front().expect("front exists"));
    }
    queue.count -= n;
    // What a full batch left behind goes next, without waiting.
    queue.urgent &= !queue.items.is_empty();
    (batch, n, queue.closed)
}

/// Sends a batch to every exporter, retrying transient failures with exponential
/// backoff within the batch's budget. True when every exporter took it.
async fn export_with_retry<T: Payload>(shared: &Shared<T>, batch: Vec<T>) -> bool {
    let budget_end = Instant::now() + shared.config.export_timeout;
    let mut all_ok = true;
    for exporter in &shared.exporters {
        let mut backoff = Duration::from_millis(100);
        loop {
            let err = match exporter.export(&batch).await {
                Ok(()) => break,
                Err(err) => err,
            };
            let retry_after = match &err {
                ExportError::Retryable { retry_after, .. } => Some(retry_after.unwrap_or(backoff)),
                // Nothing listens: retry while running (a collector may be starting),
                // not while flushing at exit, where it would only delay the user.
                ExportError::Unreachable(_) if !shared.shutting_down.load(Ordering::Relaxed) => {
                    Some(backoff)
                }
                _ => None,
            };
            match retry_after {
                Some(wait) if Instant::now() + wait < budget_end => {
                    tracing::debug!(
                        "{} export failed, retrying in {wait:?}: {err}",
                        T::SIGNAL.name()
                    );
                    if matches!(err, ExportError::Unreachable(_)) {
                        // Shutdown ends the wait: the next failure then gives up.
                        let mut stop = shared.stop.subscribe();
                        tokio::select! {
                            _ = sleep(wait) => {}
                            _ = stop.wait_for(|stopping| *stopping) => {}
                        }
                    } else {
                        sleep(wait).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                _ => {
                    shared.reporter.export_failed(T::SIGNAL, exporter, &err);
                    all_ok = false;
                    break;
                }
            }
        }
    }
    all_ok
}

#[cfg(test)]
mod tests {
    //! The pipeline with the real OTLP/HTTP client against a scripted endpoint: a
    //! fake, because a real collector cannot be told to fail on demand.

    use std::sync::atomic::AtomicUsize;

    use axum::http::StatusCode;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use crate::agent::spans::Spans;

    use super::*;
    use crate::agent::export::otlp::Client;
    use crate::settings::otlp::{Protocol, Signal, Target};

    /// Answers each export with the next scripted status (200 once the script
    /// runs out) and counts the spans it accepted.
    struct FakeEndpoint {
        statuses: Mutex<VecDeque<StatusCode>>,
        requests: AtomicUsize,
        spans_accepted: AtomicUsize,
        batch_sizes: Mutex<Vec<usize>>,
    }

    async fn fake_endpoint(statuses: &[StatusCode]) -> (Arc<FakeEndpoint>, String) {
        let state = Arc::new(FakeEndpoint {
            statuses: Mutex::new(statuses.iter().copied().collect()),
            requests: AtomicUsize::new(0),
            spans_accepted: AtomicUsize::new(0),
            batch_sizes: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = handler_state.clone();
                async move {
                    state.requests.fetch_add(1, Ordering::SeqCst);
                    let status = state
                        .statuses
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or(StatusCode::OK);
                    if status == StatusCode::OK {
                        let request =
                            <ExportTraceServiceRequest as prost::Message>::decode(body).unwrap();
                        let n: usize = request
                            .resource_spans
                            .into_iter()
                            .map(|r| Spans::from(r).count())
                            .sum();
                        state.spans_accepted.fetch_add(n, Ordering::SeqCst);
                        state.batch_sizes.lock().unwrap().push(n);
                    }
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (state, url)
    }

    fn exporter(url: &str) -> Exporter {
        let target = Target {
            signal: Signal::Traces,
            url: url::Url::parse(url).unwrap(),
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            gzip: false,
            timeout: Duration::from_secs(2),
            certificate: None,
            client_key: None,
            client_certificate: None,
        };
        Exporter::Otlp(Box::new(Client::new(target).unwrap()))
    }

    fn spans(n: usize) -> Spans {
        Spans::Message(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("s{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn config(max_queue: usize, max_batch: usize) -> BatchConfig {
        BatchConfig {
            schedule_delay: Duration::from_secs(60),
            max_queue,
            max_batch,
            export_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_accepted() {
        let (endpoint, url) = fake_endpoint(&[
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ])
        .await;
        let (pipeline, worker) =
            Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
        assert_eq!(pipeline.push(spans(3)), 0);
        let totals = pipeline
            .shutdown(worker, Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(endpoint.requests.load(Ordering::SeqCst), 3);
        assert_eq!(endpoint.spans_accepted.load(Ordering::SeqCst), 3);
        assert_eq!(
            totals,
            Totals {
                exported: 3,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried_and_counted_as_dropped() {
        let (endpoint, url) = fake_endpoint(&[StatusCode::BAD_REQUEST]).await;
        let (pipeline, worker) =
            Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
        pipeline.push(spans(2));
        let totals = pipeline
            .shutdown(worker, Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
        assert_eq!(totals.dropped_export_failed, 2);
        assert_eq!(totals.exported, 0);
    }

    #[tokio::test]
    async fn a_full_queue_rejects_and_counts() {
        let (_endpoint, url) = fake_endpoint(&[]).await;
        let (pipeline, worker) =
            Pipeline::start(config(5, 100), vec![exporter(&url)], Arc::default());
        assert_eq!(pipeline.push(spans(4)), 0);
        assert_eq!(pipeline.push(spans(2)), 2, "4 + 2 exceeds the queue of 5");
        // A producer that asks first drops without building.
        assert!(!pipeline.has_room(2));
        pipeline.drop_full(2);
        assert!(pipeline.has_room(1));
        assert_eq!(pipeline.push(spans(1)), 0);
        let totals = pipeline
            .shutdown(worker, Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(
            totals,
            Totals {
                exported: 5,
                dropped_queue_full: 4,
                dropped_export_failed: 0
            }
        );
    }

    #[tokio::test]
    async fn a_full_batch_is_exported_without_waiting_for_the_schedule() {
        let (endpoint, url) = fake_endpoint(&[]).await;
        let (pipeline, worker) =
            Pipeline::start(config(100, 4), vec![exporter(&url)], Arc::default());
        pipeline.push(spans(2));
        pipeline.push(spans(2));
        let exported = async {
            while endpoint.spans_accepted.load(Ordering::SeqCst) < 4 {
                sleep(Duration::from_millis(10)).await;
            }
        };
        // The schedule delay is a minute: only a full batch explains an export now.
        timeout(Duration::from_secs(10), exported)
            .await
            .expect("the full batch was exported");
        pipeline.push(spans(3));
        pipeline
            .shutdown(worker, Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(*endpoint.batch_sizes.lock().unwrap(), vec![4, 3]);
    }

    #[tokio::test]
    async fn forwarded_items_are_exported_without_waiting_for_the_schedule() {
        let (endpoint, url) = fake_endpoint(&[]).await;
        let (pipeline, worker) =
            Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
        // otel-run's own span waits for the schedule (a minute) ...
        pipeline.push(spans(1));
        sleep(Duration::from_millis(200)).await;
        assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
        // ... until received spans arrive: those go at once, and it with them.
        assert_eq!(pipeline.forward(spans(2)), 0);
        let exported = async {
            while endpoint.spans_accepted.load(Ordering::SeqCst) < 3 {
                sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(Duration::from_secs(10), exported)
            .await
            .expect("the forwarded spans were exported before the schedule");
        pipeline.forward(spans(1));
        pipeline
            .shutdown(worker, Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(*endpoint.batch_sizes.lock().unwrap(), vec![3, 1]);
    }

    #[tokio::test]
    async fn the_flush_at_exit_gives_up_at_its_deadline() {
        let always_busy = vec![StatusCode::SERVICE_UNAVAILABLE; 1000];
        let (_endpoint, url) = fake_endpoint(&always_busy).await;
        let (pipeline, worker) =
            Pipeline::start(config(100, 10), vec![exporter(&url)], Arc::default());
        pipeline.push(spans(3));
        let totals = pipeline
            .shutdown(worker, Instant::now() + Duration::from_millis(300))
            .await;
        assert_eq!(totals.dropped_export_failed, 3);
        assert_eq!(totals.exported, 0);
    }
}
