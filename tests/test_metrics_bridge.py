"""The public metrics bridge: the same data points as plain SDK calls, on a MeterProvider the user builds.

Each contract test runs one deterministic workload (fake clock, one task at a time) twice: through
``bridged(reader)`` and through a plain reader (the OTel hook then records with SDK calls), under
the same Views, temporality, cardinality limit and exemplar filter, and compares every data point.
Run on the lowest and the highest SDK pyproject allows: these tests also pin the SDK surfaces the
bridge reads without a public API (see ``shannon_otel/_bridge.py``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, cast

import pytest
from _user_calls import _ok
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from shannon_otel import Retry, Wave, bridged, record_tokens
from shannon_otel import _telemetry as tel
from shannon_otel._metrics_bridge import EXEMPLARS_SUPPORTED
from shannon_otel._otel._providers import bridge_for
from shannon_otel.testing import FakeClock, InMemoryTelemetry

TASK_HISTOGRAMS = (tel.TASK_DURATION.name, tel.TASK_QUEUE_WAIT_DURATION.name, tel.TASK_TOKENS.name)
DELTA: dict[type, AggregationTemporality] = {Histogram: AggregationTemporality.DELTA}


def _run_workload(meter_provider: MeterProvider, tracer_provider: TracerProvider, waves: int = 2) -> None:
    clock = FakeClock()

    async def job(i: int) -> int:
        clock.advance(0.001 * (i % 7) + 0.0005 * i)
        record_tokens(input=10 * i, output=i)
        if i % 5 == 4:
            raise ValueError("boom")
        return i

    async def main() -> None:
        for w in range(waves):
            wave: Wave[int] = Wave(f"w{w % 2}", max_concurrency=1, clock=clock,
                                   tracer_provider=tracer_provider, meter_provider=meter_provider)
            await wave.run([job(i) for i in range(25)])

    asyncio.run(main())


def _points(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Every task-histogram point, comparable across runs (times and trace ids left out)."""
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    for rm in data.resource_metrics if data else ():
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                m: Any = metric
                if m.name in TASK_HISTOGRAMS or m.name.startswith("renamed"):
                    rows = []
                    for p in m.data.data_points:
                        exemplars = sorted(
                            (e.value, tuple(sorted(e.filtered_attributes.items())) if e.filtered_attributes else ())
                            for e in getattr(p, "exemplars", ()) or ()
                        )
                        buckets = getattr(p, "bucket_counts", None)  # None: an exponential histogram
                        rows.append((
                            tuple(sorted(p.attributes.items())), p.count, round(p.sum, 9),
                            list(buckets) if buckets is not None else repr(p.positive),
                            list(getattr(p, "explicit_bounds", ())), p.min, p.max, exemplars,
                        ))
                    assert m.name not in found, f"{m.name} exported twice"
                    found[m.name] = (m.description, m.unit, m.data.aggregation_temporality,
                                          sorted(rows, key=repr))
    return found


def _both(views: tuple[View, ...] = (), temporality: Any = None, collections: int = 1,
          **provider_kwargs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], MeterProvider]:
    results = []
    bridged_provider = None
    for wrap in (True, False):
        reader = InMemoryMetricReader(preferred_temporality=temporality)
        provider = MeterProvider(metric_readers=[bridged(reader) if wrap else reader], views=views, **provider_kwargs)
        tracer_provider = TracerProvider()
        rounds = []
        for _ in range(collections):
            _run_workload(provider, tracer_provider)
            rounds.append(_points(reader))
        results.append(rounds)
        if wrap:
            bridged_provider = provider
        assert (bridge_for(provider) is not None) is wrap
    assert bridged_provider is not None
    return results[0], results[1], bridged_provider


