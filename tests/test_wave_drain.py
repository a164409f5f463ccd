"""A wave that stops early over a huge sized input (a stream left after a few results, fail-fast) still
settles every task it never started, without freezing the loop while it does.

The drain used to count the rest in one synchronous step: ~3.7 s for a million items, during which no
other task on the loop ran. Each test records, at every pull from the input, how often a ticker task
on the same loop had run: pulls made in one step all see the same count.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, overload

import pytest

from shannon_otel import Hook, Outcome, TaskResult, Wave, WaveObserver, WaveStarted
from shannon_otel.testing import run_virtual

N = 20_000  # several drain chunks; small enough for a quick test


async def _work(i: int) -> int:
    await asyncio.sleep(0)
    if i == 0:
        raise ValueError("the first task fails")
    return i


class _Ticks:
    """A task on the loop counting its own steps; ``at`` holds the count seen at each pull."""

    def __init__(self) -> None:
        self.count = 0
        self.at: list[int] = []

    async def run(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)


class _Inputs(Sequence[Callable[[], Awaitable[int]]]):
    """A sized input recording the ticker's count at each pull."""

    def __init__(self, ticks: _Ticks) -> None:
        self._ticks = ticks

    def __len__(self) -> int:
        return N

    @overload
    def __getitem__(self, i: int) -> Callable[[], Awaitable[int]]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Callable[[], Awaitable[int]]]: ...
    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int):
            raise TypeError("no slices")
        if not 0 <= i < N:
            raise IndexError(i)
        self._ticks.at.append(self._ticks.count)
        return functools.partial(_work, i)

    def __iter__(self) -> Iterator[Callable[[], Awaitable[int]]]:
        return (self[i] for i in range(N))


def _loop_ran_during_the_drain(ticks: _Ticks) -> bool:
    return len(set(ticks.at[100:])) > 1  # the pulls of tasks never started (past the few that ran)


def test_leaving_a_stream_over_a_huge_sized_input_early_lets_the_loop_run_while_the_rest_is_settled() -> None:
    ticks = _Ticks()
    seen: list[int] = []

    async def main() -> Any:
        ticker = asyncio.create_task(ticks.run())
        wave: Wave[int] = Wave("drain-stream", max_concurrency=2, instrument=False)
        async with wave.stream(_Inputs(ticks)) as results:
            async for result in results:
                if result.outcome is Outcome.SUCCESS:
                    seen.append(result.index)
                if len(seen) == 3:
                    break
        ticker.cancel()
        return results.report

    report = run_virtual(main())
    assert len(ticks.at) == N  # every task pulled: each is counted
    assert sum(report.counts.values()) == N
    assert report.counts[Outcome.FAILURE] == 1
    assert report.counts[Outcome.CANCELLATION] > N - 20  # all but the few that ran (the buffer's worth)
    assert _loop_ran_during_the_drain(ticks)


class _SkipTicks(Hook):
    """Records the ticker's count at each task the wave settles without starting it."""

    def __init__(self, ticks: _Ticks) -> None:
        self.ticks = ticks

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        ticks = self.ticks

        class Observer(WaveObserver):
            def task_skipped(self, event: TaskResult[Any]) -> None:
                ticks.at.append(ticks.count)

        return Observer()


def test_a_fail_fast_run_over_a_huge_input_lets_the_loop_run_while_the_rest_is_settled() -> None:
    """``run`` takes its whole input before it starts: the observer's ``task_skipped`` marks the drain."""
    ticks = _Ticks()

    async def main() -> Any:
        ticker = asyncio.create_task(ticks.run())
        wave: Wave[int] = Wave(
            "drain-run", max_concurrency=2, fail_fast=True, instrument=False, hooks=[_SkipTicks(ticks)],
        )
        result = await wave.run([functools.partial(_work, i) for i in range(N)])
        ticker.cancel()
        return result

    result = run_virtual(main())
    report = result.report
    assert len(result.results) == N
    assert report.counts[Outcome.FAILURE] == 1
    assert report.counts[Outcome.CANCELLATION] >= len(ticks.at) > N - 10  # (a running one is cancelled)
    assert [r.outcome for r in result.results[-3:]] == [Outcome.CANCELLATION] * 3
    assert len(set(ticks.at)) > 1


