"""A cancellation request counted on the task before a policy call began is not that call's.

Retry, Fallback and Degrade refuse to act on an error raised while the task is being cancelled (the error
may stand in for the ``CancelledError``). They asked ``Task.cancelling() > 0``; but a count can outlive
what made it: before Python 3.13 a ``TaskGroup`` whose child failed leaves its request on the task that
awaited it (CPython gh-116720), and code that caught a ``CancelledError`` and went on leaves its own. Every
later retry, fallback and degradation in that task was then silently refused: the user got the error in
place of the retried or fallback result. They now count only the requests made since the call began, as
``asyncio.timeout`` does; a cancellation requested during the call, or requested just before it and
delivered inside it, still stops them. The same count made an attempt a ``Timeout`` policy cut off look
cancelled (its recorded outcome), and made a stream's block raise ``CancelledError`` when left early.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shannon_otel import Degrade, Fallback, FallbackError, Pipeline, Retry, Timeout, Wave
from shannon_otel.testing import InMemoryTelemetry, set_testing


class Flaky:
    """Fails its first call with ConnectionError, then returns "ok"."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls == 1:
            raise ConnectionError("flaky")
        return "ok"


async def down() -> str:
    await asyncio.sleep(0)
    raise ConnectionError("down")


async def served(error: BaseException) -> str:
    return "fallback"


def _calls(otel: InMemoryTelemetry) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call per policy that succeeds only by acting on the error (plain, and observed by telemetry)."""
    return {
        "retry": lambda: Retry(attempts=2, instrument=False).call(Flaky()),
        "retry observed": lambda: Retry(attempts=2, name="r", **otel.providers).call(Flaky()),
        "fallback": lambda: Fallback(served, instrument=False).call(down),
        "fallback observed": lambda: Fallback(served, name="f", **otel.providers).call(down),
        "degrade": lambda: _degraded(Degrade(default="static", on=ConnectionError, instrument=False)),
        "degrade observed": lambda: _degraded(
            Degrade(default="static", on=ConnectionError, name="d", **otel.providers),
        ),
    }


async def _degraded(policy: Degrade) -> str:
    return (await policy.call(down)).value


EXPECTED = {"retry": "ok", "fallback": "fallback", "degrade": "static"}


async def _leave_a_count_by_swallowing() -> None:
    """Cancel the running task and swallow the CancelledError without uncancel(): cancelling() stays 1."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        pass
    assert task.cancelling() == 1


async def _leave_a_count_like_a_failed_task_group() -> None:
    """A TaskGroup whose child failed, its error handled: on 3.11 and 3.12 cancelling() stays 1 after it."""

    async def boom() -> None:
        raise ValueError("child")

    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(waits())
            await started.wait()
            group.create_task(boom())
    except* ValueError:
        pass


@pytest.mark.parametrize("leave", [_leave_a_count_by_swallowing, _leave_a_count_like_a_failed_task_group],
                         ids=["swallowed-cancel", "failed-task-group"])
def test_a_cancel_count_left_before_the_call_does_not_stop_retry_fallback_or_degrade(
    leave: Callable[[], Awaitable[None]],
) -> None:
    otel = InMemoryTelemetry()

    async def main() -> dict[str, Any]:
        await leave()
        got: dict[str, Any] = {}
        for name, make in _calls(otel).items():
            try:
                got[name] = await make()
            except ConnectionError as exc:
                got[name] = exc
        return got

    with set_testing(True):
        got = asyncio.run(main())
    assert got == {name: EXPECTED[name.split()[0]] for name in _calls(otel)}
    otel.shutdown()


async def _gives_up_a_task_it_cancelled() -> str:
    """A fallback (or cheaper) that cancelled its own lookup raises an error chained to that ``CancelledError``:
    nobody cancelled the caller."""
    lookup = asyncio.ensure_future(asyncio.Event().wait())
    await asyncio.sleep(0)
    lookup.cancel()
    try:
        await lookup
    except asyncio.CancelledError:
        raise LookupError("the cache lookup was given up") from None  # its __context__ is the CancelledError
    return "served"


