"""A consumer that leaves a stream (``break``) right after reading its last result: the wave's outcome is a success.

The result reached the consumer as the worker that ran the last task found the input's end, a few loop steps before
the wave's own task came back from its workers: a consumer leaving in those steps cancelled the wave, whose span said
"cancellation" with every task a success (about 97% of the runs of a consumer that breaks at once). Deterministic:
the tasks never suspend, so the order of the steps is asyncio's FIFO order, the same at every run.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Outcome, Wave, WaveReport, WaveStream
from shannon_otel.testing import InMemoryTelemetry


async def _now(value: int) -> int:
    return value  # never suspends: the worker delivers its result and looks for the next task in one step


def _input(kind: str, n: int) -> Iterable[Any]:
    factories = [functools.partial(_now, k) for k in range(n)]
    if kind == "list":
        return factories
    if kind == "tuple":
        return tuple(factories)
    return iter(factories)  # lazy: the worker that took the last task finds its end as it delivers its result


def _leave_after(wave: Wave[int], tasks: Iterable[Any], read: int, mapped: bool = False) -> WaveReport:
    return _read_then_leave(lambda: wave.stream_map(_now, list(range(read))) if mapped else wave.stream(tasks), read)


def _read_then_leave(open_stream: Callable[[], WaveStream[int]], read: int) -> WaveReport:
    """Open a stream in a new loop and leave it (``break``) right after reading ``read`` results: the wave's report."""
    async def main() -> WaveReport | None:
        stream = open_stream()
        seen = 0
        async with stream as results:
            async for _ in results:
                seen += 1
                if seen == read:
                    break
        return stream.report

    report = asyncio.run(main())
    assert report is not None
    return report


@pytest.mark.parametrize("kind", ["list", "tuple", "lazy", "mapped"])
@pytest.mark.parametrize(("n", "max_concurrency", "batch_size"), [(1, 1, None), (3, 2, None), (3, 2, 2)])
def test_a_consumer_breaking_right_after_the_last_result_ends_the_wave_a_success(
    kind: str, n: int, max_concurrency: int, batch_size: int | None,
) -> None:
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    wave = Wave[int]("last", max_concurrency=max_concurrency, batch_size=batch_size, **tel.providers)
    report = _leave_after(wave, _input(kind, n), n, mapped=kind == "mapped")
    assert spans.open == {}
    assert report.counts[Outcome.SUCCESS] == n and report.total == n
    assert report.outcome is Outcome.SUCCESS
    attributes = tel.span("wave last").attributes or {}
    assert attributes["shannon.task.outcome"] == Outcome.SUCCESS.value
    assert attributes["shannon.wave.tasks.success"] == n


def test_a_consumer_breaking_before_the_last_result_still_cancels_the_rest() -> None:
    """The other side of the rule: tasks not taken when the consumer leaves are cancelled, and so is the wave."""
    tel = InMemoryTelemetry()
    wave = Wave[int]("early", max_concurrency=1, **tel.providers)
    report = _leave_after(wave, _input("list", 5), 2)
    assert report.counts[Outcome.CANCELLATION] > 0
    assert report.outcome is Outcome.CANCELLATION
    assert (tel.span("wave early").attributes or {})["shannon.task.outcome"] == Outcome.CANCELLATION.value


@pytest.mark.parametrize("mapped", [False, True])
def test_tasks_a_list_gained_as_its_consumer_left_after_the_last_result_are_cancelled(mapped: bool) -> None:
    """Left in those same steps after appending to its list: what the list gained is a left stream's rest, never run,
    counted as cancelled, and the wave is a cancellation (as when the consumer leaves while the wave waits for it)."""
    tel = InMemoryTelemetry()
    items = [0, 1]
    tasks: list[Any] = [functools.partial(_now, k) for k in items]

    async def main() -> WaveReport | None:
        wave = Wave[int]("gained", max_concurrency=2, **tel.providers)
        stream = wave.stream_map(_now, items) if mapped else wave.stream(tasks)
        seen = 0
        async with stream as results:
            async for _ in results:
                seen += 1
                if seen == 2:
                    items.append(2)
                    tasks.append(functools.partial(_now, 2))
                    break
        return stream.report

    report = asyncio.run(main())
    assert report is not None
    assert report.counts[Outcome.SUCCESS] == 2 and report.counts[Outcome.CANCELLATION] == 1
    assert report.outcome is Outcome.CANCELLATION



