"""``Wave.stream`` as a consumer meets it: whatever ends the wave also ends the consumer's ``async for``.

The consumer waits on the stream's queue for the next result or the end of the wave; a wave that fails
must still queue that end, or the consumer waits forever (nothing else wakes it).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Outcome, Progress, TaskResult, Wave, WaveReport
from shannon_otel.testing import InMemoryTelemetry, run_virtual


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
    # type(), not isinstance(): isinstance() of a weakref.proxy whose referent died (another test's, a library's)
    # raises ReferenceError (it failed once in a whole-suite run)
    return sum(1 for o in gc.get_objects() if type(o) is TaskResult and o.wave == wave)


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


@pytest.mark.parametrize("leave", [True, False])
@pytest.mark.parametrize(("change", "length"), [("extend", 30), ("cut", 10)])
def test_a_list_the_consumer_changes_as_it_streams_is_counted_as_it_now_is(
    change: str, length: int, leave: bool,
) -> None:
    """A list iterator yields what the list holds as it is iterated, so a consumer that extends the list it
    streams (a crawler queueing the links it found) runs the tasks it added. Left early, the rest was
    counted at the list's length at the start: the added items' tasks went uncounted, the cancellation count
    (report and ``shannon.task.outcomes``, a counter) could go negative, and the items of a cut list were
    counted as cancelled tasks that never existed. ``Progress.pending`` went negative once more tasks than that
    length had started, and a cut list's last progress still counted its vanished items as pending."""
    otel = InMemoryTelemetry()
    progress: list[Progress] = []
    items = list(range(20))

    async def main() -> WaveReport | None:
        wave = Wave[int]("changed", max_concurrency=2, on_progress=progress.append, progress_interval=1e-9,
                         **otel.providers)
        stream = wave.stream_map(_double, items)
        async with stream as results:
            seen = 0
            async for _ in results:
                seen += 1
                if seen == 2:
                    if change == "extend":
                        items.extend(range(20, 30))
                    else:
                        del items[10:]
                if seen == 5 and leave:
                    break
        return stream.report

    report = run_virtual(main())
    assert report is not None and len(items) == length
    assert report.total == length, report.counts  # every task the list yields, exactly once
    if leave:
        cancelled = report.counts[Outcome.CANCELLATION]
        assert cancelled == length - report.counts[Outcome.SUCCESS] > 0
        point = otel.point("shannon.task.outcomes", shannon_task_outcome="cancellation")
        assert point.value == cancelled
    else:
        assert report.counts[Outcome.SUCCESS] == length
    assert all(p.pending is None or p.pending >= 0 for p in progress)
    assert progress[-1].pending == 0 and progress[-1].done == length


@pytest.mark.parametrize("max_concurrency", [None, 10_000])
def test_a_stream_starts_no_more_workers_than_its_buffer_lets_run(max_concurrency: int | None) -> None:
    """No more tasks run at once than results the buffer may hold, yet a worker was started per slot of
    ``max_concurrency`` (per task under ``None``), each waiting for a credit: ``buffer=4`` over 200_000 items
    started 200_000 workers, and cancelling them when the consumer left took minutes."""
    tasks_seen: list[int] = []

    async def main() -> WaveReport | None:
        wave = Wave[int]("buffered", max_concurrency=max_concurrency, instrument=False)
        stream = wave.stream_map(_double, range(10_000), buffer=4)
        async with stream as results:
            async for r in results:
                tasks_seen.append(len(asyncio.all_tasks()))
                if r.index == 20:
                    break
        return stream.report

    report = run_virtual(main())
    assert report is not None and report.concurrency == 4
    assert max(tasks_seen) <= 4 + 2, max(tasks_seen)  # the workers, the stream's runner, this test's task


