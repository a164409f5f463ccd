"""collector-config/otelcol-tail-sampling.yaml in the real Jaeger binary: a failing wave's trace reaches
Jaeger whole, healthy waves do not (healthy ratio 0). `jaeger validate` accepts even an unknown
tail_sampling policy type, so the config is proven by starting it, and the guard test shows that a
broken policy does fail at start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _stack import CONFIG_DIR, free_ports, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from shannon_otel import BreakerConfig, CircuitBreaker, Saga, Wave
from shannon_otel.testing import FakeClock

if TYPE_CHECKING:
    from _stack import Jaeger
    from conftest import StackEnv

CONFIG = CONFIG_DIR / "otelcol-tail-sampling.yaml"


def _start(stack_env: StackEnv, config: Path, jaeger: Jaeger, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    grpc_port, http_port = free_ports(2)
    env = {
        **os.environ,
        "SHANNON_COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
        "SHANNON_COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
        "SHANNON_COLLECTOR_JAEGER_ENDPOINT": jaeger.otlp_grpc_endpoint.removeprefix("http://"),
        "SHANNON_TAIL_HEALTHY_PERCENT": "0",
        "SHANNON_TAIL_DECISION_WAIT": "1s",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(stack_env.jaeger_bin), "--config", f"file:{config}", "--set", "service.telemetry.metrics.level=none"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    return process, f"http://127.0.0.1:{grpc_port}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def tail_collector(stack_env: StackEnv, jaeger: Jaeger, tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "tail.log"
    process, endpoint = _start(stack_env, CONFIG, jaeger, log)
    try:
        wait_until(lambda: "Everything is ready" in log.read_text(errors="replace") or process.poll() is not None,
                   timeout=60, what="the tail-sampling collector to start")
        assert process.poll() is None, log.read_text(errors="replace")
        yield endpoint
    finally:
        _stop(process)


def test_a_failing_wave_is_kept_whole_and_healthy_waves_are_dropped(tail_collector: str, jaeger: Jaeger) -> None:
    service = f"tail-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=tail_collector, insecure=True)))

    async def ok() -> int:
        return 1

    async def bad() -> int:
        raise ValueError("boom")

    async def main() -> None:
        for name in ("healthy-1", "healthy-2"):  # sent first: decided no later than the failing one
            await Wave[int](name, tracer_provider=provider).run([ok(), ok()])
        await Wave[int]("failing", tracer_provider=provider).run([ok(), bad()])

    asyncio.run(main())
    provider.shutdown()
    (kept,) = jaeger.wait_for_traces(service, min_spans=3, timeout=60)
    assert sorted(s["operationName"] for s in kept["spans"]) == ["task failing", "task failing", "wave failing"]
    assert len(jaeger.traces(service)) == 1  # the healthy waves were dropped


def test_a_breaker_closing_and_a_rollback_by_cancellation_are_kept(tail_collector: str, jaeger: Jaeger) -> None:
    """The collector's policies keep what TailSampler keeps: a trace whose only news is a breaker transition (a
    probe that closed its breaker succeeds) or a compensation (a saga rolled back by a cancellation has no error)."""
    service = f"tail-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=tail_collector, insecure=True)))
    clock = FakeClock()
    breaker = CircuitBreaker("dep", BreakerConfig(failure_threshold=1, reset_timeout=1.0), clock=clock,
                             tracer_provider=provider)

    async def ok() -> int:
        return 1

    async def fails() -> int:
        raise ValueError("down")

    async def undo(_: object) -> None:
        pass

    async def rolled_back() -> None:
        async with Saga("order", tracer_provider=provider).begin() as tx:
            await tx.step("reserve", ok, compensate=undo)
            raise asyncio.CancelledError  # as the caller's cancellation arrives mid-saga

    async def main() -> None:
        await Wave[int]("healthy", tracer_provider=provider).run([ok()])  # sent first: decided no later
        with contextlib.suppress(ValueError):
            await breaker.call(fails)  # closed -> open, in a trace of its own (an error: kept)
        clock.advance(2.0)
        await Wave[int]("recover", tracer_provider=provider).run([breaker.call(ok)])
        await Wave[None]("cancelled", tracer_provider=provider).run([rolled_back()])

    asyncio.run(main())
    provider.shutdown()
    expected = ["compensate reserve", "wave cancelled", "wave recover"]

    def names() -> list[str]:
        return sorted(s["operationName"] for trace in jaeger.traces(service) for s in trace["spans"]
                      if s["operationName"].startswith(("wave ", "compensate ")))

    wait_until(lambda: names() == expected, timeout=60, what="the breaker's and the rollback's traces in Jaeger")
    assert len(jaeger.traces(service)) == 3  # the healthy wave was dropped


def test_a_broken_policy_fails_at_start(stack_env: StackEnv, jaeger: Jaeger, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text().replace("type: probabilistic", "type: nosuchpolicy"))
    log = tmp_path / "bad.log"
    process, _ = _start(stack_env, bad, jaeger, log)
    try:
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            _stop(process)
    assert "nosuchpolicy" in log.read_text(errors="replace")