@pytest.mark.parametrize("temporality", [None, DELTA], ids=["cumulative", "delta"])
def test_the_bridge_exports_the_same_points_as_plain_sdk_calls(temporality: Any) -> None:
    via_bridge, plain, _ = _both(temporality=temporality, collections=2)
    assert set(via_bridge[0]) == set(TASK_HISTOGRAMS)
    assert via_bridge == plain
    if temporality is DELTA:  # the second collection holds only the second round
        assert via_bridge[1][tel.TASK_DURATION.name][3] == via_bridge[0][tel.TASK_DURATION.name][3]


@pytest.mark.parametrize("temporality", [None, DELTA], ids=["cumulative", "delta"])
def test_the_bridge_honours_views_boundaries_dropped_attributes_and_names(temporality: Any) -> None:
    views = (
        View(instrument_name=tel.TASK_DURATION.name, name="renamed.duration", description="mine",
             attribute_keys={tel.WAVE_NAME}, aggregation=ExplicitBucketHistogramAggregation((0.002, 0.01, 0.02))),
        View(instrument_name=tel.TASK_QUEUE_WAIT_DURATION.name, aggregation=DropAggregation()),
    )
    via_bridge, plain, provider = _both(views=views, temporality=temporality, collections=2)
    assert "renamed.duration" in via_bridge[0] and tel.TASK_QUEUE_WAIT_DURATION.name not in via_bridge[0]
    assert via_bridge[0]["renamed.duration"][3][0][4] == [0.002, 0.01, 0.02]
    assert via_bridge == plain
    bridge = bridge_for(provider)
    assert bridge is not None and bridge.sink(tel.TASK_DURATION) is not None  # served in-process, not by the SDK


def test_an_aggregation_the_bridge_cannot_reproduce_is_left_to_the_sdk() -> None:
    views = (View(instrument_name=tel.TASK_DURATION.name, aggregation=ExponentialBucketHistogramAggregation()),)
    via_bridge, plain, provider = _both(views=views)
    assert via_bridge == plain
    bridge = bridge_for(provider)
    assert bridge is not None and bridge.sink(tel.TASK_DURATION) is None
    assert bridge.sink(tel.TASK_QUEUE_WAIT_DURATION) is not None


@pytest.mark.skipif(not EXEMPLARS_SUPPORTED, reason="this SDK has no exemplars or exemplar filter")
@pytest.mark.parametrize("mode", ["always_on", "always_off", "trace_based"])
def test_the_bridge_honours_the_exemplar_filter(mode: str) -> None:
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    make = {"always_on": AlwaysOnExemplarFilter, "always_off": AlwaysOffExemplarFilter,
            "trace_based": TraceBasedExemplarFilter}[mode]
    via_bridge, plain, _ = _both(exemplar_filter=make())  # type: ignore[abstract]
    assert via_bridge == plain
    exemplars = [row[7] for row in via_bridge[0][tel.TASK_DURATION.name][3]]
    assert any(exemplars) is (mode != "always_off")


def test_the_bridge_honours_the_cardinality_limit() -> None:
    results = []
    for wrap in (True, False):
        reader = InMemoryMetricReader(cardinality_limits={Histogram: 2})  # type: ignore[dict-item,unused-ignore]
        provider = MeterProvider(metric_readers=[bridged(reader) if wrap else reader])
        _run_workload(provider, TracerProvider(), waves=2)
        results.append(_points(reader))
    assert results[0] == results[1]
    attrs = [dict(row[0]) for row in results[0][tel.TASK_DURATION.name][3]]
    assert {"otel.metric.overflow": True} in attrs


def test_a_provider_with_one_plain_reader_records_through_the_sdk() -> None:
    bridged_reader, plain_reader = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[bridged(bridged_reader), plain_reader])
    _run_workload(provider, TracerProvider())
    assert bridge_for(provider) is None
    assert _points(bridged_reader) == _points(plain_reader)


