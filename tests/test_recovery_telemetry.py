"""The OTel side of recovery: global-provider switch, breaker state series, hook isolation."""

from __future__ import annotations

import types
from typing import Any

import pytest
from test_recovery_support import FakeClock, Telemetry, run

from shannon_otel._otel import _providers as otel_providers
from shannon_otel._otel import _recovery as otel_recovery
from shannon_otel._otel._recovery import RecoveryTelemetry
from shannon_otel._telemetry import BreakerState
from shannon_otel.recovery import BreakerRegistry, CircuitOpenError, Hedge, Pipeline, Retry


def test_global_providers_are_watched_until_set_then_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import metrics, trace

    api = types.SimpleNamespace(_TRACER_PROVIDER=None)
    metrics_api = types.SimpleNamespace(_METER_PROVIDER=None)
    for module in (otel_recovery, otel_providers):  # the policies' inlined check, and Recording's own
        monkeypatch.setattr(module, "TRACE_API", api)
        monkeypatch.setattr(module, "METRICS_API", metrics_api)
    checks: list[Any] = []

    def enabled(provider: Any) -> bool:
        checks.append(provider)
        return True

    monkeypatch.setattr(otel_providers, "tracing_enabled", enabled)
    tel = RecoveryTelemetry(trace.get_tracer("t"), metrics.get_meter("m"), {}, None, None)
    started = types.SimpleNamespace(operation="op")
    assert tel.call_started(started) is None  # type: ignore[arg-type]
    assert checks == []  # O(1): no getter called while the global slot is empty
    api._TRACER_PROVIDER = object()  # configure() set the global
    assert tel.call_started(started) is not None  # type: ignore[arg-type]
    assert tel.call_started(started) is not None  # type: ignore[arg-type]
    assert checks == [None]  # resolved once


def test_breaker_state_series_follow_transitions_across_a_registry() -> None:
    tel, clock = Telemetry(), FakeClock()
    registry = BreakerRegistry(clock=clock, **tel.kw)
    a = registry.get("a", failure_threshold=1, reset_timeout=1)
    registry.get("b")

    async def fail() -> None:
        raise ConnectionError

    async def ok() -> str:
        return "ok"

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await a.call(fail)
        with pytest.raises(CircuitOpenError):
            await a.call(ok)
        clock.now += 1
        assert await a.call(ok) == "ok"

    run(main())
    assert a.state is BreakerState.CLOSED
    states = {(p[0]["shannon.breaker.name"], p[0]["shannon.breaker.state"]): p[1]
              for p in tel.points("shannon.breaker.state")}
    assert states == {
        ("a", "closed"): 1, ("a", "open"): 0, ("a", "half_open"): 0,
        ("b", "closed"): 1, ("b", "open"): 0, ("b", "half_open"): 0,
    }
    transitions = sorted((p[0]["shannon.breaker.state.from"], p[0]["shannon.breaker.state.to"], p[1])
                         for p in tel.points("shannon.breaker.transitions"))
    assert transitions == [("closed", "open", 1), ("half_open", "closed", 1), ("open", "half_open", 1)]


def test_a_retried_hedge_reports_attempts_and_hedges_in_one_trace() -> None:
    tel, clock = Telemetry(), FakeClock()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError(calls)
        return "ok"

    async def never(seconds: float) -> None:
        import asyncio

        await asyncio.Event().wait()

    pipeline = Pipeline(Retry(attempts=2, jitter="none", sleep=clock.sleep), Hedge(1.0, sleep=never),
                        name="lookup", **tel.kw)
    assert run(pipeline.call(flaky)) == "ok"
    op = tel.span("lookup")
    assert [s.name for s in tel.children(op)] == ["attempt 1", "hedge 2", "attempt 3"]
    hedge = tel.span("hedge 2")
    assert hedge.attributes is not None and hedge.attributes["shannon.hedge.attempt"] == 2
    assert tel.points("shannon.hedges") == [({"shannon.operation": "lookup"}, 1)]
    assert tel.points("shannon.retry.attempts") == [
        ({"shannon.operation": "lookup", "shannon.call.outcome": "success"}, (1, 3))]

