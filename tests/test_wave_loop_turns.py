"""A wave whose tasks never suspend still lets the event loop run other work while it goes.

Before: each worker ran task after task while none of them waited on anything (a breaker open rejecting every
call at once, cache hits, a rate limit the wave lags behind), so the whole input ran in one loop step: no other
task, timer or cancel ran until the wave ended (a Redis probe: 30,000 rejections under instrumentation froze the
loop for 6 s, and the caller's cancel never landed). Now a worker hands the loop a turn every few dozen tasks.
"""

from __future__ import annotations

import asyncio

import pytest

from shannon_otel import CircuitBreaker, Wave
from shannon_otel.executor._run import _TURN_EVERY
from shannon_otel.testing import InMemoryTelemetry


async def _instant(i: int) -> int:
    return i


@pytest.mark.parametrize("how", ["map", "stream"])
def test_tasks_that_never_suspend_leave_the_loop_turns_for_other_work(how: str) -> None:
    ticks = 0
    seen: list[int] = []

    async def recorded(i: int) -> int:
        seen.append(ticks)
        return i

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> list[int | None]:
        beat = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        wave = Wave("instant", max_concurrency=1)
        if how == "map":
            values = (await wave.map(recorded, range(2000))).values()
        else:
            async with wave.stream_map(recorded, range(2000)) as results:
                values = [r.value async for r in results]
        beat.cancel()
        return values

    assert sorted(v for v in asyncio.run(main()) if v is not None) == list(range(2000))
    assert seen[-1] - seen[0] >= 2000 // 64 - 1  # the ticker ran between the tasks, about once per 64


def test_a_caller_cancel_lands_while_a_wave_of_rejections_runs() -> None:
    telemetry = InMemoryTelemetry()
    breaker = CircuitBreaker("down", failure_threshold=1)

    async def fail(i: int) -> int:
        raise ConnectionError(i)

    async def main() -> tuple[bool, int]:
        await Wave("open-it", policy=breaker, **telemetry.providers).map(fail, range(1))  # opens the breaker
        ran: list[int] = []

        async def rejected(i: int) -> int:
            ran.append(i)
            return i

        wave = Wave("rejected", policy=breaker, max_concurrency=1, **telemetry.providers)
        task = asyncio.create_task(wave.map(rejected, range(20_000)))
        await asyncio.sleep(0)  # the wave starts
        await asyncio.sleep(0)
        task.cancel("enough")
        try:
            await task
        except asyncio.CancelledError:
            return True, len(ran)
        return False, len(ran)

    cancelled, ran = asyncio.run(main())
    assert cancelled
    assert ran == 0  # every call was rejected by the open breaker, none ran
    spans = telemetry.spans()
    assert all(span.end_time is not None for span in spans)
    tasks = [s for s in spans if s.name == "task rejected"]
    assert 0 < len(tasks) < 1_000  # before: all 20,000 rejections ran before the cancel could land


@pytest.mark.parametrize("how", ["map", "stream"])
@pytest.mark.parametrize("taken_back", [False, True])
def test_a_task_cancelling_itself_before_a_turn_does_not_stop_the_worker(how: str, taken_back: bool) -> None:
    """Bug: the turn (sleep(0)) came before the worker's check of a cancellation the task asked of itself. A task
    that called ``asyncio.current_task().cancel()`` (and, before 3.13, one that took it back with ``uncancel()``:
    still pending, gh-116720) and returned at once, as the 64th of its worker, left that request to the turn: the
    worker died there, and with max_concurrency=1 every task after it never ran, the wave returning 64 results
    of 200 with no error. Each task here asks it, so one of them ends each worker's run of 64."""
    total = 3 * _TURN_EVERY + 8

    async def self_cancelling(i: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        if taken_back:
            task.uncancel()
        return i

    async def main() -> list[int | None]:
        wave = Wave("self-cancelling", max_concurrency=1)
        if how == "map":
            return (await wave.map(self_cancelling, range(total))).values()
        async with wave.stream_map(self_cancelling, range(total)) as results:
            return [r.value async for r in results]

    assert sorted(v for v in asyncio.run(main()) if v is not None) == list(range(total))