async def _raises_when_cancelled(started: asyncio.Event) -> str:
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        raise LookupError("raised in place of the cancellation")


def _stand_in_policies(otel: InMemoryTelemetry, what: Callable[[], Awaitable[str]]) -> dict[str, Any]:
    async def fallback(error: BaseException) -> str:
        return await what()

    return {
        "fallback": Fallback(fallback, name="f", **otel.providers),
        "degrade": Degrade(cheaper=what, default="static", on=ConnectionError, name="d", **otel.providers),
    }


@pytest.mark.parametrize("leave", [_leave_a_count_by_swallowing, _leave_a_count_like_a_failed_task_group],
                         ids=["swallowed-cancel", "failed-task-group"])
@pytest.mark.parametrize("policy", ["fallback", "degrade"])
def test_a_fallback_or_cheaper_failing_after_a_count_left_before_the_call_is_no_cancellation(
    leave: Callable[[], Awaitable[None]], policy: str,
) -> None:
    """Bug: a fallback's (a Degrade's cheaper's) error raised while a ``CancelledError`` was handled was taken for a
    cancellation's stand-in, raised as it is, whenever the task counted any cancellation request: with one left
    before the call (a failed TaskGroup on 3.11 / 3.12, a swallowed cancel), a fallback that awaited a task it had
    cancelled itself raised its own error in place of the ``FallbackError`` of both (the primary error lost, the
    caller's ``except FallbackError`` missed), and a failed cheaper's declared default was not served. Now only a
    request made since the fallback or cheaper began makes its error a stand-in; one made then still does."""
    otel = InMemoryTelemetry()

    async def one(what: Callable[[], Awaitable[str]]) -> Any:
        await leave()
        try:
            return await _stand_in_policies(otel, what)[policy].call(down)
        except BaseException as exc:  # what the caller got, whatever it is
            return exc

    async def main() -> tuple[Any, Any]:
        given_up = await one(_gives_up_a_task_it_cancelled)
        started = asyncio.Event()
        call = asyncio.ensure_future(one(lambda: _raises_when_cancelled(started)))
        await started.wait()
        call.cancel()
        return given_up, await call

    with set_testing(True):
        given_up, cancelled = asyncio.run(main())
    if policy == "fallback":
        assert isinstance(given_up, FallbackError), repr(given_up)
        assert isinstance(given_up.primary, ConnectionError) and isinstance(given_up.fallback, LookupError)
    else:
        assert given_up.value == "static" and isinstance(given_up.error, ConnectionError), repr(given_up)
    assert type(cancelled) is LookupError  # raised in place of a cancellation made while it ran: as it is
    otel.shutdown()


def test_a_cancel_requested_just_before_the_call_and_delivered_inside_it_still_stops_them() -> None:
    """``cancel()`` of the running task before the call: delivered at the operation's first await, whose
    ``finally`` raises in its place. The error is the cancellation's stand-in: never retried, never served."""
    otel = InMemoryTelemetry()

    async def raises_in_place() -> str:
        try:
            await asyncio.sleep(0)
        finally:
            raise ConnectionError("raised while cancelled")  # in place of the CancelledError

    async def one(name: str) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        policy: Any = {
            "retry": Retry(attempts=3, name="r", **otel.providers),
            "fallback": Fallback(served, name="f", **otel.providers),
            "degrade": Degrade(default="static", on=ConnectionError, name="d", **otel.providers),
        }[name]
        try:
            return await policy.call(raises_in_place)
        except ConnectionError as exc:
            return exc

    with set_testing(True):
        for name in ("retry", "fallback", "degrade"):
            got = asyncio.run(one(name))
            assert isinstance(got, ConnectionError), (name, got)
    otel.shutdown()


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13's TaskGroup takes its request back (gh-116720)")
def test_the_failed_task_group_really_leaves_a_count_here() -> None:
    """The premise of the failed-task-group case on this Python: its count is left on the task."""

    async def main() -> int:
        await _leave_a_count_like_a_failed_task_group()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(main()) == 1


