//! One signal's export pipeline: a bounded queue, a batching worker, retries with
//! backoff, and counters of what was exported and dropped.
//!
//! Items are OTLP `Resource*` messages exactly as received (or as otel-run built
//! them), so each keeps its own resource and scope when forwarded.
//!
//! The queue is bounded twice: by records (`OTEL_BSP_MAX_QUEUE_SIZE`, the
//! specification's queue size) and by bytes, so that a few huge records cannot
//! fill memory. The bytes are those of the items queued and of the batch being
//! exported: the batch stays in memory until its export ends. A received item
//! counts for what it takes once decoded, even when it is held as the bytes
//! received (which are fewer): an exporter may decode it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::export::{ExportError, Exporter, Payload};
use super::report::Reporter;

/// Bytes each pipeline may hold: room for thousands of ordinary batches, and a
/// bound on what a sender that never stops, or a stuck exporter, can cost.
pub const MAX_QUEUE_BYTES: usize = 64 << 20;

/// Batching settings of one pipeline.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub schedule_delay: Duration,
    pub max_queue: usize,
    /// Bytes the queue and the batch being exported may hold.
    pub max_queue_bytes: usize,
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
    /// Received in a request over what a request may hold, and rejected.
    pub dropped_too_large: AtomicU64,
    /// Received without anything to forward (a metric without data), and rejected.
    pub dropped_empty: AtomicU64,
    pub in_flight: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_export_failed: u64,
    pub dropped_too_large: u64,
    pub dropped_empty: u64,
}

impl Totals {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_export_failed
            + self.dropped_too_large
            + self.dropped_empty
    }
}

/// Why [`Pipeline::offer`] did not queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No room now; there will be once the exporter catches up.
    Full,
    /// Shutting down: nothing more is exported.
    Closed,
}

/// What one request may hold: a request larger than the whole queue could
/// never be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub items: usize,
    pub bytes: usize,
}

struct Queue<T> {
    /// Each item with the bytes it is counted for.
    items: VecDeque<(T, usize)>,
    count: usize,
    /// Bytes of the items queued and of the batch being exported.
    bytes: usize,
    closed: bool,
    /// Holds received items, exported without waiting for the schedule (see [`Pipeline::offer`]).
    urgent: bool,
}

