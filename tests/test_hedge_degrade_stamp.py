"""A ``Degrade`` inside a ``Hedge``: the winner's ``shannon.degraded`` span event is stamped when it was served.

The hedge tells the winner's degradation only once every attempt has ended (``tests/test_hedge_degrade_served.py``).
Before, the span event was stamped then, by the SDK: a loser holding on to its cancellation for 5 s put the event 5 s
after the degraded value was served (and after the winner's attempt span ended), at the time the hedge returned."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk import trace as sdk_trace

from shannon_otel import Degrade, Hedge, RunRecorder, resilient
from shannon_otel.testing import InMemoryTelemetry

_SECOND = 10**9


class Wall:
    """The SDK's wall clock in nanoseconds, moved only by hand: a deterministic stand-in for time passing."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * _SECOND

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Wall:
    clock = Wall()
    monkeypatch.setattr(sdk_trace, "time_ns", clock)  # what the SDK stamps spans and span events with
    return clock


def test_the_winner_degraded_event_is_stamped_when_it_was_served_not_when_the_hedge_returned(wall: Wall) -> None:
    tel, rec = InMemoryTelemetry(), RunRecorder()
    served_at = 0

    async def main() -> Any:
        fail = asyncio.Event()
        calls = 0

        async def op() -> str:
            nonlocal calls, served_at
            calls += 1
            if calls == 1:
                await fail.wait()
                served_at = wall.now  # the Degrade above serves its default at once, at this time
                raise ValueError("down")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:  # the loser holds its cancellation: 5 s pass before it ends
                wall.now += 5 * _SECOND
                await asyncio.sleep(0)
            return "late"

        policy = resilient(Hedge(delay=0, attempts=2), Degrade(default="d", on=ValueError), name="op",
                           hooks=[rec], **tel.providers)
        task = asyncio.ensure_future(policy.call(op))
        for _ in range(20):
            await asyncio.sleep(0)  # both attempts are waiting
        wall.now += _SECOND
        fail.set()  # attempt 1 fails and degrades: it wins; hedge 2 is cancelled and holds on
        return await task

    served = asyncio.run(main())
    assert served.value == "d" and served.degraded
    op_span, winner = tel.span("op"), tel.span("attempt 1")
    [event] = [event for event in op_span.events if event.name == "shannon.degraded"]
    assert op_span.end_time == served_at + 5 * _SECOND  # the hedge returned once the loser ended
    assert event.timestamp == served_at  # was served_at + 5 s: the hedge's return
    assert winner.end_time is not None and event.timestamp <= winner.end_time
    assert rec.report().operations["op"].degraded == 1
    tel.shutdown()
