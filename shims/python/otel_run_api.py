"""otel-run's Python shim (sitecustomize.py beside this file, this module's
`_shim`) inside the OpenTelemetry API and SDK: loaded when the first of their
modules is imported, it patches them as they are.

- Each signal's global provider starts when it is first needed: the program asks
  for it, or a span, a measurement or a log record is made through the API's
  proxies with none set. OpenTelemetry's own code asking for a provider (an
  instrumentor being activated, the SDK's own metrics) gets the API's proxy,
  which follows the provider set later: a program that sets up its own after
  importing an instrumented library keeps it.
- Every TracerProvider and MeterProvider, the program's or otel-run's, gets
  otel-run's span processors and metric readers (otel_run_sdk.py decides which).
- A proxy that has found its real tracer, instrument or logger steps aside: the
  real one's methods are bound on it, so an instrumentor's calls skip it.
- `opentelemetry.trace.use_span` is a plain context manager, not a generator,
  if the API's own behaves as it does.
- `opentelemetry.propagate` imports even when OTEL_PROPAGATORS names a propagator
  that is not installed.
- `opentelemetry.util.http` reads its settings without decoding the environment
  on every request.
"""

import _thread
import functools
import inspect
import os
import sys

# --- Starting a signal's provider, once -------------------------------------------

_started = set()
_start_lock = _thread.RLock()
# Per signal, the proxies' methods wrapped to start it: put back once it has
# started, so that a request's spans and measurements no longer pass through them.
_wrapped = {}


def start(signal):
    """Sets up the SDK's global provider for `signal` (traces, metrics, logs) if it
    is exported and no provider is set. A second thread waits for the first; the
    thread that is starting it returns at once (the SDK's own start-up may ask)."""
    if signal in _started:
        return
    with _start_lock:
        if signal in _started:
            return
        _started.add(signal)
        for cls, method, original in _wrapped.pop(signal, ()):
            setattr(cls, method, original)
        if not _shim._exported(signal):
            return
        try:
            getattr(_shim._sibling("otel_run_sdk"), "start_" + signal)()
        except ImportError as error:
            _shim._warn_once("sdk", "cannot start the OpenTelemetry SDK for `%s`: %s" % (sys.executable, error),
                             "`otel-run bootstrap --python %s` installs it" % sys.executable)
        except Exception as error:  # telemetry must never break the program
            _shim._warn_once("start-" + signal, "the OpenTelemetry SDK's %s could not start: %r" % (signal, error))


def _asked_by_opentelemetry(frame):
    name = frame.f_globals.get("__name__") or ""
    return name == "opentelemetry" or name.startswith("opentelemetry.")


def _starting_getter(api, getter, provider, signal):
    """`api.getter()` (`get_tracer_provider`) that starts the SDK when the
    program asks and no provider is set."""
    original = getattr(api, getter)

    def get_provider():
        if getattr(api, provider, None) is None and not _asked_by_opentelemetry(sys._getframe(1)):
            start(signal)
        return original()

    get_provider.__wrapped__ = original
    return get_provider


def _start_on_use(cls, method, real, api, provider, signal, program_only=False):
    """`cls.method` (a proxy's, or its `property`) starts the SDK first when the
    proxy has no real object yet and no provider is set. A class or method this
    API version does not have is left alone."""
    original = getattr(cls, "__dict__", {}).get(method)
    if original is None or signal in _started:
        return
    target = original.fget if isinstance(original, property) else original

    def use(self, *args, **kwargs):
        if (getattr(self, real, None) is None and getattr(api, provider, None) is None
                and not (program_only and _asked_by_opentelemetry(sys._getframe(1)))):
            start(signal)
        return target(self, *args, **kwargs)

    use.__wrapped__ = target
    setattr(cls, method, property(use) if isinstance(original, property) else use)
    _wrapped.setdefault(signal, []).append((cls, method, original))


# --- Proxies that step aside ---------------------------------------------------------

def _bind_real(proxy, real, methods):
    """Once a proxy has its real object, its `methods` become the real object's
    own, bound on the instance: an instrumentor's later calls skip the proxy (and
    the context manager the API's ProxyTracer adds around each span)."""
    for method in methods:
        found = getattr(real, method, None)
        if found is not None:
            proxy.__dict__[method] = found


def _binding_property(cls, prop, real, methods):
    """`cls.prop` (ProxyTracer._tracer) binds `methods` to the real object the
    first time it finds one."""
    original = getattr(cls, "__dict__", {}).get(prop)
    if not isinstance(original, property):
        return
    get = original.fget

    def found(self):
        value = get(self)
        if value is not None and getattr(self, real, None) is value:
            _bind_real(self, value, methods)
        return value

    found.__wrapped__ = get
    setattr(cls, prop, property(found))


def _binding_meter_set(cls, methods):
    """`cls.on_meter_set` (a proxy instrument's) binds its measuring method to the
    real instrument it creates."""
    original = getattr(cls, "__dict__", {}).get("on_meter_set")
    if original is None:
        return

    def on_meter_set(self, meter):
        original(self, meter)
        real = getattr(self, "_real_instrument", None)
        if real is not None:
            _bind_real(self, real, [m for m in methods if callable(getattr(type(self), m, None))])

    on_meter_set.__wrapped__ = original
    cls.on_meter_set = on_meter_set


