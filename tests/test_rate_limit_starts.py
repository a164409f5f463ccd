"""``Wave(rate_limit=)`` bounds task *starts*: at most ``burst + rate * t`` in any window of ``t`` seconds.

The limiter admitted a task before it waited for its resource pool: tasks admitted while the pool was held
elsewhere then all started together when it freed (rate 1/s, ten starts within 10 ms). The limiter is now
the last wait before the start, so what it admits starts at once.

It also gave each task its slot before the task slept for it: when sync code in a task blocked the event loop
past several slots, the tasks sleeping for them all woke, and started, in the same instant. One task at a time now
waits for the next slot, and the slot after it is counted from the start as it happened.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor

from shannon_otel import ResourcePool, Wave, task
from shannon_otel.testing import FakeClock, InMemoryTelemetry, VirtualTimeLoop, run_virtual


def _worst_window(starts: list[float], rate: float, burst: int) -> int:
    """The most starts over ``burst + rate * t`` in any window [starts[i], starts[j]]."""
    starts = sorted(starts)
    worst = 0
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            worst = max(worst, (j - i + 1) - int(burst + rate * (starts[j] - starts[i]) + 1e-9))
    return worst


def test_tasks_waiting_for_a_pool_held_elsewhere_still_start_at_the_rate() -> None:
    async def main() -> list[float]:
        clock = asyncio.get_running_loop().time
        pool = ResourcePool("api", 5)
        for _ in range(5):  # held by another wave's tasks for 100 s
            await pool.acquire()

        async def free_later() -> None:
            await asyncio.sleep(100)
            for _ in range(5):
                pool.release()

        starts: list[float] = []

        async def work() -> None:
            starts.append(clock())
            await asyncio.sleep(0.01)

        freeing = asyncio.create_task(free_later())
        wave = Wave("limited", rate_limit=1, burst=1, clock=clock, instrument=False)
        result = await wave.run([task(work, pool=pool) for _ in range(10)])
        await freeing
        assert result.values() == [None] * 10
        return starts

    starts = run_virtual(main())
    assert len(starts) == 10
    assert _worst_window(starts, 1, 1) <= 0, sorted(starts)
    assert sorted(starts) == [100.0 + k for k in range(10)]


@pytest.mark.parametrize("burst", [1, 2])
def test_tasks_whose_slots_passed_while_sync_code_blocked_the_loop_still_start_at_the_rate(burst: int) -> None:
    """A task blocks the loop for 0.35 s (``time.sleep`` in a task; here: the virtual clock moved without the
    loop running). The next three, each sleeping for its own slot, all woke and started at once as it ran again
    (burst 1: at 0.45 s; 3 starts in no time)."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        starts: list[float] = []

        async def work(i: int) -> int:
            starts.append(loop.time())
            if i == burst:  # the first task that waited for its slot
                loop.advance(0.35)  # sync code holding the loop: no timer runs meanwhile
            return i

        wave = Wave[int]("blocked", max_concurrency=4, rate_limit=10, burst=burst, clock=loop.time, instrument=False)
        assert (await wave.map(work, range(8))).values() == list(range(8))
        return starts

    starts = run_virtual(main())
    assert len(starts) == 8
    assert _worst_window(starts, 10, burst) <= 0, starts


def test_a_rate_limit_on_a_clock_its_sleep_does_not_move_waits_once_per_start() -> None:
    """A wave whose clock no sleep drives (a frozen fake clock, the real clock under virtual time) still ends: each
    start waits for its slot once, never again and again for a clock that does not get there; and the tasks waiting
    one behind the other wait an interval each, not the sum of the waits before them (0.1, 0.2, 0.3 ... s)."""
    clock = FakeClock()
    slept: list[float] = []

    async def frozen_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    async def work(i: int) -> int:
        return i

    wave = Wave[int]("frozen", max_concurrency=3, rate_limit=10, burst=1, clock=clock, sleep=frozen_sleep,
                     instrument=False)
    assert run_virtual(wave.map(work, range(5))).values() == list(range(5))
    assert slept == pytest.approx([0.1] * 4)  # one wait per start, of one interval: no more, no longer


@pytest.mark.parametrize(("rate", "burst"), [(5e-324, 2), (1e-310, 3), (1e-320, 1)])
def test_a_rate_whose_interval_overflows_starts_the_burst_and_no_more(rate: float, burst: int) -> None:
    """1/rate overflowing to inf made the schedule inf after one start and its tolerance inf from a burst of
    2: inf - inf is NaN, so no start ever waited (every task of a 1e-310/s limit started at once)."""

    async def main() -> list[float]:
        clock = asyncio.get_running_loop().time
        starts: list[float] = []

        async def work(i: int) -> int:
            starts.append(clock())
            return i

        wave = Wave("tiny", rate_limit=rate, burst=burst, clock=clock, instrument=False)
        job = asyncio.ensure_future(wave.map(work, range(5)))
        await asyncio.sleep(10**6)  # a million virtual seconds: the next start is due in ~10**300 years
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        return starts

    starts = run_virtual(main())
    assert starts == [0.0] * burst


class _OpenSpans(SpanProcessor):
    """Counts the spans started and not ended."""

    def __init__(self) -> None:
        self.open = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open += 1

    def on_end(self, span: Any) -> None:
        self.open -= 1


@pytest.mark.parametrize("fail_at", range(1, 8))
def test_a_clock_that_raises_at_any_read_of_a_rate_limited_wave_leaves_no_span_open(fail_at: int) -> None:
    """The rate limiter read the clock as the run was set up, after the OTel hook had opened the wave: a clock
    that raised there left the wave span open and the pending gauge at the wave's size, for good."""
    telemetry = InMemoryTelemetry()
    spans = _OpenSpans()
    telemetry.tracer_provider.add_span_processor(spans)
    reads = 0

    def clock() -> float:
        nonlocal reads
        reads += 1
        if reads == fail_at:
            raise OSError("clock broke")
        return float(reads)

    async def work(i: int) -> int:
        return i

    wave = Wave("limited", rate_limit=5, clock=clock, **telemetry.providers)
    try:
        run_virtual(wave.map(work, range(2)))
    except (OSError, ExceptionGroup):  # propagated once every span is ended (as tests/test_wave_clocks.py)
        pass
    assert spans.open == 0
    if "shannon.task.pending" in telemetry.metrics():
        assert [p.value for p in telemetry.points("shannon.task.pending")] == [0]
        assert [p.value for p in telemetry.points("shannon.task.active")] == [0]
