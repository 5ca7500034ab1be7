"""otel-run's Python shim: zero-code OpenTelemetry for the program otel-run runs.

otel-run puts this file's directory first on PYTHONPATH, so Python imports it as
`sitecustomize` at start-up, in every Python process of the run (reloaders,
workers and other subprocesses included). It is written to cost almost nothing
until it is needed:

- Instrumentors are activated when their library is first imported (a post-import
  hook), not eagerly: a program that never imports Flask never loads Flask's
  instrumentor. The list of instrumentors comes from otel-run
  (OTEL_RUN_PYTHON_INSTRUMENTORS) when it could read the target environment;
  otherwise it is read from the installed entry points.
- The SDK starts when something first asks for a tracer provider (an activated
  instrumentor, or the program's own `trace.get_tracer`). A program that sets up
  its own provider first keeps it: the SDK is never set up twice.
- With otel-run's agent (OTEL_RUN_AGENT_ENDPOINT), spans go to it as OTLP/JSON over
  loopback HTTP with the standard library: no protobuf or gRPC import. That
  exporter, and the count of what the SDK drops, live in otel_run_export.py beside
  this file, loaded when the SDK starts.
- A program that leaves SIGTERM at its default action gets a handler that flushes
  the SDK, for a bounded time, and then dies of the signal as it would have; a
  program's own handler is never touched.

Finally it runs the user's own `sitecustomize`, if there is one, which Python would
otherwise not see behind this one.
"""

import os
import sys

_PREFIX = "otel-run: "
_SAID = "OTEL_RUN_PYTHON_SAID"

# Entry point names whose library is imported under another module name.
_MODULE_OF = {
    "aiohttp-client": "aiohttp",
    "aiohttp-server": "aiohttp",
    "aio-pika": "aio_pika",
    "boto3sqs": "boto3",
    "confluent-kafka": "confluent_kafka",
    "grpc_aio_client": "grpc",
    "grpc_aio_server": "grpc",
    "grpc_client": "grpc",
    "grpc_server": "grpc",
    "kafka": "kafka",
    "mysql": "mysql.connector",
    "mysqlclient": "MySQLdb",
    "tortoiseorm": "tortoise",
    "urllib": "urllib.request",
}

# Python programs that run other Python programs (`poetry run ...`).
_RUNNERS = {"poetry", "pipenv", "pdm", "hatch"}

# Entry points that are not about a library import.
_NOT_ON_IMPORT = {"system_metrics"}


def _level():
    return os.environ.get("OTEL_LOG_LEVEL", "warn").strip().lower()


def _debug(message):
    if _level() in ("debug", "trace"):
        sys.stderr.write("%sdebug: python: %s\n" % (_PREFIX, message))


def _warn_once(key, message, hint=None):
    """Says `message` once for the whole process tree (subprocesses inherit the marker)."""
    said = [s for s in os.environ.get(_SAID, "").split(",") if s]
    if key in said or _level() in ("error", "off", "none"):
        return
    os.environ[_SAID] = ",".join(said + [key])
    text = "%swarning: %s\n" % (_PREFIX, message)
    if hint:
        text += "hint: %s\n" % hint
    sys.stderr.write(text)


def _exporters(variable):
    value = os.environ.get(variable, "otlp").strip().lower()
    return [e.strip() for e in value.split(",") if e.strip() and e.strip() != "none"]


# --- The SDK, started on first use ---------------------------------------------

_sdk_started = False


