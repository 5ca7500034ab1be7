"""Spans, loaded by otel-run's Python shim (sitecustomize.py beside this file)
when a tracer provider is first built, not before: what only a process that
records spans needs.

- The exporter to otel-run's agent, over loopback HTTP with the standard
  library (otel_run_wire.py), no protobuf or gRPC import. It sends otel-run's
  compact encoding (the agent's `receiver/compact.rs` documents it): each span a
  tuple of its fields, its attributes the SDK's own dict, so that C code does
  nearly all the work. The worker's GIL is what the program serves requests
  with; OTLP/JSON's two objects per attribute cost it three times as much. The
  batch goes as the interpreter's `marshal` data of version 2 (several times
  faster to write than JSON), when a probe finds this interpreter writes it as
  the agent reads it (a value of a subclass, an IntEnum, as its base type, as
  the OTLP exporters send it); else as JSON, and a batch JSON cannot write
  (bytes, NaN) as OTLP/JSON. otel-run's own spans are read from their fields.
  In marshal form a span is made into its record as it ends and queued as
  that, so the span is freed with its request (`_record` says why).
- The batch span processor the shim adds to each tracer provider, counted: the
  spans the SDK drops (its queue full, an export that failed, spans still queued
  at exit) are told to otel-run, which says them in its summary at exit. Each
  process appends one line to the file OTEL_RUN_SDK_REPORT names; otel-run adds
  the lines up, so a server's forked workers count too.
"""

import atexit
import json
import marshal
import os
import sys
import threading

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

_wire = _shim._sibling("otel_run_wire")


# --- Spans to otel-run's agent as OTLP/JSON -------------------------------------

class AgentSpanExporter(SpanExporter):
    def __init__(self, endpoint):
        self._endpoint = endpoint
        self._client = _wire.AgentClient(endpoint, "/v1/traces")
        self._tables = _Tables(_MAX_TABLE)
        lock = self._tables._lock
        if hasattr(os, "register_at_fork") and hasattr(lock, "_at_fork_reinit"):
            # A fork while another thread held it would leave the child's copy held.
            os.register_at_fork(after_in_child=lock._at_fork_reinit)

    def record(self, span):
        """What `export` is then given for the span: its record, made now, when
        the batch will go as marshal data, which writes any record; else (or
        when the tables are full) None, and the span itself is queued."""
        if not _MARSHAL_WRITES_AS_READ:
            return None
        return _record(span, self._tables, _our_span_type())

    def export(self, spans):
        try:
            body, content_type = _compact_body(_compact_spans(spans, tables=self._tables))
        except (TypeError, ValueError):
            if any(type(item) is tuple for item in spans):
                raise  # records: marshal data writes any, and did not
            ok = self._client.send(_encode_spans(spans))
        else:
            ok = self._client.send_body(body, content_type)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self):
        self._client.close()


# The resources and scopes an exporter's records may name.
_MAX_TABLE = 1024


_COMPACT = "application/x-otel-run-spans+json"
_MARSHAL = "application/x-otel-run-spans+marshal"
_marshal_dumps = marshal.dumps


_EXACT = frozenset((str, int, float, bool, bytes, type(None)))


def _exact(value):
    """`value` with what marshal writes only of its own types (it refuses
    subclasses) as that type, as the OTLP exporters see it: an IntEnum as its
    int, a str subclass as its text, a list or bytearray as a tuple or bytes,
    any other object as its str()."""
    kind = type(value)
    if kind in _EXACT:
        return value
    if kind is tuple or kind is list:
        return tuple([_exact(v) for v in value])
    if kind is dict:
        return {_exact(k): _exact(v) for k, v in value.items()}
    if isinstance(value, int):  # bool has no subclasses
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (tuple, list)):
        return tuple([_exact(v) for v in value])
    if isinstance(value, dict):
        return {_exact(k): _exact(v) for k, v in value.items()}
    return str(value)


