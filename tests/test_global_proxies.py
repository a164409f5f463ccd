"""Providers taken from the OTel API before a global is set: its proxies stand for the global provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter: the globals can be set once per process.
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert {"wave w", "task w", "op", "attempt 1", "saga s"} <= set(seen["spans"]), seen
    assert seen["outcomes"] == [[{"shannon.wave.name": "w", "shannon.task.outcome": "success"}, 3]], seen
