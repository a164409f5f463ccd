"""Asyncio semantics a user relies on, through the public API only.

Eager task factories (Python 3.12+, ``loop.set_task_factory(asyncio.eager_task_factory)``) run a task's
first step inside ``create_task``; a wave must still fail fast there. A wave task runs on a worker task
shared with the tasks after it, so ``asyncio.current_task().cancel()`` from a task is that task's own
cancellation, never the end of the tasks that follow it on the same worker.

Everything runs on the virtual-time loop (no wall time) with events as the only scheduling points; the
checks needing 3.12+ are skipped on 3.11 and run on the 3.12/3.13 CI runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from _open_spans import OpenSpans
from _virtual_time import watched

from shannon_otel import CircuitBreaker, Hedge, Outcome, Pipeline, Retry, Wave, WaveStream
from shannon_otel.testing import InMemoryTelemetry

needs_eager = pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is Python 3.12+")


def telemetry() -> tuple[InMemoryTelemetry, OpenSpans]:
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    return otel, spans




def outcomes(results: Any) -> list[str]:
    return [r.outcome.value for r in results]


def others() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


# ---------------------------------------------------------------------------------------- other event loops
USER = contextvars.ContextVar("user", default="unset")
LOOPS = [
    pytest.param("default", id="default"),
    pytest.param("eager", id="eager", marks=needs_eager),
    pytest.param("uvloop", id="uvloop", marks=pytest.mark.skipif(
        importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (the test extra has it)")),
    # uvloop 0.23 on 3.13 passes eager_start= to the task factory, which asyncio's eager one refuses:
    # that loop cannot run with it at all (not even its own shutdown), whatever the code
    pytest.param("uvloop-eager", id="uvloop-eager", marks=pytest.mark.skipif(
        importlib.util.find_spec("uvloop") is None or sys.version_info[:2] != (3, 12),
        reason="uvloop with the eager task factory runs on Python 3.12 only")),
]


def run_on(loop: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop in ("default", "eager"):
        return watched(main, eager=loop == "eager")
    import uvloop

    async def run() -> Any:
        if loop == "uvloop-eager":
            asyncio.get_running_loop().set_task_factory(getattr(asyncio, "eager_task_factory"))  # noqa: B009
        return await main()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run())


@pytest.mark.parametrize("loop", LOOPS)
def test_waves_and_policies_keep_their_contract_on_other_loops_and_task_factories(loop: str) -> None:
    """Results in input order, each task in its own context (the caller's values seen, its own kept from the
    others and the caller), the span tree (task under wave, operation under task, attempts under operation),
    no task left and no span open, on the eager task factory and on uvloop as on asyncio's default loop."""
    otel, spans = telemetry()
    breaker = CircuitBreaker("round5", failure_threshold=50, window=100)
    seen: list[tuple[int, str]] = []
    flaky: set[int] = set()

    async def work(i: int) -> tuple[int, str]:
        seen.append((i, USER.get()))
        if i % 3 == 0 and i not in flaky:  # fails at once on its first attempt: retried
            flaky.add(i)
            raise ValueError(i)
        USER.set(f"task {i}")  # after the failure: a retry runs in the same task context, and would see it
        if i % 2:
            await asyncio.sleep(0)
        return i, USER.get()

    hedged = asyncio.Event()

    async def slow_then_fast() -> str:
        if not hedged.is_set():
            hedged.set()
            await asyncio.Event().wait()  # the first attempt never ends: the hedge wins, it is cancelled
        return "hedge"

    async def main() -> tuple[Any, str]:
        USER.set("caller")
        pipeline = Pipeline(Retry(attempts=2, initial=0, maximum=0), breaker)
        wave = Wave[Any]("loops", max_concurrency=3, policy=pipeline, **otel.providers)
        result = await wave.map(work, range(8))
        won = await Hedge(delay=0, attempts=2, **otel.providers).call(slow_then_fast)
        assert USER.get() == "caller"
        assert not others()
        return result, won

    result, won = run_on(loop, main)
    assert [r.value for r in result.results] == [(i, f"task {i}") for i in range(8)]
    assert sorted(seen) == sorted([(i, "caller") for i in range(8)] + [(i, "caller") for i in (0, 3, 6)])
    assert won == "hedge"
    assert spans.open == {}
    by_id = {s.context.span_id: s for s in otel.spans() if s.context is not None}

    def parent(name: str) -> set[str | None]:
        return {by_id[s.parent.span_id].name if s.parent is not None else None for s in otel.spans(name)}

    assert parent("wave loops") == {None}
    assert parent("task loops") == {"wave loops"} and len(otel.spans("task loops")) == 8
    assert parent("pipeline") == {"task loops"}
    assert {s.name for s in otel.spans() if s.parent is not None and by_id[s.parent.span_id].name == "pipeline"
            } == {"attempt 1", "attempt 2"}
    assert parent("hedge") == {None} and parent("attempt 1") >= {"hedge", "pipeline"}
    otel.shutdown()


