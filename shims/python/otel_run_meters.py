"""otel-run's own meter provider, loaded by otel-run's Python shim
(sitecustomize.py beside this file) when it starts the global meter provider and
every metric it exports goes to otel-run's agent. A program that builds an SDK
MeterProvider of its own, or a configuration this provider does not cover (the
console exporter, exponential histograms), gets the SDK's instead
(otel_run_sdk.py decides).

Why: a request that an instrumentation measures three times (active requests up
and down, its duration) spent about as much in the SDK's measurement path as in
its span: a Measurement object, its attributes cleaned, hashed and sorted, an
exemplar offered, for each call. Here a measurement finds its series by its
attributes as they are (each value with its type: 1, 1.0 and True stay apart),
and only a new series has its attributes cleaned.

What it does as the SDK does (the anchor the tests hold it to):
- instruments of the API, names checked and case-insensitive, one per name and
  kind; a negative add to a counter or record to a histogram is dropped, said once;
- sums, last-value gauges and explicit-bucket histograms (the advisory bounds,
  else the SDK's defaults), with min and max;
- temporality from OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, cumulative
  series starting at their first measurement, delta ones at the last collection;
- exemplars as OTEL_METRICS_EXEMPLAR_FILTER says (trace_based by default): a
  histogram keeps the last per bucket, a sum one sampled uniformly;
- observable instruments read by their callbacks (or generators) at each
  collection, a failing callback said and the others read;
- a collection every OTEL_METRIC_EXPORT_INTERVAL (60 s), on force_flush (the
  SIGTERM flush), and at exit; a forked child starts its own series and thread.
"""

import atexit
import bisect
import os
import random
import re
import threading
import time
import types
import weakref

from opentelemetry import context as _context_api
from opentelemetry import metrics as _api
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, TraceFlags, get_current_span
from opentelemetry.trace import Span as _ApiSpan

_wire = _shim._sibling("otel_run_wire")

_DEFAULT_BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
                   7500.0, 10000.0)
_NAME = re.compile(r"[a-zA-Z][-_./a-zA-Z0-9]{0,254}\Z")
_EMPTY = frozenset()
_CUMULATIVE, _DELTA = 2, 1
# The orders of attributes an instrument remembers its series under
# (`_Instrument._find`): past this many, a series is found by its set alone.
_MAX_GIVEN = 2048
_random = random.random

try:
    from opentelemetry.attributes import _clean_attribute_value as _api_clean
except ImportError:  # an older API: values are kept as they are
    _api_clean = None