def test_a_stream_left_early_over_an_input_whose_length_can_no_longer_be_read_counts_it_at_its_first() -> None:
    """The rest of a stream left early is counted at the input's length then (see above); an input whose
    ``len()`` now raises is counted at the length it had at the start, and the wave still ends."""
    otel = InMemoryTelemetry()

    class Closing:
        def __init__(self) -> None:
            self.read = 0

        def __len__(self) -> int:
            self.read += 1
            if self.read > 1:
                raise RuntimeError("closed")
            return 50

        def __iter__(self) -> Iterator[int]:
            return iter(range(50))

    async def main() -> WaveReport | None:
        stream = Wave[int]("closing", max_concurrency=2, **otel.providers).stream_map(_double, Closing())
        async with stream as results:
            async for _ in results:
                break
        return stream.report

    report = run_virtual(main())
    assert report is not None and report.total == 50
    assert otel.span("wave closing").attributes is not None


@pytest.mark.parametrize("mapped", [True, False])
def test_the_rest_of_a_fail_fast_stream_is_queued_as_the_consumer_makes_room(mapped: bool) -> None:
    """A consumer still reading after a fail-fast stop gets a cancelled result for each task never started;
    they were all queued at once, so a consumer awaiting anything between two results held the whole rest
    of the input (100_000 inputs: 16 MiB of results) where a stream holds O(buffer) of them."""
    held: list[int] = []

    async def fails_first(x: int) -> int:
        await asyncio.sleep(0)
        if x == 0:
            raise ValueError("the first task fails")
        return x

    async def main() -> WaveReport | None:
        wave = Wave[int]("fail-fast-rest", max_concurrency=2, fail_fast=True, instrument=False)
        n = 5_000
        stream = (wave.stream_map(fails_first, range(n)) if mapped
                  else wave.stream([functools.partial(fails_first, i) for i in range(n)]))
        seen = 0
        async with stream as results:
            async for _ in results:
                seen += 1
                if seen == n // 2:
                    held.append(_held("fail-fast-rest"))
                await asyncio.sleep(0)  # the consumer awaits between two results
        assert seen == n
        return stream.report

    report = run_virtual(main())
    assert report is not None and report.counts[Outcome.CANCELLATION] >= 4_990
    assert held[0] <= 8, held  # at most what the buffer holds (2 x 2), and the one the consumer has


@pytest.mark.parametrize("mapped", [True, False])
def test_a_stream_whose_wave_is_cancelled_from_outside_its_block_ends_without_its_consumer(mapped: bool) -> None:
    """A "cancel every other task" shutdown (asyncio.run's own at exit, or a handler's) cancels the stream's
    runner while its block is still open: the wave then waited for room at the consumer to queue a result
    per task never started, which nobody would ever read. The runner never ended (asyncio.run with a
    stream left open in an async generator never returned) and the wave span stayed open."""
    otel = InMemoryTelemetry()
    n = 40

    async def main() -> tuple[bool, WaveReport | None]:
        wave = Wave[int]("shut-down", max_concurrency=2, **otel.providers)
        stream = (wave.stream_map(_double, range(n), buffer=1) if mapped
                  else wave.stream([_double(i) for i in range(n)], buffer=1))
        async with stream as results:
            async for _ in results:
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for other in others:
                    other.cancel()
                # virtual seconds: a wave that never ends shows as not done, at once
                _, pending = await asyncio.wait(others, timeout=60)
                ended = not pending
                break
        return ended, stream.report

    ended, report = run_virtual(main())
    assert ended, "the cancelled wave never ended"
    assert report is not None and report.total == n
    assert report.counts[Outcome.CANCELLATION] >= n - 2
    assert otel.span("wave shut-down").end_time is not None


