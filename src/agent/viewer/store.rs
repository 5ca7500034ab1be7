//! The viewer's store: the traces the agent has seen, each span kept with its
//! resource and scope, and the logs of each trace.
//!
//! It is bounded twice, by spans and by bytes (the protobuf size of what is
//! kept, a close lower bound of the memory it takes), and evicts whole traces,
//! oldest first (by when their first span arrived): a trace is never shown with
//! some of its spans missing because of the bound. What is evicted is counted
//! for `/api/otel-run/summary`. Resources and scopes are shared by the spans of
//! one message, and a span is kept in protobuf, with the few fields a search
//! reads beside it: it costs about its size on the wire, a fraction of its
//! decoded form, and is decoded only to be shown.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;

use super::metrics::Metrics;

pub type TraceId = [u8; 16];

/// What the store may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_spans: usize,
    pub max_bytes: usize,
}

/// Logs kept that belong to no trace, newest last.
const UNTRACED_LOGS: usize = 1000;

/// One stored span, with what it shares with the other spans of its message.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub item: T,
    pub resource: Arc<Resource>,
    pub scope: Arc<InstrumentationScope>,
}

/// One span, encoded, with what a search reads without decoding it.
#[derive(Debug, Clone)]
pub struct SpanEntry {
    encoded: Box<[u8]>,
    pub name: Box<str>,
    pub start: u64,
    pub end: u64,
    pub kind: i32,
}

impl SpanEntry {
    fn new(span: &Span) -> SpanEntry {
        SpanEntry {
            encoded: span.encode_to_vec().into_boxed_slice(),
            name: span.name.as_str().into(),
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
            kind: span.kind,
        }
    }

    /// The span. Encoded in this process from a valid message: decoding it
    /// again cannot fail.
    pub fn decode(&self) -> Span {
        Span::decode(&self.encoded[..]).unwrap_or_default()
    }
}

impl Stored<SpanEntry> {
    /// The span decoded, with its resource and scope.
    pub fn decoded(&self) -> Stored<Span> {
        Stored {
            item: self.item.decode(),
            resource: self.resource.clone(),
            scope: self.scope.clone(),
        }
    }
}

/// One trace: its spans and logs in arrival order.
#[derive(Debug, Default)]
pub struct Trace {
    /// When its first item arrived, in the store's order: what eviction follows.
    seq: u64,
    pub spans: Vec<Stored<SpanEntry>>,
    pub logs: Vec<Stored<LogRecord>>,
    bytes: usize,
}

impl Trace {
    /// The earliest span start, in Unix nanoseconds.
    pub fn start(&self) -> u64 {
        self.spans.iter().map(|s| s.item.start).min().unwrap_or(0)
    }
}

/// What `/api/otel-run/summary` says of the store.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub traces: usize,
    pub spans: usize,
    pub logs: usize,
    pub bytes: usize,
    /// Every span ever stored: it changes whenever one arrives, for a UI
    /// that shows new traces without reloading.
    pub received_spans: u64,
    pub max_spans: usize,
    pub max_bytes: usize,
    pub evicted_traces: u64,
    pub evicted_spans: u64,
    pub evicted_logs: u64,
    /// Spans of a trace larger than the whole store, not kept.
    pub rejected_spans: u64,
    pub metric_series: usize,
    pub dropped_metric_series: u64,
}

#[derive(Default)]
struct Inner {
    traces: HashMap<TraceId, Trace>,
    /// Trace ids by `seq`: the oldest first.
    order: BTreeMap<u64, TraceId>,
    next_seq: u64,
    spans: usize,
    logs: usize,
    bytes: usize,
    received_spans: u64,
    untraced_logs: VecDeque<Stored<LogRecord>>,
    evicted_traces: u64,
    evicted_spans: u64,
    evicted_logs: u64,
    rejected_spans: u64,
}