def _context_fields_known():
    """Whether a SpanContext is the tuple (trace id, span id, is remote, flags,
    state, is valid, ...) `_Instrument._exemplar` reads."""
    sampled = SpanContext(3, 4, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    unsampled = SpanContext(5, 6, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    return (tuple(sampled[:6]) == (3, 4, False, 1, sampled.trace_state, True)
            and tuple(unsampled[:6]) == (5, 6, True, 0, unsampled.trace_state, True)
            and INVALID_SPAN_CONTEXT[5] is False and sampled.trace_flags.sampled is True)


try:
    _CONTEXT_FIELDS_KNOWN = _context_fields_known()
except Exception:  # another API version: read through the properties
    _CONTEXT_FIELDS_KNOWN = False


def _current_span_reader():
    """(runtime context, the context variable's `get`, the span's key) when the
    API keeps the current context in a context variable of its own
    ContextVarsRuntimeContext, as it does unless OTEL_PYTHON_CONTEXT names
    another: the current span is then that context's entry under the key, as
    `get_current_span()` finds it four calls down. Else None."""
    import contextvars

    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.trace import propagation

    runtime = getattr(_context_api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    key = getattr(propagation, "_SPAN_KEY", None)
    if (type(runtime) is not ContextVarsRuntimeContext or type(variable) is not contextvars.ContextVar
            or not isinstance(key, str) or _context_api.get_current() is not variable.get()):
        return None
    return runtime, variable.get, key


try:
    _CURRENT_SPAN = _current_span_reader()
except Exception:  # another API version: asked through get_current_span()
    _CURRENT_SPAN = None


def _current_span_context(context):
    """get_current_span(context).get_span_context(), read straight from the
    context variable when `_CURRENT_SPAN` says how and the API still uses that
    runtime context."""
    if context is None and _CURRENT_SPAN is not None and _context_api._RUNTIME_CONTEXT is _CURRENT_SPAN[0]:
        span = _CURRENT_SPAN[1]().get(_CURRENT_SPAN[2])
        if span is None:
            return INVALID_SPAN_CONTEXT
        if isinstance(span, _ApiSpan):
            return span.get_span_context()
    return get_current_span(context).get_span_context()


def usable():
    """Whether this provider covers the configuration: exemplar filters and
    histogram aggregations it does not know go to the SDK."""
    aggregation = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "").strip().lower()
    return (aggregation in ("", "explicit_bucket_histogram")
            and _exemplar_filter() in ("trace_based", "always_on", "always_off"))


def _exemplar_filter():
    return os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based").strip().lower() or "trace_based"


def _delta_kinds():
    preference = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").strip().lower()
    if preference == "delta":
        return {"counter", "histogram", "observable_counter"}
    if preference == "lowmemory":
        return {"counter", "histogram"}
    return set()


def _milliseconds(variable, default):
    try:
        value = float(os.environ.get(variable, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _clean(attributes):
    """A new series' attributes, as the SDK keeps them (sequences as tuples,
    other objects as their text)."""
    if not attributes:
        return {}
    if _api_clean is None:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in attributes.items()}
    return _api_clean(attributes, None)


def _key(attributes):
    """A series' key: its attributes with each value's type."""
    if not attributes:
        return _EMPTY
    return frozenset(zip(attributes.items(), map(type, attributes.values())))


def _number(value):
    return {"asInt": str(value)} if isinstance(value, int) else {"asDouble": value}


class _Series:
    __slots__ = ("attributes", "start", "value", "count", "min", "max", "buckets", "exemplars", "seen", "fresh")

    def __init__(self, attributes, start, buckets=0):
        self.attributes = attributes
        self.start = start
        self.value = 0
        self.count = 0
        self.min = None
        self.max = None
        self.buckets = [0] * buckets if buckets else None
        self.exemplars = None
        self.seen = 0
        self.fresh = False


class _Instrument:
    kind = ""

    def __init__(self, provider, name, unit, description):
        self._provider = provider
        self.name, self.unit, self.description = name, unit or "", description or ""
        self._series = {}
        self._given = {}
        self._lock = threading.Lock()
        self._temporality = _DELTA if self.kind in provider.delta_kinds else _CUMULATIVE
        self._last_collection = provider.started

    def _find(self, attributes):
        """The series of `attributes`, made if new; call with the lock held.

        Found first by the attributes as given, in their order: an
        instrumentation passes the same keys in the same order each time, and
        a tuple is made and hashed in a fraction of the time of the set that
        keys a series whatever the order (`_key`). A series found by its set
        is then also remembered under the order it was given in."""
        given = None
        if attributes:
            try:
                given = (tuple(attributes.items()), tuple(map(type, attributes.values())))
                series = self._given.get(given)
            except TypeError:  # an unhashable value (a list)
                given = None
            else:
                if series is not None:
                    return series
        try:
            key = _key(attributes)
            series = self._series.get(key)
        except TypeError:  # an unhashable value (a list): keyed as it is kept
            attributes = _clean(attributes)
            key = _key(attributes)
            series = self._series.get(key)
        if series is None:
            cleaned = _clean(attributes)
            series = self._series[key] = self._new(cleaned)
        if given is not None and len(self._given) < _MAX_GIVEN:
            self._given[given] = series
        return series

    def _new(self, attributes):
        return _Series(attributes, time.time_ns())

    def _exemplar(self, value, context):
        """(time, value, span id, trace id) if this measurement is an exemplar."""
        chosen = self._provider.exemplar_filter
        if chosen == "always_off":
            return None
        span_context = _current_span_context(context)
        if _CONTEXT_FIELDS_KNOWN and type(span_context) is SpanContext:
            # The tuple's own fields, without a property call for each.
            trace_id, span_id, _, flags, _, valid = span_context[:6]
            sampled = flags & 1
        else:
            valid = span_context.is_valid
            sampled = valid and span_context.trace_flags.sampled
            trace_id, span_id = span_context.trace_id, span_context.span_id
        if valid:
            if chosen == "trace_based" and not sampled:
                return None
            return (time.time_ns(), value, span_id, trace_id)
        return None if chosen == "trace_based" else (time.time_ns(), value, 0, 0)

    def _keep_one(self, series, exemplar):
        """A sum's exemplar: uniformly one of those offered since the last collection."""
        series.seen += 1
        if series.seen == 1 or _random() * series.seen < 1.0:
            series.exemplars = exemplar

    def _negative(self, amount):
        self._provider.say_once(
            (self.kind, self.name), "%s must be non-negative on %s %s; the measurement is dropped"
            % ("Record amount" if self.kind == "histogram" else "Add amount", type(self).__name__, self.name))

    def collect(self, now):
        """The metric's OTLP/JSON since the last collection, or None."""
        with self._lock:
            points = [self._point(s, now) for s in list(self._series.values()) if s.fresh or self._temporality == _CUMULATIVE]
            start, self._last_collection = self._last_collection, now
        points = [p for p in points if p is not None]
        if not points:
            return None
        return self._metric(points, start)

    def _base(self, series, now, start):
        return {"attributes": _wire.attributes(series.attributes), "startTimeUnixNano": str(start),
                "timeUnixNano": str(now)}

    def _encoded_exemplars(self, exemplars):
        out = []
        for time_ns, value, span_id, trace_id in exemplars:
            exemplar = {"filteredAttributes": [], "timeUnixNano": str(time_ns),
                        "spanId": _wire.span_id(span_id), "traceId": _wire.trace_id(trace_id)}
            exemplar.update(_number(value))
            out.append(exemplar)
        return out

    def fork_reset(self):
        self._lock = threading.Lock()
        self._series = {}
        self._given = {}
        self._last_collection = time.time_ns()


class _Sum(_Instrument):
    monotonic = True

    def _add(self, amount, attributes, context):
        exemplar = self._exemplar(amount, context) if self._provider.exemplar_filter != "always_off" else None
        with self._lock:
            series = self._find(attributes)
            series.value += amount
            series.fresh = True
            if exemplar is not None:
                self._keep_one(series, exemplar)

    def _point(self, series, now):
        start = series.start if self._temporality == _CUMULATIVE else max(series.start, self._last_collection)
        point = self._base(series, now, start)
        point.update(_number(series.value))
        point["exemplars"] = self._encoded_exemplars([series.exemplars] if series.exemplars else [])
        series.exemplars, series.seen, series.fresh = None, 0, False
        if self._temporality == _DELTA:
            series.value = 0
        return point

    def _metric(self, points, start):
        return {"name": self.name, "description": self.description, "unit": self.unit,
                "sum": {"dataPoints": points, "aggregationTemporality": self._temporality,
                        "isMonotonic": self.monotonic}}


class Counter(_Sum, _api.Counter):
    kind = "counter"

    def add(self, amount, attributes=None, context=None):
        if amount < 0:
            self._negative(amount)
            return
        self._add(amount, attributes, context)


class UpDownCounter(_Sum, _api.UpDownCounter):
    kind = "up_down_counter"
    monotonic = False

    def add(self, amount, attributes=None, context=None):
        self._add(amount, attributes, context)


class Histogram(_Instrument, _api.Histogram):
    kind = "histogram"

    def __init__(self, provider, name, unit, description, bounds):
        super().__init__(provider, name, unit, description)
        self._bounds = tuple(float(b) for b in bounds) if bounds is not None else _DEFAULT_BOUNDS

    def _new(self, attributes):
        return _Series(attributes, time.time_ns(), len(self._bounds) + 1)

    def record(self, amount, attributes=None, context=None):
        if amount < 0:
            self._negative(amount)
            return
        bucket = bisect.bisect_left(self._bounds, amount)
        exemplar = self._exemplar(amount, context) if self._provider.exemplar_filter != "always_off" else None
        with self._lock:
            series = self._find(attributes)
            series.count += 1
            series.value += amount
            series.buckets[bucket] += 1
            if series.min is None or amount < series.min:
                series.min = amount
            if series.max is None or amount > series.max:
                series.max = amount
            series.fresh = True
            if exemplar is not None:
                if series.exemplars is None:
                    series.exemplars = {}
                series.exemplars[bucket] = exemplar

    def _point(self, series, now):
        start = series.start if self._temporality == _CUMULATIVE else max(series.start, self._last_collection)
        point = self._base(series, now, start)
        point.update({"count": str(series.count), "sum": series.value,
                      "bucketCounts": [str(c) for c in series.buckets], "explicitBounds": list(self._bounds)})
        if series.min is not None:
            point["min"], point["max"] = series.min, series.max
        exemplars = series.exemplars or {}
        point["exemplars"] = self._encoded_exemplars([exemplars[b] for b in sorted(exemplars)])
        series.exemplars, series.fresh = None, False
        if self._temporality == _DELTA:
            series.count, series.value, series.min, series.max = 0, 0, None, None
            series.buckets = [0] * len(series.buckets)
        return point

    def _metric(self, points, start):
        return {"name": self.name, "description": self.description, "unit": self.unit,
                "histogram": {"dataPoints": points, "aggregationTemporality": self._temporality}}


class _LastValue(_Instrument):
    def _point(self, series, now):
        point = self._base(series, now, 0)
        point.update(_number(series.value))
        point["exemplars"] = self._encoded_exemplars([series.exemplars] if series.exemplars else [])
        series.exemplars, series.seen, series.fresh = None, 0, False
        return point

    def _metric(self, points, start):
        return {"name": self.name, "description": self.description, "unit": self.unit,
                "gauge": {"dataPoints": points}}


_GaugeBase = getattr(_api, "_Gauge", None) or getattr(_api, "Gauge", None)


class Gauge(_LastValue, *((_GaugeBase,) if _GaugeBase is not None else ())):
    kind = "gauge"

    def set(self, amount, attributes=None, context=None):
        exemplar = self._exemplar(amount, context) if self._provider.exemplar_filter != "always_off" else None
        with self._lock:
            series = self._find(attributes)
            series.value = amount
            series.fresh = True
            if exemplar is not None:
                self._keep_one(series, exemplar)


class _Observable:
    """Read by its callbacks at each collection."""

    def _init_callbacks(self, callbacks):
        self._callbacks = []
        for callback in callbacks or ():
            if isinstance(callback, types.GeneratorType):
                next(callback)
                callback = callback.send
            self._callbacks.append(callback)

    def _observe(self, now):
        options = _api.CallbackOptions(timeout_millis=self._provider.timeout_millis)
        observed = []
        for callback in self._callbacks:
            try:
                observed.extend(callback(options) or ())
            except Exception as error:  # the others are still read
                self._provider.say_once(("callback", self.name, type(error).__name__),
                                        "a callback of %s %s failed: %r" % (type(self).__name__, self.name, error))
        return observed

    def collect(self, now):
        observed = self._observe(now)
        with self._lock:
            for observation in observed:
                self._observed(self._find(observation.attributes), observation.value)
        return super().collect(now)


class ObservableCounter(_Observable, _Sum, _api.ObservableCounter):
    kind = "observable_counter"

    def __init__(self, provider, name, callbacks, unit, description):
        _Sum.__init__(self, provider, name, unit, description)
        self._init_callbacks(callbacks)

    def _observed(self, series, value):
        # The callback gives the running total; a delta series reports the change.
        if self._temporality == _DELTA:
            series.value, series.count = value - series.count, value
        else:
            series.value = value
        series.fresh = True


class ObservableUpDownCounter(ObservableCounter, _api.ObservableUpDownCounter):
    kind = "observable_up_down_counter"
    monotonic = False


class ObservableGauge(_Observable, _LastValue, _api.ObservableGauge):
    kind = "observable_gauge"

    def __init__(self, provider, name, callbacks, unit, description):
        _LastValue.__init__(self, provider, name, unit, description)
        self._init_callbacks(callbacks)

    def _observed(self, series, value):
        series.value = value
        series.fresh = True


class Meter(_api.Meter):
    def __init__(self, provider, name, version, schema_url, attributes):
        super().__init__(name, version=version, schema_url=schema_url)
        self._provider = provider
        self._attributes = dict(attributes) if attributes else {}
        self._instruments = {}
        self._lock = threading.Lock()

    def _instrument(self, cls, name, *args):
        if not isinstance(name, str) or not _NAME.match(name):
            raise Exception("Expected ASCII string of maximum length 255 characters but got %s" % name)
        key = (name.lower(), cls)
        with self._lock:
            found = self._instruments.get(key)
            if found is None:
                found = self._instruments[key] = cls(self._provider, name, *args)
            return found

    def create_counter(self, name, unit="", description=""):
        return self._instrument(Counter, name, unit, description)

    def create_up_down_counter(self, name, unit="", description=""):
        return self._instrument(UpDownCounter, name, unit, description)

    def create_histogram(self, name, unit="", description="", *, explicit_bucket_boundaries_advisory=None):
        return self._instrument(Histogram, name, unit, description, explicit_bucket_boundaries_advisory)

    def create_gauge(self, name, unit="", description=""):
        return self._instrument(Gauge, name, unit, description)

    def create_observable_counter(self, name, callbacks=None, unit="", description=""):
        return self._instrument(ObservableCounter, name, callbacks, unit, description)

    def create_observable_up_down_counter(self, name, callbacks=None, unit="", description=""):
        return self._instrument(ObservableUpDownCounter, name, callbacks, unit, description)

    def create_observable_gauge(self, name, callbacks=None, unit="", description=""):
        return self._instrument(ObservableGauge, name, callbacks, unit, description)

    def collect(self, now):
        with self._lock:
            instruments = list(self._instruments.values())
        metrics = [m for m in (i.collect(now) for i in instruments) if m is not None]
        if not metrics:
            return None
        scope = {"name": self.name, "version": self.version or ""}
        if self._attributes:
            scope["attributes"] = _wire.attributes(self._attributes)
        return {"scope": scope, "schemaUrl": self.schema_url or "", "metrics": metrics}


class MeterProvider(_api.MeterProvider):
    def __init__(self, resource, endpoint):
        self.resource = resource
        self.started = time.time_ns()
        self.delta_kinds = _delta_kinds()
        self.exemplar_filter = _exemplar_filter()
        self.timeout_millis = _milliseconds("OTEL_METRIC_EXPORT_TIMEOUT", 30000.0)
        self._interval = _milliseconds("OTEL_METRIC_EXPORT_INTERVAL", 60000.0) / 1000.0
        self._client = _wire.AgentClient(endpoint, "/v1/metrics")
        self._meters = {}
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._shut_down = False
        self._start_thread()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown())
        os.register_at_fork(after_in_child=lambda: ref() is not None and ref()._forked())

    def _start_thread(self):
        self._wake = threading.Event()
        thread = threading.Thread(target=self._run, args=(self._wake,), name="otel-run-metrics", daemon=True)
        thread.start()

    def _run(self, wake):
        while not wake.wait(self._interval):
            self._export()

    def _forked(self):
        """A forked child reports what it measures itself, on its own thread."""
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        for meter in self._meters.values():
            meter._lock = threading.Lock()
            for instrument in meter._instruments.values():
                instrument.fork_reset()
        if not self._shut_down:
            self._start_thread()

    def say_once(self, key, message):
        _shim._warn_once("meters:%r" % (key,), message)

    def get_meter(self, name, version=None, schema_url=None, attributes=None):
        if not name:
            self.say_once("meter-name", "a meter was asked for with no name")
            name = ""
        key = (name, version, schema_url, _key(attributes) if attributes else _EMPTY)
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                meter = self._meters[key] = Meter(self, name, version, schema_url, attributes)
            return meter

    def _export(self):
        with self._export_lock:
            now = time.time_ns()
            with self._lock:
                meters = list(self._meters.values())
            scopes = [s for s in (m.collect(now) for m in meters) if s is not None]
            if not scopes:
                return True
            resource = _wire.resource(self.resource)
            body = {"resourceMetrics": [{"resource": resource, "schemaUrl": self.resource.schema_url or "",
                                         "scopeMetrics": scopes}]}
            return self._client.send(body)

    def force_flush(self, timeout_millis=10_000):
        if self._shut_down:
            return False
        return self._export()

    def shutdown(self, timeout_millis=30_000):
        if self._shut_down:
            return
        self._shut_down = True
        self._wake.set()
        self._export()
        self._client.close()
