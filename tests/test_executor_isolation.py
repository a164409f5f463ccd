"""Task isolation: each wave task runs in its own copy of the wave's context, as under ``gather``.

Every test runs several tasks on ONE worker (``max_concurrency=1``), where the tasks used to share
one context: what task 0 leaves behind must not reach task 1, in runs and in streams.
"""

from __future__ import annotations

import asyncio
import itertools
import traceback
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context

from shannon_otel import Outcome, Progress, TaskResult, Wave, record
from shannon_otel.testing import InMemoryTelemetry, run_virtual

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="unset")


async def run_wave(wave: Wave[Any], tasks: list[Callable[[], Awaitable[Any]]], mode: str) -> list[TaskResult[Any]]:
    """The results in input order, through ``run`` or through ``stream`` (the worker's other path)."""
    if mode == "run":
        return list((await wave.run(tasks)).results)
    async with wave.stream(tasks) as stream:
        results = [result async for result in stream]
    return sorted(results, key=lambda r: r.index)


MODES = pytest.mark.parametrize("mode", ["run", "stream"])


@MODES
def test_a_context_variable_set_by_one_task_is_not_seen_by_the_next(mode: str) -> None:
    wave: Wave[str] = Wave("ctx", max_concurrency=1, instrument=False)

    async def first() -> str:
        REQUEST_ID.set("task-0")  # never reset, as user code often does
        return REQUEST_ID.get()

    async def second() -> str:
        await asyncio.sleep(0)
        return REQUEST_ID.get()

    async def main() -> list[Any]:
        REQUEST_ID.set("caller")  # the wave's context: every task starts from it
        results = await run_wave(wave, [first, second, second], mode)
        assert REQUEST_ID.get() == "caller"
        return [r.value for r in results]

    assert run_virtual(main()) == ["task-0", "caller", "caller"]


@MODES
def test_on_progress_sees_the_waves_context_not_the_context_of_the_task_that_just_ended(mode: str) -> None:
    """`on_progress` was called at the end of each task, inside that task's context: it saw the context
    variables the task had set (a request id, a structlog binding) as if they were the wave's, and the next
    report saw the next task's."""
    seen: list[str] = []
    ticks = itertools.count()  # a clock a second later at each reading: every task's report is due
    wave: Wave[str] = Wave(
        "progress", max_concurrency=1, instrument=False, progress_interval=0.5, clock=lambda: float(next(ticks)),
        on_progress=lambda progress: seen.append(REQUEST_ID.get()),
    )

    def setting(value: str) -> Callable[[], Awaitable[str]]:
        async def task() -> str:
            REQUEST_ID.set(value)
            return value
        return task

    async def main() -> None:
        REQUEST_ID.set("caller")
        await run_wave(wave, [setting("task-0"), setting("task-1")], mode)

    run_virtual(main())
    assert seen == ["caller", "caller", "caller"]  # after each task, and once at the end


@MODES
def test_what_on_progress_sets_reaches_neither_the_next_tasks_nor_the_caller(mode: str) -> None:
    """`on_progress` runs in a copy of the wave's context: run in the wave's own, a variable it set (a structlog
    binding made for the display) was seen by every later task of the wave as if the caller had set it."""
    seen: list[str] = []
    ticks = itertools.count()  # a clock a second later at each reading: every task's report is due

    def on_progress(progress: Progress) -> None:
        REQUEST_ID.set("on_progress")

    wave: Wave[str] = Wave(
        "progress", max_concurrency=1, instrument=False, progress_interval=0.5, clock=lambda: float(next(ticks)),
        on_progress=on_progress,
    )

    async def task() -> str:
        seen.append(REQUEST_ID.get())
        return "done"

    async def main() -> str:
        REQUEST_ID.set("caller")
        await run_wave(wave, [task, task, task], mode)
        return REQUEST_ID.get()

    assert run_virtual(main()) == "caller"
    assert seen == ["caller", "caller", "caller"]