impl<T> Queue<T> {
    fn fits(&self, config: &BatchConfig, n: usize, bytes: usize) -> bool {
        !self.closed
            && self.count + n <= config.max_queue
            && self.bytes + bytes <= config.max_queue_bytes
    }
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    wake: Notify,
    config: BatchConfig,
    exporters: Vec<Exporter>,
    /// Per exporter: it does not take this signal, so nothing is sent to it.
    unsupported: Vec<AtomicBool>,
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
                bytes: 0,
                closed: false,
                urgent: false,
            }),
            wake: Notify::new(),
            config,
            unsupported: exporters.iter().map(|_| AtomicBool::new(false)).collect(),
            exporters,
            counters: Counters::default(),
            shutting_down: AtomicBool::new(false),
            stop: watch::channel(false).0,
            reporter,
        });
        let worker = tokio::spawn(run(shared.clone()));
        (Pipeline { shared }, Worker(worker))
    }

    /// Queues one of otel-run's own items. Returns how many of its records were
    /// rejected because the queue is full (0 when accepted); those are counted
    /// as dropped.
    pub fn push(&self, item: T) -> u64 {
        let (n, bytes) = (item.count(), item.encoded_len());
        match self.enqueue(vec![(item, bytes)], n, bytes, false) {
            Ok(()) => 0,
            Err(_) => {
                self.drop_full(n);
                n as u64
            }
        }
    }

    /// Queues all of a received request's items, each with the bytes it takes,
    /// or none of them: the sender is then told to retry, so nothing is counted.
    ///
    /// What was received was batched already, by the SDK that sent it: the worker
    /// exports it at once, since batching it again would only add the schedule
    /// delay to the SDK's own.
    pub fn offer(&self, items: Vec<(T, usize)>) -> Result<(), Refused> {
        let n = items.iter().map(|(item, _)| item.count()).sum();
        let bytes = items.iter().map(|(_, bytes)| bytes).sum();
        self.enqueue(items, n, bytes, true)
    }

    /// Queues `items` if they fit; `urgent` ones are exported without waiting
    /// for the schedule.
    fn enqueue(
        &self,
        items: Vec<(T, usize)>,
        n: usize,
        bytes: usize,
        urgent: bool,
    ) -> Result<(), Refused> {
        let mut queue = self.shared.queue.lock().expect("queue lock");
        if queue.closed {
            return Err(Refused::Closed);
        }
        if !queue.fits(&self.shared.config, n, bytes) {
            return Err(Refused::Full);
        }
        queue.count += n;
        queue.bytes += bytes;
        queue.items.extend(items);
        queue.urgent |= urgent;
        let wake = queue.urgent || queue.count >= self.shared.config.max_batch;
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Whether `n` more records of `bytes` fit now: a hint for a producer that
    /// can skip building (or reading) what would be refused; queuing still checks.
    pub fn has_room(&self, n: usize, bytes: usize) -> bool {
        let queue = self.shared.queue.lock().expect("queue lock");
        queue.fits(&self.shared.config, n, bytes)
    }

    /// The most one request may hold.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            items: self.shared.config.max_queue,
            bytes: self.shared.config.max_queue_bytes,
        }
    }

    /// Counts `n` received records dropped because their request held more
    /// than [`Self::bounds`].
    pub fn drop_too_large(&self, n: u64) {
        self.shared
            .counters
            .dropped_too_large
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` received records rejected because they hold nothing to
    /// forward.
    pub fn drop_empty(&self, n: u64) {
        self.shared
            .counters
            .dropped_empty
            .fetch_add(n, Ordering::Relaxed);
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
            dropped_too_large: c.dropped_too_large.load(Ordering::Relaxed),
            dropped_empty: c.dropped_empty.load(Ordering::Relaxed),
        }
    }
}

async fn run<T: Payload>(shared: Arc<Shared<T>>) {
    loop {
        let batch_due = Instant::now() + shared.config.schedule_delay;
        // Wait until a batch is full, received items wait, the schedule delay
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
        let (batch, n, bytes, closed) = take_batch(&shared);
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
            shared.queue.lock().expect("queue lock").bytes -= bytes;
        }
        if closed && shared.queue.lock().expect("queue lock").count == 0 {
            return;
        }
    }
}

/// Takes whole items until the batch size is reached (an item larger than a batch
/// goes alone): the batch, its records and bytes, and whether the queue is closed.
/// The bytes stay counted until the export ends.
fn take_batch<T: Payload>(shared: &Shared<T>) -> (Vec<T>, usize, usize, bool) {
    let mut queue = shared.queue.lock().expect("queue lock");
    let mut batch = Vec::new();
    let (mut n, mut bytes) = (0, 0);
    while let Some((front, _)) = queue.items.front() {
        let size = front.count();
        if !batch.is_empty() && n + size > shared.config.max_batch {
            break;
        }
        let (item, item_bytes) = queue.items.pop_front().expect("front exists");
        n += size;
        bytes += item_bytes;
        batch.push(item);
    }
    queue.count -= n;
    // What a full batch left behind goes next, without waiting.
    queue.urgent &= !queue.items.is_empty();
    (batch, n, bytes, queue.closed)
}

/// Sends a batch to every exporter, retrying transient failures with exponential
/// backoff within the batch's budget. True when every exporter took it.
async fn export_with_retry<T: Payload>(shared: &Shared<T>, batch: Vec<T>) -> bool {
    let budget_end = Instant::now() + shared.config.export_timeout;
    let mut all_ok = true;
    for (exporter, unsupported) in shared.exporters.iter().zip(&shared.unsupported) {
        if unsupported.load(Ordering::Relaxed) {
            all_ok = false;
            continue;
        }
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
                    if matches!(err, ExportError::Unsupported(_)) {
                        unsupported.store(true, Ordering::Relaxed);
                    }
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
mod tests;
