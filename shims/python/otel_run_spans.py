"""Lighter spans behind the SDK's own API, loaded by otel-run's Python shim
(sitecustomize.py beside this file) when a tracer provider first exports
through otel-run.

A request in an instrumented web app starts and ends a span and sets a dozen
attributes on it, on the worker's thread, under the GIL the app serves requests
with. The SDK's span spends most of that time on generality a plain span does
not use: each attribute value goes through the recursive cleaning of any
value, under a second lock; the span's fields are passed through two layers of
keyword arguments; and at its end the span is copied, field by field through
the same keywords, into the read-only span the processors receive.

`Span` here is the SDK's `_Span`, subclassed: the same fields, the same
methods, the same type for every `isinstance` an instrumentation or a
program's processor makes. What differs is only how fast the common case is:
an attribute whose key is a non-empty `str` and whose value is a `str` within
the length limit, a `bool`, an `int` or a `float` is stored as the SDK would
store it, without the cleaning; any other value, or a full attribute dict,
goes the SDK's own way. The span processors receive the ended span itself, a
`ReadableSpan` as the SDK's span is (the SDK ignores every change to an ended
span), not a copy of its fields.

Two more savings at a span's start: a span without events or links holds
one shared empty list of each until its first (`Span._add_event`), and the
SDK's `Tracer.start_span` makes the span through `new_span` instead of the
class's call (`_make_spans_directly`). And a provider whose sampler is the
SDK's default, ParentBased(ALWAYS_ON), gets an instance of that class
deciding the same in one step (`lighter_sampler`).

`install()` replaces the SDK's `_Span`, which its tracers create spans
from, only after building one span both ways and finding the same fields: an
SDK whose spans hold other fields keeps its own.
"""

import dis
import threading
import types

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util import BoundedList

_SDK_SPAN = sdk_trace._Span
_READABLE = sdk_trace.ReadableSpan
_UNSET_LIMITS = sdk_trace._UnsetLimits
_UNSET_STATUS = sdk_trace.Status(sdk_trace.StatusCode.UNSET)
_INTERNAL = sdk_trace.trace_api.SpanKind.INTERNAL
_NO_PROCESSOR = sdk_trace.SpanProcessor()
_Lock = threading.Lock
_new = object.__new__
# The value types stored as they are given: bool is an int, but its own type.
_PLAIN = frozenset((bool, int, float))
# The events and links of every span that has none (Span._add_event says why).
_NO_EVENTS = BoundedList(None)
_NO_LINKS = BoundedList(None)


class Attributes(BoundedAttributes):
    """The SDK's BoundedAttributes, storing plain values without cleaning them.

    Built by `new_attributes()`, not by `__init__`."""

    def __setitem__(self, key, value):
        kind = type(value)
        if ((kind is str and (self.max_value_len is None or len(value) <= self.max_value_len))
                or kind in _PLAIN) and type(key) is str and key and not self._immutable:
            with self._lock:
                stored = self._dict
                if key in stored:
                    del stored[key]
                    stored[key] = value
                    return
                if self.maxlen is None or len(stored) < self.maxlen:
                    stored[key] = value
                    return
        BoundedAttributes.__setitem__(self, key, value)

    def _set_items(self, attributes):
        if not _all_plain(attributes, self.max_value_len):
            BoundedAttributes._set_items(self, attributes)
            return
        if self._immutable or (self.maxlen is not None and len(self._dict) + len(attributes) > self.maxlen):
            BoundedAttributes._set_items(self, attributes)
            return
        with self._lock:
            stored = self._dict
            for key, value in attributes.items():
                if key in stored:
                    del stored[key]
                stored[key] = value


_PLAIN_OR_STR = _PLAIN | {str}
_STR = frozenset((str,))


def _all_plain(attributes, max_value_len):
    """Whether every key is a non-empty `str` and every value one stored as it is
    given (a `str` within `max_value_len`, a `bool`, `int` or `float`). The
    types are checked by sets taking `map`s, in C: a loop of Python code was a
    tenth of a span's start."""
    if not _PLAIN_OR_STR.issuperset(map(type, attributes.values())) or not _STR.issuperset(map(type, attributes)):
        return False
    if "" in attributes:
        return False
    if max_value_len is not None:
        for value in attributes.values():
            if type(value) is str and len(value) > max_value_len:
                return False
    return True


# The mappings a span's first attributes are copied from in one step: a dict,
# and the read-only view of one a sampler's result holds them in.
_COPIED = frozenset((dict, types.MappingProxyType))