@pytest.mark.parametrize("leave", [_leave_a_count_by_swallowing, _leave_a_count_like_a_failed_task_group],
                         ids=["swallowed-cancel", "failed-task-group"])
def test_an_attempt_cut_off_by_a_timeout_after_a_count_left_before_it_is_recorded_as_a_timeout(
    leave: Callable[[], Awaitable[None]],
) -> None:
    """The attempt a ``Timeout`` policy cut off is recorded as outcome ``timeout``, not ``cancellation``
    (one request more than the expired scopes made it look cancelled by something else)."""
    otel = InMemoryTelemetry()

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        await leave()
        with pytest.raises(TimeoutError):
            await Pipeline(Timeout(0.01), Retry(attempts=1), name="p", **otel.providers).call(hangs)

    asyncio.run(main())
    attempt = otel.span("attempt 1")
    assert attempt.attributes is not None
    assert attempt.attributes["shannon.attempt.outcome"] == "timeout"
    assert attempt.attributes["error.type"] == "TimeoutError"
    otel.shutdown()


def test_an_attempt_cut_off_by_a_timeout_and_cancelled_too_is_still_a_cancellation() -> None:
    """The base does not hide a request made during the call: a timeout and a cancel() at once stay a
    cancellation, with a count left before the call too."""
    otel = InMemoryTelemetry()

    async def cancelled_as_it_times_out() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # a second request, while the timeout's is delivered
            await asyncio.sleep(0)

    async def main() -> None:
        await _leave_a_count_by_swallowing()
        with pytest.raises(asyncio.CancelledError):
            await Pipeline(Timeout(0.01), Retry(attempts=1), name="p", **otel.providers).call(
                cancelled_as_it_times_out,
            )

    asyncio.run(main())
    attempt = otel.span("attempt 1")
    assert attempt.attributes is not None
    assert attempt.attributes["shannon.attempt.outcome"] == "cancellation"
    otel.shutdown()


@pytest.mark.parametrize("leave", [_leave_a_count_by_swallowing, _leave_a_count_like_a_failed_task_group],
                         ids=["swallowed-cancel", "failed-task-group"])