# ---------------------------------------------------------------------------------------- eager tasks
@needs_eager
def test_fail_fast_under_the_eager_task_factory_cancels_the_running_task_and_starts_no_more() -> None:
    """Task 0 waits, task 1 fails at once: task 0 is cancelled and no task after 1 starts, as on the default
    factory. Eagerly, task 1 failed while the worker list was still being built: task 0 ran to its end
    (the release set by task 2) and tasks 2 and 3 started after the failure."""
    otel, spans = telemetry()
    started: list[int] = []
    cancelled: list[int] = []
    release = asyncio.Event()

    async def work(i: int) -> int:
        started.append(i)
        if i == 0:
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.append(i)
                raise
        elif i == 1:
            raise ValueError("fails at once")
        else:
            release.set()
        return i

    async def main() -> Any:
        result = await Wave[Any]("ff", max_concurrency=3, fail_fast=True, **otel.providers).map(work, range(5))
        assert not others()
        return result

    result = watched(main, eager=True)
    assert outcomes(result.results) == ["cancellation", "failure", "cancellation", "cancellation", "cancellation"]
    assert started == [0, 1]
    assert cancelled == [0]
    assert spans.open == {}
    task_spans = {s.attributes["shannon.task.index"]: s.attributes["shannon.task.outcome"]
                  for s in otel.spans("task ff") if s.attributes is not None}
    assert task_spans == {0: "cancellation", 1: "failure"}  # the tasks that never started have no span
    otel.shutdown()


def _failing_at_two(started: list[int]) -> Callable[[int], Awaitable[int]]:
    """A task function noting each start in ``started``; input 2 fails at once, before any await."""
    async def work(i: int) -> int:
        started.append(i)
        if i == 2:
            raise ValueError("fails at once")
        return i

    return work


@needs_eager
def test_fail_fast_under_the_eager_task_factory_starts_nothing_after_a_failure_in_a_batch() -> None:
    started: list[int] = []
    work = _failing_at_two(started)

    async def main() -> Any:
        wave = Wave[Any]("b", max_concurrency=2, batch_size=2, fail_fast=True, instrument=False)
        return await wave.map(work, range(6))

    result = watched(main, eager=True)
    assert outcomes(result.results) == ["success", "success", "failure"] + ["cancellation"] * 3
    assert started == [0, 1, 2]


@needs_eager
def test_a_streamed_lazy_input_under_the_eager_task_factory_starts_nothing_after_a_failure() -> None:
    """Each eager worker takes an input and runs it; the next worker it asks for starts once its first step
    is over (started from inside it, the starts nested one in another: see test_eager_tasks). Inputs 0 and 1
    end at once, input 2 fails: nothing after it is taken or started."""
    started: list[int] = []
    work = _failing_at_two(started)

    async def main() -> list[tuple[int, str]]:
        got = []
        wave = Wave[Any]("s", max_concurrency=3, fail_fast=True, instrument=False)
        async with wave.stream_map(work, iter(range(6))) as s:
            got.extend([(r.index, r.outcome.value) async for r in s])
        assert not others()
        return got

    got = watched(main, eager=True)
    assert started == [0, 1, 2]
    assert sorted(got) == [(0, "success"), (1, "success"), (2, "failure")]