def test_unstarted_coroutines_of_a_huge_input_are_all_closed_even_if_cancelled_during_the_drain() -> None:
    """A cancellation arriving while the drain yields ends the yielding, not the drain: every coroutine is
    closed (never "never awaited") and counted, then the cancellation is raised."""
    coros: list[Any] = []

    class Coros(Sequence[Any]):
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: Any) -> Any:
            if not isinstance(i, int) or not 0 <= i < N:
                raise IndexError(i)
            if i == N // 2:  # mid-drain: cancels the wave's own task (the stream's runner)
                asyncio.current_task().cancel()  # type: ignore[union-attr]
            coros.append(_work(i))
            return coros[-1]

    async def main() -> Any:
        wave: Wave[int] = Wave("drain-cancel", max_concurrency=2, fail_fast=True, instrument=False)
        stream = wave.stream(Coros())

        async def consume() -> None:
            async with stream as results:
                async for _ in results:
                    pass

        with pytest.raises(asyncio.CancelledError):
            await consume()
        return stream.report

    report = run_virtual(main())
    assert len(coros) == N
    assert all(c.cr_frame is None for c in coros)  # ran to its end, or closed
    assert report.outcome is Outcome.CANCELLATION
    assert report.counts[Outcome.FAILURE] == 1
    assert sum(report.counts.values()) == N


def test_stream_map_over_a_sized_input_takes_each_item_only_as_the_wave_runs_it() -> None:
    """Bug: ``stream_map`` built a partial of every item of a sized input at the call: a million items
    blocked the loop ~0.9 s before the wave began. They are now made as the wave takes them (it still
    knows the input's size), so the wave's start costs nothing and the drain yields as it goes."""
    ticks = _Ticks()
    pulled: list[int] = []

    class Items(Sequence[int]):
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: Any) -> Any:
            if not isinstance(i, int) or not 0 <= i < N:
                raise IndexError(i)
            pulled.append(i)
            ticks.at.append(ticks.count)
            return i

    async def main() -> Any:
        ticker = asyncio.create_task(ticks.run())
        wave: Wave[int] = Wave("drain-map", max_concurrency=2, instrument=False)
        stream = wave.stream_map(_work, Items())
        assert pulled == []  # nothing taken before the wave runs
        async with stream as results:
            async for result in results:
                if result.index >= 3:
                    break
        ticker.cancel()
        return results.report

    report = run_virtual(main())
    assert sum(report.counts.values()) == N
    # The consumer left: the rest is plain factories nobody reads, counted without taking a single item.
    assert len(pulled) < 20  # the few the wave ran (its buffer's worth)
    assert report.counts[Outcome.CANCELLATION] >= N - len(pulled)


class _Counting(Hook):
    """Counts what its wave observers hear of the tasks a wave settles without starting them."""

    def __init__(self, bulk: bool) -> None:
        self.calls = 0
        self.indexes: list[int] = []
        bulk_hook = bulk

        class Observer(WaveObserver):
            def task_skipped(inner, event: TaskResult[Any]) -> None:  # noqa: N805
                self.calls += 1
                self.indexes.append(event.index)

            if bulk_hook:
                def tasks_skipped(inner, first: TaskResult[Any], count: int) -> None:  # noqa: N805
                    self.calls += 1
                    self.indexes.extend(range(first.index, first.index + count))

        self._observer = Observer

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        return self._observer()