def test_leaving_a_stream_early_after_a_count_left_before_it_raises_nothing(
    leave: Callable[[], Awaitable[None]],
) -> None:
    """Breaking out of a stream's block cancels the rest of the wave; with a count left on the task before
    the block, its exit raised ``CancelledError`` into the caller, who had not been cancelled."""

    async def work(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> list[int]:
        await leave()
        got: list[int] = []
        async with Wave[int]("s", max_concurrency=2).stream_map(work, range(10)) as results:
            async for result in results:
                got.append(result.index)
                if len(got) == 2:
                    break
        return got

    assert len(asyncio.run(main())) == 2


def test_a_stream_whose_caller_is_cancelled_after_a_count_left_before_it_still_raises_the_cancellation() -> None:
    started = asyncio.Event()

    async def work(i: int) -> int:
        started.set()
        await asyncio.Event().wait()
        return i

    async def consume() -> None:
        await _leave_a_count_by_swallowing()
        async with Wave[int]("s").stream_map(work, range(3)) as results:
            async for _ in results:
                pass

    async def main() -> None:
        consumer = asyncio.create_task(consume())
        await started.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

    asyncio.run(main())


def test_reading_the_base_needs_no_running_loop() -> None:
    """A policy's plain success path never touched asyncio: driven by hand (no loop), it still returns."""

    async def ok() -> str:
        return "ok"

    for policy in (Retry(attempts=2, instrument=False), Fallback(served, instrument=False)):
        coro = policy.call(ok)
        with pytest.raises(StopIteration) as stop:
            coro.send(None)
        assert stop.value.value == "ok"


class GivesUpItsOwnHelperFirst:
    """First call: cancels and awaits a helper task of its own, then raises ``ConnectionError`` from within that
    ``CancelledError`` (its ``__context__``): nobody cancelled the caller. Later calls return "ok"."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls > 1:
            return "ok"
        helper = asyncio.ensure_future(asyncio.Event().wait())
        await asyncio.sleep(0)
        helper.cancel()
        try:
            await helper
        except asyncio.CancelledError:
            raise ConnectionError("gave up the helper") from None
        return "unreachable"


class RaisesInPlaceOfItsCancellationFirst:
    """First call: waits until cancelled, and raises ``ConnectionError`` in place of the ``CancelledError``."""

    def __init__(self, started: asyncio.Event) -> None:
        self.calls, self.started = 0, started

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls > 1:
            return "ok"
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            raise ConnectionError("raised in place of the cancellation")


def _acting_policies(otel: InMemoryTelemetry) -> dict[str, Any]:
    return {
        "retry": Retry(attempts=2, instrument=False),
        "retry observed": Retry(attempts=2, name="r", **otel.providers),
        "retry in a pipeline": Pipeline(Retry(attempts=2), name="p", **otel.providers),
        "fallback": Fallback(served, instrument=False),
        "fallback observed": Fallback(served, name="f", **otel.providers),
        "degrade": Degrade(default="static", on=ConnectionError, instrument=False),
        "degrade observed": Degrade(default="static", on=ConnectionError, name="d", **otel.providers),
    }


ACTED = {"retry": "ok", "fallback": "fallback", "degrade": "static"}


@pytest.mark.parametrize("leave", [_leave_a_count_by_swallowing, _leave_a_count_like_a_failed_task_group],
                         ids=["swallowed-cancel", "failed-task-group"])
@pytest.mark.parametrize("policy", ["retry", "retry observed", "retry in a pipeline", "fallback", "fallback observed",
                                    "degrade", "degrade observed"])
def test_an_operation_error_chained_to_its_own_cancelled_helper_after_a_count_left_before_the_call_is_acted_on(
    leave: Callable[[], Awaitable[None]], policy: str,
) -> None:
    """Bug: Retry (deciding to retry), Fallback and Degrade (before serving) read an operation's error raised while a
    ``CancelledError`` was handled as the caller's cancellation's stand-in whenever the task counted any cancellation
    request. With one left before the call (a failed TaskGroup on 3.11 / 3.12, a swallowed cancel), an operation that
    cancelled and awaited a helper task of its own and then raised ``ConnectionError`` was not retried, not served:
    the caller got the error. Now only a request made since the call began counts; one made during it still does."""
    otel = InMemoryTelemetry()

    async def one(make: Callable[[], Any], cancel: bool) -> Any:
        started = asyncio.Event()
        operation = RaisesInPlaceOfItsCancellationFirst(started) if cancel else GivesUpItsOwnHelperFirst()

        async def in_a_task_holding_a_count() -> Any:
            await leave()
            return await make().call(operation)

        call = asyncio.ensure_future(in_a_task_holding_a_count())
        if cancel:
            await started.wait()
            call.cancel()
        try:
            got = await call
        except BaseException as exc:  # what the caller got, whatever it is
            return exc, operation.calls
        return (got.value if policy.startswith("degrade") else got), operation.calls

    async def main() -> tuple[Any, Any]:
        make = lambda: _acting_policies(otel)[policy]  # noqa: E731
        return await one(make, cancel=False), await one(make, cancel=True)

    with set_testing(True):
        (own, own_calls), (cancelled, cancelled_calls) = asyncio.run(main())
    assert own == ACTED[policy.split()[0]], repr(own)
    assert own_calls == (2 if policy.startswith("retry") else 1)
    assert type(cancelled) is ConnectionError and cancelled_calls == 1, repr(cancelled)  # as it is: never acted on
    otel.shutdown()
