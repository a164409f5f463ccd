"""``Wave.stream`` as a consumer meets it: whatever ends the wave also ends the consumer's ``async for``.

The consumer waits on the stream's queue for the next result or the end of the wave; a wave that fails
must still queue that end, or the consumer waits forever (nothing else wakes it).
"""

from __future__ import annotations

import asyncio

import pytest

from shannon_otel import Wave
from shannon_otel.testing import run_virtual


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


class ClockBrokeError(Exception):
    pass


def _broken_clock() -> float:
    raise ClockBrokeError("the clock broke")


def test_a_streamed_wave_failing_before_its_first_task_ends_the_consumers_iteration_with_its_error() -> None:
    """A clock raising at its first reading failed the wave before it had a report: the end of the stream
    was never queued and the consumer's ``async for`` waited forever (until an outer timeout cancelled it)."""
    raised_by: list[str] = []

    async def consume(wave: Wave[int]) -> None:
        async with wave.stream_map(_double, range(3)) as results:
            try:
                async for _ in results:
                    raise AssertionError("no task runs: the wave failed at its start")
            except ClockBrokeError:
                raised_by.append("iteration")
                raise

    async def main() -> None:
        with pytest.raises(ClockBrokeError):
            await consume(Wave("broken-clock", clock=_broken_clock, instrument=False))

    run_virtual(asyncio.wait_for(main(), 60))  # virtual seconds: a hang ends as a timeout, at once
    assert raised_by == ["iteration"]
