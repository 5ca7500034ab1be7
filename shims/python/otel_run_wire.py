"""OTLP/JSON to otel-run's agent, with the standard library only: the HTTP client
the shim's exporters share (one loopback connection per process and signal), and
the parts of the encoding every signal uses. Loaded by the exporters beside this
file (otel_run_traces.py, otel_run_metrics.py, otel_run_logs.py), never before a
signal starts.
"""

import base64
import http.client
import json
import math
import os
import sys
from urllib.parse import urlsplit


def debug(message):
    level = os.environ.get("OTEL_RUN_LOG_LEVEL") or os.environ.get("OTEL_LOG_LEVEL") or ""
    if level.strip().lower() in ("debug", "trace"):
        sys.stderr.write("otel-run: debug: python: %s\n" % message)


class AgentClient:
    """POSTs OTLP/JSON to one path of the agent over a kept-alive connection; a
    forked worker opens its own. The SDK's processors and readers export one
    batch at a time (under their own lock, renewed in a forked child)."""

    def __init__(self, endpoint, path):
        self.endpoint = endpoint
        self._target = urlsplit(endpoint)
        self._path = path
        self._connection = None
        self._pid = None

    def _post(self, body, content_type):
        if self._connection is None or self._pid != os.getpid():
            self._connection = http.client.HTTPConnection(self._target.hostname, self._target.port, timeout=10)
            self._pid = os.getpid()
        self._connection.request("POST", self._path, body, {"Content-Type": content_type})
        response = self._connection.getresponse()
        response.read()
        return response.status

    def send(self, message):
        """Whether the agent took `message` (a dict, the OTLP request)."""
        return self.send_body(json.dumps(message, separators=(",", ":")).encode(), "application/json")

    def send_body(self, body, content_type):
        """Whether the agent took `body`, encoded as `content_type` says."""
        for attempt in (1, 2):
            try:
                status = self._post(body, content_type)
                if status != 200:
                    debug("otel-run's agent answered %s to %s" % (status, self._path))
                return status == 200
            except (OSError, http.client.HTTPException) as error:
                # A kept-alive connection the agent closed: once more on a new one.
                self._connection = None
                if attempt == 2:
                    debug("export to otel-run's agent failed: %s" % error)
        return False

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def any_value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        # JSON has no NaN or infinities, and the agent's OTLP/JSON decoder takes
        # no spelling of them: as text, the span at least arrives.
        return {"doubleValue": value} if math.isfinite(value) else {"stringValue": str(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": attributes(value)}}
    return {"stringValue": str(value)}


def attributes(values):
    return [{"key": str(k), "value": any_value(v)} for k, v in (values or {}).items()]


def resource(value):
    return {"attributes": attributes(value.attributes)} if value is not None else {}


def scope(value):
    if value is None:
        return {}
    encoded = {"name": value.name, "version": value.version or ""}
    if getattr(value, "attributes", None):
        encoded["attributes"] = attributes(value.attributes)
    return encoded


def trace_id(value):
    return "%032x" % value if value else ""


def span_id(value):
    return "%016x" % value if value else ""