def _compact_body(compact):
    """The body and content type of a compact batch: marshal data if this
    interpreter writes it as the agent reads it, else JSON."""
    if _MARSHAL_WRITES_AS_READ:
        try:
            try:
                return _marshal_dumps(compact, 2), _MARSHAL
            except ValueError:  # a value marshal does not write: an IntEnum...
                return _marshal_dumps(_exact(compact), 2), _MARSHAL
        except (ValueError, RecursionError):
            pass
    return _compact_dumps(compact).encode(), _COMPACT


def _marshal_writes_as_read():
    """Whether this interpreter's marshal writes version 2 as the agent reads it
    (receiver/compact/marshal.rs): one value of each type the spans hold,
    against the bytes that layout gives."""
    probe = (1, ["\u00e9"], {"k": 1.5}, True, None, 1 << 40, b"x")
    expected = (b"(\x07\x00\x00\x00i\x01\x00\x00\x00[\x01\x00\x00\x00u\x02\x00\x00\x00\xc3\xa9"
                b"{u\x01\x00\x00\x00kg\x00\x00\x00\x00\x00\x00\xf8?0TN"
                b"l\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04s\x01\x00\x00\x00x")
    try:
        return _marshal_dumps(probe, 2) == expected
    except (TypeError, ValueError):
        return False


_MARSHAL_WRITES_AS_READ = _marshal_writes_as_read()
_compact_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode
_NO_ATTRIBUTES = {}


def _plain(attributes):
    """The dict under an SDK's attributes (BoundedAttributes keeps one), for the
    JSON encoder to write without a copy."""
    if not attributes:
        return _NO_ATTRIBUTES
    plain = getattr(attributes, "_dict", attributes)
    return plain if isinstance(plain, dict) else dict(plain)


def _context_layout_known():
    """Whether a SpanContext is the tuple (trace id, span id, is remote, flags,
    state, ...) and a Status keeps its code and description in the fields
    `_compact_spans` reads."""
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags, TraceState

    state = TraceState([("k", "v")])
    context = SpanContext(3, 4, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)
    status = Status(StatusCode.ERROR, "why")
    return (tuple(context[:5]) == (3, 4, True, 1, state) and status._status_code is StatusCode.ERROR
            and status._description == "why" and StatusCode.ERROR._value_ == StatusCode.ERROR.value)


try:
    _CONTEXT_LAYOUT_KNOWN = _context_layout_known()
except Exception:  # another API version: spans are read through their properties
    _CONTEXT_LAYOUT_KNOWN = False


_ours = None  # (span class, attributes class), once the SDK's tracers make them


def _our_span_type():
    """otel-run's span class, when the SDK's tracers make it (otel_run_spans.py)
    and its fields can be read directly."""
    global _ours
    if _ours is not None:
        return _ours[0]
    spans = sys.modules.get("otel_run_spans")
    if spans is None or not spans._installed or not _CONTEXT_LAYOUT_KNOWN:
        return None
    _ours = (spans.Span, spans.Attributes)
    return spans.Span


