"""Adversarial probes of the telemetry a user sees: the public metrics bridge on user-built providers,
tail sampling, log records, the anomaly hook fed by real waves. Each test reproduces one found bug."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.trace import TracerProvider
from test_metrics_bridge import _run_workload

from shannon_otel import _telemetry as tel
from shannon_otel import bridged
from shannon_otel._metrics_bridge import EXEMPLARS_SUPPORTED
from shannon_otel._otel._providers import bridge_for


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


# NOT FIXED (reported): the fix lies in _metrics_bridge.py / _otel/ (edited concurrently by another helper) and
# is not small: once the bridge serves a provider, a reader added later with MeterProvider.add_metric_reader
# (SDK >= 1.28) gets no task histograms at all, bridged or not: the hook records into the stores found at the
# first wave (discover() reads MeterProvider._metric_readers, which add_metric_reader does not even update).
@pytest.mark.xfail(strict=True, reason="a reader added after the bridge was discovered misses the task histograms")
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
