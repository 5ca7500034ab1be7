"""Log records to otel-run's agent as OTLP/JSON, with the standard library
(otel_run_wire.py): no exporter package needed. Loaded by otel-run's Python shim
(sitecustomize.py beside this file) when its logger provider starts.
"""

try:
    from opentelemetry.sdk._logs.export import LogRecordExporter as _Exporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _Result
except ImportError:  # older SDKs
    from opentelemetry.sdk._logs.export import LogExporter as _Exporter
    from opentelemetry.sdk._logs.export import LogExportResult as _Result

_wire = _shim._sibling("otel_run_wire")


class AgentLogExporter(_Exporter):
    def __init__(self, endpoint):
        self._endpoint = endpoint
        self._client = _wire.AgentClient(endpoint, "/v1/logs")

    def export(self, batch):
        ok = self._client.send(_encode_logs(batch))
        return _Result.SUCCESS if ok else _Result.FAILURE

    def force_flush(self, timeout_millis=30_000):
        return True

    def shutdown(self):
        self._client.close()


def _encode_logs(batch):
    """ExportLogsServiceRequest as OTLP/JSON, grouped by resource and scope. A
    batch holds the SDK's readable records (or, in older SDKs, its LogData)."""
    resources = {}
    for item in batch:
        record = item.log_record
        resource = getattr(item, "resource", None) or getattr(record, "resource", None)
        scope = getattr(item, "instrumentation_scope", None)
        scopes = resources.setdefault(id(resource), (resource, {}))[1]
        key = (scope.name, scope.version) if scope is not None else ("", "")
        scopes.setdefault(key, (scope, []))[1].append(_encode_log(item, record))
    return {"resourceLogs": [{
        "resource": _wire.resource(resource),
        "schemaUrl": getattr(resource, "schema_url", "") or "",
        "scopeLogs": [{
            "scope": _wire.scope(scope),
            "schemaUrl": (getattr(scope, "schema_url", "") or "") if scope is not None else "",
            "logRecords": records,
        } for scope, records in scopes.values()],
    } for resource, scopes in resources.values()]}


def _encode_log(item, record):
    severity = getattr(record, "severity_number", None)
    encoded = {
        "timeUnixNano": str(record.timestamp or 0),
        "observedTimeUnixNano": str(getattr(record, "observed_timestamp", 0) or 0),
        "severityNumber": getattr(severity, "value", 0) or 0,
        "severityText": record.severity_text or "",
        "attributes": _wire.attributes(record.attributes),
        "droppedAttributesCount": getattr(item, "dropped_attributes", 0) or 0,
        "flags": int(getattr(record, "trace_flags", 0) or 0),
        "traceId": _wire.trace_id(getattr(record, "trace_id", 0)),
        "spanId": _wire.span_id(getattr(record, "span_id", 0)),
    }
    if record.body is not None:
        encoded["body"] = _wire.any_value(record.body)
    if getattr(record, "event_name", None):
        encoded["eventName"] = record.event_name
    return encoded
