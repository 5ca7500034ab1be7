//! The built-in trace viewer (`otel-run agent --ui`, `otel-run --ui -- COMMAND`):
//! a bounded store of what the agent receives, a query API that answers
//! Jaeger's paths with Jaeger's JSON, and a web UI whose assets are embedded
//! in the binary.
//!
//! The API, which the UI in `ui/` reads:
//! - Jaeger's query API: `/api/services`, `/api/services/{service}/operations`,
//!   `/api/traces?service=&operation=&tags=&minDuration=&maxDuration=&limit=&start=&end=`,
//!   `/api/traces/{traceID}`, each answering `{"data": ..., "total", "limit",
//!   "offset", "errors"}` as Jaeger does. Span kind, status and the error mark
//!   are tags (`span.kind`, `otel.status_code`, `otel.status_description`,
//!   `error`), as Jaeger writes them for OTLP spans; span events are `logs`;
//!   the resource is the trace's `processes`.
//! - otel-run's own, under `/api/otel-run/`: `summary` (what the store holds and
//!   has evicted), `logs?traceID=` (the logs of one trace) and `metrics` (every
//!   metric received, with its latest points).

pub mod assets;