def new_attributes(maxlen, initial, max_value_len):
    """A mutable `Attributes`, as `BoundedAttributes(maxlen, initial,
    immutable=False, max_value_len=max_value_len)` would be."""
    if maxlen is not None and maxlen < 0 or max_value_len is not None and max_value_len < 0:
        return BoundedAttributes(maxlen, initial, immutable=False, max_value_len=max_value_len)
    made = _new(Attributes)
    made._dict = {}
    made.maxlen = maxlen
    made.dropped = 0
    made.max_value_len = max_value_len
    made._lock = _Lock()
    made._immutable = False
    if initial:
        if (type(initial) in _COPIED and (maxlen is None or len(initial) <= maxlen)
                and _all_plain(initial, max_value_len)):
            copied = initial.copy()
            if type(copied) is dict:
                made._dict = copied
                return made
        made._set_items(initial)
    return made


def _fill(span, name, context, parent, sampler, trace_config, resource, attributes, kind, span_processor,
          instrumentation_info, record_exception, set_status_on_exception, limits, instrumentation_scope,
          record_end_metrics):
    """The fields of a span started without events or links, as the SDK's
    `_Span.__init__` sets them."""
    span._name = name
    span._context = context
    span._kind = kind
    span._instrumentation_info = instrumentation_info
    span._instrumentation_scope = instrumentation_scope
    span._parent = parent
    span._start_time = None
    span._end_time = None
    span._resource = resource if resource is not None else Resource.create({})
    span._status = _UNSET_STATUS
    span._sampler = sampler
    span._trace_config = trace_config
    span._record_exception = record_exception
    span._set_status_on_exception = set_status_on_exception
    span._span_processor = span_processor
    span._limits = limits
    span._lock = _Lock()
    span._attributes = new_attributes(limits.max_span_attributes, attributes, limits.max_span_attribute_length)
    span._events = _NO_EVENTS
    span._links = _NO_LINKS
    span._record_end_metrics = record_end_metrics


class Span(_SDK_SPAN):
    """The SDK's span, built and ended with less work (the module says how)."""

    def __init__(self, name, context, parent=None, sampler=None, trace_config=None, resource=None,
                 attributes=None, events=None, links=(), kind=_INTERNAL, span_processor=_NO_PROCESSOR,
                 instrumentation_info=None, record_exception=True, set_status_on_exception=True,
                 limits=_UNSET_LIMITS, instrumentation_scope=None, *, record_end_metrics=None):
        if events or links:
            # Events and links given at the start are the SDK's to bound.
            _SDK_SPAN.__init__(self, name, context, parent, sampler, trace_config, resource, attributes,
                               events, links, kind, span_processor, instrumentation_info,
                               record_exception, set_status_on_exception, limits, instrumentation_scope,
                               record_end_metrics=record_end_metrics)
            return
        _fill(self, name, context, parent, sampler, trace_config, resource, attributes, kind, span_processor,
              instrumentation_info, record_exception, set_status_on_exception, limits, instrumentation_scope,
              record_end_metrics)

    # A span's events and links are the shared empty lists until its first of
    # each: most spans have none, and two lists (each a deque and a lock) were a
    # tenth of a span's start. The SDK changes them only in these two methods.
    def _add_event(self, event):
        with self._lock:
            if self._events is _NO_EVENTS and self._end_time is None:
                self._events = BoundedList(self._limits.max_events)
        _SDK_SPAN._add_event(self, event)

    def _add_link(self, link):
        with self._lock:
            if self._links is _NO_LINKS and self._end_time is None:
                self._links = BoundedList(self._limits.max_links)
        _SDK_SPAN._add_link(self, link)

    def set_attribute(self, key, value):
        # The span's lock alone: every change to its attributes (the SDK's
        # `set_attributes` too) is made holding it.
        stored = self._attributes
        kind = type(value)
        if type(stored) is Attributes and type(key) is str and key and (
                kind in _PLAIN or kind is str and (stored.max_value_len is None or len(value) <= stored.max_value_len)):
            with self._lock:
                if self._end_time is None and not stored._immutable:
                    plain = stored._dict
                    if key in plain:
                        del plain[key]
                        plain[key] = value
                        return
                    if stored.maxlen is None or len(plain) < stored.maxlen:
                        plain[key] = value
                        return
        _SDK_SPAN.set_attribute(self, key, value)

    def _readable_span(self):
        # The ended span itself: a ReadableSpan, whose every change the SDK
        # ignores once it has ended.
        return self