class _Tables:
    """The resources and scopes a batch's spans name by their index in these
    lists, in the form the agent reads them.

    An exporter keeps one for the records it makes as spans end (`record`),
    so that a record holds two numbers where a span held the objects; they
    are few (a resource per provider, a scope per tracer's name) and bounded
    all the same: past `limit` entries, no index is given."""

    def __init__(self, limit=None):
        self.resources, self._resource_at = [], {}
        self.scopes, self._scope_at = [], {}
        self._scope_of = {}  # id(scope) -> (index, scope): a scope's key read once
        self._limit = limit
        self._lock = threading.Lock()

    def copy(self):
        """A table holding what this one does, with no limit: a batch's own."""
        made = _Tables()
        with self._lock:
            made.resources, made._resource_at = list(self.resources), dict(self._resource_at)
            made.scopes, made._scope_at = list(self.scopes), dict(self._scope_at)
            made._scope_of = dict(self._scope_of)
        return made

    def resource(self, resource):
        """The index of `resource`, or None when the table is full."""
        entry = self._resource_at.get(id(resource))
        if entry is not None:
            return entry[0]
        with self._lock:
            entry = self._resource_at.get(id(resource))
            if entry is None:
                if self._limit is not None and len(self.resources) >= self._limit:
                    return None
                # The entry holds the resource: its id names no other while it is here.
                entry = self._resource_at[id(resource)] = (len(self.resources), resource)
                self.resources.append(
                    (_plain(resource.attributes) if resource is not None else _NO_ATTRIBUTES,
                     (resource.schema_url or "") if resource is not None else "", 0))
            return entry[0]

    def scope(self, scope):
        """The index of `scope` (by name, version and schema), or None when the table is full."""
        known = self._scope_of.get(id(scope))
        if known is not None:
            return known[0]
        key = (scope.name, scope.version or "", scope.schema_url or "") if scope is not None else ("", "", "")
        with self._lock:
            index = self._scope_at.get(key)
            if index is None:
                if self._limit is not None and len(self.scopes) >= self._limit:
                    return None
                index = self._scope_at[key] = len(self.scopes)
                self.scopes.append(key + (_plain(getattr(scope, "attributes", None)),))
            if len(self._scope_of) < 4 * _MAX_TABLE:
                # The entry holds the scope: its id names no other while it is here.
                self._scope_of[id(scope)] = (index, scope)
            return index


def _record(span, tables, fast):
    """The span as the tuple the agent reads (receiver/compact.rs), its resource
    and scope as indexes into `tables`; None when `tables` has no room for them.

    otel-run's own spans without events or links (a request's, mostly) are read
    from their fields (`fast` is their class), the rest through the
    ReadableSpan properties (a dozen Python calls a span, two of them building
    tuples). A record holds only strings, numbers, tuples and the attributes'
    dict, none of which refers back to anything: the cyclic garbage collector
    stops following it at its first pass, where a queued span and its parts
    lived long enough to be moved to the oldest generation, whose full
    collections then came every few thousand requests."""
    fields = span.__dict__ if type(span) is fast else None
    if fields is not None and not fields["_events"] and not fields["_links"]:
        r, s = tables.resource(fields["_resource"]), tables.scope(fields["_instrumentation_scope"])
        if r is None or s is None:
            return None
        trace_id, span_id, _, flags, trace_state = fields["_context"][:5]
        parent = fields["_parent"]
        status = fields["_status"]
        attributes = fields["_attributes"]
        return (
            r, s, "%032x" % trace_id, "%016x" % span_id,
            "%016x" % parent[1] if parent is not None else "",
            trace_state.to_header() if trace_state else "",
            0x100 | flags | (0x200 if parent is not None and parent[2] else 0),
            fields["_name"], fields["_kind"]._value_ + 1, fields["_start_time"] or 0,
            fields["_end_time"] or 0,
            attributes._dict if type(attributes) is _ours[1] else _plain(attributes), attributes.dropped,
            (), fields["_events"].dropped, (), fields["_links"].dropped,
            status._status_code._value_, status._description or "",
        )
    r, s = tables.resource(span.resource), tables.scope(span.instrumentation_scope)
    if r is None or s is None:
        return None
    context = span.context
    parent = span.parent
    status = span.status
    events = span.events
    links = span.links
    return (
        r, s, "%032x" % context.trace_id, "%016x" % context.span_id,
        "%016x" % parent.span_id if parent is not None else "",
        context.trace_state.to_header() if context.trace_state else "",
        0x100 | context.trace_flags | (0x200 if parent is not None and parent.is_remote else 0),
        span.name, span.kind.value + 1, span.start_time or 0, span.end_time or 0,
        _plain(getattr(span, "_attributes", None) or span.attributes), span.dropped_attributes,
        tuple([(e.timestamp, e.name, _plain(e.attributes), getattr(e, "dropped_attributes", 0)) for e in events])
        if events else (),
        span.dropped_events,
        tuple([("%032x" % l.context.trace_id, "%016x" % l.context.span_id,
                l.context.trace_state.to_header() if l.context.trace_state else "",
                _plain(l.attributes), 0x100 | l.context.trace_flags | (0x200 if l.context.is_remote else 0),
                getattr(l, "dropped_attributes", 0)) for l in links])
        if links else (),
        span.dropped_links,
        status.status_code.value, status.description or "",
    )