/// The store, shared by the pipelines that feed it and the server that reads it.
pub struct Store {
    limits: Limits,
    inner: Mutex<Inner>,
    pub metrics: Metrics,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        Store {
            limits,
            inner: Mutex::default(),
            metrics: Metrics::default(),
        }
    }

    /// Keeps the spans of one message, evicting the oldest traces to make room.
    pub fn add_spans(&self, message: &ResourceSpans) {
        let resource = Arc::new(message.resource.clone().unwrap_or_default());
        // What the spans of this message share is counted with its first span.
        let mut shared = resource.encoded_len();
        let mut inner = self.lock();
        for scope_spans in &message.scope_spans {
            let scope = Arc::new(scope_spans.scope.clone().unwrap_or_default());
            shared += scope.encoded_len();
            for span in &scope_spans.spans {
                let Ok(id) = TraceId::try_from(span.trace_id.as_slice()) else {
                    continue;
                };
                let item = SpanEntry::new(span);
                // 96: the entry's own fields and its place in the indexes.
                let bytes = item.encoded.len() + item.name.len() + std::mem::take(&mut shared) + 96;
                let stored = Stored {
                    item,
                    resource: resource.clone(),
                    scope: scope.clone(),
                };
                inner.insert(&self.limits, id, bytes, |t| t.spans.push(stored), true);
            }
        }
    }

    /// Keeps the log records of one message: under their trace, or among the
    /// latest ones that belong to none.
    pub fn add_logs(&self, message: &ResourceLogs) {
        let resource = Arc::new(message.resource.clone().unwrap_or_default());
        let mut inner = self.lock();
        for scope_logs in &message.scope_logs {
            let scope = Arc::new(scope_logs.scope.clone().unwrap_or_default());
            for record in &scope_logs.log_records {
                let stored = Stored {
                    item: record.clone(),
                    resource: resource.clone(),
                    scope: scope.clone(),
                };
                match TraceId::try_from(record.trace_id.as_slice()) {
                    Ok(id) if id != [0; 16] => {
                        let bytes = record.encoded_len() + 64;
                        inner.insert(&self.limits, id, bytes, |t| t.logs.push(stored), false);
                    }
                    _ => {
                        if inner.untraced_logs.len() == UNTRACED_LOGS {
                            inner.untraced_logs.pop_front();
                            inner.evicted_logs += 1;
                        }
                        inner.untraced_logs.push_back(stored);
                    }
                }
            }
        }
    }

    /// Runs `read` on the traces, under the store's lock.
    pub fn read<R>(&self, read: impl FnOnce(&HashMap<TraceId, Trace>) -> R) -> R {
        read(&self.lock().traces)
    }

    /// Runs `each` on every trace, oldest first, under the store's lock.
    pub fn read_in_order(&self, mut each: impl FnMut(&Trace)) {
        let inner = self.lock();
        for id in inner.order.values() {
            if let Some(trace) = inner.traces.get(id) {
                each(trace);
            }
        }
    }

    /// The logs of one trace, or those of no trace when `trace` is `None`.
    pub fn logs(&self, trace: Option<&TraceId>) -> Vec<Stored<LogRecord>> {
        let inner = self.lock();
        match trace {
            Some(id) => inner
                .traces
                .get(id)
                .map(|t| t.logs.clone())
                .unwrap_or_default(),
            None => inner.untraced_logs.iter().cloned().collect(),
        }
    }

    pub fn summary(&self) -> Summary {
        let inner = self.lock();
        let (metric_series, dropped_metric_series) = self.metrics.counts();
        Summary {
            traces: inner
                .traces
                .values()
                .filter(|t| !t.spans.is_empty())
                .count(),
            spans: inner.spans,
            logs: inner.logs + inner.untraced_logs.len(),
            bytes: inner.bytes,
            received_spans: inner.received_spans,
            max_spans: self.limits.max_spans,
            max_bytes: self.limits.max_bytes,
            evicted_traces: inner.evicted_traces,
            evicted_spans: inner.evicted_spans,
            evicted_logs: inner.evicted_logs,
            rejected_spans: inner.rejected_spans,
            metric_series,
            dropped_metric_series,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts, never broken memory.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Adds one item (`span` says whether it counts as a span) of `bytes` to
    /// trace `id`, evicting other traces, oldest first, until it fits.
    fn insert(
        &mut self,
        limits: &Limits,
        id: TraceId,
        bytes: usize,
        add: impl FnOnce(&mut Trace),
        span: bool,
    ) {
        let spans = usize::from(span);
        while self.spans + spans > limits.max_spans || self.bytes + bytes > limits.max_bytes {
            let oldest = self.order.values().copied().find(|t| *t != id);
            match oldest {
                Some(oldest) => self.evict(&oldest),
                None => {
                    // Only this trace is left and it is already too large.
                    if span {
                        self.rejected_spans += 1;
                    } else {
                        self.evicted_logs += 1;
                    }
                    return;
                }
            }
        }
        let trace = match self.traces.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert(seq, id);
                e.insert(Trace {
                    seq,
                    ..Trace::default()
                })
            }
        };
        add(trace);
        trace.bytes += bytes;
        self.bytes += bytes;
        self.spans += spans;
        self.received_spans += spans as u64;
        self.logs += 1 - spans;
    }

    fn evict(&mut self, id: &TraceId) {
        let Some(trace) = self.traces.remove(id) else {
            return;
        };
        self.order.remove(&trace.seq);
        self.spans -= trace.spans.len();
        self.logs -= trace.logs.len();
        self.bytes -= trace.bytes;
        self.evicted_traces += u64::from(!trace.spans.is_empty());
        self.evicted_spans += trace.spans.len() as u64;
        self.evicted_logs += trace.logs.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    fn message(trace: u8, spans: u8) -> ResourceSpans {
        ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![trace; 16],
                        span_id: vec![i + 1; 8],
                        name: format!("s{i}"),
                        ..Span::default()
                    })
                    .collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }
    }

    #[test]
    fn the_oldest_whole_traces_are_evicted_and_counted() {
        let store = Store::new(Limits {
            max_spans: 5,
            max_bytes: 1 << 20,
        });
        store.add_spans(&message(1, 2));
        store.add_spans(&message(2, 2));
        store.add_spans(&message(3, 2));
        let summary = store.summary();
        assert_eq!((summary.traces, summary.spans), (2, 4));
        assert_eq!((summary.evicted_traces, summary.evicted_spans), (1, 2));
        assert!(store.read(|t| !t.contains_key(&[1; 16]) && t.contains_key(&[3; 16])));
    }

    #[test]
    fn the_byte_bound_evicts_too() {
        let store = Store::new(Limits {
            max_spans: 1000,
            max_bytes: 400,
        });
        for trace in 1..=10 {
            store.add_spans(&message(trace, 1));
        }
        let summary = store.summary();
        assert!(summary.bytes <= 400, "{summary:?}");
        assert!(summary.evicted_traces > 0, "{summary:?}");
        assert!(store.read(|t| t.contains_key(&[10; 16])));
    }

    #[test]
    fn a_trace_larger_than_the_store_keeps_what_fits_and_counts_the_rest() {
        let store = Store::new(Limits {
            max_spans: 3,
            max_bytes: 1 << 20,
        });
        store.add_spans(&message(1, 5));
        let summary = store.summary();
        assert_eq!((summary.spans, summary.rejected_spans), (3, 2));
    }
}