@MODES
def test_baggage_attached_by_one_task_is_not_seen_by_the_next(mode: str) -> None:
    wave: Wave[Any] = Wave("bag", max_concurrency=1, instrument=False)

    async def first() -> Any:
        otel_context.attach(baggage.set_baggage("tenant", "a"))  # attached, never detached
        return baggage.get_baggage("tenant")

    async def second() -> Any:
        return baggage.get_baggage("tenant")

    results = run_virtual(run_wave(wave, [first, second], mode))
    assert [r.value for r in results] == ["a", None]


@MODES
def test_a_span_left_current_by_one_task_is_not_the_parent_in_the_next(mode: str) -> None:
    otel = InMemoryTelemetry()
    tracer = otel.tracer_provider.get_tracer("user")
    wave: Wave[None] = Wave("spans", max_concurrency=1, **otel.providers)

    async def leaky() -> None:
        span = tracer.start_span("leaked")
        otel_context.attach(trace.set_span_in_context(span))  # left current on purpose
        span.end()

    async def clean() -> None:
        with tracer.start_as_current_span("mine"):
            await asyncio.sleep(0)

    run_virtual(run_wave(wave, [leaky, clean], mode))
    mine = otel.span("mine")
    task_spans = {s.context.span_id: s for s in otel.spans("task spans") if s.context is not None}
    assert mine.parent is not None and mine.parent.span_id in task_spans  # under its own task span
    parent_attributes = task_spans[mine.parent.span_id].attributes
    assert parent_attributes is not None
    assert parent_attributes["shannon.task.index"] == 1
    assert all(s.end_time is not None for s in otel.spans())


def test_the_callers_current_span_stays_current_and_is_every_tasks_parent() -> None:
    otel = InMemoryTelemetry()
    tracer = otel.tracer_provider.get_tracer("user")
    wave: Wave[Any] = Wave("plain", max_concurrency=1, instrument=False)

    async def leaky() -> Any:
        otel_context.attach(trace.set_span_in_context(tracer.start_span("leaked")))
        return trace.get_current_span()

    async def plain() -> Any:
        return trace.get_current_span()

    async def main() -> None:
        with tracer.start_as_current_span("caller") as caller:
            results = await wave.run([leaky, plain])
            assert trace.get_current_span() is caller
        assert results.results[1].value is caller

    run_virtual(main())


@MODES
def test_a_record_by_work_a_task_left_running_never_lands_on_the_next_task(
    mode: str, caplog: pytest.LogCaptureFixture,
) -> None:
    wave: Wave[None] = Wave("rec", max_concurrency=1, instrument=False)
    background: list[asyncio.Task[None]] = []

    async def main() -> list[TaskResult[Any]]:
        released = asyncio.Event()
        recorded = asyncio.Event()

        async def leftover() -> None:
            await released.wait()
            record("tokens", 100.0)  # after its task returned: must not reach the next task
            recorded.set()

        async def first() -> None:
            record("tokens", 1.0)
            background.append(asyncio.create_task(leftover()))

        async def second() -> None:
            released.set()
            await recorded.wait()
            record("tokens", 2.0)

        results = await run_wave(wave, [first, second], mode)
        await asyncio.gather(*background)
        return results

    results = run_virtual(main())
    assert [r.outcome for r in results] == [Outcome.SUCCESS, Outcome.SUCCESS]
    assert results[0].measurements == {"tokens": 1.0}  # the delivered result is not changed afterwards
    assert results[1].measurements == {"tokens": 2.0}
    assert "record() called after its wave task ended" in caplog.text  # dropped, and said so


