"""Where a wave's per-task policy reports: to the wave's providers unless given its own.

A policy built without providers, handed to ``Wave(..., tracer_provider=, meter_provider=)``, used to
resolve its hooks at its own construction (the globals): its operation and attempt spans and retry
metrics missed the wave's providers (none at all with no global SDK; a split trace with one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError, Degrade, Pipeline, Retry, Served, Wave
from shannon_otel.testing import InMemoryTelemetry


def _flaky(failures: int) -> Callable[[], Awaitable[int]]:
    """A factory failing its first ``failures`` calls with ConnectionError, then returning 1."""
    calls = [0]

    async def work() -> int:
        calls[0] += 1
        if calls[0] <= failures:
            raise ConnectionError("down")
        return 1

    return work


def _names(tel: InMemoryTelemetry) -> list[str]:
    return sorted(s.name for s in tel.spans())


def test_a_policy_without_providers_reports_to_the_waves() -> None:
    tel = InMemoryTelemetry()
    wave: Wave[int] = Wave("w", policy=Retry(attempts=3, initial=0), **tel.providers)
    result = asyncio.run(wave.run([_flaky(1)]))
    assert result.values() == [1]
    assert _names(tel) == ["attempt 1", "attempt 2", "retry", "task w", "wave w"]
    # the retry's metrics too: one call that took two attempts, on the wave's meter provider
    assert tel.point("shannon.retry.attempts", shannon_operation="retry").sum == 2
    assert tel.point("shannon.calls", shannon_operation="retry").value == 1


def test_attempt_spans_are_children_of_the_task_span_in_one_trace() -> None:
    tel = InMemoryTelemetry()
    wave: Wave[int] = Wave("w", policy=Pipeline(Retry(attempts=2, initial=0), name="op"), **tel.providers)
    asyncio.run(wave.run([_flaky(1)]))
    task, op = tel.span("task w"), tel.span("op")
    assert op.parent is not None and task.context is not None and op.parent.span_id == task.context.span_id
    attempts = tel.children(op)
    assert sorted(s.name for s in attempts) == ["attempt 1", "attempt 2"]
    assert {s.context.trace_id for s in tel.spans() if s.context is not None} == {task.context.trace_id}


def test_a_policy_with_its_own_providers_keeps_them() -> None:
    wave_tel, own_tel = InMemoryTelemetry(), InMemoryTelemetry()
    wave: Wave[int] = Wave("w", policy=Retry(attempts=3, initial=0, **own_tel.providers), **wave_tel.providers)
    asyncio.run(wave.run([_flaky(1)]))
    assert _names(wave_tel) == ["task w", "wave w"]
    assert _names(own_tel) == ["attempt 1", "attempt 2", "retry"]
    assert own_tel.point("shannon.retry.attempts", shannon_operation="retry").sum == 2
    assert "shannon.retry.attempts" not in wave_tel.metrics()


def test_one_policy_in_two_waves_reports_to_each_waves_providers() -> None:
    first, second = InMemoryTelemetry(), InMemoryTelemetry()
    policy = Retry(attempts=3, initial=0)
    asyncio.run(Wave[int]("a", policy=policy, **first.providers).run([_flaky(1)]))
    asyncio.run(Wave[int]("b", policy=policy, **second.providers).run([_flaky(2)]))
    assert _names(first) == ["attempt 1", "attempt 2", "retry", "task a", "wave a"]
    assert _names(second) == ["attempt 1", "attempt 2", "attempt 3", "retry", "task b", "wave b"]
    assert first.point("shannon.retry.attempts", shannon_operation="retry").sum == 2
    assert second.point("shannon.retry.attempts", shannon_operation="retry").sum == 3


def test_a_breaker_shared_by_a_wave_and_direct_calls_keeps_one_state() -> None:
    tel = InMemoryTelemetry()
    observed = CircuitBreaker("api2", failure_threshold=2, reset_timeout=60)
    wave: Wave[int] = Wave("w", policy=observed, **tel.providers)

    async def main() -> None:
        # one failure through the wave, one direct: together they reach the threshold of one breaker
        result = await wave.run([_flaky(1)])
        assert isinstance(result.results[0].error, ConnectionError)
        with pytest.raises(ConnectionError):
            await observed.call(_flaky(1))
        assert observed.state is BreakerState.OPEN
        rejected = await wave.run([_flaky(0)])  # the wave sees the state the direct call opened
        assert isinstance(rejected.results[0].error, CircuitOpenError)

    asyncio.run(main())
    # the wave's calls through the breaker report to the wave's providers (one span each)
    assert len(tel.spans("api2")) == 2
    assert tel.point("shannon.calls", shannon_operation="api2", shannon_call_outcome="rejected").value == 1


def test_a_policy_in_a_wave_without_providers_is_the_object_itself() -> None:
    policy = Retry(attempts=2, initial=0)
    assert Wave("w", policy=policy).task_policy is policy  # nothing to change: zero cost
    tel = InMemoryTelemetry()
    own = Retry(attempts=2, **tel.providers)
    assert Wave("w", policy=own, **tel.providers).task_policy is own
    unobserved = Retry(attempts=2, instrument=False)
    assert Wave("w", policy=unobserved, **tel.providers).task_policy is unobserved


def test_a_degrade_in_a_wave_serves_as_it_would_and_reports_to_the_waves_providers() -> None:
    tel = InMemoryTelemetry()
    wave: Wave[Any] = Wave("w", policy=Degrade(default=0, on=ConnectionError, name="recs"), **tel.providers)
    result = asyncio.run(wave.run([_flaky(1), _flaky(0)]))
    served = cast("list[Served[int]]", result.values())  # the ints the Degrade served
    assert [(s.value, s.degraded, s.reason) for s in served] == [(0, True, "failure"), (1, False, None)]
    assert len(tel.spans("recs")) == 2
    assert tel.point("shannon.degradations", shannon_operation="recs").value == 1
