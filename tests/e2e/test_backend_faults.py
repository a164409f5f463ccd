"""Backend faults against the real servers: the collector unreachable from the start, killed mid-run
and restarted, and an endpoint that accepts and never answers (a local socket).

For each: the results equal a healthy run's, leaving configure() is bounded by its budget (asserted
with a generous margin: the reliability benchmark measures the real figures), drops are counted, and
after a restart telemetry reaches Jaeger again through the collector.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from benchmarks._backends import BlackHole, down_endpoint
from shannon_otel import Telemetry, Wave, configure, record_cost

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _stack import Collector, Jaeger
    from conftest import StackEnv

BUDGET_S = 1.0
MARGIN_S = 2.0  # thread start-up and a loaded machine; a regression here takes 15-35 s
N = 300


@pytest.fixture(autouse=True)
def _quiet_exporters() -> Iterator[None]:
    # Retries against dead ports are expected here; the level is restored so later tests (which assert
    # the SDK's warnings) see the logger as they would alone.
    logger = logging.getLogger("opentelemetry")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(before)


async def _work(i: int) -> int:
    await asyncio.sleep(0)
    record_cost(0.01)
    return i * i


def _wave(handle: Telemetry, name: str) -> list[int | None]:
    wave: Wave[int] = Wave(name, max_concurrency=50, tracer_provider=handle.tracer_provider,
                           meter_provider=handle.meter_provider)
    return [r.value for r in asyncio.run(wave.map(_work, range(N))).results]


EXPECTED = [i * i for i in range(N)]


def _leave(handle: Telemetry) -> float:
    start = time.monotonic()
    handle.shutdown()
    return time.monotonic() - start


@pytest.mark.parametrize("backend", ["unreachable", "black_hole"])
def test_a_dead_or_silent_endpoint_costs_no_result_and_a_bounded_exit(backend: str) -> None:
    hole = BlackHole()
    endpoint = down_endpoint() if backend == "unreachable" else hole.endpoint
    handle = configure(f"faults-{backend}", exporter="otlp_grpc", endpoint=endpoint, set_global=False,
                       shutdown_timeout_s=BUDGET_S, metric_interval_s=0.2)
    try:
        assert _wave(handle, "dead") == EXPECTED
        assert _leave(handle) <= BUDGET_S + MARGIN_S
        assert handle.dropped["traces"] > 0  # nothing reached a backend, and it says so
        assert handle.dropped["metrics"] > 0  # the metric export stuck at the deadline too (was 0)
    finally:
        hole.close()


def test_collector_killed_mid_run_and_restarted(stack_env: StackEnv, collector: Collector, jaeger: Jaeger) -> None:
    service = f"faults-restart-{uuid.uuid4().hex[:8]}"
    handle = configure(service, exporter="otlp_grpc", endpoint=collector.otlp_grpc_endpoint, set_global=False,
                       shutdown_timeout_s=BUDGET_S, metric_interval_s=0.5)
    try:
        assert _wave(handle, "before") == EXPECTED
        assert handle.force_flush(10.0)
        stack_env.stop("collector")
        assert _wave(handle, "during") == EXPECTED
        assert handle.force_flush(BUDGET_S) in (True, False)  # bounded whatever the exporter does
        stack_env.start("collector")
        assert _wave(handle, "after") == EXPECTED
        handle.force_flush(15.0)  # the exporter's backoff may need a few seconds to reconnect
        traces = jaeger.wait_for_traces(service, operation="wave after", timeout=60)
        assert traces, "telemetry resumed after the restart"
    finally:
        assert _leave(handle) <= BUDGET_S + MARGIN_S
