"""``Wave.stream`` as a consumer meets it: whatever ends the wave also ends the consumer's ``async for``.

The consumer waits on the stream's queue for the next result or the end of the wave; a wave that fails
must still queue that end, or the consumer waits forever (nothing else wakes it).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from shannon_otel import Outcome, TaskResult, Wave
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


def _held(wave: str) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, TaskResult) and o.wave == wave)


def test_leaving_a_sized_stream_early_holds_no_result_of_the_tasks_it_never_started() -> None:
    """Every task of a sized input left unstarted when the consumer leaves is counted as a cancellation,
    and its result was queued as well, though nothing could read the queue any more: a stream of a million
    inputs left after its first result held a million results (about 150 MiB) for as long as it lived."""

    async def main() -> tuple[Any, int]:
        stream = Wave[int]("left-early", max_concurrency=2, instrument=False).stream_map(_double, range(2_000))
        async with stream as results:
            async for _ in results:
                break
        return stream, _held("left-early")

    stream, held = run_virtual(main())
    assert stream.report is not None and stream.report.counts[Outcome.CANCELLATION] >= 1_990
    assert held <= 8, held  # at most what was queued while the block ran (the buffer holds 2 x 2)


def test_a_consumer_in_another_task_ends_when_the_block_is_left_early_it_is_not_cancelled() -> None:
    """It was handed a result queued after the block ended (a task cancelled by the exit); once results are
    no longer queued then, it met the end of the stream by awaiting the runner the exit had cancelled, and
    raised that CancelledError as if it had been cancelled itself."""
    got: list[int] = []

    async def slow(x: int) -> int:
        await asyncio.sleep(x + 1)
        return x

    async def main() -> str:
        stream = Wave[int]("two-consumers", max_concurrency=2, instrument=False).stream_map(slow, range(10))
        async with stream as results:

            async def other() -> str:
                got.extend([r.index async for r in results])
                return "ended"

            consumer = asyncio.create_task(other())
            await asyncio.sleep(2.5)  # virtual: tasks 0 and 1 have ended, 2 and 3 are running
        return await consumer

    assert run_virtual(main()) == "ended"
    assert got == [0, 1]
