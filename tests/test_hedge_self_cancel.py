"""A hedged attempt that cancels the task it runs in (``asyncio.current_task().cancel()``, from ``fn`` or from a
hook's ``attempt_started``) ends alone, as asyncio's own hedging (``staggered_race``) and a wave's task take it: the
next attempt starts at once and the hedge gives what the others give. It used to raise that attempt's
CancelledError into a caller nobody cancelled, cancelling the attempts that would have answered.

Everything runs on the virtual-time loop: the hedge's ``delay`` is long, so an attempt that started "at once"
did so because the cancelled one ended, never because the delay ran out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _open_spans import OpenSpans
from _virtual_time import watched

from shannon_otel import CallObserver, CallStarted, Hedge, Hook
from shannon_otel.testing import InMemoryTelemetry

DELAY = 30.0  # the watchdog stops the loop after 60 virtual seconds: waiting for it twice fails the test


def telemetry() -> tuple[InMemoryTelemetry, OpenSpans]:
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    return otel, spans


def cancel_current() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()


class CancelsFirstAttempt(Hook):
    """A misbehaving hook: its first ``attempt_started`` cancels the task it is called in."""

    def __init__(self) -> None:
        self.fired = 0

    def call_started(self, event: CallStarted) -> CallObserver:
        hook = self

        class Observer(CallObserver):
            def attempt_started(self, attempt: int) -> None:
                if not hook.fired:
                    hook.fired += 1
                    cancel_current()

        return Observer()


def attempt_outcomes(otel: InMemoryTelemetry) -> list[str]:
    return sorted(str((s.attributes or {}).get("shannon.attempt.outcome")) for s in otel.spans()
                  if s.name.startswith(("attempt", "hedge")))


@pytest.mark.parametrize("by", ["fn", "hook"])
def test_a_hedged_attempt_cancelling_itself_ends_alone_and_the_next_answers(by: str) -> None:
    otel, spans = telemetry()
    calls: list[float] = []

    async def fetch() -> str:
        loop = asyncio.get_running_loop()
        calls.append(loop.time())
        if by == "fn" and len(calls) == 1:
            cancel_current()
        await asyncio.sleep(1)
        return "answer"

    async def main() -> tuple[str, int, float]:
        hooks = [CancelsFirstAttempt()] if by == "hook" else []
        start = asyncio.get_running_loop().time()
        value = await Hedge(DELAY, attempts=2, name="op", hooks=hooks, **otel.providers).call(fetch)
        current = asyncio.current_task()
        assert current is not None
        return value, current.cancelling(), start

    value, cancelling, start = watched(main)
    assert value == "answer"  # was CancelledError, raised into a caller nobody cancelled
    assert cancelling == 0
    assert len(calls) == 2  # the first ran up to its first await, where the cancellation landed
    assert calls[-1] == start  # the second attempt started at once, not after the delay
    assert spans.open == {}
    assert attempt_outcomes(otel) == ["cancellation", "success"]
    (call,) = otel.spans("op")
    assert (call.attributes or {}).get("shannon.call.outcome") == "success"
    otel.shutdown()


def test_a_hedge_whose_every_attempt_cancelled_itself_raises_the_cancellation_as_gather_does() -> None:
    otel, spans = telemetry()
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        cancel_current()
        await asyncio.sleep(1)
        return "never"

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await Hedge(DELAY, attempts=3, **otel.providers).call(fetch)

    watched(main)
    assert len(calls) == 3  # each started as the one before ended, none waited for the delay
    assert spans.open == {}
    otel.shutdown()


def test_an_error_outranks_an_attempt_that_cancelled_itself() -> None:
    """Of attempts that failed or cancelled themselves, the hedge raises the last error, an error an outer policy can
    act on."""
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        cancel_current()
        await asyncio.sleep(1)
        return "never"

    async def main() -> Any:
        with pytest.raises(ConnectionError):
            await Hedge(DELAY, attempts=2, instrument=False).call(fetch)

    watched(main)
    assert len(calls) == 2
