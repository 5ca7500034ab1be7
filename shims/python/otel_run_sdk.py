"""The SDK side of otel-run's Python shim, loaded by sitecustomize.py beside this
file (this module's `_shim`) when a signal's provider starts or the program
builds one of its own (otel_run_api.py sees to both).

- The global provider of a signal, with otel-run's resource, when the program has
  not set its own.
- otel-run's span processors and metric readers on every provider, the program's
  own included: each span and measurement reaches otel-run exactly once, and the
  program's own processors still see them. A provider that already has a
  processor or reader of the program's exporting to the same place (its
  `OTLPSpanExporter()` reading the endpoint otel-run set) does not get otel-run's
  as well.
- The exporters: to otel-run's agent with the standard library (no exporter
  package needed), or without the agent the OTLP exporter the protocol names.
- The log handler OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED asks for.
- The propagators of OTEL_PROPAGATORS that can be loaded.
- The flush at SIGTERM.
"""

import os
import sys
import weakref

_adopted = weakref.WeakSet()
_resource = None
_own_logger_provider = None
_parented = False


def _otel_run_resource():
    global _resource
    if _resource is None:
        from opentelemetry.sdk.resources import Resource

        _resource = Resource.create({"telemetry.distro.name": "otel-run"})
    return _resource


def _agent():
    return os.environ.get("OTEL_RUN_AGENT_ENDPOINT")


def _destination(exporter):
    """Where an OTLP exporter (OpenTelemetry's or otel-run's) sends: (host, port),
    or None for any other exporter."""
    module = type(exporter).__module__
    if not (module.startswith("opentelemetry.exporter.otlp.") or module.startswith("otel_run_")):
        return None
    endpoint = getattr(exporter, "_endpoint", None)
    if not isinstance(endpoint, str) or not endpoint:
        return None
    from urllib.parse import urlsplit

    # The gRPC exporters keep `host:port`, the HTTP ones a URL.
    parts = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
    try:
        return (parts.hostname, parts.port)
    except ValueError:
        return None


def _official_exporter(module, cls, signal):
    """An exporter from opentelemetry-exporter-otlp, for the protocol configured."""
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_%s_PROTOCOL" % signal)
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip().lower()
    package = "grpc" if protocol == "grpc" else "http"
    name = "opentelemetry.exporter.otlp.proto.%s.%s" % (package, module)
    try:
        import importlib

        return getattr(importlib.import_module(name), cls)()
    except ImportError:
        _shim._warn_once("exporter-" + package,
                         "`%s` cannot export %s over OTLP/%s: opentelemetry-exporter-otlp-proto-%s is not installed"
                         % (sys.executable, signal.lower(), package, package),
                         "`otel-run bootstrap --python %s` installs it" % sys.executable)
        return None


def _exporters(signal, agent_exporter, official, console):
    """The exporters OTEL_<SIGNAL>_EXPORTER names, new ones each call."""
    found = []
    for name in _shim._exporters(_shim._EXPORTER_VARIABLES[signal]):
        if name == "otlp" and _agent():
            found.append(agent_exporter(_agent()))
        elif name == "otlp":
            found.append(_official_exporter(*official))
        elif name == "console":
            found.append(console())
    return [e for e in found if e is not None]


# --- At SIGTERM -------------------------------------------------------------------

def flush_for_exit(bound_seconds):
    """At SIGTERM: flushes every provider otel-run exports from, for at most
    `bound_seconds`, and tells otel-run what the SDK dropped. The flush runs on a
    thread of its own: the signal may have interrupted the main thread while it
    held a lock the flush needs."""
    places = (("opentelemetry.trace", "_TRACER_PROVIDER"),
              ("opentelemetry.metrics._internal", "_METER_PROVIDER"),
              ("opentelemetry._logs._internal", "_LOGGER_PROVIDER"))
    providers = [getattr(sys.modules.get(module), name, None) for module, name in places]
    providers += [p for p in _adopted if p not in providers]
    providers = [p for p in providers if hasattr(p, "force_flush")]
    if providers:
        import threading

        def flush():
            for provider in providers:
                try:
                    provider.force_flush()
                except Exception as error:  # the exit goes on
                    _shim._debug("flush at SIGTERM failed: %r" % error)

        flusher = threading.Thread(target=flush, name="otel-run-flush", daemon=True)
        flusher.start()
        flusher.join(bound_seconds)
    traces = sys.modules.get("otel_run_traces")
    if traces is not None:
        traces.report()


