"""A hedge cut off by an expiring timeout around it gives what its attempts then give, as the timeout does.

A ``Timeout`` (or a wave's ``task_timeout``) around an operation that catches its ``CancelledError`` and returns
a value returns that value, late (docs: no result is thrown away), and one that raises another error raises it;
so does one around a ``Retry``. Around a ``Hedge``, the attempt ran in a task of its own, returned its value (or
raised), and the hedge raised the cancellation anyway: the caller got ``TimeoutError``, the value was thrown away,
while the attempt's span said success. A cancellation of the caller is still raised as it is, whatever the
attempts return.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _span_attrs import attrs
from _virtual_time import watched

from shannon_otel import Hedge, Pipeline, Timeout, Wave
from shannon_otel.testing import InMemoryTelemetry


class _Late:
    """What the operation returns after it caught its cancellation."""


def _holding_on(ran: list[str]) -> Any:
    """An operation that catches its cancellation, goes on, and returns a value of its own."""
    late = _Late()

    async def op() -> _Late:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            ran.append("cancelled")
        await asyncio.sleep(0.5)
        ran.append("returned")
        return late

    return op, late


@pytest.mark.parametrize("attempts", [1, 3])
@pytest.mark.parametrize("observed", [True, False])
def test_a_hedge_cut_off_by_a_timeout_around_it_returns_the_late_value_as_the_timeout_does(
    observed: bool, attempts: int,
) -> None:
    tel = InMemoryTelemetry()
    options: dict[str, Any] = tel.providers if observed else {"instrument": False}
    ran: list[str] = []
    op, late = _holding_on(ran)
    pipeline = Pipeline(Timeout(0.1), Hedge(0.05, attempts=attempts), name="cut", **options)

    async def main() -> Any:
        return await pipeline.call(op)

    assert watched(main) is late
    assert ran.count("returned") == min(attempts, 2)  # the second attempt started 0.05 s in, the third never
    if observed:
        (span,) = tel.spans("cut")
        assert attrs(span)["shannon.call.outcome"] == "success"  # what the caller got


def test_a_hedge_under_a_wave_task_timeout_returns_the_late_value_as_the_plain_task_does() -> None:
    ran: list[str] = []
    op, late = _holding_on(ran)

    async def main() -> list[Any]:
        results = []
        for policy in (None, Hedge(1.0, attempts=1)):
            result = await Wave("w", task_timeout=0.1, policy=policy, instrument=False).run([op])
            results.append((result.results[0].outcome.value, result.results[0].value))
        return results

    assert watched(main) == [("success", late), ("success", late)]


def test_a_cancelled_caller_of_a_hedge_gets_its_cancellation_whatever_the_attempt_returns() -> None:
    ran: list[str] = []
    op, _ = _holding_on(ran)
    hedge = Hedge(1.0, attempts=1, instrument=False)

    async def main() -> str:
        call = asyncio.create_task(Timeout(5.0, instrument=False).call(lambda: hedge.call(op)))
        await asyncio.sleep(0.1)
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            return "cancelled"
        return "returned"

    assert watched(main) == "cancelled"
    assert ran == ["cancelled", "returned"]


class _CleanupError(Exception):
    """What the operation raises after it caught its cancellation."""


@pytest.mark.parametrize("hedged", [False, True])
def test_a_hedge_cut_off_whose_attempt_raises_after_its_cancellation_raises_that_error_as_the_timeout_does(
    hedged: bool,
) -> None:
    async def op() -> None:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            raise _CleanupError("cleaning up failed") from None

    policies: list[Any] = [Timeout(0.1), Hedge(1.0, attempts=1)] if hedged else [Timeout(0.1)]
    pipeline = Pipeline(*policies, instrument=False)

    async def main() -> str:
        try:
            await pipeline.call(op)
        except Exception as exc:
            return type(exc).__name__
        return "returned"

    assert watched(main) == "_CleanupError"


@pytest.mark.parametrize("under", ["timeout", "task_timeout"])
def test_a_winner_held_past_the_deadline_by_a_loser_holding_on_is_returned_late(under: str) -> None:
    """The second attempt wins before the deadline; the first, cancelled as the loser, catches its cancellation
    and goes on past it. The hedge held the winner's value while it waited, then raised the timeout's
    cancellation that arrived meanwhile: the caller got ``TimeoutError`` (the task: outcome timeout)."""
    winner = _Late()
    launched: list[int] = []

    async def op() -> Any:
        launched.append(1)
        if len(launched) == 1:
            try:
                await asyncio.sleep(10.0)
            except asyncio.CancelledError:
                pass
            await asyncio.sleep(0.5)
            return "the loser's"
        await asyncio.sleep(0.04)
        return winner

    hedge = Hedge(0.01, attempts=2, instrument=False)

    async def main() -> Any:
        if under == "timeout":
            return await Pipeline(Timeout(0.1), hedge, instrument=False).call(op)
        result = await Wave("w", task_timeout=0.1, policy=hedge, instrument=False).run([op])
        return result.results[0].value

    assert watched(main) is winner
