"""Under the in-process TailSampler (healthy_ratio=0: only troubled traces exported), every log record the library
writes with a trace id (retries, breaker transitions and rejections, timeouts, fallbacks, degraded results,
compensations) names a trace that was exported: each is written under a span its trouble keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _log_records import exported_logs
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import (
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    LoggingHook,
    Retry,
    Saga,
    SagaError,
    Step,
    TailSampler,
    Timeout,
    Wave,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual


@pytest.fixture
def logs() -> Iterator[InMemoryTelemetry]:
    """The log handler configure() attaches, exporting in memory (its tracer provider is not used here)."""
    with exported_logs() as telemetry:
        yield telemetry


def test_every_log_record_with_a_trace_id_names_a_trace_the_tail_sampler_exported(
        logs: InMemoryTelemetry) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(TailSampler(SimpleSpanProcessor(spans), healthy_ratio=0.0))
    hook = LoggingHook(interval_s=1000.0)
    providers: dict[str, Any] = {"hooks": (hook,), "tracer_provider": tracer_provider,
                                 "meter_provider": MeterProvider()}
    tries = {"n": 0}

    async def flaky() -> int:
        tries["n"] += 1
        if tries["n"] % 2:
            raise ValueError("flaky")
        return 1

    async def bad() -> int:
        raise ValueError("bad")

    async def ok() -> int:
        return 1

    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    async def undo(_: int) -> None:
        return None

    async def zero(_: Exception) -> int:
        return 0

    async def main() -> None:
        retry = Retry(attempts=3, initial=0.0, name="r", **providers)
        breaker = CircuitBreaker("cb", failure_threshold=2, reset_timeout=3600.0, **providers)
        timeout = Timeout(1.0, name="to", **providers)
        fallback = Fallback(zero, name="fb", **providers)
        degrade: Degrade[int] = Degrade(default=0, name="deg", **providers)
        saga = Saga("s", **providers)
        for _ in range(3):
            await retry.call(flaky)
            for _ in range(3):
                with pytest.raises((ValueError, CircuitOpenError)):
                    await breaker.call(bad)
            with pytest.raises(TimeoutError):
                await timeout.call(slow)
            await fallback.call(bad)
            await degrade.call(lambda: timeout.call(slow))
            with pytest.raises(SagaError):
                await saga.run(Step("a", ok, undo), Step("b", bad))
            wave: Wave[int] = Wave("w", max_concurrency=2, **providers)
            await wave.run([ok(), bad(), ok(), ok()])

    run_virtual(main())
    hook.flush()
    exported = {s.context.trace_id for s in spans.get_finished_spans() if s.context is not None}
    records = [r.log_record for r in logs.log_records()]
    named = [(str(r.body), r.trace_id) for r in records if r.trace_id]
    assert len(named) >= 7  # a retry, a breaker transition, a rejection, a timeout, a fallback, a degraded result and
    # a compensation (the repeats are summarised, with no ids): not vacuous
    assert [body for body, trace_id in named if trace_id not in exported] == []
