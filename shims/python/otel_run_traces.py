"""Spans, loaded by otel-run's Python shim (sitecustomize.py beside this file)
when a tracer provider is first built, not before: what only a process that
records spans needs.

- The exporter to otel-run's agent, over loopback HTTP with the standard
  library (otel_run_wire.py), no protobuf or gRPC import. It sends otel-run's
  compact encoding (the agent's `receiver/compact.rs` documents it): each span a
  JSON array, its attributes the SDK's own dict, so that the C JSON encoder does
  nearly all the work. The worker's GIL is what the program serves requests
  with; OTLP/JSON's two objects per attribute cost it three times as much. A
  batch the JSON encoder cannot write (bytes values, NaN) goes as OTLP/JSON.
- The batch span processor the shim adds to each tracer provider, counted: the
  spans the SDK drops (its queue full, an export that failed, spans still queued
  at exit) are told to otel-run, which says them in its summary at exit. Each
  process appends one line to the file OTEL_RUN_SDK_REPORT names; otel-run adds
  the lines up, so a server's forked workers count too.
"""

import atexit
import json
import os
import threading

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

_wire = _shim._sibling("otel_run_wire")


# --- Spans to otel-run's agent as OTLP/JSON -------------------------------------

class AgentSpanExporter(SpanExporter):
    def __init__(self, endpoint):
        self._endpoint = endpoint
        self._client = _wire.AgentClient(endpoint, "/v1/traces")

    def export(self, spans):
        try:
            body = _compact_dumps(_compact_spans(spans)).encode()
        except (TypeError, ValueError):
            ok = self._client.send(_encode_spans(spans))
        else:
            ok = self._client.send_body(body, _COMPACT)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self):
        self._client.close()


_COMPACT = "application/x-otel-run-spans+json"
_compact_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode
_NO_ATTRIBUTES = {}


def _plain(attributes):
    """The dict under an SDK's attributes (BoundedAttributes keeps one), for the
    JSON encoder to write without a copy."""
    if not attributes:
        return _NO_ATTRIBUTES
    plain = getattr(attributes, "_dict", attributes)
    return plain if isinstance(plain, dict) else dict(plain)


def _compact_spans(spans):
    """`[1, resources, scopes, spans]`, in the order receiver/compact.rs reads."""
    resources, resource_at = [], {}
    scopes, scope_at = [], {}
    out = []
    append = out.append
    for span in spans:
        resource = span.resource
        r = resource_at.get(id(resource))
        if r is None:
            r = resource_at[id(resource)] = len(resources)
            resources.append((_plain(resource.attributes) if resource is not None else _NO_ATTRIBUTES,
                              (resource.schema_url or "") if resource is not None else "", 0))
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "", scope.schema_url or "") if scope is not None else ("", "", "")
        s = scope_at.get(key)
        if s is None:
            s = scope_at[key] = len(scopes)
            scopes.append(key + (_plain(getattr(scope, "attributes", None)),))
        context = span.context
        parent = span.parent
        status = span.status
        events = span.events
        links = span.links
        append((
            r, s, "%032x" % context.trace_id, "%016x" % context.span_id,
            "%016x" % parent.span_id if parent is not None else "",
            context.trace_state.to_header() if context.trace_state else "",
            0x100 | context.trace_flags | (0x200 if parent is not None and parent.is_remote else 0),
            span.name, span.kind.value + 1, span.start_time or 0, span.end_time or 0,
            _plain(getattr(span, "_attributes", None) or span.attributes), span.dropped_attributes,
            [(e.timestamp, e.name, _plain(e.attributes), getattr(e, "dropped_attributes", 0)) for e in events]
            if events else (),
            span.dropped_events,
            [("%032x" % l.context.trace_id, "%016x" % l.context.span_id,
              l.context.trace_state.to_header() if l.context.trace_state else "",
              _plain(l.attributes), 0x100 | l.context.trace_flags | (0x200 if l.context.is_remote else 0),
              getattr(l, "dropped_attributes", 0)) for l in links]
            if links else (),
            span.dropped_links,
            status.status_code.value, status.description or "",
        ))
    return (1, resources, scopes, out)


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
    the same place."""

    def __init__(self, exporter):
        super().__init__(_CountedExporter(exporter))
        self.exporter = exporter
        self.left_out = False
        self._counted_open = True
        _counts.processors.append(self)

    def leave_out(self):
        self.left_out = True

    def on_end(self, span):
        if self.left_out:
            return
        if span.context is not None and span.context.trace_flags.sampled:
            _counts.one_ended(self._counted_open)
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