def _compact_spans(spans, ours=True, tables=None):
    """`[1, resources, scopes, spans]`, in the order receiver/compact.rs reads:
    the spans, or records `_record` made with `tables`, as records. With
    `ours` false, every span is read through its properties."""
    tables = tables.copy() if tables is not None else _Tables()
    fast = _our_span_type() if ours else None
    return (1, tables.resources, tables.scopes,
            [item if type(item) is tuple else _record(item, tables, fast) for item in spans])


def _encode_spans(spans):
    """ExportTraceServiceRequest as OTLP/JSON, grouped by resource and scope."""
    resources = {}
    for span in spans:
        scope = span.instrumentation_scope
        key = (id(span.resource), scope.name if scope else "", scope.version if scope else "")
        entry = resources.setdefault(id(span.resource), (span.resource, {}))
        scopes = entry[1].setdefault(key, (scope, []))
        scopes[1].append(_encode_span(span))
    out = []
    for resource, scopes in resources.values():
        out.append({
            "resource": _wire.resource(resource),
            "schemaUrl": resource.schema_url or "",
            "scopeSpans": [{
                "scope": _wire.scope(scope),
                "schemaUrl": (scope.schema_url or "") if scope else "",
                "spans": encoded,
            } for scope, encoded in scopes.values()],
        })
    return {"resourceSpans": out}


def _encode_span(span):
    context = span.context
    parent = span.parent
    status = span.status
    attributes = _wire.attributes
    return {
        "traceId": _wire.trace_id(context.trace_id),
        "spanId": _wire.span_id(context.span_id),
        "traceState": context.trace_state.to_header() if context.trace_state else "",
        "parentSpanId": _wire.span_id(parent.span_id) if parent is not None else "",
        "flags": 0x100 | int(context.trace_flags) | (0x200 if parent is not None and parent.is_remote else 0),
        "name": span.name,
        # The API's kinds start at INTERNAL = 0; OTLP's at UNSPECIFIED = 0.
        "kind": span.kind.value + 1,
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": attributes(span.attributes),
        "droppedAttributesCount": span.dropped_attributes,
        "events": [{
            "timeUnixNano": str(event.timestamp),
            "name": event.name,
            "attributes": attributes(event.attributes),
        } for event in span.events],
        "droppedEventsCount": span.dropped_events,
        "links": [{
            "traceId": _wire.trace_id(link.context.trace_id),
            "spanId": _wire.span_id(link.context.span_id),
            "traceState": link.context.trace_state.to_header() if link.context.trace_state else "",
            "attributes": attributes(link.attributes),
        } for link in span.links],
        "droppedLinksCount": span.dropped_links,
        "status": {"code": status.status_code.value, "message": status.description or ""},
    }


# --- What the SDK dropped -----------------------------------------------------