# ---------------------------------------------------------------------------------------- self-cancellation
def _self_cancelling(awaits: bool) -> Callable[[int], Awaitable[int]]:
    async def work(i: int) -> int:
        await asyncio.sleep(0)
        if i == 0:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            if awaits:
                await asyncio.sleep(0)  # the cancellation is delivered here
        return i

    return work


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_task_cancelling_itself_is_cancelled_alone_whatever_the_concurrency(concurrency: int) -> None:
    """As under ``gather``: the task that called ``asyncio.current_task().cancel()`` ends cancelled, the others
    run and the wave returns. With one worker, every task after it used to end cancelled, never started."""
    otel, spans = telemetry()

    async def main() -> Any:
        wave = Wave[Any]("self", max_concurrency=concurrency, **otel.providers)
        result = await wave.map(_self_cancelling(awaits=True), range(4))
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0
        assert not others()
        return result

    result = watched(main)
    assert outcomes(result.results) == ["cancellation", "success", "success", "success"]
    assert [r.value for r in result.results] == [None, 1, 2, 3]
    assert result.report.outcome is Outcome.SUCCESS  # the wave itself was not cancelled
    assert spans.open == {}
    assert sorted(str(s.attributes and s.attributes["shannon.task.outcome"]) for s in otel.spans("task self")
                  ) == ["cancellation", "success", "success", "success"]
    otel.shutdown()


def test_a_task_cancelling_itself_and_returning_without_awaiting_keeps_its_value_and_ends_alone() -> None:
    """The cancellation is still pending on the worker when the task returns: the task's value is delivered,
    and the request does not cancel the next task (it used to end the worker and every task after it)."""

    async def main() -> Any:
        wave = Wave[Any]("self", max_concurrency=1, instrument=False)
        return await wave.map(_self_cancelling(awaits=False), range(3))

    result = watched(main)
    assert outcomes(result.results) == ["success"] * 3
    assert [r.value for r in result.results] == [0, 1, 2]


def test_a_task_cancelling_itself_under_a_retry_is_not_retried_and_ends_alone() -> None:
    calls: list[int] = []

    async def work(i: int) -> int:
        calls.append(i)
        return await _self_cancelling(awaits=True)(i)

    async def main() -> Any:
        wave = Wave[Any]("self", max_concurrency=1, policy=Retry(attempts=3, initial=0), instrument=False)
        return await wave.map(work, range(3))

    result = watched(main)
    assert outcomes(result.results) == ["cancellation", "success", "success"]
    assert calls == [0, 1, 2]  # a cancellation is never retried


def test_a_streamed_task_cancelling_itself_is_cancelled_alone() -> None:
    async def main() -> list[tuple[int, str]]:
        got = []
        wave = Wave[Any]("self", max_concurrency=1, instrument=False)
        async with wave.stream_map(_self_cancelling(awaits=True), iter(range(3))) as s:
            got.extend([(r.index, r.outcome.value) async for r in s])
        return got

    assert watched(main) == [(0, "cancellation"), (1, "success"), (2, "success")]


def test_fail_fast_and_a_cancelled_caller_still_cancel_a_task_that_swallows_the_cancellation() -> None:
    """The wave's own cancellations are still told from a task's own: a task swallowing fail-fast's
    cancellation keeps its worker stopping, and cancelling the caller cancels the wave."""
    started: list[int] = []
    blocked = asyncio.Event()

    async def swallow(i: int) -> str:
        started.append(i)
        if i == 1:
            raise ValueError("fail fast")
        if i == 0:
            try:
                blocked.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return "swallowed"
        return "ran"

    async def fail_fast() -> Any:
        return await Wave[Any]("ff", max_concurrency=2, fail_fast=True, instrument=False).map(swallow, [0, 1, 2, 3])

    result = watched(fail_fast)
    assert outcomes(result.results) == ["success", "failure", "cancellation", "cancellation"]
    assert started == [0, 1]

    async def cancelled_caller() -> None:
        wave = Wave[Any]("c", max_concurrency=1, instrument=False)
        runner = asyncio.create_task(wave.map(swallow, [0, 2, 3]))
        await blocked.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert not others()

    started.clear()
    blocked.clear()
    watched(cancelled_caller)
    assert started == [0]


# ---------------------------------------------------------------------------------------- BaseException, eagerly
class Abort(BaseException):
    """A custom BaseException: it propagates from the wave in a BaseExceptionGroup (docs/reliability.md)."""