def new_span(name, context, parent=None, sampler=None, trace_config=None, resource=None, attributes=None,
             events=None, links=(), kind=_INTERNAL, span_processor=_NO_PROCESSOR, instrumentation_info=None,
             record_exception=True, set_status_on_exception=True, limits=_UNSET_LIMITS,
             instrumentation_scope=None, *, record_end_metrics=None, **more):
    """`_Span(...)`, as the SDK's `Tracer.start_span` calls it once
    `_make_spans_directly` is done, without the class's call: that passes the
    fifteen keyword arguments as a dict through the SDK's `__new__` and then
    `__init__`, a sixth of a span's start. The class makes the span when the
    SDK's module names another (a program replaced it), and for events, links
    or arguments this module does not know."""
    if events or links or more or sdk_trace._Span is not Span:
        arguments = dict(name=name, context=context, parent=parent, sampler=sampler, resource=resource,
                         attributes=attributes, span_processor=span_processor, kind=kind, links=links,
                         instrumentation_info=instrumentation_info, record_exception=record_exception,
                         set_status_on_exception=set_status_on_exception, limits=limits,
                         instrumentation_scope=instrumentation_scope, record_end_metrics=record_end_metrics,
                         **more)
        if events:
            arguments["events"] = events
        if trace_config is not None:
            arguments["trace_config"] = trace_config
        return sdk_trace._Span(**arguments)
    span = _new(Span)
    _fill(span, name, context, parent, sampler, trace_config, resource, attributes, kind, span_processor,
          instrumentation_info, record_exception, set_status_on_exception, limits, instrumentation_scope,
          record_end_metrics)
    return span


def _readable_view(span):
    """What a processor reads of a ReadableSpan."""
    return (span.name, span.context, span.kind, span.parent, span.start_time, span.end_time,
            span.status.status_code, dict(span.attributes), span.dropped_attributes, span.events,
            span.dropped_events, span.links, span.dropped_links, span.resource, span.instrumentation_scope)


def _fields_match():
    """Whether a span built here holds the fields the SDK's does, and its
    processors read the same values from it."""
    from opentelemetry import trace as trace_api

    context = trace_api.SpanContext(0x1, 0x2, is_remote=False,
                                    trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED))
    limits = sdk_trace.SpanLimits()
    resource = Resource.create({})
    linked = trace_api.SpanContext(0x3, 0x4, is_remote=True)
    given = {"k": "v", "n": 1}
    built = []
    for cls in (_SDK_SPAN, Span):
        span = cls(name="check", context=context, resource=resource, attributes=given, limits=limits)
        span._start_time = 1
        span.set_attribute("later", 2.5)
        span._end_time = 3
        readable = span._readable_span()
        built.append((sorted(vars(span)), isinstance(readable, _READABLE), _readable_view(readable),
                      type(span._events), type(span._links)))
        # Events and links added as a program does: each span gets its own lists.
        for other in range(2):
            span = cls(name="check", context=context, resource=resource, limits=limits)
            span._start_time = 1
            span.add_event("event", {"e": other})
            span.record_exception(ValueError("check"), timestamp=2)
            span.add_link(linked, {"l": other})
            span._end_time = 3
            readable = span._readable_span()
            built.append(([(e.name, dict(e.attributes)) for e in readable.events], readable.dropped_events,
                          [(l.context, dict(l.attributes)) for l in readable.links], readable.dropped_links,
                          type(span._events), type(span._links)))
    return built[:3] == built[3:] and not _NO_EVENTS and not _NO_LINKS


_installed = False


def install():
    """The SDK's tracers make otel-run's spans from now on, if this SDK's spans
    are the ones this module knows. Returns whether they do."""
    global _installed
    if _installed:
        return True
    try:
        same = _fields_match()
    except Exception as error:  # another SDK version: its own spans stay
        _shim._debug("the SDK's spans stay its own: %r" % error)
        return False
    if not same:
        _shim._debug("the SDK's spans stay its own: they hold other fields than otel-run's would")
        return False
    sdk_trace._Span = Span
    _installed = True
    try:
        _make_spans_directly()
    except Exception as error:  # the SDK's start_span calls the class
        _shim._debug("the SDK's tracers make spans through the class: %r" % error)
    return True


_NEW_SPAN = "_otel_run_new_span"


def _sdk_start_span():
    """The SDK's own `Tracer.start_span` function, under any wrappers that say
    what they wrap (otel_run_sdk.py's parenting to the process span does)."""
    function = sdk_trace.Tracer.__dict__.get("start_span")
    for _ in range(8):
        if getattr(function, "__module__", None) == sdk_trace.__name__:
            break
        function = getattr(function, "__wrapped__", None)
    if type(function) is not types.FunctionType or function.__module__ != sdk_trace.__name__:
        return None
    return function