class _Counts:
    """This process's spans, as its counted processors saw them: ended while they
    were open (sampled ones: the others are never queued), ended after their
    shutdown, and handed to an exporter that succeeded or failed.

    At the report, a span ended and not exported either still sits in a queue,
    or was pushed out of a full one: the SDK drops the oldest span for each new
    one, with no count it keeps. Counting what is left in the queues then tells
    the two apart, exactly once the exit flush is over."""

    def __init__(self):
        self.reset()

    def reset(self):
        self._lock = threading.Lock()
        self.ended = self.after_shutdown = self.exported = self.failed = 0
        self.processors = []

    def add(self, **counts):
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def one_ended(self, while_open):
        """A span ended: the one call of each span's path."""
        with self._lock:
            if while_open:
                self.ended += 1
            else:
                self.after_shutdown += 1

    def take_line(self):
        """The report line, or None when nothing was dropped; the counts then
        start again from zero."""
        with self._lock:
            queues = [_queue_of(p) for p in self.processors]
            queued = sum(len(q) for q in queues if q is not None)
            lost = max(0, self.ended - self.exported - self.failed)
            # Without a queue to look at (another SDK version), every loss is
            # said to be unsent rather than guessed to be the queue's.
            queue_full = max(0, lost - queued) if None not in queues else 0
            unsent = lost - queue_full + self.after_shutdown
            self.ended = self.after_shutdown = self.exported = self.failed = 0
            if not (queue_full or self.failed or unsent):
                return None
            return "spans queue_full=%d export_failed=%d unsent=%d\n" % (queue_full, self.failed, unsent)


_counts = _Counts()
if hasattr(os, "register_at_fork"):
    # A forked worker starts with its own empty queues (the SDK clears them) and
    # counts; its processors are the parent's, copied.
    def _after_fork():
        processors = _counts.processors
        _counts.reset()
        _counts.processors = processors

    os.register_at_fork(after_in_child=_after_fork)


class _CountedExporter(SpanExporter):
    def __init__(self, exporter):
        self._exporter = exporter

    def export(self, spans):
        try:
            result = self._exporter.export(spans)
        except Exception:
            _counts.add(failed=len(spans))
            raise
        if result == SpanExportResult.SUCCESS:
            _counts.add(exported=len(spans))
        else:
            _counts.add(failed=len(spans))
        return result

    def shutdown(self):
        return self._exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self._exporter.force_flush(timeout_millis)


class CountedBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's BatchSpanProcessor, counting what it drops. One that is
    `left_out` takes no more spans: a processor of the program's sends them to
    the same place.

    When its exporter makes records (AgentSpanExporter.record) and the SDK's
    queue takes any item (its `_batch_processor.emit`), an ended span is
    queued as its record: the span itself is then freed with the request that
    made it."""

    def __init__(self, exporter):
        super().__init__(_CountedExporter(exporter))
        self.exporter = exporter
        self.left_out = False
        self._counted_open = True
        self._make_record = getattr(exporter, "record", None)
        self._emit = getattr(getattr(self, "_batch_processor", None), "emit", None)
        if self._emit is None:
            self._make_record = None
        _counts.processors.append(self)

    def leave_out(self):
        self.left_out = True

    def on_end(self, span):
        if self.left_out:
            return
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        _counts.one_ended(self._counted_open)
        if self._make_record is not None:
            try:
                record = self._make_record(span)
            except Exception:  # a span of a kind not foreseen: queued as it is
                record = None
            self._emit(record if record is not None else span)
            return
        super().on_end(span)

    def shutdown(self):
        self._counted_open = False
        return super().shutdown()


def _queue_of(processor):
    """The processor's bounded deque, where this SDK version keeps one."""
    for owner, name in ((getattr(processor, "_batch_processor", None), "_queue"), (processor, "queue")):
        queue = getattr(owner, name, None)
        if getattr(queue, "maxlen", None):
            return queue
    return None


def report():
    """Appends this process's line to otel-run's report, if anything was dropped."""
    path = os.environ.get("OTEL_RUN_SDK_REPORT")
    line = _counts.take_line()
    if not path or line is None:
        return
    try:
        # One short write in append mode: lines of concurrent processes never mix.
        with open(path, "a") as report_file:
            report_file.write(line)
    except OSError as error:
        _wire.debug("cannot write otel-run's report `%s`: %s" % (path, error))


# Registered before the shim's processors join a TracerProvider, whose own exit
# handler (the flush) thus runs first: exit handlers run last registered, first run.
atexit.register(report)