def test_a_stream_dropped_without_leaving_its_block_ends_its_wave_and_every_span() -> None:
    """Entered without ``async with`` (``await stream.__aenter__()``) and dropped: the runner held the stream, so
    it waited for its consumer for ever with the wave span open, until the collector destroyed the whole cycle
    mid-wave ("Task was destroyed but it is pending!", "coroutine ignored GeneratorExit"): no span ever ended.
    Now the stream's collection cancels its wave, as leaving the block does."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    n = 30

    async def consume_one() -> None:
        stream = Wave[int]("dropped", max_concurrency=2, **otel.providers).stream_map(_double, range(n), buffer=2)
        await stream.__aenter__()
        await stream.__anext__()  # and never leaves: the stream is dropped with this frame

    async def main() -> list[asyncio.Task[Any]]:
        await consume_one()
        gc.collect()
        await asyncio.sleep(1)  # virtual: the cancelled wave ends
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert run_virtual(main()) == []
    assert spans.open == {}
    attributes = otel.span("wave dropped").attributes or {}
    counts: list[Any] = [attributes[f"shannon.wave.tasks.{outcome.value}"] for outcome in Outcome]
    assert sum(counts) == n


def test_a_stream_over_an_input_too_long_for_len_takes_it_lazily() -> None:
    """``stream_map(fn, range(10**20))``, an "endless" counter: entering the stream raised Python's OverflowError
    ("Python int too large to convert to C ssize_t", from ``len()``), naming nothing. It is taken as an input of
    unknown length, as ``itertools.count()`` is: the consumer gets its results, and leaving early stops the wave."""

    class Huge:  # a sized collection of tasks longer than len() can tell
        def __len__(self) -> int:
            return 10**20

        def __iter__(self) -> Iterator[Any]:
            return (functools.partial(_double, i) for i in range(10**20))

    async def main() -> list[tuple[list[int], WaveReport | None]]:
        wave: Wave[int] = Wave("huge", max_concurrency=2, instrument=False)
        seen = []
        for stream in (wave.stream_map(_double, range(10**20)), wave.stream(Huge())):
            values: list[int] = []
            async with stream as results:
                async for r in results:
                    values.append(r.value)  # type: ignore[arg-type]
                    if len(values) == 3:
                        break
            seen.append((sorted(values), stream.report))
        return seen

    for values, report in run_virtual(main()):
        assert values == [0, 2, 4]
        assert report is not None and report.outcome is Outcome.CANCELLATION
        assert report.total < 10  # the tasks it took, not a count of the whole range


async def _one(x: int) -> int:
    return x


@pytest.mark.parametrize(("mapped", "called"), [(False, "wave.stream(tasks)"), (True, "wave.stream_map(fn, items)")])
def test_a_misused_stream_names_what_the_user_called(mapped: bool, called: str) -> None:
    # stream_map's stream iterated without `async with` said "inside `async with wave.stream(tasks) ...`", a call
    # the user never made; entering it twice said "call wave.stream(...) again".
    wave = Wave("named", max_concurrency=2, instrument=False)

    def make() -> Any:
        return wave.stream_map(_one, [1, 2]) if mapped else wave.stream([functools.partial(_one, 1)])

    async def main() -> None:
        with pytest.raises(RuntimeError, match=f"inside `async with {re.escape(called)} as results:`"):
            await make().__anext__()
        stream = make()
        async with stream:
            pass
        with pytest.raises(RuntimeError, match=f"call {re.escape(called)} again"):
            async with stream:
                pass

    asyncio.run(main())


class Overlap:
    """Tasks (``work``) of 1 s of virtual time each, counting the most that ran at once (``peak``)."""

    def __init__(self) -> None:
        self.running = self.peak = 0

    async def work(self) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(1.0)  # virtual time: every task running at once overlaps here
        self.running -= 1


@pytest.mark.parametrize("start", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [None, 5])
def test_a_streamed_list_the_consumer_extends_runs_its_new_tasks_at_max_concurrency(
    start: int, batch_size: int | None,
) -> None:
    """A list the consumer extends while the wave streams it (a supported use: see WaveObserver.task_queued) ran
    the tasks it added with the concurrency capped at the list's length at the start: one task extended by nine
    ran one at a time under max_concurrency=4. Now they run 4 at a time, and the report says so; the pending and
    active gauges are back to 0."""
    tel = InMemoryTelemetry()
    overlap = Overlap()
    tasks: list[Any] = [overlap.work] * start
    wave = Wave[Any]("grown", max_concurrency=4, batch_size=batch_size, **tel.providers)

    async def main() -> tuple[int, WaveReport | None]:
        async with wave.stream(tasks) as stream:
            tasks.extend([overlap.work] * 9)
            count = len([r async for r in stream if r.outcome is Outcome.SUCCESS])
        return count, stream.report

    count, report = run_virtual(main())
    assert count == start + 9
    assert overlap.peak == 4
    assert report is not None and report.concurrency == 4
    for gauge in ("shannon.task.active", "shannon.task.pending"):
        assert tel.point(gauge, shannon_wave_name="grown").value == 0


def test_a_streamed_list_shorter_than_max_concurrency_starts_no_worker_it_does_not_need() -> None:
    """Not capping a streamed list's workers at its length (it may grow) must not start idle ones for a list
    that stays as it is: 3 tasks under max_concurrency=100 run on 3 workers."""
    seen: list[int] = []
    release = asyncio.Event()

    async def work() -> None:
        seen.append(len(asyncio.all_tasks()))  # the consumer, the stream's runner and its workers
        await release.wait()

    async def main() -> int:
        async with Wave[Any]("short", max_concurrency=100, instrument=False).stream([work] * 3) as stream:
            await asyncio.sleep(1.0)
            tasks_then = len(asyncio.all_tasks())
            release.set()
            assert len([r async for r in stream]) == 3
        return tasks_then

    assert run_virtual(main()) == 2 + 3
    assert seen == [2 + 3] * 3  # no idle worker created alongside them (97 were, then ended)


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("batch_size", [None, 10])
def test_tasks_appended_after_a_worker_found_the_lists_end_still_run(mapped: bool, batch_size: int | None) -> None:
    """A list the consumer extends while it streams (WaveObserver.task_queued's documented use) lost the tasks it
    gained once any worker had found its end: Python's list iterator, once at the end, ignores later appends. Under
    max_concurrency=2 over [slow, fast], the task appended at fast's result (slow still running) never ran: one
    result short, no error, no telemetry. Now the worker still running takes it when slow ends."""
    release = asyncio.Event()
    ran: list[str] = []

    async def job(name: str) -> str:
        if name == "slow":
            await release.wait()
        ran.append(name)
        return name

    items = ["slow", "fast"]

    async def main() -> list[str]:
        wave = Wave[str]("grown-late", max_concurrency=2, batch_size=batch_size, instrument=False)
        tasks: list[Any] = [functools.partial(job, name) for name in items]
        stream = wave.stream_map(job, items) if mapped else wave.stream(tasks)
        got: list[str] = []
        async with stream as results:
            async for r in results:
                got.append(r.value)  # type: ignore[arg-type]
                if r.value == "fast":
                    await asyncio.sleep(1.0)  # virtual: the fast task's worker has found the end meanwhile
                    if mapped:
                        items.append("added")
                    else:
                        tasks.append(functools.partial(job, "added"))
                    release.set()
        assert stream.report is not None and stream.report.total == 3
        return got

    assert sorted(run_virtual(main())) == ["added", "fast", "slow"]
    assert sorted(ran) == ["added", "fast", "slow"]


def test_tasks_appended_after_the_streams_last_task_was_taken_are_logged_not_lost_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Appended once the wave has taken its last task and ended (here by its final on_progress call; the consumer
    may no longer be the one appending: a wave over a list its consumer extends as it reads stays open until it
    has read every result), a task cannot run: no worker is left to take it. It was lost without a word; now one
    WARNING names the wave and the count, and the report still counts only the tasks that ran (the added ones are
    not passed off as cancelled)."""

    async def job(i: int) -> int:
        return i

    tasks: list[Any] = [functools.partial(job, 0), functools.partial(job, 1)]

    def at_the_end(progress: Progress) -> None:
        # called after the first task, then (progress_interval far away) only once the wave has ended
        if progress.done == 2:
            tasks.extend([functools.partial(job, 2), functools.partial(job, 3)])

    async def main() -> WaveReport | None:
        wave = Wave[int]("ended-early", max_concurrency=1, on_progress=at_the_end, progress_interval=1e9,
                         instrument=False)
        stream = wave.stream(tasks)
        async with stream as results:
            async for _ in results:
                pass
        return stream.report

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        report = run_virtual(main())
    assert report is not None and report.total == 2 and report.counts[Outcome.SUCCESS] == 2
    records = [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.tasks_not_run"]
    assert len(records) == 1, caplog.records
    record = records[0]
    assert record.levelno == logging.WARNING and record.name == "shannon_otel"
    assert record.__dict__["shannon.wave.name"] == "ended-early"
    assert record.__dict__["shannon.wave.tasks_not_run.count"] == 2
    assert "wave 'ended-early': 2 task(s)" in record.getMessage()


def test_a_stream_left_early_or_read_whole_without_late_tasks_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def job(i: int) -> int:
        return i

    async def main() -> None:
        wave = Wave[int]("quiet", max_concurrency=2, instrument=False)
        tasks: list[Any] = [functools.partial(job, i) for i in range(5)]
        async with wave.stream(tasks) as results:
            async for _ in results:
                break
        tasks.append(functools.partial(job, 5))  # after the block: the consumer left, nothing to warn about
        async with wave.stream([functools.partial(job, i) for i in range(5)]) as results:
            assert len([r async for r in results]) == 5

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        run_virtual(main())
    assert not [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.tasks_not_run"]


@pytest.mark.parametrize("max_concurrency", [1, 2, 3])
def test_every_task_a_streamed_list_gains_runs_never_passed_off_as_cancelled(
    max_concurrency: int, caplog: pytest.LogCaptureFixture,
) -> None:
    """A consumer appending a task at each result, however the wave's end falls among them: each task it added
    runs (some were only counted in a WARNING: the wave ended before the consumer read its last results).
    The end-of-wave drain (for a stopped or cancelled wave's rest), once a
    list is read as it grows, took the tasks appended between the last worker's end and the wave's end as
    cancelled tasks of a wave nobody cancelled."""

    async def job(i: int) -> int:
        return i

    tasks: list[Any] = [functools.partial(job, 0), functools.partial(job, 1)]

    async def main() -> tuple[list[Outcome], WaveReport | None]:
        outcomes: list[Outcome] = []
        stream = Wave[int]("racing", max_concurrency=max_concurrency, instrument=False).stream(tasks)
        async with stream as results:
            async for r in results:
                outcomes.append(r.outcome)
                if len(tasks) < 12:
                    tasks.append(functools.partial(job, len(tasks)))
        return outcomes, stream.report

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        outcomes, report = run_virtual(main())
    assert set(outcomes) == {Outcome.SUCCESS}
    assert report is not None and report.total == len(outcomes) == report.counts[Outcome.SUCCESS]
    told = [r.__dict__["shannon.wave.tasks_not_run.count"] for r in caplog.records
            if r.__dict__.get("event.name") == "shannon.wave.tasks_not_run"]
    # every one ran: the wave waits for the consumer to have read every result before it looks for the list's end
    assert report.total == len(tasks) == 12
    assert told == []


def test_a_streamed_list_extended_after_some_workers_found_its_end_runs_its_new_tasks_at_max_concurrency() -> None:
    """A worker that found the streamed list's end left, its slot lost: a list of 4 under max_concurrency=4,
    extended by 6 while 3 of its workers had left and one still ran a task, ran the 6 one at a time on that worker.
    Its slot is now free again: the first new task the remaining worker takes starts workers up to 4."""
    overlap = Overlap()
    third_may_end = asyncio.Event()

    async def quick() -> None:
        pass

    async def third() -> None:
        await third_may_end.wait()

    tasks: list[Any] = [quick, quick, quick, third]
    wave = Wave[Any]("regrown", max_concurrency=4)

    async def main() -> int:
        count = 0
        async with wave.stream(tasks) as stream:
            async for result in stream:
                assert result.outcome is Outcome.SUCCESS
                count += 1
                if count == 3:  # the 3 quick ones read: their workers found the end and left
                    tasks.extend([overlap.work] * 6)
                    third_may_end.set()
        return count

    assert run_virtual(main()) == 10
    assert overlap.peak == 4  # was 1