def test_two_bridged_readers_each_get_their_own_temporality() -> None:
    cumulative, delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=DELTA)
    provider = MeterProvider(metric_readers=[bridged(cumulative), bridged(delta)])
    _run_workload(provider, TracerProvider())
    first_c, first_d = _points(cumulative), _points(delta)
    assert first_c[tel.TASK_DURATION.name][3] == first_d[tel.TASK_DURATION.name][3]
    _run_workload(provider, TracerProvider())
    second_c, second_d = _points(cumulative), _points(delta)
    assert second_d[tel.TASK_DURATION.name][3] == first_d[tel.TASK_DURATION.name][3]
    assert sum(r[1] for r in second_c[tel.TASK_DURATION.name][3]) == 2 * sum(
        r[1] for r in first_c[tel.TASK_DURATION.name][3])


def test_bridged_rejects_what_is_not_a_reader() -> None:
    with pytest.raises(TypeError, match="reader must be"):
        bridged(object())  # type: ignore[arg-type]
    reader = bridged(InMemoryMetricReader())
    assert bridged(reader) is reader


class _Exports(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[set[str]] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.names.append({m.name for rm in metrics_data.resource_metrics for s in rm.scope_metrics for m in s.metrics})
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_a_bridged_periodic_reader_exports_the_task_histograms_on_flush_and_shutdown() -> None:
    exporter = _Exports()
    provider = MeterProvider(metric_readers=[bridged(PeriodicExportingMetricReader(
        exporter, export_interval_millis=3_600_000))])
    _run_workload(provider, TracerProvider(), waves=1)
    provider.force_flush()
    assert set(TASK_HISTOGRAMS) <= exporter.names[-1]
    provider.shutdown()  # the final export, through the wrapped reader's own collection
    assert set(TASK_HISTOGRAMS) <= exporter.names[-1] and len(exporter.names) >= 2


# ---------------------------------------------------------------- bound recorders (the per-task fast path)
def _rows(metric: Any) -> list[Any]:
    """A metric's points without their times (exemplar times included: they are read from the clock)."""
    if metric is None:
        return []
    return sorted((
        tuple(sorted(p.attributes.items())), p.count, p.sum, list(p.bucket_counts), p.min, p.max,
        sorted((e.value, e.span_id, tuple(sorted((e.filtered_attributes or {}).items())))
               for e in getattr(p, "exemplars", ()) or ()),
    ) for p in metric.data.data_points)


@pytest.mark.parametrize("delta", [False, True], ids=["cumulative", "delta"])
@pytest.mark.parametrize("exemplars", ["trace_based", "always_on", "off"])
def test_a_bound_pair_records_the_same_points_as_record(delta: bool, exemplars: str) -> None:
    import threading

    from opentelemetry.trace import SpanContext, TraceFlags

    from shannon_otel._metrics_bridge import HistogramAggregate, StreamPlan

    def plans() -> tuple[StreamPlan, StreamPlan]:
        # A View dropping the error type from durations, and a cardinality limit of 2 attribute sets.
        duration = StreamPlan("d", "", "s", (0.001, 0.01, 0.1), keep=(True, True, False), limit=2,
                              exemplars=exemplars)
        return duration, StreamPlan("q", "", "s", (0.5, 1.0), exemplars=exemplars)

    sampled = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(1))
    unsampled = SpanContext(1, 3, is_remote=False, trace_flags=TraceFlags(0))
    values = [(0.0005, 0.7, sampled), (0.02, 0.2, None), (float("nan"), 0.3, sampled), (0.5, float("inf"), None),
              (0.003, 2.0, unsampled), (0.003, 0.9, sampled)]
    keys = [("w", "success", None), ("w", "failure", "E"), ("v", "success", None)]  # the third overflows
    lock = threading.Lock()
    specs = (tel.TASK_DURATION, tel.TASK_QUEUE_WAIT_DURATION)
    paired = [HistogramAggregate(spec, plan, delta=delta, lock=lock) for spec, plan in zip(specs, plans(), strict=True)]
    single = [HistogramAggregate(spec, plan, delta=delta) for spec, plan in zip(specs, plans(), strict=True)]
    pairs = [paired[0].bind(key).pair(paired[1].bind(("w",))) for key in keys]
    assert all(pair is not None for pair in pairs)
    for collection in range(2):  # the second after a (delta: resetting) collection
        for key, pair in zip(keys, pairs, strict=True):
            for first, second, span in values:
                pair.record(first, second, span)  # type: ignore[union-attr]
                single[0].record(key, first, span)
                single[1].record(("w",), second, span)
        for a, b in zip(paired, single, strict=True):
            got, want = a.to_metric(None, collection), b.to_metric(None, collection)
            assert _rows(got) == _rows(want) and _rows(got)
            assert a.rejected == b.rejected > 0


