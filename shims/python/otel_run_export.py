"""Loaded by otel-run's Python shim (sitecustomize.py beside this file) when it
starts the SDK, not before: what only a process that records telemetry needs.

- The exporter to otel-run's agent: OTLP/JSON over loopback HTTP with the
  standard library, no protobuf or gRPC import.
"""

import base64
import http.client
import json
import os
import sys
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def _debug(message):
    if os.environ.get("OTEL_LOG_LEVEL", "").strip().lower() in ("debug", "trace"):
        sys.stderr.write("otel-run: debug: python: %s\n" % message)


# --- Spans to otel-run's agent as OTLP/JSON -------------------------------------

class AgentSpanExporter(SpanExporter):
    """OTLP/JSON over one loopback HTTP connection per process (a forked worker
    opens its own)."""

    def __init__(self, endpoint):
        self._target = urlsplit(endpoint)
        self._connection = None
        self._pid = None

    def _post(self, body):
        if self._connection is None or self._pid != os.getpid():
            self._connection = http.client.HTTPConnection(self._target.hostname, self._target.port, timeout=10)
            self._pid = os.getpid()
        self._connection.request("POST", "/v1/traces", body, {"Content-Type": "application/json"})
        response = self._connection.getresponse()
        response.read()
        return response.status

    def export(self, spans):
        body = json.dumps(_encode_spans(spans), separators=(",", ":")).encode()
        for attempt in (1, 2):
            try:
                return SpanExportResult.SUCCESS if self._post(body) == 200 else SpanExportResult.FAILURE
            except (OSError, http.client.HTTPException) as error:
                self._connection = None
                if attempt == 2:
                    _debug("export to otel-run's agent failed: %s" % error)
        return SpanExportResult.FAILURE

    def shutdown(self):
        if self._connection is not None:
            self._connection.close()



# --- OTLP/JSON encoding ---------------------------------------------------------

def _any_value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _attributes(value)}}
    return {"stringValue": str(value)}


def _attributes(attributes):
    return [{"key": str(k), "value": _any_value(v)} for k, v in (attributes or {}).items()]


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
            "resource": {"attributes": _attributes(resource.attributes)},
            "schemaUrl": resource.schema_url or "",
            "scopeSpans": [{
                "scope": {"name": scope.name, "version": scope.version or ""} if scope else {},
                "schemaUrl": (scope.schema_url or "") if scope else "",
                "spans": encoded,
            } for scope, encoded in scopes.values()],
        })
    return {"resourceSpans": out}


def _encode_span(span):
    context = span.context
    parent = span.parent
    status = span.status
    return {
        "traceId": "%032x" % context.trace_id,
        "spanId": "%016x" % context.span_id,
        "traceState": context.trace_state.to_header() if context.trace_state else "",
        "parentSpanId": "%016x" % parent.span_id if parent is not None else "",
        "flags": 0x100 | int(context.trace_flags) | (0x200 if parent is not None and parent.is_remote else 0),
        "name": span.name,
        # The API's kinds start at INTERNAL = 0; OTLP's at UNSPECIFIED = 0.
        "kind": span.kind.value + 1,
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _attributes(span.attributes),
        "droppedAttributesCount": span.dropped_attributes,
        "events": [{
            "timeUnixNano": str(event.timestamp),
            "name": event.name,
            "attributes": _attributes(event.attributes),
        } for event in span.events],
        "droppedEventsCount": span.dropped_events,
        "links": [{
            "traceId": "%032x" % link.context.trace_id,
            "spanId": "%016x" % link.context.span_id,
            "traceState": link.context.trace_state.to_header() if link.context.trace_state else "",
            "attributes": _attributes(link.attributes),
        } for link in span.links],
        "droppedLinksCount": span.dropped_links,
        "status": {"code": status.status_code.value, "message": status.description or ""},
    }

