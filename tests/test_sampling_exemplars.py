"""Under a head sampler, every trace id the library shows (histogram and counter exemplars, through the bridge,
the SDK's own path and the Prometheus page) names a trace that was exported, and the metrics stay complete."""

from __future__ import annotations

import re

import pytest
from _flaky_waves import run_flaky_waves
from _seeded_ids import SeededIds
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanContext, TraceFlags

from shannon_otel import PrometheusReader, bridged
from shannon_otel import _telemetry as tel
from shannon_otel._metrics_bridge import EXEMPLARS_SUPPORTED

pytestmark = pytest.mark.skipif(not EXEMPLARS_SUPPORTED, reason="this SDK has no exemplars")

WAVES = 40


_REMOTE_UNSAMPLED = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))


@pytest.mark.parametrize("wrap", [False, True], ids=["sdk-path", "bridged"])
@pytest.mark.parametrize(("sampler", "parent"), [
    (ParentBased(TraceIdRatioBased(0.1)), None),
    (ParentBased(ALWAYS_ON), _REMOTE_UNSAMPLED),  # the SDK's default sampler under a sampled-out upstream
], ids=["ratio", "unsampled-remote-parent"])
def test_every_exemplar_names_an_exported_trace_and_counts_are_complete(
        wrap: bool, sampler: Sampler, parent: SpanContext | None) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler, id_generator=SeededIds(3))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    memory, page = InMemoryMetricReader(), PrometheusReader()
    readers: list[MetricReader] = [bridged(memory), bridged(page)] if wrap else [memory, page]
    meter_provider = MeterProvider(metric_readers=readers)
    run_flaky_waves({"tracer_provider": tracer_provider, "meter_provider": meter_provider}, WAVES, parent)

    exported = {s.context.trace_id for s in exporter.get_finished_spans() if s.context is not None}
    data = memory.get_metrics_data()
    assert data is not None
    metrics = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    named = [(m.name, e.trace_id) for m in metrics for p in m.data.data_points
             for e in getattr(p, "exemplars", None) or () if e.trace_id]
    assert [n for n, trace_id in named if trace_id not in exported] == []
    on_page = [int(t, 16) for t in re.findall(r'trace_id="([0-9a-f]{32})"', page.scrape(openmetrics=True))]
    assert [t for t in on_page if t not in exported] == []
    if parent is None:  # some traces were sampled in: their exemplars are shown (the check above is not vacuous)
        assert exported and named and on_page
    else:
        assert not exported and not named and not on_page
    counts = {m.name: sum(getattr(p, "count", 0) for p in m.data.data_points) for m in metrics
              if m.name in (tel.TASK_DURATION.name, tel.WAVE_DURATION.name)}
    assert counts == {tel.TASK_DURATION.name: 3 * WAVES, tel.WAVE_DURATION.name: WAVES}  # sampling drops no count
    meter_provider.shutdown()
    tracer_provider.shutdown()