# --- Traces ----------------------------------------------------------------------

def start_traces():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if getattr(trace, "_TRACER_PROVIDER", None) is None:
        trace.set_tracer_provider(TracerProvider(resource=_otel_run_resource()))
        _shim._debug("started the tracer provider")


def _span_exporters():
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    traces = _shim._sibling("otel_run_traces")
    return _exporters("traces", traces.AgentSpanExporter,
                      ("trace_exporter", "OTLPSpanExporter", "TRACES"), ConsoleSpanExporter)


def tracer_provider_building():
    """Loads the span processor's module before the provider registers its exit
    flush, so that the drop report, registered by that module, runs after it."""
    if _shim._exported("traces"):
        _shim._sibling("otel_run_traces")


def tracer_provider_built(provider):
    """Every TracerProvider exports through otel-run's processors."""
    if provider in _adopted or not _shim._exported("traces"):
        return
    _adopted.add(provider)
    _parent_work_to_the_process_span()
    spans = None
    try:
        spans = _shim._sibling("otel_run_spans")
        spans.install()
    except Exception as error:  # an SDK without what it builds on: its own spans stay
        _shim._debug("the SDK's spans stay its own: %r" % error)
    try:
        if spans is not None:
            spans.lighter_sampler(provider)
    except Exception as error:  # another SDK's sampler: it stays
        _shim._debug("the SDK's sampler stays: %r" % error)
    traces = _shim._sibling("otel_run_traces")
    for exporter in _span_exporters():
        provider.add_span_processor(traces.CountedBatchSpanProcessor(exporter))


def _span_processors(provider):
    multi = getattr(provider, "_active_span_processor", None)
    return tuple(getattr(multi, "_span_processors", ()))


def _span_exporter_of(processor):
    for owner, name in ((processor, "span_exporter"), (getattr(processor, "_batch_processor", None), "_exporter"),
                        (processor, "_exporter")):
        exporter = getattr(owner, name, None)
        if exporter is not None:
            return exporter
    return None


def span_processor_added(provider):
    """otel-run's processor leaves a provider to which the program's own exports
    to the same place: the spans would arrive twice."""
    traces = sys.modules.get("otel_run_traces")
    if traces is None or provider not in _adopted:
        return
    processors = _span_processors(provider)
    ours = [p for p in processors if isinstance(p, traces.CountedBatchSpanProcessor)]
    theirs = {_destination(_span_exporter_of(p)) for p in processors if p not in ours} - {None}
    for processor in ours:
        if not processor.left_out and _destination(processor.exporter) in theirs:
            processor.leave_out()
            _shim._debug("a span processor of the program's exports where otel-run's does: "
                         "otel-run's leaves its provider")


def _parent_work_to_the_process_span():
    """The program's own work (a script's calls, a CLI's steps) joins otel-run's
    process span from TRACEPARENT. Only spans that would otherwise start a trace
    are affected, and never SERVER or CONSUMER spans: a request without a
    traceparent still starts its own trace, as it would without otel-run.
    Attaching the context globally instead would leak into request handling."""
    global _parented
    traceparent = os.environ.get("TRACEPARENT")
    if _parented or not traceparent:
        return
    _parented = True
    from opentelemetry import trace
    from opentelemetry.sdk.trace import Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent, "tracestate": os.environ.get("TRACESTATE", "")}
    process = TraceContextTextMapPropagator().extract(carrier)
    start_span = Tracer.start_span
    own_work = (trace.SpanKind.INTERNAL, trace.SpanKind.CLIENT, trace.SpanKind.PRODUCER)

    def start_span_under_process(self, name, context=None, kind=trace.SpanKind.INTERNAL, *args, **kwargs):
        if context is None and kind in own_work and not trace.get_current_span().get_span_context().is_valid:
            context = process
        return start_span(self, name, context, kind, *args, **kwargs)

    start_span_under_process.__wrapped__ = start_span
    Tracer.start_span = start_span_under_process


# --- Metrics ---------------------------------------------------------------------

