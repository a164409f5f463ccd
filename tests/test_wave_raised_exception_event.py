"""A wave that raises itself (not a task) records that error on its span: one ``exception`` event, ``error.type``.

The OTel specification records an exception on the span "during which it occurred if and only if it remains
unhandled when the span ends" (trace/exceptions.md), and our contract (docs/architecture.md, "One exception, one
event") on the innermost span of ours it ended. A lazy input that raised ended the ``wave`` span, yet that span had
no event and ``error.type`` ``_OTHER``, described "the wave raised": the error was recorded nowhere in the trace
(its hooks were not told it). What is recorded is what the caller gets: the ``ExceptionGroup`` of the wave's
workers, which pull every item (its event's stack trace shows the input's error inside it; a batched lazy input's
first item, pulled by the wave itself, raised its error bare). A task's ``KeyboardInterrupt``,
raised out of the wave as it is, stays one event, on its task span.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from shannon_otel import Hook, TaskResult, Wave, WaveObserver, WaveReport, WaveStarted
from shannon_otel.testing import InMemoryTelemetry, run_virtual

Factory = Callable[[], Awaitable[int]]


async def _work(i: int) -> int:
    return i


def _one_then_broken() -> Iterator[Factory]:
    yield functools.partial(_work, 0)
    raise OSError("the input broke")


def _broken_at_once() -> Iterator[Factory]:
    raise OSError("the input broke")
    yield  # a generator


def _streamed(memory: InMemoryTelemetry, tasks: Iterator[Factory], **options: Any) -> BaseException:
    """Stream ``tasks`` through a wave named ``w``; the error its caller got."""
    caught: list[BaseException] = []

    async def main() -> None:
        try:
            async with Wave("w", **options, **memory.providers).stream(tasks) as results:
                async for _ in results:
                    pass
        except BaseException as exc:
            caught.append(exc)

    run_virtual(main())
    assert len(caught) == 1, "the wave raised its input's error"
    return caught[0]


def _events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "exception"]


@pytest.mark.parametrize(("tasks", "options", "seen"), [
    (_one_then_broken, {}, ExceptionGroup),  # a worker pulled the failing item: the TaskGroup's group
    (_broken_at_once, {}, ExceptionGroup),
    (_one_then_broken, {"batch_size": 2}, ExceptionGroup),
    (_broken_at_once, {"batch_size": 2}, ExceptionGroup),  # a batch's first item too (the wave pulled it: bare)
])
def test_a_wave_whose_input_raised_records_what_its_caller_got(
    tasks: Callable[[], Iterator[Factory]], options: dict[str, Any], seen: type[BaseException],
) -> None:
    memory = InMemoryTelemetry()
    try:
        error = _streamed(memory, tasks(), **options)
        assert type(error) is seen
        span = memory.span("wave w")
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == seen.__name__
        assert span.status.description == f"{seen.__name__}: {error}"
        (event,) = _events(span)
        assert event["exception.type"] == seen.__name__
        assert event["exception.message"] == str(error)
        stacktrace = event["exception.stacktrace"]
        assert isinstance(stacktrace, str)
        assert "OSError: the input broke" in stacktrace  # the input's own error, inside the group if any
        assert "_one_then_broken" in stacktrace or "_broken_at_once" in stacktrace  # and where it was raised
        for task in memory.spans("task w"):  # the tasks that ran are as they were: succeeded, no event
            assert task.status.status_code is StatusCode.UNSET
            assert not task.events
    finally:
        memory.shutdown()


def test_a_wave_that_raised_counts_as_failed_in_its_duration_metric() -> None:
    memory = InMemoryTelemetry()
    try:
        _streamed(memory, _one_then_broken())
        span = memory.span("wave w").attributes or {}
        assert memory.point("shannon.wave.duration", shannon_wave_name="w").attributes == {
            "shannon.wave.name": "w", "shannon.task.outcome": "failure", "error.type": span["error.type"],
        }
        assert span["shannon.task.outcome"] == "failure"
    finally:
        memory.shutdown()


class _Interrupt(KeyboardInterrupt):
    """A KeyboardInterrupt of the test's own, so that nothing else takes it for a real Ctrl-C."""


async def _interrupted() -> int:
    raise _Interrupt("stop")


def test_a_tasks_interrupt_leaving_the_wave_as_it_is_has_one_event_on_its_task_span() -> None:
    memory = InMemoryTelemetry()
    try:
        with pytest.raises(_Interrupt):
            run_virtual(Wave("w", **memory.providers).run([_interrupted]))
        task, wave = memory.span("task w"), memory.span("wave w")
        (event,) = _events(task)
        assert event["exception.type"].endswith("_Interrupt")
        assert not _events(wave)  # the same object: recorded once, on the innermost span it ended
        assert wave.status.status_code is StatusCode.ERROR
        assert (wave.attributes or {})["error.type"] == event["exception.type"]
    finally:
        memory.shutdown()


