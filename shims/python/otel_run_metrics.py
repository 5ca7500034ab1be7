"""Metrics to otel-run's agent as OTLP/JSON, with the standard library
(otel_run_wire.py): no exporter package needed. Loaded by otel-run's Python shim
(sitecustomize.py beside this file) when a meter provider is first built.

The temporality and histogram aggregation follow
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE and
OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, as OpenTelemetry's OTLP
metric exporters do.
"""

import math
import os

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    MetricExporter,
    MetricExportResult,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

_wire = _shim._sibling("otel_run_wire")


def _temporality():
    preference = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").strip().lower()
    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    chosen = {kind: cumulative for kind in (Counter, UpDownCounter, Histogram, ObservableCounter,
                                            ObservableUpDownCounter, ObservableGauge)}
    if preference == "delta":
        chosen.update({Counter: delta, Histogram: delta, ObservableCounter: delta})
    elif preference == "lowmemory":
        chosen.update({Counter: delta, Histogram: delta})
    return chosen


def _aggregation():
    chosen = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "").strip().lower()
    if chosen == "base2_exponential_bucket_histogram":
        return {Histogram: ExponentialBucketHistogramAggregation()}
    return {}


class AgentMetricExporter(MetricExporter):
    def __init__(self, endpoint):
        super().__init__(preferred_temporality=_temporality(), preferred_aggregation=_aggregation())
        self._endpoint = endpoint
        self._client = _wire.AgentClient(endpoint, "/v1/metrics")

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        ok = self._client.send(_encode_metrics(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self._client.close()


def _encode_metrics(data):
    """ExportMetricsServiceRequest as OTLP/JSON."""
    return {"resourceMetrics": [{
        "resource": _wire.resource(rm.resource),
        "schemaUrl": rm.schema_url or "",
        "scopeMetrics": [{
            "scope": _wire.scope(sm.scope),
            "schemaUrl": sm.schema_url or "",
            "metrics": [_metric(m) for m in sm.metrics],
        } for sm in rm.scope_metrics],
    } for rm in data.resource_metrics]}


def _metric(metric):
    encoded = {"name": metric.name, "description": metric.description or "", "unit": metric.unit or ""}
    data = metric.data
    temporality = int(getattr(data, "aggregation_temporality", 0) or 0)
    if isinstance(data, Sum):
        encoded["sum"] = {"dataPoints": [_number(p) for p in data.data_points],
                          "aggregationTemporality": temporality, "isMonotonic": bool(data.is_monotonic)}
    elif isinstance(data, Gauge):
        encoded["gauge"] = {"dataPoints": [_number(p) for p in data.data_points]}
    elif isinstance(data, HistogramData):
        encoded["histogram"] = {"dataPoints": [_histogram(p) for p in data.data_points],
                                "aggregationTemporality": temporality}
    elif isinstance(data, ExponentialHistogram):
        encoded["exponentialHistogram"] = {"dataPoints": [_exponential(p) for p in data.data_points],
                                           "aggregationTemporality": temporality}
    return encoded


def _point(point):
    return {
        "attributes": _wire.attributes(point.attributes),
        "startTimeUnixNano": str(getattr(point, "start_time_unix_nano", 0) or 0),
        "timeUnixNano": str(point.time_unix_nano or 0),
        "exemplars": [_exemplar(e) for e in getattr(point, "exemplars", None) or ()],
    }


def _value(value):
    return {"asInt": str(value)} if isinstance(value, int) else {"asDouble": value}


def _number(point):
    encoded = _point(point)
    encoded.update(_value(point.value))
    return encoded


def _bounds(encoded, point):
    # JSON has no infinities: an empty histogram's min and max are left out.
    for name in ("min", "max"):
        value = getattr(point, name, None)
        if value is not None and math.isfinite(value):
            encoded[name] = value
    return encoded


def _histogram(point):
    encoded = _point(point)
    encoded.update({
        "count": str(point.count),
        "sum": point.sum,
        "bucketCounts": [str(c) for c in point.bucket_counts],
        "explicitBounds": list(point.explicit_bounds),
    })
    return _bounds(encoded, point)


def _exponential(point):
    encoded = _point(point)
    encoded.update({
        "count": str(point.count),
        "sum": point.sum,
        "scale": point.scale,
        "zeroCount": str(point.zero_count),
        "positive": _buckets(point.positive),
        "negative": _buckets(point.negative),
        "flags": getattr(point, "flags", 0) or 0,
    })
    return _bounds(encoded, point)


def _buckets(buckets):
    return {"offset": buckets.offset, "bucketCounts": [str(c) for c in buckets.bucket_counts]}


def _exemplar(exemplar):
    encoded = {
        "filteredAttributes": _wire.attributes(exemplar.filtered_attributes),
        "timeUnixNano": str(exemplar.time_unix_nano or 0),
        "spanId": _wire.span_id(exemplar.span_id),
        "traceId": _wire.trace_id(exemplar.trace_id),
    }
    encoded.update(_value(exemplar.value))
    return encoded