def start_metrics():
    from opentelemetry import metrics
    from opentelemetry.metrics import _internal as api

    if api._METER_PROVIDER is not None:
        return
    if _shim._exporters(_shim._EXPORTER_VARIABLES["metrics"]) == ["otlp"] and _agent():
        meters = _shim._sibling("otel_run_meters")
        if meters.usable():
            provider = meters.MeterProvider(_otel_run_resource(), _agent())
            _adopted.add(provider)
            metrics.set_meter_provider(provider)
            _shim._debug("started otel-run's meter provider")
            return
    from opentelemetry.sdk.metrics import MeterProvider

    metrics.set_meter_provider(MeterProvider(resource=_otel_run_resource()))
    _shim._debug("started the meter provider")


def _metric_exporters():
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    agent_exporter = _shim._sibling("otel_run_metrics").AgentMetricExporter
    return _exporters("metrics", agent_exporter,
                      ("metric_exporter", "OTLPMetricExporter", "METRICS"), ConsoleMetricExporter)


def metric_readers_for(readers):
    """The readers a MeterProvider is built with: the program's, and otel-run's
    unless one of the program's exports to the same place."""
    if not _shim._exported("metrics"):
        return readers
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    theirs = {_destination(getattr(r, "_exporter", None)) for r in readers} - {None}
    added = []
    for exporter in _metric_exporters():
        if _destination(exporter) in theirs:
            exporter.shutdown()
            _shim._debug("a metric reader of the program's exports where otel-run's would: otel-run's is left out")
        else:
            added.append(PeriodicExportingMetricReader(exporter))
    return readers + added


def meter_provider_built(provider):
    _adopted.add(provider)


# --- Logs ------------------------------------------------------------------------

def _logger_provider():
    """A LoggerProvider with otel-run's processors."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogExporter

    agent_exporter = _shim._sibling("otel_run_logs").AgentLogExporter
    provider = LoggerProvider(resource=_otel_run_resource())
    for exporter in _exporters("logs", agent_exporter, ("_log_exporter", "OTLPLogExporter", "LOGS"),
                               ConsoleLogExporter):
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    _adopted.add(provider)
    return provider


def start_logs():
    global _own_logger_provider
    from opentelemetry._logs import _internal as api, set_logger_provider

    if api._LOGGER_PROVIDER is None:
        _own_logger_provider = _logger_provider()
        set_logger_provider(_own_logger_provider)
        _shim._debug("started the logger provider")


def sdk_logging_handler():
    """The SDK's LoggingHandler, as OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED
    asks for, on otel-run's logger provider (its own even when the program set one
    of its own as the global provider: the records are otel-run's to export)."""
    global _own_logger_provider
    import warnings

    _shim._sibling("otel_run_api").start("logs")
    if _own_logger_provider is None:
        _own_logger_provider = _logger_provider()
    with warnings.catch_warnings():
        # Deprecated in favour of opentelemetry-instrumentation-logging's, which
        # the shim uses instead when that package is installed.
        warnings.simplefilter("ignore", DeprecationWarning)
        from opentelemetry.sdk._logs import LoggingHandler

        return LoggingHandler(logger_provider=_own_logger_provider)


# --- Propagators -----------------------------------------------------------------

def usable_propagators():
    """OTEL_PROPAGATORS without the propagators that cannot be loaded, said once;
    None when every one of them loads (the failure was something else)."""
    from opentelemetry.util._importlib_metadata import entry_points

    names = [n.strip() for n in os.environ.get("OTEL_PROPAGATORS", "").split(",") if n.strip()]
    usable, missing, broken = [], [], []
    for name in names:
        if name.lower() == "none":
            usable.append(name)
            continue
        found = list(entry_points(group="opentelemetry_propagator", name=name))
        if not found:
            missing.append(name)
            continue
        try:
            found[0].load()()
        except Exception as error:
            broken.append("`%s` (%r)" % (name, error))
            continue
        usable.append(name)
    if not missing and not broken:
        return None
    problems = []
    if missing:
        problems.append("%s, not installed for `%s`" % (", ".join("`%s`" % n for n in missing), sys.executable))
    if broken:
        problems.append("%s, which failed to load" % ", ".join(broken))
    kept = ",".join(usable) if usable else "none"
    _shim._warn_once("propagators:" + "+".join(missing + broken),
                     "OTEL_PROPAGATORS names %s; propagating with `%s` only" % ("; ".join(problems), kept),
                     "install the package that provides %s (entry point group `opentelemetry_propagator`), "
                     "or leave it out of OTEL_PROPAGATORS" % ("it" if len(missing + broken) == 1 else "them"))
    return kept