def test_a_bound_pair_leaves_out_an_amount_whose_sum_would_overflow_as_record_does() -> None:
    """``BoundPair.record`` repeats ``_add`` inline and had missed its overflow check (44e95661): a task duration
    or queue wait of 1e308 recorded twice made that histogram's sum inf for good, where ``record()`` leaves the
    second out and counts it rejected. Now the pair does the same."""
    import threading

    from shannon_otel._metrics_bridge import HistogramAggregate

    lock = threading.Lock()
    durations = HistogramAggregate(tel.TASK_DURATION, lock=lock)
    waits = HistogramAggregate(tel.TASK_QUEUE_WAIT_DURATION, lock=lock)
    pair = durations.bind(("w", "success", None)).pair(waits.bind(("w",)))
    assert pair is not None
    for x, y in ((1e308, 1.0), (1e308, 1e308), (2.0, 1e308)):
        pair.record(x, y)
    got = []
    for aggregate in (durations, waits):
        metric = aggregate.to_metric(None, 0)
        assert metric is not None
        (point,) = metric.data.data_points
        got.append((cast("Any", point).count, cast("Any", point).sum, cast("Any", point).max, aggregate.rejected))
    assert got == [(2, 1e308 + 2.0, 1e308, 1), (2, 1e308 + 1.0, 1e308, 1)]


def test_a_bound_recorder_follows_the_points_a_delta_collection_replaces() -> None:
    import threading

    from shannon_otel._metrics_bridge import HistogramAggregate

    lock = threading.Lock()
    durations = HistogramAggregate(tel.TASK_DURATION, delta=True, lock=lock)
    waits = HistogramAggregate(tel.TASK_QUEUE_WAIT_DURATION, delta=True, lock=lock)
    single = durations.bind(("w", "failure", "E"))
    pair = durations.bind(("w", "success", None)).pair(waits.bind(("w",)))
    assert pair is not None
    counts = []
    for _ in range(3):  # one wave spanning three collections
        pair.record(0.01, 0.02)
        single.record(0.5)
        metric = durations.to_metric(None, 0)
        counts.append(sorted(cast("Any", p).count for p in metric.data.data_points) if metric else [])
    assert counts == [[1, 1]] * 3


async def _nap(_: int) -> None:
    await asyncio.sleep(0)


