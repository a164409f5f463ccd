"""The wave report shows the spans configure()'s delivery guards dropped while the wave ran (issue 11:
"dropped spans and metric points are counted and visible (a metric and the wave report)")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from shannon_otel import Wave, configure
from shannon_otel.testing import InMemoryTelemetry


class Gate(SpanExporter):
    """A backend that answers only once opened: the queue in front of it fills deterministically."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.received = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.open.wait(30)  # bounded so a regression fails instead of hanging the suite
        self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


async def _one(i: int) -> int:
    return i


def test_a_wave_reports_the_spans_dropped_while_it_ran_equal_to_the_handles_count() -> None:
    gate = Gate()
    handle = configure("wave-drops", exporter="none", span_exporters=[gate], set_global=False,
                       max_queue_size=4, max_export_batch_size=2)
    try:
        # Fill the pipeline first: one export stuck in the exporter, the queue behind it full. Nothing
        # moves until the gate opens, so every span the waves end is refused and counted.
        tracer = handle.tracer_provider.get_tracer("fill")
        for _ in range(2):
            tracer.start_span("fill").end()
        assert gate.entered.wait(10)
        while handle.dropped["traces"] == 0:
            tracer.start_span("fill").end()
        wave: Wave[int] = Wave("drops", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider)
        for tasks in (50, 10):
            before = handle.dropped["traces"]
            result = asyncio.run(wave.run([_one(i) for i in range(tasks)]))
            assert [r.value for r in result.results] == list(range(tasks))  # the user's results are untouched
            assert handle.dropped["traces"] - before == tasks + 1  # every task span and the wave span
            # The wave span ends after the report is built (the report is written on it): its drop is
            # in the handle's count and the metric only. Each wave reports only what it ran into.
            assert result.report.telemetry_dropped == tasks
    finally:
        gate.open.set()
        handle.shutdown()


def test_a_wave_without_a_configure_built_provider_reports_zero() -> None:
    telemetry = InMemoryTelemetry()
    wave: Wave[int] = Wave("plain", **telemetry.providers)
    result = asyncio.run(wave.run([_one(i) for i in range(5)]))
    assert result.report.telemetry_dropped == 0
    assert len(telemetry.spans()) == 6  # it did record: nothing was dropped, and nothing counts drops here
    bare: Wave[int] = Wave("no-sdk")
    no_sdk = asyncio.run(bare.run([_one(i) for i in range(5)]))
    assert no_sdk.report.telemetry_dropped == 0