def test_a_wave_whose_input_raised_inside_a_call_of_ours_is_recorded_on_the_wave_span_only() -> None:
    from shannon_otel import Retry

    memory = InMemoryTelemetry()
    retry = Retry(attempts=1, **memory.providers)

    async def main() -> None:
        async def wave() -> None:
            async with Wave("w", **memory.providers).stream(_one_then_broken()) as results:
                async for _ in results:
                    pass

        with contextlib.suppress(ExceptionGroup):
            await retry.call(wave)

    try:
        run_virtual(main())
        assert len(_events(memory.span("wave w"))) == 1
        others = [s for s in memory.spans() if s.name != "wave w" and _events(s)]
        assert not others, [s.name for s in others]  # the operation and attempt spans it then ended: no copy
    finally:
        memory.shutdown()


class _Stopping(Hook):
    """A hook whose ``wave_started`` raises a BaseException: not isolated, it ends the wave, raised as it is."""

    def wave_started(self, event: WaveStarted) -> None:
        raise _Interrupt("the hook stopped it")


def test_a_wave_a_hook_interrupted_records_that_interrupt_on_its_span() -> None:
    memory = InMemoryTelemetry()
    try:
        with pytest.raises(_Interrupt) as caught:
            run_virtual(Wave("w", hooks=[_Stopping()], **memory.providers).run([functools.partial(_work, 1)]))
        wave = memory.span("wave w")
        (event,) = _events(wave)
        assert event["exception.type"] == (wave.attributes or {})["error.type"] == f"{__name__}._Interrupt"
        assert event["exception.message"] == str(caught.value)
        assert wave.status.description == f"{__name__}._Interrupt: the hook stopped it"
    finally:
        memory.shutdown()


class _Stop(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit (pytest.fail's is one): the wave's task
    group raises it inside a BaseExceptionGroup."""


async def _stopped() -> int:
    raise _Stop("stop")


def _nested() -> Callable[[InMemoryTelemetry], Awaitable[object]]:
    def run(memory: InMemoryTelemetry) -> Awaitable[object]:
        async def inner() -> object:
            return await Wave("w", **memory.providers).run([_stopped])

        return Wave("outer", **memory.providers).run([inner])
    return run


@pytest.mark.parametrize("make", [
    lambda memory: Wave("w", **memory.providers).run([_stopped, functools.partial(_work, 1)]),
    _nested(),  # a wave in a task of another wave: each wave's group holds the one below
], ids=["wave", "nested"])
def test_a_tasks_base_exception_raised_in_a_group_has_one_event(
    make: Callable[[InMemoryTelemetry], Awaitable[object]],
) -> None:
    """Bug: the task span recorded the task's error, then the wave span recorded the BaseExceptionGroup its task
    group raised around that very error (its stack trace again, inside the group's): two events for one error, three
    with a wave around it. A group whose every exception is recorded beneath is not recorded again."""
    memory = InMemoryTelemetry()

    async def main() -> BaseExceptionGroup[BaseException]:
        try:
            await make(memory)
        except BaseExceptionGroup as exc:
            return exc
        raise AssertionError("the wave raised its task's _Stop in a group")

    try:
        group = run_virtual(main())
        recorded = [(s.name, e["exception.type"]) for s in memory.spans() for e in _events(s)]
        assert recorded == [("task w", f"{__name__}._Stop")]
        for wave in memory.spans():
            if wave.name.startswith("wave"):  # each wave still failed with its group, as its caller got it
                assert wave.status.status_code is StatusCode.ERROR
                assert (wave.attributes or {})["error.type"] == "BaseExceptionGroup"
        assert group.subgroup(_Stop) is not None
    finally:
        memory.shutdown()


class _CancelAtFirstSkip(Hook):
    """Cancels the wave's own task as the wave tells its first never-started tasks: during the drain of its rest."""

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        class Observer(WaveObserver):
            cancelled = False

            def tasks_skipped(self, first: TaskResult[Any], count: int) -> None:
                if not Observer.cancelled:
                    Observer.cancelled = True
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()

        return Observer()


def test_a_tasks_interrupt_is_raised_though_the_wave_is_cancelled_as_it_drains() -> None:
    """Bug: a task's KeyboardInterrupt stopped the wave; its rest (over one drain step, 1024 tasks) was drained,
    and a cancellation landing there was raised in its place: the caller got a CancelledError, the Ctrl-C was lost,
    while ``WaveReport.error`` and the wave span said the interrupt. The interrupt is raised, as asyncio's TaskGroup
    raises one over its own cancellation."""
    memory = InMemoryTelemetry()
    reports: list[WaveReport] = []

    async def fine() -> int:
        return 1

    tasks: list[Factory] = [_interrupted, *(fine for _ in range(1500))]
    try:
        with pytest.raises(_Interrupt):
            run_virtual(Wave("w", max_concurrency=1, hooks=[_CancelAtFirstSkip(), _Reports(reports)],
                             **memory.providers).run(tasks))
        (report,) = reports
        assert isinstance(report.error, _Interrupt)
        assert (memory.span("wave w").attributes or {})["error.type"] == f"{__name__}._Interrupt"
    finally:
        memory.shutdown()


class _Reports(Hook):
    def __init__(self, reports: list[WaveReport]) -> None:
        super().__init__()
        self.reports = reports

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        reports = self.reports

        class Observer(WaveObserver):
            def wave_finished(self, report: WaveReport) -> None:
                reports.append(report)

        return Observer()