def _start_sdk():
    """Sets up the tracer provider (and meter and logger providers) from the
    environment, unless the program already set up its own."""
    global _sdk_started
    if _sdk_started:
        return
    _sdk_started = True
    from opentelemetry import trace

    if getattr(trace, "_TRACER_PROVIDER", None) is not None:
        _debug("the program set up its own tracer provider; leaving it")
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        export = _sibling("otel_run_export")
    except ImportError as error:
        _warn_once("sdk", "cannot start the OpenTelemetry SDK for `%s`: %s" % (sys.executable, error),
                   "`otel-run bootstrap --python %s` installs it" % sys.executable)
        return
    resource = Resource.create({"telemetry.distro.name": "otel-run"})
    provider = TracerProvider(resource=resource)
    for exporter in _span_exporters(export):
        provider.add_span_processor(export.CountedBatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _parent_work_to_the_process_span()
    _start_metrics(resource)
    _start_logs(resource)


def _span_exporters(export):
    exporters = []
    for name in _exporters("OTEL_TRACES_EXPORTER"):
        agent = os.environ.get("OTEL_RUN_AGENT_ENDPOINT")
        if name == "otlp" and agent:
            exporters.append(export.AgentSpanExporter(agent))
        elif name == "otlp":
            exporter = _official_exporter("trace_exporter", "OTLPSpanExporter", "TRACES")
            if exporter is not None:
                exporters.append(exporter)
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
    return exporters


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
        _warn_once("exporter-" + package,
                   "`%s` cannot export %s over OTLP/%s: opentelemetry-exporter-otlp-proto-%s is not installed"
                   % (sys.executable, signal.lower(), package, package),
                   "`otel-run bootstrap --python %s` installs it" % sys.executable)
        return None


def _parent_work_to_the_process_span():
    """The program's own work (a script's calls, a CLI's steps) joins otel-run's
    process span from TRACEPARENT. Only spans that would otherwise start a trace
    are affected, and never SERVER or CONSUMER spans: a request without a
    traceparent still starts its own trace, as it would without otel-run.
    Attaching the context globally instead would leak into request handling."""
    traceparent = os.environ.get("TRACEPARENT")
    if not traceparent:
        return
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

    Tracer.start_span = start_span_under_process


def _start_metrics(resource):
    if not _exporters("OTEL_METRICS_EXPORTER"):
        return
    from opentelemetry import metrics

    if getattr(metrics, "_METER_PROVIDER", None) is not None:
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers = []
    for name in _exporters("OTEL_METRICS_EXPORTER"):
        exporter = (ConsoleMetricExporter() if name == "console"
                    else _official_exporter("metric_exporter", "OTLPMetricExporter", "METRICS"))
        if exporter is not None:
            readers.append(PeriodicExportingMetricReader(exporter))
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def _logs_enabled():
    enabled = os.environ.get("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "").strip().lower() == "true"
    return enabled and bool(_exporters("OTEL_LOGS_EXPORTER"))


def _start_logs(resource):
    if not _logs_enabled():
        return
    import logging

    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogExporter

    provider = LoggerProvider(resource=resource)
    for name in _exporters("OTEL_LOGS_EXPORTER"):
        exporter = (ConsoleLogExporter() if name == "console"
                    else _official_exporter("_log_exporter", "OTLPLogExporter", "LOGS"))
        if exporter is not None:
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    set_logger_provider(provider)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))


# --- SIGTERM: flush, then die of it --------------------------------------------

# Long enough to send what is queued over loopback, short enough to fit the grace
# period of a container stop (10 s for `docker stop`).
_FLUSH_BOUND_SECONDS = 5.0
_terminating = False


def _install_sigterm_flush():
    """A program left with SIGTERM's default action dies at once, before the
    SDK's batches are sent. Give it a handler that sends them first and then
    dies of the signal all the same. A program that has a handler keeps it; one
    that sets its own later replaces this one (`signal.signal`)."""
    import _signal

    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame):
    global _terminating
    import _signal

    if _signal.getsignal(signum) is not _on_sigterm:
        # Called by the program's own handler, which took this one for the
        # previous one: flush, and let the program's handler decide.
        _flush_for_exit()
        return
    if _terminating:
        # The same signal again during the flush (sent to the process group and
        # forwarded too): the flush is bounded, one is enough.
        return
    _terminating = True
    _flush_for_exit()
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _flush_for_exit():
    """Flushes the tracer, meter and logger providers there are, for at most
    _FLUSH_BOUND_SECONDS, and tells otel-run what the SDK dropped. The flush runs
    on a thread of its own: the signal may have interrupted the main thread while
    it held a lock the flush needs."""
    places = (("opentelemetry.trace", "_TRACER_PROVIDER"),
              ("opentelemetry.metrics._internal", "_METER_PROVIDER"),
              ("opentelemetry._logs._internal", "_LOGGER_PROVIDER"))
    providers = [getattr(sys.modules.get(module), name, None) for module, name in places]
    providers = [p for p in providers if hasattr(p, "force_flush")]
    if providers:
        import threading

        def flush():
            for provider in providers:
                try:
                    provider.force_flush()
                except Exception as error:  # the exit goes on
                    _debug("flush at SIGTERM failed: %r" % error)

        flusher = threading.Thread(target=flush, name="otel-run-flush", daemon=True)
        flusher.start()
        flusher.join(_FLUSH_BOUND_SECONDS)
    export = sys.modules.get("otel_run_export")
    if export is not None:
        export.report()


# --- Instrumentors, activated on import ----------------------------------------

def _instrumentors():
    """[(entry point name, "module:Class")], from otel-run or the entry points."""
    handed_over = os.environ.get("OTEL_RUN_PYTHON_INSTRUMENTORS")
    if handed_over is not None:
        pairs = (item.split("=", 1) for item in handed_over.split(",") if "=" in item)
        return [(name.strip(), target.strip()) for name, target in pairs]
    from importlib.metadata import entry_points

    return [(ep.name, ep.value) for ep in entry_points(group="opentelemetry_instrumentor")]


def _activate(name, target):
    import importlib

    module_name, _, class_name = target.partition(":")
    try:
        instrumentor = getattr(importlib.import_module(module_name), class_name)()
        # The instrumentor checks that the library's version is one it supports.
        instrumentor.instrument()
        _debug("instrumented %s" % name)
    except Exception as error:  # an instrumentor must never break the program
        _debug("could not instrument %s: %r" % (name, error))


# Modules an activation imports besides its library: the standard library and
# the instrumentation stack's own dependencies.
_STDLIB = getattr(sys, "stdlib_module_names", frozenset())
_OWN = {"opentelemetry", "wrapt", "packaging", "importlib_metadata", "zipp", "typing_extensions", "deprecated"}

