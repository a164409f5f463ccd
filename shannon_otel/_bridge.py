"""The public metrics bridge: the in-process task histograms for a MeterProvider the user builds.

``MeterProvider(metric_readers=[bridged(reader)], views=...)`` — any reader (periodic OTLP,
in-memory, Prometheus). The wrapper forwards everything to ``reader`` and, whenever ``reader``
collects, adds the aggregated task histograms to what the SDK collected. The OTel hook finds the
bridge the first time it meets the provider, and again at a wave after its readers changed
(:func:`discover`): when every reader of the provider is bridged, it records the task histograms
in O(1) in-process; otherwise (or for an instrument a
store declines, see :func:`plan_stream`) through plain SDK calls.

SDK surfaces used without a public equivalent, each pinned by ``tests/test_metrics_bridge.py`` on
the lowest and highest SDK versions pyproject allows: ``MeterProvider._sdk_config`` (views,
exemplar filter, resource) and the readers (``MeterProvider._measurement_consumer._reader_storages``, the live
set ``add_metric_reader`` / ``remove_metric_reader`` replace; else ``MeterProvider._metric_readers`` in newer SDKs,
``_sdk_config.metric_readers`` before); ``MetricReader._instrument_class_temporality`` /
``_instrument_class_aggregation`` / ``_instrument_class_cardinality_limit`` and the reader protocol
methods ``_set_collect_callback`` / ``_receive_metrics`` (every custom reader implements these);
``MeterProvider._all_metric_readers`` (the readers registered on some provider: a wrapped reader is
registered there too, so it cannot be taken by a second provider); ``View._match`` and its ``_name`` /
``_description`` / ``_attribute_keys`` / ``_aggregation`` / ``_aggregation_cardinality_limit`` /
``_exemplar_reservoir_factory``; ``ExplicitBucketHistogramAggregation._boundaries`` / ``_record_min_max``;
``_view_instrument_match._DEFAULT_CARDINALITY_LIMIT`` (the limit of a stream nothing limits; absent before
SDKs had cardinality limits).
"""

from __future__ import annotations

import importlib
import threading
import weakref
from typing import Any, cast

from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricReader, MetricsData
from opentelemetry.sdk.metrics.view import DefaultAggregation, DropAggregation, ExplicitBucketHistogramAggregation

from ._metrics_bridge import EXEMPLARS_SUPPORTED, SDK_DEFAULT_LIMIT, MetricsBridge, ReaderStore, StreamPlan
from ._telemetry import MetricSpec

__all__ = ["BridgedReader", "bridged", "discover", "plan_stream", "reader_set"]

# The reservoir factory of a View that names none (SDKs with reservoirs); any other is the user's own.
_DEFAULT_RESERVOIR = getattr(importlib.import_module("opentelemetry.sdk.metrics._internal.view"),
                             "_default_reservoir_factory", None)
_DROPPED = StreamPlan("", "", "", ())  # a View drops the instrument: the bridge records nothing


def bridged(reader: MetricReader) -> MetricReader:
    """Wrap ``reader`` so a MeterProvider built with it gets shannon-otel's in-process task histograms.

    Use it for every reader of the provider (a provider with an unwrapped reader uses plain SDK
    calls for the task histograms). The data the reader exports is the same as without the
    wrapper (Views, temporality, cardinality limit, exemplar filter honoured); only the per-task
    cost differs. Raises TypeError for anything but an SDK ``MetricReader``.
    """
    if not isinstance(reader, MetricReader):
        raise TypeError(f"reader must be an opentelemetry.sdk MetricReader, got {type(reader).__name__}")
    if isinstance(reader, BridgedReader):
        return reader
    return BridgedReader(reader)