async def _slow(value: int) -> int:
    await asyncio.sleep(0)  # suspends once: in flight for a step, where the consumer's leaving cancels it
    return value


def _leave_steps_after_appending(mapped: bool, steps: int) -> tuple[WaveReport, str]:
    """The consumer appends a task once it has read every result, asks for the next (the wave takes the task the list
    gained) and leaves ``steps`` loop steps later: the report, and the outcome on the wave span."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    items = [0]
    tasks: list[Any] = [functools.partial(_slow, 0)]

    async def main() -> WaveReport | None:
        wave = Wave[int]("regrown", max_concurrency=2, **tel.providers)
        stream = wave.stream_map(_slow, items) if mapped else wave.stream(tasks)
        async with stream as results:
            await anext(results)
            items.append(1)
            tasks.append(functools.partial(_slow, 1))
            reading = asyncio.ensure_future(anext(results))
            for _ in range(steps):
                await asyncio.sleep(0)
            reading.cancel()
        return stream.report

    report = asyncio.run(main())
    assert report is not None and spans.open == {}
    return report, str((tel.span("wave regrown").attributes or {})["shannon.task.outcome"])


@pytest.mark.parametrize("mapped", [False, True])
def test_a_task_the_list_gained_cancelled_as_the_consumer_leaves_makes_the_wave_a_cancellation(mapped: bool) -> None:
    """Left after the wave had pulled the task the list gained but before a worker took it, the wave counted "every
    task taken has ended, a worker found the input's end" (an end found before the list grew) as "none left": its
    leaving cancelled the task as it started, and the report and the wave span said success beside a cancelled task.
    Whatever the step the consumer leaves at, a wave with a task its leaving cancelled is a cancellation."""
    cancelled_at = []
    for steps in range(8):
        report, outcome = _leave_steps_after_appending(mapped, steps)
        assert report.total == 2
        if report.counts[Outcome.CANCELLATION]:
            cancelled_at.append(steps)
            assert report.outcome is Outcome.CANCELLATION, steps
            assert outcome == Outcome.CANCELLATION.value, steps
    assert cancelled_at  # the consumer's leaving cut a task short at some step: the case this is about was run


def _whole_batches() -> list[tuple[int, int]]:
    return [(n, batch_size) for batch_size in (1, 2, 3) for n in sorted({batch_size, 2 * batch_size, 4})
            if n % batch_size == 0]


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize(("n", "batch_size"), _whole_batches())
def test_a_consumer_breaking_after_the_last_result_of_whole_batches_of_a_lazy_input_ends_a_success(
    n: int, batch_size: int, mapped: bool,
) -> None:
    """A lazy input whose length is a multiple of the batch size: its end was found only as the next batch began, a
    few loop steps after the last result, so a consumer leaving right after it cancelled a wave cut short of nothing
    (the span, the wave duration metric and the report said "cancellation", every task a success). A worker finding
    its batch full now probes the input for its next item, as an unbatched stream's worker pulls its next one."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    wave = Wave[int]("whole", max_concurrency=2, batch_size=batch_size, **tel.providers)

    report = _read_then_leave(lambda: wave.stream_map(_now, iter(range(n))) if mapped
                              else wave.stream(functools.partial(_now, k) for k in range(n)), n)
    assert report is not None and spans.open == {}
    assert report.counts[Outcome.SUCCESS] == n and report.total == n
    assert report.outcome is Outcome.SUCCESS
    assert (tel.span("wave whole").attributes or {})["shannon.task.outcome"] == Outcome.SUCCESS.value
    (point,) = tel.points("shannon.wave.duration")
    assert point.count == 1 and point.attributes["shannon.task.outcome"] == Outcome.SUCCESS.value
