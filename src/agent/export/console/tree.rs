//! `--console-format tree`: each finished trace printed as an indented tree of
//! its spans with their durations, for a terminal without a browser.
//!
//! Spans arrive children first (a parent ends after its children), so a trace
//! is held until its root (a span without a parent) arrives, then printed
//! whole. A trace whose root never comes here (its parent is in another
//! process) is printed once no span of it has arrived for [`IDLE`], and what is
//! held when the console closes is printed then.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, span::SpanKind, status::StatusCode};

/// How long a trace without a root waits for more spans before it is printed.
pub const IDLE: Duration = Duration::from_secs(5);

struct Node {
    span_id: Vec<u8>,
    parent_id: Vec<u8>,
    name: String,
    service: String,
    start: u64,
    end: u64,
    kind: i32,
    error: Option<String>,
}

struct Pending {
    nodes: Vec<Node>,
    last: Instant,
}

#[derive(Default)]
pub struct Trees {
    pending: Mutex<HashMap<Vec<u8>, Pending>>,
}

impl Trees {
    /// Takes one message's spans; returns the trees of the traces it finished
    /// and of those left idle.
    pub fn add(&self, message: &ResourceSpans) -> Vec<String> {
        let service = message
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut finished = Vec::new();
        for span in message.scope_spans.iter().flat_map(|s| &s.spans) {
            let entry = pending.entry(span.trace_id.clone()).or_insert(Pending {
                nodes: Vec::new(),
                last: now,
            });
            entry.last = now;
            let error = span
                .status
                .as_ref()
                .and_then(|s| (s.code == StatusCode::Error as i32).then(|| s.message.clone()));
            entry.nodes.push(Node {
                span_id: span.span_id.clone(),
                parent_id: span.parent_span_id.clone(),
                name: span.name.clone(),
                service: service.clone(),
                start: span.start_time_unix_nano,
                end: span.end_time_unix_nano,
                kind: span.kind,
                error,
            });
            if span.parent_span_id.iter().all(|b| *b == 0) && !finished.contains(&span.trace_id) {
                finished.push(span.trace_id.clone());
            }
        }
        let idle: Vec<Vec<u8>> = pending
            .iter()
            .filter(|(id, p)| now.duration_since(p.last) >= IDLE && !finished.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        finished
            .into_iter()
            .chain(idle)
            .filter_map(|id| pending.remove(&id).map(|p| render(&id, p.nodes)))
            .collect()
    }

    /// Every trace still held, printed as it is.
    pub fn rest(&self) -> Vec<String> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .drain()
            .map(|(id, p)| render(&id, p.nodes))
            .collect()
    }
}

/// `1.234s`, `12.3ms` or `456µs`.
pub fn duration(nanos: u64) -> String {
    if nanos >= 1_000_000_000 {
        format!("{:.3}s", nanos as f64 / 1e9)
    } else if nanos >= 1_000_000 {
        format!("{:.1}ms", nanos as f64 / 1e6)
    } else {
        format!("{}µs", nanos / 1000)
    }
}

fn render(trace_id: &[u8], mut nodes: Vec<Node>) -> String {
    nodes.sort_by_key(|n| n.start);
    let start = nodes.iter().map(|n| n.start).min().unwrap_or(0);
    let end = nodes.iter().map(|n| n.end).max().unwrap_or(0);
    let id: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = format!(
        "trace {id} ({} span{}, {})\n",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        duration(end.saturating_sub(start))
    );
    let is_child =
        |n: &Node, parent: &Node| !n.parent_id.is_empty() && n.parent_id == parent.span_id;
    let roots: Vec<usize> = (0..nodes.len())
        .filter(|&i| !nodes.iter().any(|p| is_child(&nodes[i], p)))
        .collect();
    // Iterative walk: (node, prefix of its line, prefix of its children, parent's service).
    let mut stack: Vec<(usize, String, String, Option<String>)> = Vec::new();
    for (k, &root) in roots.iter().enumerate().rev() {
        let last = k + 1 == roots.len();
        stack.push((root, branch(last), indent("", last), None));
    }
    let mut seen = vec![false; nodes.len()];
    while let Some((i, line, below, parent_service)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let node = &nodes[i];
        let _ = write!(
            out,
            "{line}{} {}",
            node.name,
            duration(node.end.saturating_sub(node.start))
        );
        if parent_service.as_deref() != Some(node.service.as_str()) && !node.service.is_empty() {
            let _ = write!(out, " [{}]", node.service);
        }
        let kind = match SpanKind::try_from(node.kind).unwrap_or(SpanKind::Unspecified) {
            SpanKind::Server => " server",
            SpanKind::Client => " client",
            SpanKind::Producer => " producer",
            SpanKind::Consumer => " consumer",
            SpanKind::Internal | SpanKind::Unspecified => "",
        };
        out.push_str(kind);
        match &node.error {
            Some(m) if m.is_empty() => out.push_str(" ERROR"),
            Some(m) => {
                let _ = write!(out, " ERROR: {m}");
            }
            None => {}
        }
        out.push('\n');
        let children: Vec<usize> = (0..nodes.len())
            .filter(|&c| is_child(&nodes[c], node))
            .collect();
        for (k, &c) in children.iter().enumerate().rev() {
            let last = k + 1 == children.len();
            stack.push((
                c,
                format!("{below}{}", branch(last)),
                indent(&below, last),
                Some(node.service.clone()),
            ));
        }
    }
    out
}

fn branch(last: bool) -> String {
    if last { "└─ " } else { "├─ " }.to_string()
}

fn indent(prefix: &str, last: bool) -> String {
    format!("{prefix}{}", if last { "   " } else { "│  " })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    fn span(id: u8, parent: u8, name: &str, start: u64, end: u64) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            name: name.into(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Span::default()
        }
    }

    fn message(spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }
    }

    #[test]
    fn a_trace_is_printed_as_a_tree_once_its_root_arrives() {
        let trees = Trees::default();
        let early = trees.add(&message(vec![
            span(3, 2, "step", 2_000_000, 3_000_000),
            span(4, 1, "other", 5_000_000, 5_500_000),
            span(2, 1, "work", 1_000_000, 4_000_000),
        ]));
        assert!(early.is_empty(), "{early:?}");
        let printed = trees.add(&message(vec![span(1, 0, "python", 0, 1_200_000_000)]));
        assert_eq!(
            printed,
            vec![
                "trace 07070707070707070707070707070707 (4 spans, 1.200s)\n\
                 └─ python 1.200s\n   \
                    ├─ work 3.0ms\n   \
                    │  └─ step 1.0ms\n   \
                    └─ other 500µs\n"
                    .to_string()
            ]
        );
        assert!(trees.rest().is_empty());
    }
}
