"""An injected ``sleep=`` that misbehaves: raises, returns early, returns a value, never returns, is sync.

Bug 1: a ``Retry`` whose sleep raised between attempts raised the sleep's error (as documented) with no
``__context__``: the operation's error, what the attempts gave, was lost without a trace. A ``Hedge`` whose sleep
raised after an attempt had failed did the same with that attempt's error. Now the sleep's error is raised with the
attempt's error (a hedge: the errors of the attempts that failed before it) as its ``__context__``, also when the
caller awaits the policy inside an ``except`` block.
Bug 2: a ``SharedRateLimit`` given a sync ``sleep`` raised Python's "object NoneType can't be used in 'await'
expression" at the first start that had to wait, naming nothing; an async generator function was accepted as its
sleep. Now: a TypeError naming ``sleep`` at the wait (as a Wave's), the async generator refused where it is given.
What already held is pinned too: the attempts stay bounded and counted, a cancelled wait ends the call at once,
every span ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _virtual_time import watched

import shannon_otel as so
from shannon_otel.testing import InMemoryTelemetry


class _SleepBrokeError(OSError):
    pass


async def _raising(seconds: float) -> None:
    raise _SleepBrokeError("sleep broke")


def _failing_operation(runs: list[int]) -> Callable[[], Awaitable[int]]:
    async def operation() -> int:
        runs.append(1)
        raise ValueError(f"attempt {len(runs)}")
    return operation


async def _sleep_error(call: Callable[[], Awaitable[Any]], in_except: bool) -> BaseException:
    """The sleep's error ``call()`` raised, awaited inside the caller's own ``except`` block if ``in_except``."""
    try:
        if in_except:
            try:
                raise KeyError("the caller's own")
            except KeyError:
                await call()
        else:
            await call()
    except _SleepBrokeError as exc:
        return exc
    raise AssertionError("the sleep's error was not raised")


@pytest.mark.parametrize("in_except", [False, True], ids=["plain", "awaited-in-except"])
@pytest.mark.parametrize("instrumented", [False, True], ids=["unwatched", "watched"])
def test_a_retry_whose_sleep_raises_keeps_the_attempts_error_as_its_context(
    instrumented: bool, in_except: bool,
) -> None:
    tel = InMemoryTelemetry()
    retry = so.Retry(attempts=3, sleep=_raising, **(tel.providers if instrumented else {"instrument": False}))
    runs: list[int] = []

    error = watched(lambda: _sleep_error(lambda: retry.call(_failing_operation(runs)), in_except))
    assert runs == [1]  # the sleep failed before the second attempt
    assert isinstance(error.__context__, ValueError) and str(error.__context__) == "attempt 1"
    assert all(s.end_time is not None for s in tel.spans())


def test_a_retry_with_a_sync_sleep_names_it_and_keeps_the_attempts_error() -> None:
    retry = so.Retry(attempts=3, sleep=lambda seconds: None, instrument=False)  # type: ignore[arg-type,return-value]
    runs: list[int] = []
    with pytest.raises(TypeError, match="sleep must be an async callable") as caught:
        watched(lambda: retry.call(_failing_operation(runs)))
    assert runs == [1]
    assert str(caught.value.__context__) == "attempt 1"


@pytest.mark.parametrize("in_except", [False, True], ids=["plain", "awaited-in-except"])
def test_a_hedge_whose_sleep_raises_after_an_attempt_failed_keeps_that_error(in_except: bool) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:  # the wait after the first failure raises
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise _SleepBrokeError("sleep broke")
        await asyncio.sleep(seconds)

    tel = InMemoryTelemetry()
    hedge = so.Hedge(attempts=3, delay=1.0, sleep=sleep, **tel.providers)
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("attempt 1")
        await asyncio.sleep(5)
        return 2

    error = watched(lambda: _sleep_error(lambda: hedge.call(operation), in_except))
    assert len(runs) == 2
    assert isinstance(error.__context__, ValueError) and str(error.__context__) == "attempt 1"
    assert all(s.end_time is not None for s in tel.spans())


@dataclass
class _BusyError(Exception):
    """Compared by value (a dataclass's ``__eq__``), as exceptions with fields often are."""

    code: int


def test_a_hedge_whose_sleep_raises_an_error_equal_to_an_attempts_keeps_that_attempts_error() -> None:
    # The sleep's error was looked up among the attempts' errors with ``in`` (==), meant to tell the very same object:
    # one merely equal to an attempt's (a 503 from the sleep's own rate check, a 503 from the attempt) was taken for
    # it, and the attempt's error was lost from the chain (``__context__`` None).
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:  # the wait after the first failure raises
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise _BusyError(503)
        await asyncio.sleep(seconds)

    tel = InMemoryTelemetry()
    hedge = so.Hedge(attempts=3, delay=1.0, sleep=sleep, **tel.providers)
    attempt_errors: list[_BusyError] = []

    async def operation() -> int:
        if not attempt_errors:
            attempt_errors.append(_BusyError(503))
            raise attempt_errors[0]
        await asyncio.sleep(5)
        return 2

    async def main() -> BaseException:
        try:
            await hedge.call(operation)
        except _BusyError as exc:
            return exc
        raise AssertionError("the sleep's error was not raised")

    error = watched(main)
    assert error is not attempt_errors[0]  # the sleep's
    assert error.__context__ is attempt_errors[0]
    assert all(s.end_time is not None for s in tel.spans())


async def _early(seconds: float) -> None:
    return None


async def _valued(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "not None"


@pytest.mark.parametrize("sleep", [_early, _valued], ids=["returns-early", "returns-a-value"])
@pytest.mark.parametrize("kind", ["retry", "hedge"])
def test_a_sleep_returning_early_or_a_value_never_adds_attempts(kind: str, sleep: Any) -> None:
    tel = InMemoryTelemetry()
    policy: Any = (so.Retry(attempts=4, initial=1.0, sleep=sleep, **tel.providers) if kind == "retry"
                   else so.Hedge(attempts=4, delay=1.0, sleep=sleep, **tel.providers))
    runs: list[int] = []
    with pytest.raises(ValueError, match="attempt 4"):
        watched(lambda: policy.call(_failing_operation(runs)))
    assert len(runs) == 4
    assert tel.spans() and all(s.end_time is not None for s in tel.spans())


@pytest.mark.parametrize("kind", ["retry", "hedge", "wave"])
def test_a_sleep_that_never_returns_ends_at_once_when_the_caller_cancels(kind: str) -> None:
    async def forever(seconds: float) -> None:
        await asyncio.Event().wait()

    tel = InMemoryTelemetry()
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        if kind == "hedge":
            await asyncio.Event().wait()
        raise ValueError("x")

    def call() -> Awaitable[Any]:
        if kind == "retry":
            return so.Retry(attempts=3, sleep=forever, **tel.providers).call(operation)
        if kind == "hedge":
            return so.Hedge(attempts=3, delay=1.0, sleep=forever, **tel.providers).call(operation)
        wave = so.Wave("w", rate_limit=1.0, sleep=forever, **tel.providers)
        return wave.run([operation, operation])

    async def main() -> float:
        loop = asyncio.get_running_loop()
        pending = asyncio.ensure_future(call())
        await asyncio.sleep(3)
        assert not pending.done()
        cancelled_at = loop.time()
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        return loop.time() - cancelled_at

    assert watched(main) == 0.0
    assert len(runs) == 1
    assert tel.spans() and all(s.end_time is not None for s in tel.spans())


# ----------------------------------------------------------------- SharedRateLimit (a real redis-server)


def test_a_shared_rate_limit_refuses_an_async_generator_as_its_sleep() -> None:
    pytest.importorskip("redis")
    from shannon_otel.redis import RedisState, SharedRateLimit

    async def sleep(seconds: float) -> AsyncIterator[None]:
        yield None

    with pytest.raises(TypeError, match="sleep must be an async callable taking seconds, got the async generator"):
        SharedRateLimit(RedisState("redis://127.0.0.1:1/0"), "api", rate=1, sleep=sleep)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("redis")
    from _redis_server import running_server

    with running_server(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


def test_a_shared_rate_limit_with_a_sync_sleep_names_it(server: Any, tmp_path: Path) -> None:
    from shannon_otel.redis import RedisState, SharedRateLimit

    async def main() -> None:
        async with RedisState(server.url, prefix=f"q{uuid.uuid4().hex[:10]}") as shared:
            limit = SharedRateLimit(shared, "api", rate=0.01, sleep=lambda seconds: None)  # type: ignore[arg-type,return-value]
            await limit.acquire()  # the burst's one: no wait
            with pytest.raises(TypeError, match=r"sleep must be an async callable .*returned NoneType None"):
                await limit.acquire()

    asyncio.run(main())
