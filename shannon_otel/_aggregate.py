"""In-process aggregation of the per-task histograms, handed to the SDK at collection time.

One SDK ``Histogram.record`` costs about as much as a whole asyncio task, so the hot per-task
histograms (task duration, queue wait, token usage) are aggregated here in O(1) per observation
and injected as standard cumulative OTel histogram points when a reader collects. This only works
for readers that shannon-otel wires itself (``configure()``, ``testing.InMemoryTelemetry``); they
register a :class:`MetricsBridge` for their MeterProvider (in its ``_otel._providers.ProviderState``).
With any other MeterProvider the OTel hook falls back to plain SDK ``record`` calls: same names,
same buckets, slower.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from ._telemetry import SCOPE_NAME, MetricSpec
from ._version import __version__


class _Point:
    __slots__ = ("counts", "exemplars", "max", "min", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        # The latest sampled measurement per bucket (value, time, span), like the SDK's aligned-bucket
        # reservoir; Exemplar objects are built only at collection.
        self.exemplars: list[tuple[float, int, SpanContext] | None] = [None] * buckets
        self.total = 0.0
        self.min = float("inf")
        self.max = float("-inf")


class HistogramAggregate:
    """A cumulative explicit-bucket histogram per attribute set (attribute values as a tuple key).

    ``record`` runs on the event loop, ``to_metric`` on a metric reader's thread: a lock keeps each
    point's count, sum, min and max consistent with each other (an uncontended lock costs ~0.1 us).
    """

    __slots__ = ("_bounds", "_lock", "_points", "rejected", "spec")

    def __init__(self, spec: MetricSpec) -> None:
        assert spec.buckets is not None
        self.spec = spec
        self._bounds = spec.buckets
        self._points: dict[tuple[Any, ...], _Point] = {}
        self._lock = threading.Lock()
        self.rejected = 0

    def record(self, key: tuple[Any, ...], value: float, span: SpanContext | None = None) -> None:
        """Add one measurement; ``span``, when sampled, becomes the bucket's exemplar.

        A non-finite value is ignored (counted in ``rejected``): it would make the point's sum NaN or
        inf for the life of the process. ``record()`` refuses such values already; this is the backstop.
        """
        if not -math.inf < value < math.inf:
            self.rejected += 1
            return
        bucket = bisect_left(self._bounds, value)
        exemplar = (value, time.time_ns(), span) if span is not None and span.trace_flags.sampled else None
        with self._lock:
            point = self._points.get(key)
            if point is None:
                point = self._points[key] = _Point(len(self._bounds) + 1)
            point.counts[bucket] += 1
            if exemplar is not None:
                point.exemplars[bucket] = exemplar
            point.total += value
            if value < point.min:
                point.min = value
            if value > point.max:
                point.max = value

    def to_metric(self, start_ns: int, now_ns: int) -> Metric | None:
        with self._lock:
            snapshot = [
                (key, list(p.counts), p.total, p.min, p.max, [e for e in p.exemplars if e is not None])
                for key, p in self._points.items()
            ]
        if not snapshot:
            return None
        keys = self.spec.attributes
        points = [
            HistogramDataPoint(
                attributes={k: v for k, v in zip(keys, key, strict=True) if v is not None},
                start_time_unix_nano=start_ns, time_unix_nano=now_ns, count=sum(counts), sum=total,
                bucket_counts=counts, explicit_bounds=list(self._bounds), min=low, max=high,
                exemplars=[Exemplar({}, value, at, span.span_id, span.trace_id) for value, at, span in exemplars],
            )
            for key, counts, total, low, high, exemplars in snapshot
        ]
        return Metric(
            name=self.spec.name, description=self.spec.description, unit=self.spec.unit,
            data=Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE),
        )


class MetricsBridge:
    """The aggregated histograms of one MeterProvider. Event-loop side writes, reader side reads."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.start_ns = time.time_ns()
        self._histograms: dict[str, HistogramAggregate] = {}

    def histogram(self, spec: MetricSpec) -> HistogramAggregate:
        aggregate = self._histograms.get(spec.name)
        if aggregate is None:
            aggregate = self._histograms[spec.name] = HistogramAggregate(spec)
        return aggregate

    def collect(self) -> list[Metric]:
        now = time.time_ns()
        return [m for h in list(self._histograms.values()) if (m := h.to_metric(self.start_ns, now))]

    def merge(self, data: MetricsData | None) -> MetricsData | None:
        """``data`` with the aggregated histograms added to shannon-otel's scope."""
        extra = self.collect()
        if not extra:
            return data
        resource_metrics: Sequence[ResourceMetrics] = data.resource_metrics if data else ()
        if not resource_metrics:
            resource_metrics = [ResourceMetrics(self.resource, [], "")]
        first, *rest = resource_metrics
        scopes = list(first.scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope.name == SCOPE_NAME:
                scopes[i] = ScopeMetrics(scope.scope, [*scope.metrics, *extra], scope.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(InstrumentationScope(SCOPE_NAME, __version__), extra, ""))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


def histograms_cumulative(exporter: MetricExporter) -> bool:
    """Whether the exporter wants cumulative histograms (the only temporality the bridge produces)."""
    from opentelemetry.sdk.metrics import Histogram as HistogramInstrument

    # MetricExporter keeps its preference privately; PeriodicExportingMetricReader reads it the same way.
    preferred = getattr(exporter, "_preferred_temporality", None) or {}
    return preferred.get(HistogramInstrument, AggregationTemporality.CUMULATIVE) is AggregationTemporality.CUMULATIVE


class BridgedExporter(MetricExporter):
    """Wraps a metric exporter so each export carries the bridge's aggregated histograms too."""

    def __init__(self, inner: MetricExporter, bridge: MetricsBridge) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner = inner
        self._bridge = bridge

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        merged = self._bridge.merge(metrics_data)
        assert merged is not None
        return self._inner.export(merged, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class BridgedInMemoryReader(InMemoryMetricReader):
    """An in-memory reader that merges a bridge's histograms into what it collects.

    ``configure(metric_readers=[...])`` calls ``attach_bridge``; a reader without a bridge attached
    behaves exactly like the SDK's ``InMemoryMetricReader``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bridge: MetricsBridge | None = None

    def attach_bridge(self, bridge: MetricsBridge) -> None:
        self._bridge = bridge

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        merged = self._bridge.merge(metrics_data) if self._bridge is not None else metrics_data
        super()._receive_metrics(merged or metrics_data, timeout_millis, **kwargs)
