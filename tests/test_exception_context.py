"""The user's exception keeps the ``__context__`` it was raised with when the library hands it back in the caller's
task: a wave's or a stream's task's ``KeyboardInterrupt``, a hook's ``BaseException``, a saga compensation's error
and a hedged attempt's ``BaseException``, as the same code called without the library keeps it.

Each error here is raised while its own code handles a ``KeyError``; the caller awaits the library inside an
``except LookupError`` block. A bare ``raise`` (or ``task.result()``) where the library re-raised it set its
``__context__`` to the caller's ``LookupError`` (or to the saga step's error), cutting off the chain the user's
code made."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _caught import caught_in_except

from shannon_otel import (
    CallFinished,
    CallObserver,
    CallStarted,
    Hedge,
    Hook,
    Retry,
    Saga,
    SagaError,
    SagaFinished,
    SagaObserver,
    SagaStarted,
    Step,
    Wave,
    WaveObserver,
    WaveReport,
    WaveStarted,
)


class CustomBase(BaseException):
    """A BaseException of the user's own (not an Exception)."""


def _raise_while_handling(kind: type[BaseException]) -> None:
    try:
        raise KeyError("own")
    except KeyError:
        raise kind("wrapped")  # noqa: B904 (implicit chaining is what is checked)


def _wrapping(kind: type[BaseException]) -> Callable[[], Awaitable[None]]:
    async def fn() -> None:
        await asyncio.sleep(0)
        _raise_while_handling(kind)
    return fn


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_a_streamed_tasks_interrupt_keeps_its_own_context(kind: type[BaseException]) -> None:
    async def stream() -> None:
        async with Wave("w", instrument=False).stream([_wrapping(kind)]) as results:
            async for _ in results:
                pass

    error = asyncio.run(caught_in_except(stream))
    assert type(error) is kind
    assert isinstance(error.__context__, KeyError), error.__context__


@pytest.mark.parametrize("form", ["run", "map", "policy"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_a_wave_tasks_interrupt_keeps_its_own_context(kind: type[BaseException], form: str) -> None:
    """The wave's TaskGroup resumes the caller by cancelling it (a throw() into its coroutines): CPython chained the
    interrupt leaving them to the caller's handled exception, though the wave raised it with its own context."""
    async def task(_: object = None) -> None:
        await _wrapping(kind)()

    async def run() -> object:
        if form == "map":
            return await Wave("w", instrument=False).map(task, [1, 2])
        policy = Retry(attempts=1, instrument=False) if form == "policy" else None
        return await Wave("w", policy=policy, instrument=False).run([task, task])

    error = asyncio.run(caught_in_except(run))
    assert type(error) is kind
    assert isinstance(error.__context__, KeyError), error.__context__


@pytest.mark.parametrize("kind", [KeyboardInterrupt, CustomBase])
def test_a_hooks_base_exception_keeps_its_own_context(kind: type[BaseException]) -> None:
    class Raising(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver | None:
            _raise_while_handling(kind)
            return None

    async def task() -> int:
        return 1

    error = asyncio.run(caught_in_except(lambda: Wave("w", hooks=[Raising()], instrument=False).run([task])))
    assert type(error) is kind
    assert isinstance(error.__context__, KeyError), error.__context__


@pytest.mark.parametrize("kind", [ValueError, KeyboardInterrupt, CustomBase])
def test_a_compensations_error_keeps_its_own_context_not_the_steps_error(kind: type[BaseException]) -> None:
    async def reserve() -> int:
        return 1

    async def release(value: int) -> None:
        await _wrapping(kind)()

    async def charge() -> None:
        raise ConnectionError("the step's error")

    saga = Saga("order", instrument=False)
    error = asyncio.run(caught_in_except(lambda: saga.run(Step("reserve", reserve, release), Step("charge", charge))))
    if kind is ValueError:
        assert isinstance(error, SagaError)
        (error,) = error.compensation_errors.values()
    assert type(error) is kind
    assert isinstance(error.__context__, KeyError), error.__context__


def test_a_hedged_attempts_base_exception_keeps_its_own_context() -> None:
    error = asyncio.run(caught_in_except(lambda: Hedge(10.0, attempts=1, instrument=False).call(
        _wrapping(CustomBase))))
    assert type(error) is CustomBase
    assert isinstance(error.__context__, KeyError), error.__context__


@pytest.mark.parametrize("where", ["wave_finished", "call_finished", "saga_finished"])
def test_an_observers_base_exception_at_the_end_keeps_its_own_context(where: str) -> None:
    """An observer's BaseException at the end of a wave, a call or a saga is held back until every other observer
    has finished, then raised in the caller: it kept the caller's exception as its context, not its own."""
    class Ending(WaveObserver, CallObserver, SagaObserver):
        def wave_finished(self, report: WaveReport) -> None:
            _raise_while_handling(KeyboardInterrupt)

        def call_finished(self, event: CallFinished) -> None:
            _raise_while_handling(KeyboardInterrupt)

        def saga_finished(self, event: SagaFinished) -> None:
            _raise_while_handling(KeyboardInterrupt)

    class Raising(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver | None:
            return Ending()

        def call_started(self, event: CallStarted) -> CallObserver | None:
            return Ending()

        def saga_started(self, event: SagaStarted) -> SagaObserver | None:
            return Ending()

    async def task() -> int:
        return 1

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "wave_finished": lambda: Wave("w", hooks=[Raising()], instrument=False).run([task]),
        "call_finished": lambda: Retry(hooks=[Raising()], instrument=False).call(task),
        "saga_finished": lambda: Saga("s", hooks=[Raising()], instrument=False).run(Step("a", task)),
    }
    error = asyncio.run(caught_in_except(calls[where]))
    assert type(error) is KeyboardInterrupt
    assert isinstance(error.__context__, KeyError), error.__context__


# On 3.11/3.12 a cancel arriving in the first three steps after the task raised is lost inside asyncio's TaskGroup
# (not the wave's doing: the same happens without the library's extra step); from the fourth on it is the wave's.
@pytest.mark.parametrize("steps", range(0 if sys.version_info >= (3, 13) else 3, 8))
def test_a_cancel_arriving_while_a_wave_raises_a_tasks_interrupt_is_not_lost(steps: int) -> None:
    # Bug: the wave takes one more loop step before it raises a task's KeyboardInterrupt (so that the interrupt keeps
    # its own __context__), and swallowed a cancel of the caller arriving then: cancelling() stayed 1 with no cancel
    # ever coming. It is asked again, so the caller's next await gets it, as when the interrupt was raised at once.
    async def caller() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None

        def cancel_in(k: int) -> None:
            if k == 0:
                me.cancel()
            else:
                loop.call_soon(cancel_in, k - 1)

        async def interrupted() -> None:
            cancel_in(steps)
            raise KeyboardInterrupt("stop")

        with pytest.raises(KeyboardInterrupt):
            await Wave("w", max_concurrency=2, instrument=False).run([interrupted])
        pending = me.cancelling()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            return pending, True
        return pending, False

    pending, cancelled_later = asyncio.run(caller())
    assert cancelled_later or pending == 0, f"cancelling() {pending} and no cancel came"