class _Backwards:
    """A clock each reading of which is a second earlier than the last (a wall clock stepped back, at worst)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now -= 1.0
        return self.now


def _histogram_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[int, float]]]:
    data = reader.get_metrics_data()
    return {m.name: sorted((p.count, p.sum) for p in m.data.data_points) for rm in data.resource_metrics
            for s in rm.scope_metrics for m in s.metrics if isinstance(m.data, HistogramData)} if data else {}


def test_the_bridge_drops_negative_durations_as_the_sdk_does() -> None:
    """A wave timed on a clock that went back measured negative durations: the SDK's histograms drop them,
    the bridge recorded them (a point of sum -25 s, five "fast" tasks in the first bucket)."""
    got: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for label, wrap in (("sdk", lambda r: r), ("bridged", bridged)):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[wrap(reader)])
        try:
            wave: Wave[None] = Wave("w", meter_provider=provider, clock=_Backwards())
            asyncio.run(wave.map(_nap, range(5)))
            got[label] = _histogram_points(reader)
        finally:
            provider.shutdown()
    assert got["bridged"] == got["sdk"]


def _task_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [p for rm in data.resource_metrics for s in rm.scope_metrics for m in s.metrics if m.name == name
            for p in m.data.data_points] if data else []


@pytest.mark.skipif(not EXEMPLARS_SUPPORTED, reason="this SDK has no exemplar reservoirs")
def test_a_views_own_exemplar_reservoir_is_honoured_by_the_bridge() -> None:
    # A View's exemplar_reservoir_factory was ignored: the bridge kept one exemplar per bucket where
    # the user's reservoir keeps one per point.
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, SimpleFixedSizeExemplarReservoir

    def one_exemplar(aggregation: Any) -> Any:
        return lambda **kwargs: SimpleFixedSizeExemplarReservoir(size=1)

    reader = InMemoryMetricReader()
    view = View(instrument_name=tel.TASK_DURATION.name, exemplar_reservoir_factory=one_exemplar)
    provider = MeterProvider(metric_readers=[bridged(reader)], exemplar_filter=AlwaysOnExemplarFilter(), views=[view])
    _run_workload(provider, TracerProvider())
    points = _task_points(reader, tel.TASK_DURATION.name)
    assert points and all(len(p.exemplars) == 1 for p in points)
    bridge = bridge_for(provider)
    assert bridge is not None and bridge.sink(tel.TASK_DURATION) is None  # left to the SDK
    assert bridge.sink(tel.TASK_QUEUE_WAIT_DURATION) is not None


@pytest.mark.parametrize("order", ["bridged-then-bridged", "plain-then-bridged", "bridged-then-plain", "twice-in-one"])
def test_a_reader_registered_already_is_refused_like_the_sdk_does(order: str) -> None:
    # bridged(reader) for a reader some provider had already let the second provider take it over
    # silently: the first provider's reader then collected nothing at all.
    reader = InMemoryMetricReader()
    if order == "twice-in-one":
        readers = [bridged(reader), bridged(reader)]
    else:
        first, second = order.split("-then-")
        MeterProvider(metric_readers=[bridged(reader) if first == "bridged" else reader])
        readers = [bridged(reader) if second == "bridged" else reader]
    with pytest.raises(Exception, match="registered already"):
        MeterProvider(metric_readers=readers)


def test_a_removed_bridged_reader_collects_like_a_removed_plain_one() -> None:
    # MeterProvider.remove_metric_reader(bridged(r)) left r calling a None callback: TypeError on collect.
    reader = InMemoryMetricReader()
    wrapper = bridged(reader)
    provider = MeterProvider(metric_readers=[wrapper])
    _run_workload(provider, TracerProvider(), waves=1)
    provider.remove_metric_reader(wrapper)
    assert reader.get_metrics_data() is None  # the SDK's "not registered" answer, not a TypeError
    again = MeterProvider(metric_readers=[reader])  # unregistered: usable again, as with the SDK
    _run_workload(again, TracerProvider(), waves=1)
    assert _task_points(reader, tel.TASK_DURATION.name)


def _metrics_named(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [m for rm in data.resource_metrics for s in rm.scope_metrics for m in s.metrics if m.name == name] \
        if data else []


# Once the bridge served a provider, a reader added with MeterProvider.add_metric_reader (SDK >= 1.28) got no
# task histograms, bridged or not: the hook recorded into the stores found at the first wave (discover() read
# MeterProvider._metric_readers, which add_metric_reader does not even update).
@pytest.mark.parametrize("wrap", [True, False], ids=["bridged", "plain"])
def test_a_reader_added_after_the_first_wave_gets_the_task_histograms(wrap: bool) -> None:
    if not hasattr(MeterProvider, "add_metric_reader"):
        pytest.skip("this SDK cannot add readers to a built provider")
    first = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[bridged(first)])
    _run_workload(provider, TracerProvider(), waves=1)
    added = InMemoryMetricReader()
    provider.add_metric_reader(bridged(added) if wrap else added)
    _run_workload(provider, TracerProvider(), waves=1)
    assert sum(p.count for p in _task_points(added, tel.TASK_DURATION.name)) == 25
    # The first reader still shows one histogram holding both waves (with a plain reader added the SDK records
    # the second one: its points and the bridge's first-wave ones are merged, not exported as two metrics).
    found = _metrics_named(first, tel.TASK_DURATION.name)
    assert len(found) == 1 and sum(p.count for p in found[0].data.data_points) == 50


@pytest.mark.parametrize("wrap", [True, False], ids=["bridged", "plain"])
def test_a_reader_removed_after_the_first_wave_stops_getting_points_and_the_others_go_on(wrap: bool) -> None:
    if not hasattr(MeterProvider, "remove_metric_reader"):
        pytest.skip("this SDK cannot remove readers from a built provider")
    kept, gone = InMemoryMetricReader(), InMemoryMetricReader()
    removed, kept_wrapper = bridged(gone) if wrap else gone, bridged(kept)
    provider = MeterProvider(metric_readers=[kept_wrapper, removed])
    _run_workload(provider, TracerProvider(), waves=1)
    before = sum(p.count for p in _task_points(gone, tel.TASK_DURATION.name))
    assert before == 25
    provider.remove_metric_reader(removed)
    _run_workload(provider, TracerProvider(), waves=1)  # no error: nothing records into the removed reader
    assert gone.get_metrics_data() is None  # the SDK's "not registered" answer
    found = _metrics_named(kept, tel.TASK_DURATION.name)
    assert len(found) == 1 and sum(p.count for p in found[0].data.data_points) == 50
    # Every reader left is bridged: the bridge serves the provider again, recording for the kept reader only.
    bridge = bridge_for(provider)
    assert bridge is not None
    assert bridge.sink(tel.TASK_DURATION) is kept_wrapper.store.aggregates[tel.TASK_DURATION.name]  # type: ignore[attr-defined]


class _SameIds(IdGenerator):
    """The same ids in every run, so exemplar ids compare across the bridged and the plain run."""

    def __init__(self) -> None:
        self._random = random.Random(1)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


@pytest.mark.skipif(not EXEMPLARS_SUPPORTED, reason="this SDK has no exemplar filter")
def test_always_on_exemplars_of_sampled_off_waves_carry_the_same_ids_as_plain_sdk_calls() -> None:
    # With no task span (the wave sampled off) the bridge wrote always_on exemplars without ids, where the SDK
    # takes the current span's (the wave span's) trace and span id.
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter

    found = []
    for wrap in (True, False):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[bridged(reader) if wrap else reader],
                                 exemplar_filter=AlwaysOnExemplarFilter())
        _run_workload(provider, TracerProvider(sampler=ALWAYS_OFF, id_generator=_SameIds()), waves=1)
        found.append(sorted((tuple(sorted(p.attributes.items())), e.value, e.trace_id, e.span_id)
                            for p in _task_points(reader, tel.TASK_DURATION.name) for e in p.exemplars))
    assert found[0] == found[1]
    assert found[0] and all(trace_id is not None for _, _, trace_id, _ in found[0])


# A wave with tracing off (a no-op TracerProvider) but metrics on, run inside a sampled span of the user's:
# plain SDK calls give each point an exemplar of that span (trace_based filter, the default); the bridge got
# no span context from the hook and gave none.
def test_a_wave_without_tracing_inside_a_sampled_user_span_gets_the_same_exemplars_as_plain_sdk_calls() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    users_own = TracerProvider().get_tracer("app")
    counts = []
    for wrap in (True, False):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[bridged(reader) if wrap else reader])

        async def main(provider: MeterProvider = provider) -> None:
            with users_own.start_as_current_span("request"):
                await Wave[int]("w", tracer_provider=NoOpTracerProvider(), meter_provider=provider).run([_ok(), _ok()])

        asyncio.run(main())
        counts.append([len(p.exemplars) for p in _task_points(reader, tel.TASK_DURATION.name)])
    assert counts[1] == [1]  # the SDK's exemplar, linking the user's span
    assert counts[0] == counts[1]


# A reader added to a provider configure() / testing.InMemoryTelemetry built got no task or wave duration
# histograms: their registered bridge was never checked again, so the hook kept recording into the store only
# their own readers merge. Now the bridge stands aside while such a reader is there (the SDK records for every
# reader) and serves again once the readers are back to their own.
def test_a_reader_added_to_an_in_memory_telemetry_provider_gets_the_task_histograms() -> None:
    if not hasattr(MeterProvider, "add_metric_reader"):
        pytest.skip("this SDK cannot add readers to a built provider")
    plain = InMemoryMetricReader()  # what the SDK alone records for one run (the same values at every run)
    _run_workload(MeterProvider(metric_readers=[plain]), TracerProvider(), waves=1)
    names = (*TASK_HISTOGRAMS, tel.WAVE_DURATION.name)
    once = _histogram_points(plain)

    def times(n: int) -> dict[str, list[tuple[int, Any]]]:
        return {name: [(n * c, pytest.approx(n * s)) for c, s in once[name]] for name in names}

    otel = InMemoryTelemetry()
    provider = otel.meter_provider
    _run_workload(provider, TracerProvider(), waves=1)
    assert bridge_for(provider) is not None
    added = InMemoryMetricReader()
    provider.add_metric_reader(added)
    _run_workload(provider, TracerProvider(), waves=1)
    got, own = _histogram_points(added), _histogram_points(otel.metric_reader)
    for name in names:
        assert got[name] == times(1)[name], name  # the added reader: the second run, nothing lost
        assert own[name] == times(2)[name], name  # the own reader: both runs, each once, in one histogram
        assert len(_metrics_named(otel.metric_reader, name)) == 1
    if hasattr(MeterProvider, "remove_metric_reader"):
        provider.remove_metric_reader(added)
        assert bridge_for(provider) is not None  # its own readers again: the bridge serves
        _run_workload(provider, TracerProvider(), waves=1)
        own = _histogram_points(otel.metric_reader)
        for name in names:
            assert own[name] == times(3)[name], name


async def _no_sleep(_delay: float) -> None:
    return None


@pytest.mark.parametrize("built", ["testing", "bridged"])
def test_a_reader_added_after_a_policy_was_built_gets_its_retry_delays(built: str) -> None:
    """An explicit provider's bridge was fixed when the policy's hook was built: a reader added to
    InMemoryTelemetry's provider later got no ``shannon.retry.delay.duration``. (On a provider of ``bridged()``
    readers retry delays go through the SDK: that case guards it stays so.)"""
    if not hasattr(MeterProvider, "add_metric_reader"):
        pytest.skip("this SDK cannot add readers to a built provider")
    if built == "testing":
        otel = InMemoryTelemetry()
        provider, own = otel.meter_provider, cast("InMemoryMetricReader", otel.metric_reader)
    else:
        own = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[bridged(own)])
    retry = Retry(attempts=2, initial=0.25, jitter="none", sleep=_no_sleep, name="op", meter_provider=provider)
    calls = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) % 2:
            raise ValueError("once")
        return 1

    assert asyncio.run(retry.call(flaky)) == 1
    added = InMemoryMetricReader()
    provider.add_metric_reader(added)
    assert asyncio.run(retry.call(flaky)) == 1
    name = tel.RETRY_DELAY_DURATION.name
    assert _histogram_points(added)[name] == [(1, 0.25)]
    assert _histogram_points(own)[name] == [(2, 0.5)]
    assert len(_metrics_named(own, name)) == 1