# --- use_span without a generator ----------------------------------------------------

def _quick_use_span(trace):
    """`trace.use_span` as a plain context manager: the API's runs a generator
    under two context-manager layers, for every request an instrumentor serves
    and every span the SDK starts as current. Installed only if the API's own
    behaves as this one does (the exceptions it records differ between versions)."""
    original = trace.use_span
    context_api = sys.modules["opentelemetry.context"]
    set_value, attach, detach = context_api.set_value, context_api.attach, context_api.detach
    span_key = trace._SPAN_KEY
    api_span, status, error = trace.Span, trace.Status, trace.StatusCode.ERROR

    def failed(span, exc, record, set_status):
        if isinstance(span, api_span) and span.is_recording():
            if record:
                span.record_exception(exc)
            if set_status:
                span.set_status(status(status_code=error, description="%s: %s" % (type(exc).__name__, exc)))

    class UseSpan:
        __slots__ = ("_span", "_end", "_record", "_set_status", "_token")

        def __init__(self, span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
            self._span, self._end = span, end_on_exit
            self._record, self._set_status = record_exception, set_status_on_exception

        def __enter__(self):
            span = self._span
            try:
                self._token = attach(set_value(span_key, span))
            except caught as exc:
                failed(span, exc, self._record, self._set_status)
                if self._end:
                    span.end()
                raise
            except BaseException:
                if self._end:
                    span.end()
                raise
            return span

        def __exit__(self, kind, exc, traceback):
            span = self._span
            try:
                detach(self._token)
                if exc is None and kind is not None:  # called as __exit__(type, None, None)
                    exc = kind()
                if exc is not None and isinstance(exc, caught):
                    failed(span, exc, self._record, self._set_status)
            finally:
                if self._end:
                    span.end()
            return False

        def __call__(self, function):
            """As a decorator: the span is used for each call."""
            made = (self._span, self._end, self._record, self._set_status)
            if inspect.iscoroutinefunction(function):
                @functools.wraps(function)
                async def using(*args, **kwargs):
                    with UseSpan(*made):
                        return await function(*args, **kwargs)
            else:
                @functools.wraps(function)
                def using(*args, **kwargs):
                    with UseSpan(*made):
                        return function(*args, **kwargs)
            return using

    def use_span(span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
        return UseSpan(span, end_on_exit, record_exception, set_status_on_exception)

    caught = _caught_by(original, api_span, trace.INVALID_SPAN_CONTEXT)
    if caught is None or _caught_by(use_span, api_span, trace.INVALID_SPAN_CONTEXT) is not caught:
        return
    use_span.__doc__, use_span.__wrapped__ = original.__doc__, original
    trace.use_span = use_span


def _caught_by(use_span, api_span, invalid):
    """Which exceptions `use_span` records on the span it uses (Exception or
    BaseException), having also ended it, detached it and let them through; None
    if it does something else."""
    import opentelemetry.context as context_api

    class Probe(api_span):
        def __init__(self):
            self.recorded, self.ended, self.status = [], 0, None

        def is_recording(self):
            return True

        def record_exception(self, exception, *args, **kwargs):
            self.recorded.append(type(exception))

        def set_status(self, status, description=None):
            self.status = status

        def end(self, end_time=None):
            self.ended += 1

        def get_span_context(self):
            return invalid

        def set_attribute(self, key, value):
            pass

        set_attributes = add_event = update_name = add_link = set_attribute

    outcome = []
    before = context_api.get_current()
    for raised in (ValueError, KeyboardInterrupt):
        probe = Probe()
        try:
            with use_span(probe, end_on_exit=True):
                raise raised("probe")
        except raised:
            pass
        if probe.ended != 1 or context_api.get_current() != before:
            return None
        outcome.append(bool(probe.recorded) and probe.status is not None)
    return {(True, False): Exception, (True, True): BaseException}.get(tuple(outcome))


def patch_trace_api(trace):
    trace.get_tracer_provider = _starting_getter(trace, "get_tracer_provider", "_TRACER_PROVIDER", "traces")
    try:
        _quick_use_span(trace)
    except Exception as error:  # the API's own stays
        _shim._debug("opentelemetry.trace.use_span stays the API's: %r" % error)
    _binding_property(getattr(trace, "ProxyTracer", None), "_tracer", "_real_tracer",
                      ("start_span", "start_as_current_span"))
    _start_on_use(getattr(trace, "ProxyTracer", None), "_tracer", "_real_tracer",
                  trace, "_TRACER_PROVIDER", "traces")


def patch_metrics_api(metrics):
    api = sys.modules["opentelemetry.metrics._internal"]
    api.get_meter_provider = metrics.get_meter_provider = _starting_getter(
        api, "get_meter_provider", "_METER_PROVIDER", "metrics")
    instruments = sys.modules["opentelemetry.metrics._internal.instrument"]
    _binding_meter_set(getattr(instruments, "_ProxyInstrument", None), ("add", "record", "set"))
    for name, method in (("_ProxyCounter", "add"), ("_ProxyUpDownCounter", "add"),
                         ("_ProxyHistogram", "record"), ("_ProxyGauge", "set")):
        _start_on_use(getattr(instruments, name, None), method, "_real_instrument",
                      api, "_METER_PROVIDER", "metrics")
    # An observable instrument is read only by a provider's reader: the
    # program's creating one (not an instrumentor's) is its first use.
    for method in ("create_observable_counter", "create_observable_up_down_counter", "create_observable_gauge"):
        _start_on_use(getattr(api, "_ProxyMeter", None), method, "_real_meter",
                      api, "_METER_PROVIDER", "metrics", program_only=True)


def patch_logs_api(logs):
    api = sys.modules["opentelemetry._logs._internal"]
    api.get_logger_provider = logs.get_logger_provider = _starting_getter(
        api, "get_logger_provider", "_LOGGER_PROVIDER", "logs")
    _binding_property(getattr(api, "ProxyLogger", None), "_logger", "_real_logger", ("emit",))
    _start_on_use(getattr(api, "ProxyLogger", None), "_logger", "_real_logger",
                  api, "_LOGGER_PROVIDER", "logs")


def watch_tracer_providers(module):
    """opentelemetry.sdk.trace: each TracerProvider gets otel-run's span
    processors when it is built, and gives them up to a processor of the
    program's that already exports to the same place."""
    cls = module.TracerProvider
    init, add = cls.__init__, cls.add_span_processor

    def __init__(self, *args, **kwargs):
        _shim._sdk_call("tracer_provider_building")
        init(self, *args, **kwargs)
        _shim._sdk_call("tracer_provider_built", self)

    def add_span_processor(self, span_processor):
        add(self, span_processor)
        _shim._sdk_call("span_processor_added", self)

    cls.__init__, cls.add_span_processor = __init__, add_span_processor


def watch_meter_providers(module):
    """opentelemetry.sdk.metrics: each MeterProvider gets otel-run's metric
    readers, unless one of the program's readers already exports to the same
    place. A provider takes its readers when it is built, never later."""
    cls = module.MeterProvider
    init = cls.__init__

    def __init__(self, metric_readers=(), *args, **kwargs):
        readers = _shim._sdk_call("metric_readers_for", list(metric_readers))
        init(self, metric_readers if readers is None else readers, *args, **kwargs)
        _shim._sdk_call("meter_provider_built", self)

    cls.__init__ = __init__


# --- Propagators ------------------------------------------------------------------

def known_propagators_only(exec_module, module):
    """Executes `opentelemetry.propagate`, which fails to import when
    OTEL_PROPAGATORS names a propagator that is not installed (and with it every
    instrumentor that propagates context): then it is said once, and the module
    runs again with the others only. The program's environment is left as it was."""
    try:
        return exec_module(module)
    except Exception:
        usable = _shim._sdk_call("usable_propagators")
        if usable is None:
            raise
    configured = os.environ["OTEL_PROPAGATORS"]
    os.environ["OTEL_PROPAGATORS"] = usable
    try:
        return exec_module(module)
    finally:
        os.environ["OTEL_PROPAGATORS"] = configured


# --- Settings read on every request -------------------------------------------------

def quick_environ_reads(module):
    """`opentelemetry.util.http`, which the HTTP instrumentations call for every
    request, reads its settings (the headers to capture, whether every method is
    kept) from os.environ each time: several decodings of the environment per
    request. It reads from a view of os.environ instead, the same values."""
    if getattr(module, "environ", None) is os.environ and EnvironReads.usable(os.environ):
        module.environ = EnvironReads(os.environ)


class EnvironReads:
    """os.environ for reading, `get` answered from what it last decoded for a
    key while os.environ holds the same value object for it: setting a variable
    through os.environ stores a new one (and this view keeps the old one alive,
    so no other takes its place). Anything else goes to os.environ itself."""

    _UNSET = object()

    @staticmethod
    def usable(environ):
        return isinstance(getattr(environ, "_data", None), dict) and callable(getattr(environ, "encodekey", None))

    def __init__(self, environ):
        self._environ = environ
        self._data = environ._data
        self._encode = environ.encodekey
        self._decoded = {}

    def get(self, key, default=None):
        known = self._decoded.get(key)
        if known is not None and self._data.get(known[0], self._UNSET) is known[1]:
            value = known[2]
            return default if value is self._UNSET else value
        try:
            encoded = self._encode(key)
        except Exception:  # not a str: os.environ says what it says
            return self._environ.get(key, default)
        raw = self._data.get(encoded, self._UNSET)
        value = self._UNSET if raw is self._UNSET else self._environ.get(key, self._UNSET)
        self._decoded[key] = (encoded, raw, value)
        return default if value is self._UNSET else value

    def __getitem__(self, key):
        return self._environ[key]

    def __contains__(self, key):
        return key in self._environ

    def __iter__(self):
        return iter(self._environ)

    def __len__(self):
        return len(self._environ)

    def __getattr__(self, name):
        return getattr(self._environ, name)
