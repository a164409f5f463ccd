"""Cancellation at the critical points of the policies: around a Hedge (attempts in flight, timer
pending), while a fallback runs, while a saga compensates. Always re-raised as CancelledError, never
turned into an error or a fallback, every span ended, no task left behind. Virtual-time loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _virtual_time import run_virtual

from shannon_otel.recovery import Fallback, Hedge, Pipeline, Retry, Saga
from shannon_otel.testing import InMemoryTelemetry


async def hang() -> None:
    await asyncio.Event().wait()


async def cancel_at(seconds: float, coro: Any) -> None:
    """Run ``coro`` as a task, cancel it ``seconds`` later and expect the CancelledError back."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no attempt or timer left running


def outcomes(tel: InMemoryTelemetry, prefix: str) -> list[tuple[str, Any]]:
    return sorted((s.name, (s.attributes or {}).get("shannon.attempt.outcome"))
                  for s in tel.spans() if s.name.startswith(prefix))


@pytest.mark.parametrize(("at", "started"), [(0.2, 1), (0.7, 2), (1.3, 3)])
def test_cancelling_a_hedge_cancels_every_attempt_in_flight_and_its_timer(at: float, started: int) -> None:
    tel = InMemoryTelemetry()
    hedge = Hedge(0.5, attempts=3, name="op", **tel.providers)
    run_virtual(cancel_at(at, hedge.call(hang)))
    spans = outcomes(tel, "attempt") + outcomes(tel, "hedge")
    assert len(spans) == started and {o for _, o in spans} == {"cancellation"}
    op = tel.span("op")
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "cancellation"
    assert op.attributes["shannon.attempt"] == started


def test_cancelling_a_retry_of_hedges_stops_both() -> None:
    tel = InMemoryTelemetry()
    calls = 0

    async def fail_then_hang() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError  # both hedged attempts of the first try fail: the retry backs off
        await hang()

    pipeline = Pipeline(Retry(attempts=5, initial=1.0, jitter="none"), Hedge(0.5), name="op", **tel.providers)
    run_virtual(cancel_at(1.2, pipeline.call(fail_then_hang)))  # in the second try's first attempt
    assert calls == 3
    assert tel.point("shannon.calls", shannon_operation="op", shannon_call_outcome="cancellation").value == 1


def test_cancelling_while_the_fallback_runs_is_a_cancellation_not_a_fallback_error() -> None:
    tel = InMemoryTelemetry()
    async def primary() -> None:
        raise ConnectionError

    async def slow_fallback(error: Exception) -> str:
        await hang()
        return "never"

    run_virtual(cancel_at(0.5, Fallback(slow_fallback, name="op", **tel.providers).call(primary)))
    fallback = tel.span("fallback op")
    assert fallback.attributes is not None
    assert fallback.attributes["shannon.attempt.outcome"] == "cancellation"
    assert fallback.attributes["shannon.fallback.reason"] == "failure"
    op = tel.span("op")
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "cancellation"


def test_cancelling_during_compensation_finishes_the_rollback_then_reraises() -> None:
    tel = InMemoryTelemetry()
    undone: list[str] = []

    async def ok() -> str:
        return "done"

    async def boom() -> None:
        raise ValueError("step failed")

    async def undo_fast(value: str) -> None:
        undone.append("first")

    async def undo_slow(value: str) -> None:
        await hang()

    saga = Saga("order", **tel.providers)
    holder: dict[str, Any] = {}

    async def body() -> None:
        async with saga.begin() as tx:
            holder["tx"] = tx
            await tx.step("first", ok, compensate=undo_fast)
            await tx.step("second", ok, compensate=undo_slow)
            await tx.step("third", boom)

    run_virtual(cancel_at(0.5, body()))  # cancelled while "second" is being compensated
    assert undone == ["first"]  # the rollback went on after the cancellation
    result = holder["tx"].result
    assert result is not None
    assert result.compensated == ("first",)
    assert isinstance(result.failed_compensations["second"], asyncio.CancelledError)
    compensations = {(s.attributes or {}).get("shannon.saga.step"): (s.attributes or {}).get(
        "shannon.compensation.outcome") for s in tel.spans() if s.name.startswith("compensate ")}
    assert compensations == {"first": "success", "second": "cancellation"}
    assert all(s.end_time is not None for s in tel.spans())
