//! Records from the probes' ring buffer, and the spans made of them.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};

use super::clock::Clock;
use crate::telemetry::Telemetry;
use crate::telemetry::context::SpanContext;

/// A finished call, laid out as `struct otel_run_call` in `probes/event.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Call {
    pub start_ns: u64,
    pub end_ns: u64,
    pub span_id: u64,
    pub parent_span_id: u64,
    pub root_span_id: u64,
    pub cookie: u64,
    pub pid: u32,
    pub tid: u32,
    pub depth: u32,
    pub _pad: u32,
}

const _: () = assert!(std::mem::size_of::<Call>() == 64);

impl Call {
    /// The record in a ring-buffer item; `None` for one of another size.
    pub fn from_bytes(bytes: &[u8]) -> Option<Call> {
        if bytes.len() != std::mem::size_of::<Call>() {
            return None;
        }
        // SAFETY: the length is checked, `Call` is plain old data, and the read
        // is unaligned.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Call>()) })
    }
}

/// Where top-level calls hang.
#[derive(Debug, Clone)]
pub enum Parent {
    /// Each top-level call starts its own trace.
    Root,
    /// Under otel-run's process span.
    Process(SpanContext),
}

/// Turns calls into spans.
pub struct Spans {
    /// Function names, indexed by the probes' cookie.
    pub names: Vec<String>,
    pub clock: Clock,
    pub parent: Parent,
    /// The high half of the trace id of a root call's trace; the low half is the
    /// root's span id, so every call of one tree lands in one trace without
    /// user space having to see the root first.
    pub trace_salt: [u8; 8],
    pub resource: Resource,
}

impl Spans {
    pub fn span(&self, call: &Call) -> Span {
        let name = self
            .names
            .get(call.cookie as usize)
            .cloned()
            .unwrap_or_else(|| format!("function #{}", call.cookie));
        let (trace_id, root_parent, trace_state) = match &self.parent {
            Parent::Root => {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.trace_salt);
                id[8..].copy_from_slice(&call.root_span_id.to_be_bytes());
                (id.to_vec(), Vec::new(), String::new())
            }
            Parent::Process(ctx) => (
                ctx.trace_id.to_vec(),
                ctx.span_id.to_vec(),
                ctx.trace_state.clone(),
            ),
        };
        let parent_span_id = if call.depth == 0 {
            root_parent
        } else {
            call.parent_span_id.to_be_bytes().to_vec()
        };
        let kv = |key: &str, value: Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        Span {
            trace_id,
            span_id: call.span_id.to_be_bytes().to_vec(),
            trace_state,
            parent_span_id,
            flags: 0x100 | 1,
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: self.clock.wall(call.start_ns),
            end_time_unix_nano: self.clock.wall(call.end_ns.max(call.start_ns)),
            attributes: vec![
                kv("code.function.name", Value::StringValue(name.clone())),
                kv("thread.id", Value::IntValue(i64::from(call.tid))),
                kv("process.pid", Value::IntValue(i64::from(call.pid))),
            ],
            name,
            ..Default::default()
        }
    }

    /// One export item for a batch of calls.
    pub fn batch(&self, calls: &[Call]) -> ResourceSpans {
        ResourceSpans {
            resource: Some(self.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(Telemetry::scope("otel-run/uprobe")),
                spans: calls.iter().map(|c| self.span(c)).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(parent: Parent) -> Spans {
        Spans {
            names: vec!["app::outer".into(), "app::inner".into()],
            clock: Clock::now(),
            parent,
            trace_salt: [1; 8],
            resource: Resource::default(),
        }
    }

    fn call(depth: u32, span_id: u64, parent: u64, cookie: u64) -> Call {
        Call {
            start_ns: 1_000,
            end_ns: 11_000_000,
            span_id,
            parent_span_id: parent,
            root_span_id: 7,
            cookie,
            pid: 42,
            tid: 43,
            depth,
            _pad: 0,
        }
    }

    #[test]
    fn nested_calls_share_the_roots_trace() {
        let s = spans(Parent::Root);
        let outer = s.span(&call(0, 7, 0, 0));
        let inner = s.span(&call(1, 8, 7, 1));
        assert_eq!(outer.name, "app::outer");
        assert_eq!(inner.name, "app::inner");
        assert!(outer.parent_span_id.is_empty());
        assert_eq!(inner.parent_span_id, outer.span_id);
        assert_eq!(inner.trace_id, outer.trace_id);
        assert_eq!(
            outer.end_time_unix_nano - outer.start_time_unix_nano,
            10_999_000
        );
        assert_eq!(outer.kind, SpanKind::Internal as i32);
    }

    #[test]
    fn top_level_calls_can_hang_under_the_process_span() {
        let ctx = SpanContext::new([3; 16], [4; 8], true);
        let s = spans(Parent::Process(ctx));
        let outer = s.span(&call(0, 7, 0, 0));
        assert_eq!(outer.trace_id, vec![3; 16]);
        assert_eq!(outer.parent_span_id, vec![4; 8]);
    }

    #[test]
    fn parses_records_of_the_right_size_only() {
        let c = call(1, 2, 3, 4);
        // SAFETY: viewing a plain-old-data struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&c as *const Call).cast::<u8>(),
                std::mem::size_of::<Call>(),
            )
        };
        assert_eq!(Call::from_bytes(bytes), Some(c));
        assert_eq!(Call::from_bytes(&bytes[1..]), None);
    }
}