class BridgedReader(MetricReader):
    """Forwards to the wrapped reader; merges the bridge's histograms into each of its collections."""

    def __init__(self, inner: MetricReader) -> None:
        super().__init__()
        # The SDK builds this reader's storage from these (keyed by its internal instrument classes):
        # the wrapped reader's preferences, so the SDK-made metrics are exactly what it would get.
        self._instrument_class_temporality = dict(inner._instrument_class_temporality)
        self._instrument_class_aggregation = dict(inner._instrument_class_aggregation)
        limits = getattr(inner, "_instrument_class_cardinality_limit", None)
        if limits is not None:  # SDKs with cardinality limits
            self._instrument_class_cardinality_limit = dict(limits)
        self.inner = inner
        self._store: ReaderStore | None = None

    def attach_store(self, store: ReaderStore) -> None:
        self._store = store

    @property
    def store(self) -> ReaderStore | None:
        """The store attached by :func:`discover` (None before, and after the reader was removed)."""
        return self._store

    def _merge(self, data: MetricsData | None) -> MetricsData | None:
        store = self._store
        return store.merge(data) if store is not None else data

    def _set_collect_callback(self, func: Any) -> None:  # type: ignore[misc]  # the reader protocol: final by annotation only
        inner = self.inner
        if func is None:  # MeterProvider.remove_metric_reader: the wrapped reader is unregistered too
            self._store = None  # a reader added again starts afresh, as its SDK storage does
            super()._set_collect_callback(func)
            inner._set_collect_callback(func)
            _registered().discard(inner)
            return
        # The SDK refuses a reader registered on a MeterProvider already; it sees only the wrapper,
        # so the wrapped reader is checked here (else one provider silently takes it from the other).
        if inner._collect is not None or inner in _registered():
            raise Exception(  # the SDK's own exception type and message
                f"MetricReader {inner} has been registered already in other MeterProvider instance")
        _registered().add(inner)
        super()._set_collect_callback(func)

        # The SDK keeps this reader's storage keyed by the wrapper; the wrapped reader collects
        # on its own schedule (a periodic reader's thread, a scrape) through this callback.
        def collect(reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
            return self._merge(func(self, timeout_millis=timeout_millis))

        inner._set_collect_callback(cast("Any", collect))

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        merged = self._merge(metrics_data)
        if merged is not None:
            self.inner._receive_metrics(merged, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _registered() -> Any:
    """The SDK's set of readers registered on some MeterProvider (a class-level WeakSet; empty stand-in without)."""
    from opentelemetry.sdk.metrics import MeterProvider

    return getattr(MeterProvider, "_all_metric_readers", _NO_SET)


_NO_SET: Any = weakref.WeakSet()


def _exemplar_mode(sdk_config: Any) -> str | None:
    """The SDK's exemplar filter as a mode the bridge reproduces; None for a custom filter."""
    return exemplar_mode(getattr(sdk_config, "exemplar_filter", None))


def exemplar_mode(found: Any) -> str | None:
    """The exemplar filter ``found`` (None: the SDK's default) as a mode the bridge reproduces (``trace_based``,
    ``always_on``, ``off``); None for a custom filter."""
    if not EXEMPLARS_SUPPORTED:
        return "off"
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    if found is None or isinstance(found, TraceBasedExemplarFilter):
        return "trace_based"
    if isinstance(found, AlwaysOnExemplarFilter):
        return "always_on"
    if isinstance(found, AlwaysOffExemplarFilter):
        return "off"
    return None


def plan_stream(spec: MetricSpec, instrument: Any, views: Any, reader: MetricReader,
                exemplars: str | None) -> StreamPlan | None:
    """The stream the SDK would make of ``instrument`` for ``reader``; None when the bridge can't match it."""
    if exemplars is None or instrument is None:
        return None
    matched = [v for v in views if v._match(instrument)]
    if len(matched) > 1:
        return None  # several streams from one instrument: left to the SDK
    view = matched[0] if matched else None
    if view is not None and getattr(view, "_exemplar_reservoir_factory", _DEFAULT_RESERVOIR) is not _DEFAULT_RESERVOIR:
        return None  # the View's own exemplar reservoir: only the SDK samples like it
    aggregation = view._aggregation if view is not None else DefaultAggregation()
    if isinstance(aggregation, DropAggregation):
        return _DROPPED
    if isinstance(aggregation, DefaultAggregation):
        aggregation = reader._instrument_class_aggregation.get(type(instrument), aggregation)
    if isinstance(aggregation, ExplicitBucketHistogramAggregation):
        if aggregation._boundaries is None:
            return None
        bounds, min_max = tuple(aggregation._boundaries), bool(aggregation._record_min_max)
    elif isinstance(aggregation, DefaultAggregation):
        assert spec.buckets is not None
        bounds, min_max = tuple(spec.buckets), True  # the instrument's advisory boundaries
    else:
        return None  # exponential histogram, sum, last value: left to the SDK
    keep = None
    if view is not None and view._attribute_keys is not None:
        keep = tuple(k in view._attribute_keys for k in spec.attributes)
    limit = getattr(view, "_aggregation_cardinality_limit", None) if view is not None else None
    if limit is None:
        limits = getattr(reader, "_instrument_class_cardinality_limit", None)
        limit = limits.get(type(instrument)) if limits is not None else None
    if limit is None:  # what the SDK applies then
        limit = SDK_DEFAULT_LIMIT
    return StreamPlan(
        name=(view._name if view is not None else None) or spec.name,
        description=(view._description if view is not None else None) or spec.description,
        unit=spec.unit, bounds=bounds, keep=keep, record_min_max=min_max, limit=limit, exemplars=exemplars,
    )


class _DroppingStore(ReaderStore):
    """A store whose dropped streams aggregate nothing and export nothing."""

    def collect(self, start_ns: int | None = None) -> list[Any]:
        return [m for m in super().collect(start_ns) if m.name]


_LOCK = threading.Lock()


def reader_set(meter_provider: Any) -> Any:
    """The SDK's current collection of ``meter_provider``'s readers: ``add_metric_reader`` /
    ``remove_metric_reader`` replace it (``_measurement_consumer._reader_storages``, keyed by reader),
    so comparing it by identity and length tells whether the readers changed. Without it, the
    readers the provider was built with (``_metric_readers``, or ``_sdk_config.metric_readers``)."""
    storages = getattr(getattr(meter_provider, "_measurement_consumer", None), "_reader_storages", None)
    if storages is not None:
        return storages
    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None:
        readers = getattr(getattr(meter_provider, "_sdk_config", None), "metric_readers", ())
    return readers or ()


def discover(meter_provider: Any) -> MetricsBridge | None:
    """A bridge for ``meter_provider`` when every one of its readers is a :class:`BridgedReader`.

    Called by ``bridge_for`` at a provider's first wave and again whenever its readers changed
    (:func:`reader_set`); attaches one store per reader, keeping the store a reader has already
    (its data so far). When some reader is not bridged, returns None: the SDK records for every
    reader, and a bridged reader's store merges what it had into the SDK's points (``ReaderStore.merge``).
    """
    sdk_config = getattr(meter_provider, "_sdk_config", None)
    readers = list(reader_set(meter_provider))
    if sdk_config is None or not readers or not all(isinstance(r, BridgedReader) for r in readers):
        return None
    views = list(getattr(sdk_config, "views", ()) or ())
    exemplars = _exemplar_mode(sdk_config)
    bridge = MetricsBridge(sdk_config.resource, shared_store=False)
    with _LOCK:
        for reader in readers:
            if reader.store is not None:  # found at an earlier wave: it goes on from its data so far
                bridge.add_store(reader.store)
                continue
            temporality = reader._instrument_class_temporality

            def plan(spec: MetricSpec, instrument: Any, reader: MetricReader = reader) -> StreamPlan | None:
                return plan_stream(spec, instrument, views, reader, exemplars)

            store = _DroppingStore(bridge, plan=plan, delta=any(
                t is AggregationTemporality.DELTA for k, t in temporality.items() if k.__name__ == "_Histogram"
            ))
            bridge.add_store(store)
            reader.attach_store(store)
    return bridge
