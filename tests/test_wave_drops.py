"""The wave report shows the spans configure()'s delivery guards dropped while the wave ran (issue 11:
"dropped spans and metric points are counted and visible (a metric and the wave report)")."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from shannon_otel import RunRecorder, Telemetry, Wave, configure
from shannon_otel.cli._summary import Out, waves_section
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


def _stuck(gate: Gate) -> Telemetry:
    """A configure() whose pipeline is full: one export stuck in ``gate``, the queue behind it full.
    Nothing moves until the gate opens, so every span ended meanwhile is refused and counted."""
    handle = configure("wave-drops", exporter="none", span_exporters=[gate], set_global=False,
                       max_queue_size=4, max_export_batch_size=2)
    tracer = handle.tracer_provider.get_tracer("fill")
    for _ in range(2):
        tracer.start_span("fill").end()
    assert gate.entered.wait(10)
    while handle.dropped["traces"] == 0:
        tracer.start_span("fill").end()
    return handle


def test_a_wave_reports_the_spans_dropped_while_it_ran_equal_to_the_handles_count() -> None:
    gate = Gate()
    handle = _stuck(gate)
    try:
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


_GLOBAL_SCRIPT = """
import asyncio, threading
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from shannon_otel import Wave, configure

class Stuck(SpanExporter):
    def __init__(self):
        self.open, self.entered = threading.Event(), threading.Event()
    def export(self, spans):
        self.entered.set()
        self.open.wait(30)
        return SpanExportResult.SUCCESS
    def shutdown(self):
        return None

async def one(i):
    return i

gate = Stuck()
handle = configure("global-drops", exporter="none", span_exporters=[gate], max_queue_size=4,
                   max_export_batch_size=2)  # sets the global providers
tracer = handle.tracer_provider.get_tracer("fill")
for _ in range(2):
    tracer.start_span("fill").end()
assert gate.entered.wait(10)
while handle.dropped["traces"] == 0:
    tracer.start_span("fill").end()
before = handle.dropped["traces"]
report = asyncio.run(Wave("global").run([one(i) for i in range(5)])).report
print(report.telemetry_dropped, handle.dropped["traces"] - before)
gate.open.set()
handle.shutdown()
"""


def test_a_wave_on_the_global_provider_reports_the_drops_of_the_configure_that_set_it() -> None:
    # a process of its own: the API's global providers can be set only once
    out = subprocess.run([sys.executable, "-c", _GLOBAL_SCRIPT], capture_output=True, text=True, check=True,
                         timeout=60, cwd=Path(__file__).resolve().parent.parent,
                         env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    assert out.stdout.split() == ["5", "6"]  # 5 task spans in the report; the wave span's drop came after it


def test_a_wave_without_a_configure_built_provider_reports_zero() -> None:
    telemetry = InMemoryTelemetry()
    wave: Wave[int] = Wave("plain", **telemetry.providers)
    result = asyncio.run(wave.run([_one(i) for i in range(5)]))
    assert result.report.telemetry_dropped == 0
    assert len(telemetry.spans()) == 6  # it did record: nothing was dropped, and nothing counts drops here
    bare: Wave[int] = Wave("no-sdk")
    no_sdk = asyncio.run(bare.run([_one(i) for i in range(5)]))
    assert no_sdk.report.telemetry_dropped == 0


def _summary(recorder: RunRecorder) -> str:
    stream = io.StringIO()
    waves_section(Out(stream=stream), recorder)
    return stream.getvalue()


def test_the_cli_summary_says_how_many_spans_were_dropped_only_when_some_were() -> None:
    gate = Gate()
    handle = _stuck(gate)
    try:
        recorder = RunRecorder()
        wave: Wave[int] = Wave("drops", hooks=(recorder,), tracer_provider=handle.tracer_provider,
                               meter_provider=handle.meter_provider)
        for _ in range(2):
            asyncio.run(wave.run([_one(i) for i in range(7)]))
        assert "telemetry dropped: 14 spans while the waves ran" in _summary(recorder)
    finally:
        gate.open.set()
        handle.shutdown()
    telemetry = InMemoryTelemetry()
    clean = RunRecorder()
    plain: Wave[int] = Wave("plain", hooks=(clean,), **telemetry.providers)
    asyncio.run(plain.run([_one(i) for i in range(3)]))
    assert "telemetry dropped" not in _summary(clean)