@pytest.mark.parametrize("mapped", [True, False], ids=["stream_map", "stream"])
def test_the_rest_of_a_stream_left_early_is_told_to_the_hooks_in_bulk(mapped: bool) -> None:
    """Leaving a stream early over a million items still took 1.1-2.2 s to settle the rest: a result and a
    ``task_skipped`` call into every observer per task never started, though nobody reads those results. A
    run of plain factories is now one ``tasks_skipped`` per drain chunk (stream over a list) or one in all
    (``stream_map`` over a sized input, never even iterated); the counts are what they were: the report's,
    the OTel hook's ``shannon.task.outcomes`` and the run recorder's. Counted calls, not timed."""
    from shannon_otel import RunRecorder
    from shannon_otel.testing import InMemoryTelemetry

    tel = InMemoryTelemetry()
    bulk, single, recorder = _Counting(bulk=True), _Counting(bulk=False), RunRecorder()
    ran: list[int] = []

    async def work(i: int) -> int:
        ran.append(i)
        await asyncio.sleep(0)
        return i

    async def main() -> Any:
        wave: Wave[int] = Wave("drain-bulk", max_concurrency=2, hooks=[bulk, single, recorder], **tel.providers)
        stream = (wave.stream_map(work, range(N)) if mapped
                  else wave.stream([functools.partial(work, i) for i in range(N)]))
        async with stream as results:
            async for result in results:
                if result.index >= 3:
                    break
        return results.report

    report = run_virtual(main())
    skipped = N - len(ran)
    assert sum(report.counts.values()) == N
    assert report.counts[Outcome.SUCCESS] + report.counts[Outcome.CANCELLATION] == N
    assert bulk.calls <= (1 if mapped else N // 1024 + 2)  # one per drain chunk at most, not one per task
    assert sorted(bulk.indexes) == sorted(single.indexes)  # both hear of the same tasks, each once
    assert len(set(single.indexes)) == len(single.indexes) >= skipped
    assert set(single.indexes).isdisjoint(ran)
    assert single.calls == len(single.indexes)  # an observer without tasks_skipped: one call per task, as before
    cancelled = tel.point("shannon.task.outcomes", shannon_task_outcome="cancellation").value
    assert cancelled == report.counts[Outcome.CANCELLATION]
    assert recorder.report().waves[0].counts == report.counts
    tel.shutdown()


class _BreaksAt:
    """A sized input whose own iterator raises at index ``at`` (a mapping changed as it is iterated, a lazy view)."""

    def __init__(self, size: int, at: int) -> None:
        self.size, self.at = size, at

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Callable[[], Awaitable[int]]]:
        for i in range(self.size):
            if i == self.at:
                raise KeyError(f"input broke at {i}")
            yield functools.partial(_work, i)


@pytest.mark.parametrize("leave_early", [False, True], ids=["fail-fast-read-to-the-end", "stream-left-early"])
def test_a_sized_input_that_raises_while_its_rest_is_settled_still_ends_the_wave(leave_early: bool) -> None:
    """The drain's pull raised out of the wave's clean-up: no report (``stream.report`` stayed None), no
    ``wave_finished`` to any hook, the wave span never ended; the consumer that had left the block early got the
    input's KeyError. Now the wave ends as ever: fail-fast, it fails with that error once every hook has seen it;
    left early, the stream ends as left (the rest was not wanted), its error unraised."""
    from _open_spans import OpenSpans

    from shannon_otel.testing import InMemoryTelemetry

    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def main() -> Any:
        wave = Wave("breaks", max_concurrency=1, fail_fast=True, **otel.providers)
        stream = wave.stream(_BreaksAt(10, 3))
        async with stream as results:
            async for _ in results:
                if leave_early:
                    break
        return stream.report

    if leave_early:
        report = run_virtual(main())
        assert report is not None and report.outcome is Outcome.CANCELLATION
    else:
        with pytest.raises(KeyError, match="input broke at 3"):
            run_virtual(main())
    assert spans.open == {}
    span = otel.span("wave breaks")
    attributes = span.attributes or {}
    assert attributes["shannon.wave.tasks.failure"] == 1  # the first task
    assert attributes["shannon.wave.tasks.cancellation"] == 2  # the two taken before the input broke
    assert span.status.status_code.name == "ERROR"  # its first task failed
    otel.shutdown()
