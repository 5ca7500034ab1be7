//! A small program instrumented by hand with opentelemetry-rust 0.33, meant to
//! be run under `otel-run`:
//!
//! * the OTLP exporter is configured only by the standard environment
//!   (OTEL_EXPORTER_OTLP_*, read by opentelemetry-otlp itself) and the
//!   resource by OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (read by the SDK);
//! * the trace is continued from TRACEPARENT (and TRACESTATE), which the
//!   program reads itself, so its root span `work` is a child of the caller's span;
//! * `work` has one child span, `step`, with an attribute;
//! * the provider is shut down (flushing the batch) before exiting 0.

use std::collections::HashMap;
use std::process::ExitCode;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{ExporterBuildError, SpanExporter};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{Resource, SdkProvidedResourceDetector};
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Builds the parent context from the TRACEPARENT / TRACESTATE environment
/// variables. Neither the SDK nor the exporter looks at them, so the program
/// puts them in a carrier under the W3C header names and lets the
/// TraceContext propagator parse them. Missing or invalid: an empty context,
/// so `work` starts a new trace.
fn parent_from_env() -> Context {
    let mut carrier = HashMap::new();
    for (var, header) in [("TRACEPARENT", "traceparent"), ("TRACESTATE", "tracestate")] {
        if let Ok(value) = std::env::var(var) {
            carrier.insert(header.to_string(), value);
        }
    }
    TraceContextPropagator::new().extract(&carrier)
}

fn build_exporter() -> Result<SpanExporter, ExporterBuildError> {
    // No endpoint, protocol or headers in code: `build()` on the bare builder
    // picks the transport from OTEL_EXPORTER_OTLP_TRACES_PROTOCOL /
    // OTEL_EXPORTER_OTLP_PROTOCOL (among the compiled-in ones) and reads the
    // endpoint, headers, timeout and compression from the environment.
    SpanExporter::builder().build()
}

fn main() -> ExitCode {
    // The tonic (gRPC) client needs a Tokio runtime to live in; the HTTP
    // client does not. Only the `grpc` build has one, kept until the end.
    #[cfg(feature = "grpc")]
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("rust-otlp-example: cannot start the Tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "grpc")]
    let exporter = {
        let _guard = runtime.enter();
        build_exporter()
    };
    #[cfg(not(feature = "grpc"))]
    let exporter = build_exporter();

    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("rust-otlp-example: cannot build the OTLP span exporter: {err}");
            return ExitCode::FAILURE;
        }
    };

    // Resource::builder() (the SDK's default resource) reads OTEL_SERVICE_NAME,
    // telemetry.sdk.* and OTEL_RESOURCE_ATTRIBUTES by itself, but merges
    // OTEL_RESOURCE_ATTRIBUTES last, so a `service.name=` in it would beat
    // OTEL_SERVICE_NAME, against the spec. Running the SDK's service-name
    // detector once more at the end restores OTEL_SERVICE_NAME's precedence.
    // The sampler comes from OTEL_TRACES_SAMPLER(_ARG), the batch settings
    // from OTEL_BSP_*, both read by the SDK.
    let resource = Resource::builder()
        .with_detector(Box::new(SdkProvidedResourceDetector))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("rust-otlp-example");

    let parent = parent_from_env();
    let work = tracer
        .span_builder("work")
        .with_kind(SpanKind::Internal)
        .start_with_context(&tracer, &parent);
    let work_cx = parent.with_span(work);

    let mut step = tracer
        .span_builder("step")
        .with_attributes([KeyValue::new("step.number", 1_i64)])
        .start_with_context(&tracer, &work_cx);
    step.set_attribute(KeyValue::new("step.result", "ok"));
    step.end();

    let work_span = work_cx.span();
    let sc = work_span.span_context().clone();
    work_span.end();
    println!(
        "rust-otlp-example: trace_id={} work span_id={}",
        sc.trace_id(),
        sc.span_id()
    );

    // Flush first: the batch processor's force_flush returns the export's
    // result (its shutdown does not), so a failed export is reported here.
    // Telemetry trouble must not fail the program: report it and go on.
    if let Err(err) = provider.force_flush() {
        eprintln!("rust-otlp-example: exporting spans failed: {err}");
    }
    if let Err(err) = provider.shutdown() {
        eprintln!("rust-otlp-example: tracer provider shutdown: {err}");
    }
    ExitCode::SUCCESS
}
