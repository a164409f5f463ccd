"""In-process aggregation of the per-task histograms, handed to the SDK's readers at collection time.

One SDK ``Histogram.record`` costs about as much as a whole asyncio task, so the hot per-task
histograms (task duration, queue wait, token usage) are aggregated here in O(1) per observation
and injected as standard OTel histogram points when a reader collects. A :class:`MetricsBridge`
belongs to one MeterProvider and keeps one :class:`ReaderStore` per reader, as the SDK keeps one
storage per reader: a cumulative store never resets, a delta store starts afresh at each collection.

Each store resolves, per instrument, the stream the SDK itself would produce on the plain path
(:func:`plan_stream`): the matching View's name, description, kept attribute keys and explicit
bucket boundaries, the cardinality limit, the exemplar filter. What it cannot reproduce (several
Views on one instrument, another aggregation, a custom exemplar filter) it declines, and the OTel
hook records that instrument through plain SDK calls: same data, slower. Wired by ``configure()``,
``testing.InMemoryTelemetry`` and the public ``shannon_otel.bridged(reader)`` (``_bridge.py``).

The hot path binds instead of looking up: :class:`BoundHistogram` (one attribute set of one
aggregate) and :class:`BoundPair` (two of one store, recorded under one lock acquire) give the same
data as ``HistogramAggregate.record`` with the key work done once per wave.
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
from opentelemetry.trace import SpanContext, get_current_span

from ._fork import in_forked_child, release_held
from ._telemetry import SCHEMA_URL, SCOPE_NAME, MetricSpec
from ._version import __version__

# Exemplars exist in newer SDKs only; without them the plain SDK path exports none either.
Exemplar: Any = getattr(importlib.import_module("opentelemetry.sdk.metrics"), "Exemplar", None)

EXEMPLARS_SUPPORTED = Exemplar is not None
# The limit the SDK applies to a stream no View or reader limits (2000 from the SDKs with cardinality
# limits; older ones have none). Without it the bridge kept a point per wave name forever where the SDK
# folds the 2001st on into the overflow point: unbounded memory and exports with per-request wave names.
SDK_DEFAULT_LIMIT: int | None = getattr(
    importlib.import_module("opentelemetry.sdk.metrics._internal._view_instrument_match"),
    "_DEFAULT_CARDINALITY_LIMIT", None,
)
OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}  # the SDK's overflow point (spec: cardinality limits)
_OVERFLOW: tuple[Any, ...] = ("__overflow__",)
_INF = math.inf
# A sampled measurement: (value, time, span, the full key); Exemplar objects are built only at collection.
_Exemplar = tuple[float, int, SpanContext | None, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What the SDK would export for one histogram instrument on one reader (see :func:`plan_stream`).

    ``keep`` masks the instrument's attribute keys a View keeps (None: all); ``exemplars`` is
    ``"trace_based"``, ``"always_on"`` or ``"off"``; ``limit`` the cardinality limit (None: none,
    as in SDKs without cardinality limits).
    """

    name: str
    description: str
    unit: str
    bounds: tuple[float, ...]
    keep: tuple[bool, ...] | None = None
    record_min_max: bool = True
    limit: int | None = SDK_DEFAULT_LIMIT
    exemplars: str = "trace_based"


def default_plan(spec: MetricSpec, exemplars: str = "trace_based") -> StreamPlan:
    """The SDK's default stream of ``spec``, with the provider's exemplar filter as a mode (``trace_based``,
    ``always_on``, ``off``)."""
    assert spec.buckets is not None
    return StreamPlan(spec.name, spec.description, spec.unit, tuple(spec.buckets),
                      exemplars=exemplars if EXEMPLARS_SUPPORTED else "off")


class _Point:
    __slots__ = ("counts", "exemplars", "max", "min", "start_ns", "total")

    def __init__(self, buckets: int, start_ns: int) -> None:
        self.counts: list[int] = [0] * buckets
        # The latest sampled measurement per bucket (value, time, span, full key), like the SDK's
        # aligned-bucket reservoir; Exemplar objects are built only at collection.
        self.exemplars: list[_Exemplar | None] = [None] * buckets
        self.total: float = 0.0
        self.min: float = float("inf")
        self.max: float = float("-inf")
        self.start_ns: int = start_ns