def _make_spans_directly():
    """Has the SDK's `Tracer.start_span` call `new_span` where it calls the
    class `_Span`: its code is the SDK's own, with that one global name read
    under another. Done only if `_Span` is read nowhere else in it. Returns
    whether it is done."""
    start_span = _sdk_start_span()
    if start_span is None:
        return False
    code = start_span.__code__
    uses = [i.opname for i in dis.get_instructions(code) if i.argval == "_Span"]
    if uses != ["LOAD_GLOBAL"] or _NEW_SPAN in code.co_names:
        return False
    setattr(sdk_trace, _NEW_SPAN, new_span)
    start_span.__code__ = code.replace(co_names=tuple(_NEW_SPAN if n == "_Span" else n for n in code.co_names))
    return True


# --- The default sampler, deciding in one step ---------------------------------

_sampling = None


def _sampling_module():
    global _sampling
    if _sampling is None:
        from opentelemetry.sdk.trace import sampling

        _sampling = sampling
    return _sampling


def _is_default(sampler):
    """Whether `sampler` is the SDK's default, ParentBased(ALWAYS_ON) with the
    default delegates, as the SDK's own classes, unchanged."""
    sampling = _sampling_module()
    on, off = sampling.ALWAYS_ON, sampling.ALWAYS_OFF
    return (type(sampler) is sampling.ParentBased and type(on) is sampling.StaticSampler
            and type(off) is sampling.StaticSampler
            and sampler._root is on and sampler._remote_parent_sampled is on
            and sampler._remote_parent_not_sampled is off and sampler._local_parent_sampled is on
            and sampler._local_parent_not_sampled is off
            and all(getattr(cls.should_sample, "__module__", None) == sampling.__name__
                    for cls in (sampling.ParentBased, sampling.StaticSampler)))


def _parent_based_always_on():
    """An instance of the SDK's ParentBased(ALWAYS_ON) whose `should_sample`
    decides as the SDK's does, asking for the parent's span context once: the
    SDK's asks twice (the second time for its trace state), four calls down
    each time, and calls the chosen delegate with six keyword arguments."""
    from opentelemetry.trace import get_current_span

    sampling = _sampling_module()
    result, sample, drop = sampling.SamplingResult, sampling.Decision.RECORD_AND_SAMPLE, sampling.Decision.DROP

    class ParentBasedAlwaysOn(sampling.ParentBased):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):
            parent = get_current_span(parent_context).get_span_context()
            if parent is not None and parent.is_valid:
                # Remote or local, a sampled parent's delegate is ALWAYS_ON, another's ALWAYS_OFF.
                if parent.trace_flags.sampled:
                    return result(sample, attributes, parent.trace_state)
                return result(drop, None, parent.trace_state)
            return result(sample, attributes, None)

    return ParentBasedAlwaysOn(sampling.ALWAYS_ON)


def _samplers_agree(ours, theirs):
    """Whether the two samplers decide alike: no parent, an invalid one, and
    local and remote parents, sampled or not, with a trace state."""
    from opentelemetry import trace as trace_api
    from opentelemetry.context import Context

    state = trace_api.TraceState([("k", "v")])
    contexts = [None, Context(), trace_api.set_span_in_context(trace_api.INVALID_SPAN)]
    for remote in (False, True):
        for flags in (trace_api.TraceFlags.SAMPLED, trace_api.TraceFlags.DEFAULT):
            parent = trace_api.SpanContext(0x5, 0x6, is_remote=remote, trace_flags=trace_api.TraceFlags(flags),
                                           trace_state=state)
            contexts.append(trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent)))
    given = {"a": 1}
    for context in contexts:
        mine, sdks = (s.should_sample(context, 0x5, "check", trace_api.SpanKind.SERVER, given, ())
                      for s in (ours, theirs))
        if (mine.decision, dict(mine.attributes), mine.trace_state) != (
                sdks.decision, dict(sdks.attributes), sdks.trace_state):
            return False
    return True


def lighter_sampler(provider):
    """Gives `provider` the one-step equivalent of its sampler when that is the
    SDK's default, and both decide alike. Returns whether it did."""
    sampler = getattr(provider, "sampler", None)
    if not _is_default(sampler):
        return False
    ours = _parent_based_always_on()
    if not _samplers_agree(ours, sampler):
        _shim._debug("the SDK's sampler stays: otel-run's decides otherwise")
        return False
    provider.sampler = ours
    return True
