"""The global providers as applications set them: after waves and policies are built, one after the other, or
read from the API (its proxies) before they are set. Each case in a fresh interpreter: a global is set once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _forked import run_python

_SCRIPT = """
import asyncio, json
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shannon_otel import Retry, Saga, Step, Wave

# Injected at import time, as the convention asks, before the application sets its globals: the proxies.
providers = {"tracer_provider": trace.get_tracer_provider(), "meter_provider": metrics.get_meter_provider()}
wave = Wave("w", **providers)
retry = Retry(attempts=2, initial=0, maximum=0, name="op", **providers)
saga = Saga("s", **providers)

exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

async def work(i):
    return i

async def main():
    await wave.map(work, range(3))
    await retry.call(work, 1)
    await saga.run(Step("a", lambda: work(2)))

asyncio.run(main())
data = reader.get_metrics_data()  # None when nothing was recorded
outcomes = [
    (dict(p.attributes), p.value)
    for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
    if m.name == "shannon.task.outcomes" for p in m.data.data_points
]
print(json.dumps({"spans": sorted({s.name for s in exporter.get_finished_spans()}), "outcomes": outcomes}))
"""


def test_providers_taken_from_the_api_before_the_globals_are_set_report_to_the_globals_once_set() -> None:
    # trace.get_tracer_provider() / metrics.get_meter_provider() return the API's proxies until a global is set;
    # passed as tracer_provider= / meter_provider=, they were taken as providers without an SDK, for good: waves,
    # policies and sagas built at import time recorded no span and no metric after the application set its globals.
    seen = _run(_SCRIPT)
    assert {"wave w", "task w", "op", "attempt 1", "saga s"} <= set(seen["spans"]), seen
    assert seen["outcomes"] == [[{"shannon.wave.name": "w", "shannon.task.outcome": "success"}, 3]], seen


_ONE_AFTER_THE_OTHER = """
import asyncio, json, sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shannon_otel import Retry, Wave

wave, retry = Wave("w"), Retry(attempts=2, initial=0, maximum=0, name="op")
exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
meter_provider = MeterProvider(metric_readers=[reader])
set_first, set_second = (
    (lambda: metrics.set_meter_provider(meter_provider), lambda: trace.set_tracer_provider(tracer_provider))
    if sys.argv[1] == "meter" else
    (lambda: trace.set_tracer_provider(tracer_provider), lambda: metrics.set_meter_provider(meter_provider))
)

async def work(i):
    return i

async def calls():
    await wave.map(work, range(2))
    await retry.call(work, 1)

set_first()
asyncio.run(calls())  # one global set: the other not yet
set_second()
exporter.clear()
reader.collect()
asyncio.run(calls())
data = reader.get_metrics_data()
calls = [
    p.value for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
    if m.name == "shannon.calls" for p in m.data.data_points
]
print(json.dumps({"spans": sorted({s.name for s in exporter.get_finished_spans()}), "calls": calls}))
"""


@pytest.mark.parametrize("first", ["meter", "tracer"])
def test_a_global_set_after_the_other_and_after_the_first_calls_is_reported_to(first: str) -> None:
    # The OTel hook stopped watching the globals once one of them recorded: a MeterProvider set first, a wave run,
    # then the TracerProvider set gave no span for good; a TracerProvider set first, a MeterProvider after the first
    # protected call gave no shannon.calls point for good.
    seen = _run(_ONE_AFTER_THE_OTHER, first)
    assert {"wave w", "task w", "op", "attempt 1"} <= set(seen["spans"]), seen
    assert sum(seen["calls"]) == (2 if first == "meter" else 1), seen


def _run(script: str, *args: str) -> dict[str, Any]:
    done = run_python("-c", script, *args)
    seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return seen