class HistogramAggregate:
    """An explicit-bucket histogram per attribute set (attribute values as a tuple key).

    ``record`` runs on the event loop, ``collect`` on a reader's thread: a lock keeps each point's
    count, sum, min and max consistent with each other (an uncontended lock costs ~0.1 us).
    ``delta``: each collection returns what was recorded since the previous one and starts afresh.
    """

    __slots__ = ("_always", "_bounds", "_delta", "_epoch", "_keep", "_last_ns", "_limit", "_lock", "_min_max",
                 "_points", "_reset_exemplars", "_trace_based", "plan", "rejected", "spec")

    def __init__(self, spec: MetricSpec, plan: StreamPlan | None = None, *, delta: bool = False,
                 reset_exemplars: bool = False, lock: threading.Lock | None = None) -> None:
        self.spec: MetricSpec = spec
        plan = plan or default_plan(spec)
        self.plan: StreamPlan = plan
        # The plan's fields, flattened: record() runs once per task and measurement.
        self._bounds, self._keep, self._limit, self._min_max = plan.bounds, plan.keep, plan.limit, plan.record_min_max
        self._trace_based, self._always = plan.exemplars == "trace_based", plan.exemplars == "always_on"
        self._delta = delta
        self._reset_exemplars = reset_exemplars or delta
        self._points: dict[tuple[Any, ...], _Point] = {}
        self._last_ns = time.time_ns()
        # One lock per reader store, shared by its aggregates: a BoundPair records two under one acquire.
        self._lock = lock or threading.Lock()
        self._epoch = 0  # bumped when a delta collection replaces the points (BoundHistogram re-resolves)
        self.rejected: int = 0

    def record(self, key: tuple[Any, ...], value: float, span: SpanContext | None = None) -> None:
        """Add one measurement; ``span`` (the task span, current when the SDK would sample) feeds exemplars.

        A non-finite value is ignored (counted in ``rejected``): it would make the point's sum NaN or
        inf for the life of the process. ``record()`` refuses such values already; this is the backstop.
        So is a finite one the sum cannot take (two token counts of 1e308: an inf sum for good).
        A negative one too, as the SDK's histograms drop it (a duration measured on a clock that went back).
        """
        if not 0.0 <= value < math.inf:
            self.rejected += 1
            return
        full = key
        if self._keep is not None:
            key = self.project(key)
        bucket = bisect_left(self._bounds, value)
        exemplar = self.exemplar(value, span, full, 0) if span is not None or self._always else None
        with self._lock:
            point = self._points.get(key)
            if point is None:
                point = self._new_point(key)
            if not _add(point, bucket, value, exemplar, self._min_max):
                self.rejected += 1

    def project(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """``key`` with the attributes a View drops set to None (the key of its point)."""
        if self._keep is None:
            return key
        return tuple(v if k else None for v, k in zip(key, self._keep, strict=True))

    def exemplar(self, value: float, span: SpanContext | None, full: tuple[Any, ...], now_ns: int) -> _Exemplar | None:
        """The exemplar the SDK's filter would take for this measurement (None: none); ``now_ns`` 0: read the clock.

        ``span`` is the task span (current when the SDK would sample); sampled-off waves pass None.
        """
        if span is not None:
            if self._trace_based:
                if span.trace_flags & 1:  # sampled
                    return (value, now_ns or time.time_ns(), span, full)
                return None
            if self._always:
                return (value, now_ns or time.time_ns(), span if span.is_valid else None, full)
            return None
        if self._always:  # no task span: like the SDK, the current span's ids (a sampled-off wave's)
            current = get_current_span().get_span_context()
            return (value, now_ns or time.time_ns(), current if current.is_valid else None, full)
        return None

    def point(self, key: tuple[Any, ...]) -> _Point:
        """The point of an already projected ``key``, made if new (call under the lock)."""
        point = self._points.get(key)
        return point if point is not None else self._new_point(key)

    def bind(self, key: tuple[Any, ...]) -> BoundHistogram:
        """A recorder for one attribute set (e.g. one wave's successes): the key work done once."""
        return BoundHistogram(self, key)

    def _new_point(self, key: tuple[Any, ...]) -> _Point:
        """The point of a key not seen yet (under the lock): the overflow point past the cardinality limit."""
        if self._limit is not None and len(self._points) >= self._limit:
            key = _OVERFLOW
            point = self._points.get(key)
            if point is not None:
                return point
        start = self._last_ns if self._delta else time.time_ns()
        point = self._points[key] = _Point(len(self._bounds) + 1, start)
        return point

    def to_metric(self, start_ns: int | None, now_ns: int) -> Metric | None:
        """The points so far as one Metric (None if there are none); a delta aggregate starts afresh.

        ``start_ns`` overrides each point's start time (the legacy shared cumulative store)."""
        plan = self.plan
        with self._lock:
            if self._delta:
                points, self._points = self._points, {}
                self._epoch += 1
                self._last_ns = now_ns
                snapshot = [(key, p.counts, p.total, p.min, p.max, p.exemplars, p.start_ns)
                            for key, p in points.items()]
            else:
                snapshot = [(key, list(p.counts), p.total, p.min, p.max, list(p.exemplars), p.start_ns)
                            for key, p in self._points.items()]
                if self._reset_exemplars:
                    for p in self._points.values():
                        p.exemplars = [None] * len(p.counts)
        if not snapshot:
            return None
        names = self.spec.attributes
        data_points = []
        for key, counts, total, low, high, exemplars, started in snapshot:
            attributes = dict(OVERFLOW_ATTRIBUTES) if key is _OVERFLOW else {
                k: v for k, v in zip(names, key, strict=True) if v is not None}
            extra: dict[str, Any] = {}
            if Exemplar is not None:
                extra["exemplars"] = [self._exemplar(e, names, attributes) for e in exemplars if e is not None]
            data_points.append(HistogramDataPoint(
                attributes=attributes, start_time_unix_nano=start_ns if start_ns is not None else started,
                time_unix_nano=now_ns, count=sum(counts), sum=total, bucket_counts=counts,
                explicit_bounds=list(self._bounds), min=low, max=high, **extra,
            ))
        temporality = AggregationTemporality.DELTA if self._delta else AggregationTemporality.CUMULATIVE
        return Metric(
            name=plan.name, description=plan.description, unit=plan.unit,
            data=Histogram(data_points=data_points, aggregation_temporality=temporality),
        )

    @staticmethod
    def _exemplar(entry: tuple[float, int, SpanContext | None, tuple[Any, ...]], names: Sequence[str],
                  kept: dict[str, Any]) -> Any:
        value, at, span, full = entry
        # Like the SDK: the measurement's attributes a View dropped travel on the exemplar.
        dropped = {k: v for k, v in zip(names, full, strict=True) if v is not None and k not in kept}
        assert Exemplar is not None
        return Exemplar(dropped, value, at, span.span_id if span else None, span.trace_id if span else None)


class BoundHistogram:
    """One attribute set of one :class:`HistogramAggregate`: the View's key projection done once and
    the point looked up once per collection period (again after each delta collection), so a
    record is the bucket search and the point update. Same data as ``aggregate.record(key, ...)``.
    """

    __slots__ = ("_epoch", "_point", "aggregate", "full", "key")

    def __init__(self, aggregate: HistogramAggregate, key: tuple[Any, ...]) -> None:
        self.aggregate: HistogramAggregate = aggregate
        self.full: tuple[Any, ...] = key
        self.key: tuple[Any, ...] = aggregate.project(key)
        self._point: _Point | None = None
        self._epoch = -1

    def point(self) -> _Point:
        """This key's current point, made on first use like the SDK's (call under the aggregate's lock)."""
        aggregate = self.aggregate
        point = self._point
        if point is None or self._epoch != aggregate._epoch:
            point = self._point = aggregate.point(self.key)
            self._epoch = aggregate._epoch
        return point

    def pair(self, second: object) -> BoundPair | None:
        """A :class:`BoundPair` of this and ``second`` when both belong to one store, else None."""
        if type(second) is BoundHistogram and second.aggregate._lock is self.aggregate._lock:
            return BoundPair(self, second)
        return None

    def record(self, value: float, span: SpanContext | None = None) -> None:
        aggregate = self.aggregate
        if not 0.0 <= value < math.inf:  # as HistogramAggregate.record
            aggregate.rejected += 1
            return
        bucket = bisect_left(aggregate._bounds, value)
        exemplar = aggregate.exemplar(value, span, self.full, 0) if span is not None or aggregate._always else None
        with aggregate._lock:
            if not _add(self.point(), bucket, value, exemplar, aggregate._min_max):
                aggregate.rejected += 1


def _add(point: _Point, bucket: int, value: float, exemplar: _Exemplar | None, min_max: bool) -> bool:
    """Add a finite value >= 0 to ``point``; False (nothing added) when the sum would overflow to inf."""
    total = point.total + value
    if total == _INF:
        return False
    point.total = total
    point.counts[bucket] += 1
    if exemplar is not None:
        point.exemplars[bucket] = exemplar
    if min_max:
        if value < point.min:
            point.min = value
        if value > point.max:
            point.max = value
    return True


class BoundPair:
    """Two bound histograms of one reader store, recorded together: one call, one lock acquire and
    one clock read for the exemplars (a task's duration and its queue wait, measured at one moment).
    Same data as ``first.record(x, span)`` then ``second.record(y, span)``. What a record reads is
    flattened into its own slots (it runs once per successful task); the points are cached like a
    :class:`BoundHistogram`'s, looked up again after a delta collection replaced them.
    """

    __slots__ = ("_a", "_a_bounds", "_a_epoch", "_a_full", "_a_min_max", "_a_point", "_b", "_b_bounds", "_b_epoch",
                 "_b_full", "_b_min_max", "_b_point", "_first", "_lock", "_second", "_stamp", "_trace_based")

    def __init__(self, first: BoundHistogram, second: BoundHistogram) -> None:
        a, b = first.aggregate, second.aggregate
        assert a._lock is b._lock
        self._first, self._second, self._lock = first, second, a._lock
        self._a, self._a_bounds, self._a_min_max, self._a_full = a, a._bounds, a._min_max, first.full
        self._b, self._b_bounds, self._b_min_max, self._b_full = b, b._bounds, b._min_max, second.full
        self._a_point: _Point | None = None
        self._b_point: _Point | None = None
        self._a_epoch = self._b_epoch = -1
        self._stamp = a._always or b._always  # an exemplar even without a span
        # The default exemplar filter on both: the common traced case, decided here without calls.
        self._trace_based = a._trace_based and b._trace_based

    def record(self, x: float, y: float, span: SpanContext | None = None) -> None:
        if not (0.0 <= x < _INF and 0.0 <= y < _INF):
            self._first.record(x, span)
            self._second.record(y, span)
            return
        x_bucket = bisect_left(self._a_bounds, x)
        y_bucket = bisect_left(self._b_bounds, y)
        x_exemplar: _Exemplar | None = None
        y_exemplar: _Exemplar | None = None
        if span is not None and self._trace_based:
            if span.trace_flags & 1:  # sampled
                now = time.time_ns()
                x_exemplar = (x, now, span, self._a_full)
                y_exemplar = (y, now, span, self._b_full)
        elif span is not None or self._stamp:
            now = time.time_ns()
            x_exemplar = self._a.exemplar(x, span, self._a_full, now)
            y_exemplar = self._b.exemplar(y, span, self._b_full, now)
        with self._lock:
            # _add, twice inline (a task's whole metrics path is one call: test_task_call_budget); keep them in step
            point = self._a_point
            if point is None or self._a_epoch != self._a._epoch:
                point = self._a_point = self._a.point(self._first.key)
                self._a_epoch = self._a._epoch
            total = point.total + x
            if total == _INF:
                self._a.rejected += 1
            else:
                point.total = total
                point.counts[x_bucket] += 1
                if x_exemplar is not None:
                    point.exemplars[x_bucket] = x_exemplar
                if self._a_min_max:
                    if x < point.min:
                        point.min = x
                    if x > point.max:
                        point.max = x
            point = self._b_point
            if point is None or self._b_epoch != self._b._epoch:
                point = self._b_point = self._b.point(self._second.key)
                self._b_epoch = self._b._epoch
            total = point.total + y
            if total == _INF:
                self._b.rejected += 1
            else:
                point.total = total
                point.counts[y_bucket] += 1
                if y_exemplar is not None:
                    point.exemplars[y_bucket] = y_exemplar
                if self._b_min_max:
                    if y < point.min:
                        point.min = y
                    if y > point.max:
                        point.max = y


class _FanOut:
    """One measurement into the aggregate of every reader (the SDK's per-reader storages)."""

    __slots__ = ("_sinks",)

    def __init__(self, sinks: Sequence[HistogramAggregate]) -> None:
        self._sinks = tuple(sinks)

    def record(self, key: tuple[Any, ...], value: float, span: SpanContext | None = None) -> None:
        for sink in self._sinks:
            sink.record(key, value, span)

    def bind(self, key: tuple[Any, ...]) -> _BoundFanOut:
        return _BoundFanOut(tuple(sink.bind(key) for sink in self._sinks))


class _BoundFanOut:
    __slots__ = ("bound",)

    def __init__(self, bound: tuple[BoundHistogram, ...]) -> None:
        self.bound: tuple[BoundHistogram, ...] = bound

    def record(self, value: float, span: SpanContext | None = None) -> None:
        for bound in self.bound:
            bound.record(value, span)


class ReaderStore:
    """The aggregates one reader collects. ``plan`` resolves each instrument's stream for that reader
    (returns None to decline it); without one, every instrument gets the default stream."""

    def __init__(self, bridge: MetricsBridge, *, delta: bool = False, reset_exemplars: bool = True,
                 plan: Any = None) -> None:
        self.bridge = bridge
        self._exemplars = bridge.exemplars
        self.delta = delta
        self._reset_exemplars = reset_exemplars
        self._plan = plan
        self._lock = threading.Lock()  # shared by this store's aggregates (see BoundPair)
        # Held by a reader's collection; a child forked meanwhile would wait on it at its first task.
        in_forked_child(self._forked)
        self.aggregates: dict[str, HistogramAggregate | None] = {}

    def _forked(self) -> None:
        release_held(self._lock)

    def aggregate(self, spec: MetricSpec, instrument: Any) -> HistogramAggregate | None:
        if spec.name not in self.aggregates:
            plan = self._plan(spec, instrument) if self._plan is not None else default_plan(spec, self._exemplars)
            self.aggregates[spec.name] = (
                None if plan is None else
                HistogramAggregate(spec, plan, delta=self.delta, reset_exemplars=self._reset_exemplars,
                                   lock=self._lock)
            )
        return self.aggregates[spec.name]

    def collect(self, start_ns: int | None = None) -> list[Metric]:
        now = time.time_ns()
        return [m for h in list(self.aggregates.values()) if h is not None and (m := h.to_metric(start_ns, now))]

    def merge(self, data: MetricsData | None, start_ns: int | None = None) -> MetricsData | None:
        """``data`` with this store's histograms added to shannon-otel's scope."""
        extra = self.collect(start_ns)
        if not extra:
            return data
        resource_metrics: Sequence[ResourceMetrics] = data.resource_metrics if data else ()
        if not resource_metrics:
            resource_metrics = [ResourceMetrics(self.bridge.resource, [], "")]
        first, *rest = resource_metrics
        scopes = list(first.scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope.name == SCOPE_NAME:
                scopes[i] = ScopeMetrics(scope.scope, _merged(scope.metrics, extra), scope.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(InstrumentationScope(SCOPE_NAME, __version__, SCHEMA_URL), extra, SCHEMA_URL))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


def _merged(sdk: Sequence[Metric], ours: list[Metric]) -> list[Metric]:
    """``sdk``'s metrics with ``ours`` added: a histogram both have (the SDK recorded it for this reader while
    the bridge could not, e.g. after a plain reader was added to the provider) becomes one, its points summed."""
    metrics = list(sdk)
    for metric in ours:
        for i, found in enumerate(metrics):
            if found.name == metric.name and (combined := _combined(found, metric)) is not None:
                metrics[i] = combined
                break
        else:
            metrics.append(metric)
    return metrics


def _combined(theirs: Metric, ours: Metric) -> Metric | None:
    """One histogram of the points of both (same attributes: counts, sums, min, max combined); None if they differ
    in kind, temporality or bounds."""
    a, b = theirs.data, ours.data
    if not (isinstance(a, Histogram) and isinstance(b, Histogram)) or \
            a.aggregation_temporality != b.aggregation_temporality:
        return None
    try:
        points = {frozenset((p.attributes or {}).items()): p for p in a.data_points}
        for p in b.data_points:
            key = frozenset((p.attributes or {}).items())
            q = points.get(key)
            if q is None:
                points[key] = p
                continue
            if list(q.explicit_bounds) != list(p.explicit_bounds):
                return None
            extra: dict[str, Any] = {}
            if Exemplar is not None:
                extra["exemplars"] = [*q.exemplars, *p.exemplars]
            points[key] = HistogramDataPoint(
                attributes=p.attributes, start_time_unix_nano=min(q.start_time_unix_nano, p.start_time_unix_nano),
                time_unix_nano=max(q.time_unix_nano, p.time_unix_nano), count=q.count + p.count, sum=q.sum + p.sum,
                bucket_counts=[x + y for x, y in zip(q.bucket_counts, p.bucket_counts, strict=True)],
                explicit_bounds=p.explicit_bounds, min=min(q.min, p.min), max=max(q.max, p.max), **extra,
            )
    except TypeError:  # an unhashable attribute value: left as two metrics
        return None
    return Metric(name=ours.name, description=ours.description, unit=ours.unit,
                  data=Histogram(data_points=list(points.values()), aggregation_temporality=b.aggregation_temporality))


class MetricsBridge:
    """The aggregated histograms of one MeterProvider: one store per reader. Event loop writes, readers read.

    ``configure()`` / ``testing`` use the one shared cumulative store (``merge``); ``bridged()`` readers
    each add their own (``add_store``) before the first wave. ``sink`` is what the OTel hook records
    into: the aggregate of the only store, a fan-out over several, or None when a store declines.
    """

    def __init__(self, resource: Resource, *, shared_store: bool = True, exemplars: str = "trace_based") -> None:
        # the provider's exemplar filter (``trace_based``, ``always_on``, ``off``), which the shared store applies:
        # with OTEL_METRICS_EXEMPLAR_FILTER=always_off the task and wave histograms kept exemplars all the same
        self.exemplars = exemplars
        self.resource = resource
        self.start_ns: int = time.time_ns()
        self._stores: list[ReaderStore] = []
        self._shared = self.add_store(ReaderStore(self, reset_exemplars=False)) if shared_store else None
        self._sinks: dict[str, HistogramAggregate | _FanOut | None] = {}
        self._lock = threading.Lock()
        in_forked_child(self._forked)

    def _forked(self) -> None:
        release_held(self._lock)

    def add_store(self, store: ReaderStore) -> ReaderStore:
        self._stores.append(store)
        return store

    def sink(self, spec: MetricSpec, instrument: Any = None) -> HistogramAggregate | _FanOut | None:
        """Where the hook records ``spec``'s measurements; None: record through the SDK instead."""
        found = self._sinks.get(spec.name, False)
        if found is not False:
            return found  # type: ignore[return-value]
        with self._lock:
            aggregates = [store.aggregate(spec, instrument) for store in self._stores]
            sink: HistogramAggregate | _FanOut | None
            if not aggregates or any(a is None for a in aggregates):
                sink = None  # some reader wants what only the SDK makes: every reader gets it from the SDK
            elif len(aggregates) == 1:
                sink = aggregates[0]
            else:
                sink = _FanOut([a for a in aggregates if a is not None])
            self._sinks[spec.name] = sink
        return sink

    def exemplar_sink(self, spec: MetricSpec, instrument: Any = None) -> HistogramAggregate | _FanOut | None:
        """:meth:`sink` for a histogram the SDK records well enough but for its exemplars (wave durations,
        retry delays): only ``configure()`` / ``testing``'s shared store keeps each bucket's latest exemplar
        in every export (the SDK exports one once, and a scrape of the collector after the next export
        missed it); None (the SDK) for ``bridged()`` readers, which reset exemplars as the SDK does."""
        return self.sink(spec, instrument) if self._shared is not None else None

    def histogram(self, spec: MetricSpec) -> HistogramAggregate:
        """The shared store's aggregate of ``spec`` (``configure()`` / ``testing`` bridges)."""
        assert self._shared is not None
        aggregate = self._shared.aggregate(spec, None)
        assert aggregate is not None
        return aggregate

    def collect(self) -> list[Metric]:
        assert self._shared is not None
        return self._shared.collect(self.start_ns)

    def merge(self, data: MetricsData | None) -> MetricsData | None:
        """``data`` with the shared store's cumulative histograms added to shannon-otel's scope."""
        assert self._shared is not None
        return self._shared.merge(data, self.start_ns)


def histograms_cumulative(exporter: MetricExporter) -> bool:
    """Whether the exporter wants cumulative histograms (what the shared store produces)."""
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
