"""A ``Degrade`` inside a ``Hedge``: a degradation is told (``shannon.degradations``, the ``shannon.degraded`` span
event and ``shannon.degrade.*`` attributes on the operation span, ``RunReport`` ``degraded``) only when the hedge
returns the attempt that served it.

Before, each attempt's Degrade told its observers as it served: a losing attempt's degraded result, which no caller
received, was counted too (two attempts degrading in one loop step counted two; a loser whose ``cheaper`` held on to
its cancellation marked a call that returned the winner's real value as degraded).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _metric_total import metric_total

from shannon_otel import Degrade, Hedge, RunRecorder, resilient
from shannon_otel.testing import InMemoryTelemetry


def _told(tel: InMemoryTelemetry, rec: RunRecorder) -> tuple[float, int, Any, int]:
    """(shannon.degradations total, shannon.degraded events on the op span, its degrade mode, RunReport degraded)."""
    span = tel.span("op")
    events = sum(1 for event in span.events if event.name == "shannon.degraded")
    return (metric_total(tel, "shannon.degradations"), events, dict(span.attributes or {}).get("shannon.degrade.mode"),
            rec.report().operations["op"].degraded)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_two_attempts_degrading_in_one_step_count_one_degradation() -> None:
    tel, rec = InMemoryTelemetry(), RunRecorder()

    async def main() -> Any:
        go = asyncio.Event()

        async def op() -> str:
            await go.wait()
            raise ValueError("down")

        policy = resilient(Hedge(delay=0, attempts=2), Degrade(default="d", on=ValueError), name="op",
                           hooks=[rec], **tel.providers)
        task = asyncio.ensure_future(policy.call(op))
        await _settle()  # both attempts wait on go: they fail, and degrade, in one step
        go.set()
        return await task

    served = asyncio.run(main())
    assert served.value == "d" and served.degraded
    assert len(tel.spans("attempt 1")) == 1 and len(tel.spans("hedge 2")) == 1  # both attempts ran and failed
    assert _told(tel, rec) == (1, 1, "static", 1)
    tel.shutdown()


def test_a_loser_whose_cheaper_holds_on_counts_no_degradation() -> None:
    tel, rec = InMemoryTelemetry(), RunRecorder()
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("down")  # attempt 1 degrades: its cheaper is slow
        return "real"  # hedge 2 wins with the real value

    async def cheaper() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # holds on to its cancellation: the value it returns goes to no caller
        return "cheap"

    policy = resilient(Hedge(delay=0, attempts=2), Degrade(cheaper=cheaper, on=ValueError), name="op",
                       hooks=[rec], **tel.providers)
    served: Any = asyncio.run(policy.call(op))  # a Served (the pipeline's call is typed as the operation's result)
    assert served.value == "real" and not served.degraded
    assert _told(tel, rec) == (0, 0, None, 0)
    tel.shutdown()


def test_a_winner_degraded_then_the_caller_cancelled_counts_no_degradation() -> None:
    """The winner degraded, but a loser holding on kept the hedge waiting, and the caller was cancelled meanwhile:
    the hedge raised the cancellation, the degraded value went to nobody."""
    tel, rec = InMemoryTelemetry(), RunRecorder()

    async def main() -> None:
        fail = asyncio.Event()
        calls = 0

        async def op() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                await fail.wait()
                raise ValueError("down")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:  # the hedge cancels it as the loser: it holds on...
                await asyncio.Event().wait()  # ...until cancelled again, by the caller's cancellation
            return "never"

        policy = resilient(Hedge(delay=0, attempts=2), Degrade(default="d", on=ValueError), name="op",
                           hooks=[rec], **tel.providers)
        task = asyncio.ensure_future(policy.call(op))
        await _settle()
        fail.set()  # attempt 1 degrades and wins; hedge 2 is cancelled and holds on
        await _settle()
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert dict(tel.span("op").attributes or {})["shannon.call.outcome"] == "cancellation"
    assert _told(tel, rec) == (0, 0, None, 0)
    tel.shutdown()


def test_a_nested_hedge_passes_its_winner_degradation_up_once() -> None:
    """Hedge inside Hedge: the inner hedge's winner's degradation is held by the outer attempt it ran in, told once
    when the outer hedge returns it."""
    tel, rec = InMemoryTelemetry(), RunRecorder()

    async def op() -> str:
        raise ValueError("down")

    policy = resilient(Hedge(delay=0, attempts=1), Hedge(delay=0, attempts=1), Degrade(default="d", on=ValueError),
                       name="op", hooks=[rec], **tel.providers)
    served: Any = asyncio.run(policy.call(op))
    assert served.value == "d"
    assert _told(tel, rec) == (1, 1, "static", 1)
    tel.shutdown()