def test_a_record_from_a_hooks_task_finished_is_dropped_and_the_warning_names_that_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hook's ``task_finished`` runs once the task's result is made: its record_tokens() is dropped. The warning
    said "(by work the task left running)" only, which sent the reader hunting for a background task."""
    from shannon_otel import Hook, record_tokens
    from shannon_otel._events import WaveObserver, WaveStarted

    class Late(WaveObserver):
        def task_finished(self, token: Any, result: TaskResult[Any]) -> None:
            record_tokens(5)

    class LateHook(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver:
            return Late()

    async def task() -> str:
        record_tokens(1)
        return "ok"

    wave: Wave[str] = Wave("late", hooks=[LateHook()], instrument=False)
    [result] = run_virtual(wave.run([task])).results
    assert result.value == "ok"
    assert result.measurements == {"shannon.task.tokens.input": 1.0, "shannon.task.tokens.output": 0.0}
    assert "record_tokens() called after its wave task ended" in caplog.text
    assert "from a hook's task_finished" in caplog.text  # the cause it was, named


def test_work_a_task_spawns_records_on_that_task_while_it_runs() -> None:
    wave: Wave[None] = Wave("spawn", max_concurrency=1, instrument=False)

    async def task_with_helper() -> None:
        async def helper() -> None:
            record("calls", 1.0)

        await asyncio.gather(helper(), helper())

    result = run_virtual(wave.run([task_with_helper, task_with_helper]))
    assert [r.measurements for r in result.results] == [{"calls": 2.0}, {"calls": 2.0}]


def test_errors_keep_their_traceback_and_timeouts_and_cancellation_still_work() -> None:
    def fails_deep() -> None:
        raise ValueError("deep")

    async def failing() -> None:
        await asyncio.sleep(0)
        fails_deep()

    async def slow() -> None:
        await asyncio.sleep(10)

    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    wave: Wave[None] = Wave("mixed", max_concurrency=1, task_timeout=1, instrument=False)
    result = run_virtual(wave.run([failing, slow, cancels_itself, failing]))
    outcomes = [r.outcome for r in result.results]
    assert outcomes == [Outcome.FAILURE, Outcome.TIMEOUT, Outcome.CANCELLATION, Outcome.FAILURE]
    error = result.results[0].error
    assert error is not None
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert frames[-2:] == ["failing", "fails_deep"]


def test_cancelling_a_wave_whose_task_is_suspended_reaches_the_task_and_reraises() -> None:
    wave: Wave[None] = Wave("cancel", max_concurrency=1, instrument=False)
    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            seen.append(REQUEST_ID.get())
            raise

    async def main() -> None:
        REQUEST_ID.set("wave")
        before = asyncio.all_tasks()
        runner = asyncio.create_task(wave.run([waits, waits]))
        await asyncio.sleep(1)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert asyncio.all_tasks() <= before

    run_virtual(main())
    assert seen == ["wave"]  # thrown into the task, inside the task's own context


@pytest.mark.parametrize("mode", ["run", "stream"])
def test_an_error_raised_after_a_caught_cancellation_keeps_its_own_context(mode: str) -> None:
    """A task that catches a cancellation thrown into it and then raises: the error's ``__context__`` is what
    ``await fn()`` gives it (None), not the CancelledError the worker was forwarding (shown as "During handling
    of CancelledError" in the user's traceback)."""

    async def work() -> None:
        me = asyncio.current_task()
        assert me is not None
        asyncio.get_running_loop().call_soon(me.cancel)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            me.uncancel()
        raise ValueError("mine")

    async def main() -> tuple[BaseException | None, BaseException | None]:
        try:
            await work()
        except ValueError as exc:
            plain = exc.__context__
        [result] = await run_wave(Wave("w", max_concurrency=1), [work], mode)
        assert isinstance(result.error, ValueError)
        return plain, result.error.__context__

    plain, in_wave = asyncio.run(main())
    assert plain is None
    assert in_wave is None


def test_a_nested_waves_keyboard_interrupt_reaches_the_caller_without_a_cancellation_context() -> None:
    async def interrupt() -> None:
        raise KeyboardInterrupt("stop")

    async def outer() -> None:
        await Wave("inner").run([interrupt])

    async def main() -> BaseException:
        try:
            await Wave("outer").run([outer])
        except KeyboardInterrupt as exc:
            return exc
        raise AssertionError("no KeyboardInterrupt")

    caught = asyncio.run(main())
    assert caught.args == ("stop",)
    assert caught.__context__ is None