_pending = []  # actions waiting for a safe moment, in import order
_activating = False


def _imports_in_progress(finished):
    """The modules whose import is under way in this thread, but `finished`."""
    names = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_find_and_load" and code.co_filename.startswith("<frozen importlib"):
            name = frame.f_locals.get("name") or ""
            if name != finished and not name.startswith(finished + "."):
                names.append(name)
        frame = frame.f_back
    return names


def _on_import(action):
    """Runs `action` (an instrumentor's activation) once a module is imported, as
    soon as that is safe: an activation imports parts of the standard library and
    of OpenTelemetry, so it waits while one of those is itself half-imported (the
    module was imported from inside it), and one activation never runs inside
    another. It still runs before the code that imported the module goes on."""

    def callback(module):
        _pending.append(action)
        _run_pending(module.__name__)

    return callback


def _run_pending(finished):
    global _activating
    if _activating:
        return
    for name in _imports_in_progress(finished):
        if name.partition(".")[0] in _STDLIB or name.partition(".")[0] in _OWN:
            return
    _activating = True
    try:
        while _pending:
            _pending.pop(0)()
    finally:
        _activating = False


def _patch_trace_api(trace):
    """`trace.get_tracer_provider()` starts the SDK when no provider is set yet."""
    original = trace.get_tracer_provider

    def get_tracer_provider():
        if getattr(trace, "_TRACER_PROVIDER", None) is None:
            _start_sdk()
        return original()

    trace.get_tracer_provider = get_tracer_provider


class _PostImportHook:
    """A meta path finder that runs callbacks once a watched module has executed."""

    def __init__(self, callbacks):
        self.callbacks = callbacks  # module name -> [callable(module)]

    def find_spec(self, name, path=None, target=None):
        if name not in self.callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader, self.callbacks.pop(name))
                return spec
            if spec is not None:
                return None
        return None

    def run_now(self, name):
        for callback in self.callbacks.pop(name, []):
            callback(sys.modules[name])


class _Loader:
    """Wraps a module's loader: executes it, puts the original back, then calls back."""

    def __init__(self, loader, callbacks):
        self._loader = loader
        self._callbacks = callbacks

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        for callback in self._callbacks:
            callback(module)


def _install():
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    # A runner (`poetry run`) is only the way to the program: leave it alone.
    if os.path.basename(sys.argv[0] if sys.argv else "") in _RUNNERS:
        return
    # otel-run hands the instrumentors over only after finding the SDK installed.
    if os.environ.get("OTEL_RUN_PYTHON_INSTRUMENTORS") is None and not _sdk_installed():
        _warn_once("sdk", "the OpenTelemetry SDK is not installed for `%s`; the program runs uninstrumented"
                   % sys.executable, "`otel-run bootstrap --python %s` installs it" % sys.executable)
        return
    callbacks = {"opentelemetry.trace": [_patch_trace_api]}
    tracing = bool(_exporters("OTEL_TRACES_EXPORTER"))
    disabled = {d.strip() for d in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    instrumentors = _instrumentors() if tracing else []
    if tracing and not instrumentors:
        _warn_once("instrumentors", "no OpenTelemetry instrumentation package is installed for `%s`; "
                   "only the program's own spans are recorded" % sys.executable,
                   "`otel-run bootstrap --python %s` installs the ones its libraries need" % sys.executable)
    for name, target in instrumentors:
        if name in disabled or name in _NOT_ON_IMPORT:
            continue
        module = _MODULE_OF.get(name, name)
        callbacks.setdefault(module, []).append(_on_import(lambda n=name, t=target: _activate(n, t)))
    # Log records are exported by the SDK: start it once logging is in use.
    if _logs_enabled():
        callbacks.setdefault("logging", []).append(_on_import(_start_sdk))
    hook = _PostImportHook(callbacks)
    sys.meta_path.insert(0, hook)
    for module in list(callbacks):
        if module in sys.modules:
            hook.run_now(module)
    if any(_exporters(v) for v in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER")):
        _install_sigterm_flush()


def _path_finder():
    """The import system's own path finder, already loaded: importing `importlib`
    here would cost more than the rest of this file."""
    return next(f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder")


def _sibling(name):
    """A module beside this file, imported from here whatever the program did to
    sys.path."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    here = os.path.dirname(os.path.abspath(__file__))
    spec = _path_finder().find_spec(name, [here])
    if spec is None:
        raise ImportError("otel-run's `%s` is missing from %s" % (name, here))
    module = type(sys)(name)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _sdk_installed():
    return any(os.path.isfile(os.path.join(entry or os.curdir, "opentelemetry", "sdk", "trace", "__init__.py"))
               for entry in sys.path)


def _chain_user_sitecustomize():
    """Runs the `sitecustomize` this file hides, if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = _path_finder().find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = type(sys)("sitecustomize")
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    ours = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules["sitecustomize"] = ours


try:
    _install()
except Exception as _error:  # never break the program
    sys.stderr.write("%swarning: Python instrumentation failed to start: %r\n" % (_PREFIX, _error))
_chain_user_sitecustomize()