def _aborting(started: list[int]) -> Callable[[int], Awaitable[int]]:
    async def work(i: int) -> int:
        started.append(i)
        if i == 0:
            await asyncio.Event().wait()  # running when task 1 aborts the wave: cancelled
        if i == 1:
            raise Abort("at once")
        return i

    return work


@needs_eager
def test_a_base_exception_in_an_eager_first_step_propagates_alone_and_starts_no_more() -> None:
    """The group it aborted refused the next worker: its RuntimeError ("TaskGroup is shutting down") joined
    the user's exception in the group, and that worker's coroutine was never awaited."""
    otel, spans = telemetry()
    started: list[int] = []

    async def main() -> None:
        wave = Wave[Any]("abort", max_concurrency=3, **otel.providers)
        with pytest.raises(BaseExceptionGroup) as caught:
            await wave.map(_aborting(started), range(5))
        assert [type(e) for e in caught.value.exceptions] == [Abort]
        assert not others()

    watched(main, eager=True)
    assert started == [0, 1]
    assert spans.open == {}
    assert sorted(str(s.attributes and s.attributes["shannon.task.outcome"]) for s in otel.spans("task abort")
                  ) == ["cancellation", "failure"]
    otel.shutdown()


@needs_eager
def test_a_base_exception_in_an_eager_streamed_worker_ends_the_stream_instead_of_hanging_it() -> None:
    """A lazy input's workers are started one after another, eagerly: when they were started each inside the
    previous one's first step, the group aborted while the first worker was still being created, so it
    joined the group after the abort, was never cancelled, and the wave waited for it forever (not even a
    timeout around the stream ended the wait). Now the second worker starts once the first waits in task 0;
    task 1 aborts the wave, task 0 is cancelled and no worker is started after the abort."""
    otel, spans = telemetry()
    started: list[int] = []

    async def main() -> None:
        wave = Wave[Any]("abort", max_concurrency=3, **otel.providers)
        stream: WaveStream[Any]
        with pytest.raises(BaseExceptionGroup) as caught:  # noqa: PT012  # raised from the block's exit
            async with wave.stream_map(_aborting(started), iter(range(5))) as stream:
                async for _ in stream:
                    pass
        assert [type(e) for e in caught.value.exceptions] == [Abort]
        assert not others()

    watched(main, eager=True)
    assert started == [0, 1]
    assert spans.open == {}
    otel.shutdown()


# ------------------------------------------------------------------------- context variables through policies
def _policies(providers: dict[str, Any]) -> dict[str, Any]:
    from shannon_otel import Degrade, Fallback, Timeout

    async def served(error: Exception) -> str:
        return "served"

    return {
        "Retry": Retry(attempts=2, **providers), "CircuitBreaker": CircuitBreaker("ctx", **providers),
        "Timeout": Timeout(5, **providers), "Fallback": Fallback(served, **providers),
        "Degrade": Degrade(default="d", **providers), "Hedge": Hedge(1.0, attempts=1, **providers),
        "Pipeline": Pipeline(Retry(attempts=2), Timeout(5), **providers),
    }


@pytest.mark.parametrize("form", ["call", "decorated"])
@pytest.mark.parametrize("observed", [False, True])
@pytest.mark.parametrize("kind", ["Retry", "CircuitBreaker", "Timeout", "Fallback", "Degrade", "Hedge", "Pipeline"])
def test_a_context_variable_set_inside_a_policy_is_the_callers_as_after_a_plain_await(
    kind: str, observed: bool, form: str,
) -> None:
    """``await fn()`` runs ``fn`` in the caller's task: a context variable it sets is the caller's after. Every
    policy but ``Hedge`` runs ``fn`` there too, with or without telemetry; a hedged attempt runs in a task of its
    own (documented), so its value stays there. The caller's value is seen inside in every case."""
    otel = InMemoryTelemetry()
    policy = _policies(otel.providers if observed else {"instrument": False})[kind]
    seen: list[str] = []

    async def fn() -> str:
        seen.append(USER.get())
        USER.set("inner")
        return "value"

    async def main() -> str:
        USER.set("caller")
        await (policy.call(fn) if form == "call" else policy(fn)())
        return USER.get()

    assert watched(main) == ("caller" if kind == "Hedge" else "inner")
    assert seen == ["caller"]
    otel.shutdown()
