"""Cancellation at the critical points of the policies: around a Hedge (attempts in flight, timer
pending), while a fallback runs, while a saga compensates. Always re-raised as CancelledError, never
turned into an error or a fallback, every span ended, no task left behind. Virtual-time loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _virtual_time import run_virtual, watched

from shannon_otel.recovery import Degrade, Fallback, Hedge, Pipeline, Retry, Saga, Timeout
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


@pytest.mark.parametrize("winner", ["attempt 1", "hedge 2"])
def test_a_hedge_cancelled_as_an_attempt_returns_raises_the_cancellation_and_leaves_nothing_running(
    winner: str,
) -> None:
    """The caller is cancelled in the loop step an attempt returns its value: the caller gets its CancelledError,
    not the value, as awaiting a task, a ``TaskGroup``, asyncio's ``staggered_race`` and, from Python 3.12,
    ``wait_for`` give it (3.11's ``wait_for`` returned the value, swallowing the cancellation: CPython gh-86296).
    The winner's span says it succeeded, the call that it was cancelled; the other attempt is cancelled and waited
    for, every span ended."""
    tel = InMemoryTelemetry()
    hedge = Hedge(0.5, attempts=2, name="op", **tel.providers)
    started = 0

    async def main() -> None:
        caller: asyncio.Task[str] | None = None

        async def fn() -> str:
            nonlocal started
            started += 1
            if (started == 1) != (winner == "attempt 1"):
                await hang()
            await asyncio.sleep(1.0)
            assert caller is not None
            asyncio.get_running_loop().call_soon(caller.cancel)  # runs before the hedge sees this attempt end
            return "value"

        caller = asyncio.create_task(hedge.call(fn))
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no attempt or timer left running

    watched(main)
    assert started == 2
    spans = dict(outcomes(tel, "attempt") + outcomes(tel, "hedge"))
    assert spans == {"attempt 1": "cancellation", "hedge 2": "cancellation", winner: "success"}
    assert tel.point("shannon.calls", shannon_operation="op", shannon_call_outcome="cancellation").value == 1
    assert all(s.end_time is not None for s in tel.spans())


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
    # Shielded: the cancellation did not cut "second" off; it ran to its own timeout (30 s by default).
    assert isinstance(result.failed_compensations["second"], TimeoutError)
    assert result.uncompensated == ("second",)
    compensations = {(s.attributes or {}).get("shannon.saga.step"): (s.attributes or {}).get(
        "shannon.compensation.outcome") for s in tel.spans() if s.name.startswith("compensate ")}
    assert compensations == {"first": "success", "second": "timeout"}
    assert all(s.end_time is not None for s in tel.spans())


async def fail_when_cancelled() -> None:
    """An operation whose cleanup fails when it is cancelled: its ConnectionError replaces the CancelledError.
    (It would end by itself after 100 s: hanging, a retry of it ran forever, the runner's own cancellation too.)"""
    try:
        await asyncio.sleep(100.0)
    finally:
        raise ConnectionError("connection reset while closing")


def _cancel_both_ways(policy: Any, fn: Any, tel: InMemoryTelemetry) -> None:
    """Run ``fn`` through ``policy`` cancelled both ways, 1 s in: as operation ``op`` by a ``Timeout(1.0)`` around
    it, as operation ``cancelled`` by the caller's ``task.cancel()``; either way the caller gets the
    ConnectionError ``fn`` raised in place of the cancellation."""
    timed = Pipeline(Timeout(1.0), policy, name="op", **tel.providers)
    cancelled = Pipeline(policy, name="cancelled", **tel.providers)

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await timed.call(fn)
        task = asyncio.create_task(cancelled.call(fn))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(ConnectionError):
            await task

    watched(main)


async def served(error: Exception) -> str:
    return "served"


@pytest.mark.parametrize("policy", ["retry", "fallback", "degrade"])
def test_an_error_raised_in_place_of_a_cancellation_is_not_retried_or_served(policy: str) -> None:
    """Cut off by a Timeout around it, the operation raised ConnectionError from its ``finally``: the policy took it
    for a failure, so the retry ran all 5 attempts and their backoff (56 s past a 1 s Timeout, the same under
    ``task.cancel()`` or a wave's task_timeout), a fallback or degradation served a result to a cancelled caller.
    Now the error propagates as it would without the policy: a task being cancelled is not retried or served."""
    tel = InMemoryTelemetry()
    inner = {"retry": Retry(attempts=5, initial=1.0, jitter="none"), "fallback": Fallback(served),
             "degrade": Degrade(default="served", on=Exception)}[policy]
    _cancel_both_ways(inner, fail_when_cancelled, tel)
    for op in ("op", "cancelled"):
        span = tel.span(op)
        assert span.attributes is not None
        assert span.attributes["shannon.attempt"] == 1
        assert span.attributes["error.type"] == "ConnectionError"
        assert "shannon.degrade.mode" not in span.attributes
        assert [e.name for e in span.events if e.name != "exception"] == []  # no retry scheduled, not degraded
    assert tel.spans("fallback op") == tel.spans("fallback cancelled") == []


async def _fails_at_once() -> None:
    raise ValueError("primary down")


async def _cheaper_failing_when_cancelled() -> str:
    await fail_when_cancelled()
    return "cheaper"


def test_an_error_a_cheaper_raised_in_place_of_a_cancellation_is_not_served_the_default() -> None:
    """The operation failed, and its ``Degrade`` called ``cheaper``; cancelled while the cheaper ran (the caller's
    ``task.cancel()``, a Timeout around it), the cheaper raised ConnectionError from its ``finally``. The Degrade took
    that for the cheaper being unavailable and served its declared ``default``: a degraded result returned to a
    cancelled caller (found by a seeded composition probe). Now the error propagates, as the operation's own does
    (test above): a task being cancelled is served nothing."""
    tel = InMemoryTelemetry()
    degrade = Degrade(default="served", cheaper=_cheaper_failing_when_cancelled, on=Exception)
    _cancel_both_ways(degrade, _fails_at_once, tel)
    for op in ("op", "cancelled"):
        span = tel.span(op)
        assert span.attributes is not None
        assert span.attributes["error.type"] == "ConnectionError"
        assert "shannon.degrade.mode" not in span.attributes
        assert [e.name for e in span.events if e.name == "shannon.degraded"] == []
    assert tel.points("shannon.degradations") == []


async def _fallback_failing_when_cancelled(error: Exception) -> str:
    await fail_when_cancelled()
    return "fallback"


def test_an_error_a_fallback_raised_in_place_of_a_cancellation_is_raised_as_it_is() -> None:
    """The operation failed and its ``Fallback`` ran; cancelled while the fallback ran (the caller's ``task.cancel()``,
    a Timeout around it), the fallback raised ConnectionError from its ``finally``. The Fallback took that for the
    fallback failing too and raised a ``FallbackError`` of both: the caller's ``except FallbackError`` (or an outer
    ``Retry``, breaker or ``Fallback`` matching it) acted on a cancellation. Now the error propagates as it was raised,
    as a Degrade's cheaper's does (test above): the policy adds nothing to a cancellation."""
    tel = InMemoryTelemetry()
    _cancel_both_ways(Fallback(_fallback_failing_when_cancelled), _fails_at_once, tel)
    for op in ("op", "cancelled"):
        span = tel.span(op)
        assert span.attributes is not None
        assert span.attributes["error.type"] == "ConnectionError"
        fallback = tel.span(f"fallback {op}")
        assert fallback.attributes is not None
        assert fallback.attributes["shannon.fallback.reason"] == "failure"
        assert fallback.attributes["error.type"] == "ConnectionError"  # how the fallback really ended
    assert all(s.end_time is not None for s in tel.spans())


async def _catch_a_task_group_failure() -> None:
    """A TaskGroup whose child fails while the task waits in its ``async with``, the group's error caught: on
    Python 3.11 and 3.12 the task's ``cancelling()`` stays at 1 afterwards (a CPython bug, fixed in 3.13)."""
    async def boom() -> None:
        raise KeyError("k")

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(boom())
            group.create_task(asyncio.sleep(1.0))
    except* KeyError:
        pass


@pytest.mark.parametrize("policy", ["retry", "fallback", "degrade"])
def test_errors_after_a_caught_task_group_failure_are_still_retried_and_served(policy: str) -> None:
    """Before: the count a caught TaskGroup failure leaves behind on 3.11 / 3.12 read as a cancellation of the
    task, and every later error of it as raised in its place: the retry made 1 attempt of 3, the fallback and the
    degradation served nothing (the ValueError reached the caller). Only an error raised while a CancelledError
    was being handled stands in for one."""
    tel = InMemoryTelemetry()
    inner = {"retry": Retry(attempts=3, initial=0.1, jitter="none"), "fallback": Fallback(served),
             "degrade": Degrade(default="served", on=Exception)}[policy]
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError("down")
        return "third time"

    async def main() -> object:
        await _catch_a_task_group_failure()
        return await Pipeline(inner, name="op", **tel.providers).call(flaky)

    got = watched(main)
    if policy == "retry":
        assert (got, calls) == ("third time", 3)
    else:
        assert calls == 1
        assert (got.value if policy == "degrade" else got) == "served"
    assert all(s.end_time is not None for s in tel.spans())


def test_timeouts_after_a_caught_task_group_failure_are_timeouts_and_retried() -> None:
    """Before: with the count a caught TaskGroup failure leaves behind on 3.11 / 3.12, an attempt cut off by the
    Timeout inside the retry was labelled ``cancellation`` and not retried (1 attempt of 3), where asyncio's own
    timeout, counting from its entry, raised TimeoutError as it should."""
    tel = InMemoryTelemetry()
    calls = 0

    async def slow_then_quick() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            await asyncio.sleep(10.0)
        return "third time"

    async def main() -> str:
        await _catch_a_task_group_failure()
        policy = Pipeline(Retry(attempts=3, initial=0.1, jitter="none"), Timeout(1.0), name="op", **tel.providers)
        return await policy.call(slow_then_quick)

    assert (watched(main), calls) == ("third time", 3)
    attempts = [s for s in tel.spans() if s.name.startswith("attempt")]
    outcomes = [(s.attributes or {}).get("shannon.attempt.outcome") for s in attempts]
    assert sorted(outcomes, key=str) == ["success", "timeout", "timeout"]


def test_an_attempt_cut_off_by_its_own_timeout_is_retried_and_a_hedge_does_not_wait_for_a_losers_retries() -> None:
    """A Timeout inside the retry takes its cancellation back when it is left: the attempt's error is retried. A hedge's
    losing attempt, cancelled, raised ConnectionError from its ``finally``: the retry inside it retried it with a 10 s
    backoff, and the hedge, waiting for its losers to end, returned the winner's result 10 s late."""
    tel = InMemoryTelemetry()
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await fail_when_cancelled()
        await asyncio.sleep(0.5)
        return f"won by call {calls}"

    per_attempt = Pipeline(Retry(attempts=3, initial=1.0, jitter="none"), Timeout(1.0), name="per-attempt",
                           **tel.providers)
    hedged = Pipeline(Hedge(0.1), Retry(attempts=2, initial=10.0, jitter="none"), name="hedged", **tel.providers)

    async def main() -> tuple[str, str, int]:
        nonlocal calls
        first = await per_attempt.call(op)
        calls = 0
        second = await hedged.call(op)
        return first, second, calls

    first, second, calls_made = watched(main)
    assert first == "won by call 2" and second == "won by call 2"
    assert calls_made == 2  # the loser was not run again
    hedged_id = tel.span("hedged").context.span_id
    attempts = sorted(s.name for s in tel.spans() if s.parent is not None and s.parent.span_id == hedged_id)
    assert attempts == ["attempt 1", "hedge 2"]
    retried = tel.span("per-attempt").attributes
    assert retried is not None and retried["shannon.attempt"] == 2
