"""What a wave is given as tasks, beyond coroutines and factories: an ``asyncio.Task`` (or any future).

A future runs by itself, whether or not the wave awaits it. When the wave stops before awaiting one
(fail-fast, the caller cancelled), reporting it as cancelled must be true: a pending one is cancelled,
not left running unawaited (its error never retrieved); one that already ended keeps its real outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Outcome, ResourcePool, Retry, Wave, task
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def _after(seconds: float, value: int, *, fail: bool = False) -> int:
    await asyncio.sleep(seconds)
    if fail:
        raise ValueError(value)
    return value


def test_futures_a_fail_fast_wave_never_awaited_are_cancelled_not_left_running() -> None:
    """They were reported ``cancellation`` yet ran to the end in the background (one failed: "Task
    exception was never retrieved")."""
    finished: list[int] = []

    async def tracked(seconds: float, value: int, *, fail: bool = False) -> int:
        result = await _after(seconds, value, fail=fail)
        finished.append(value)
        return result

    async def main() -> tuple[list[Outcome], list[bool]]:
        futures = [
            asyncio.ensure_future(_after(1, 0, fail=True)),
            asyncio.ensure_future(tracked(2, 1)),
            asyncio.ensure_future(tracked(3, 2, fail=True)),
        ]
        wave: Wave[int] = Wave("ff-futures", max_concurrency=1, fail_fast=True, instrument=False)
        result = await wave.run(futures)  # type: ignore[arg-type,var-annotated]  # untyped, accepted at run time
        await asyncio.sleep(10)  # virtual: time enough for any of them left running to end
        return [r.outcome for r in result.results], [f.cancelled() for f in futures]

    outcomes, cancelled = run_virtual(main())
    assert outcomes == [Outcome.FAILURE, Outcome.CANCELLATION, Outcome.CANCELLATION]
    assert cancelled == [False, True, True]
    assert finished == []


def test_futures_that_ended_before_a_fail_fast_wave_reached_them_keep_their_real_outcome() -> None:
    """They were reported ``cancellation`` (no value, no error) though one had returned and one had failed."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def main() -> Any:
        futures = [
            asyncio.ensure_future(_after(5, 0, fail=True)),
            asyncio.ensure_future(_after(1, 1)),
            asyncio.ensure_future(_after(1, 2, fail=True)),
            asyncio.ensure_future(_after(9, 3)),
        ]
        wave: Wave[int] = Wave("ended-futures", max_concurrency=1, fail_fast=True, **otel.providers)
        return await wave.run(futures)  # type: ignore[arg-type]  # untyped, accepted at run time

    result = run_virtual(main())
    assert [(r.outcome, r.value, type(r.error)) for r in result.results] == [
        (Outcome.FAILURE, None, ValueError), (Outcome.SUCCESS, 1, type(None)), (Outcome.FAILURE, None, ValueError),
        (Outcome.CANCELLATION, None, type(None)),
    ]
    assert result.report.counts[Outcome.FAILURE] == 2 and result.report.errors_by_type == {"ValueError": 2}
    assert spans.open == {}
    otel.shutdown()


def test_a_future_given_to_a_wave_with_a_policy_is_refused_by_name_and_cancelled() -> None:
    """A policy needs a factory to call again; the future it cannot run was left running unawaited."""

    async def main() -> tuple[Any, bool]:
        future = asyncio.ensure_future(_after(1, 0))
        wave: Wave[int] = Wave("policy-future", policy=Retry(instrument=False), instrument=False)
        result = await wave.run([future])  # type: ignore[arg-type,var-annotated]  # untyped, accepted at run time
        await asyncio.sleep(0)
        return result.results[0], future.cancelled()

    first, cancelled = run_virtual(main())
    assert first.outcome is Outcome.FAILURE and isinstance(first.error, TypeError)
    assert "futures" in str(first.error)
    assert cancelled


def test_a_future_or_awaitable_a_wave_runs_can_be_named_and_pooled_with_task() -> None:
    """``wave.run([future])`` runs an ``asyncio.Task``, yet ``task(future, name=...)`` refused it ("work must be a
    coroutine or a zero-argument callable"): a task the wave runs could not be named or given a pool."""
    otel = InMemoryTelemetry()

    class Ready:
        def __await__(self) -> Any:
            return _after(1, 2).__await__()

    async def main() -> Any:
        pool = ResourcePool("api", 1)
        future: Any = asyncio.ensure_future(_after(1, 1))  # untyped, accepted at run time (as by wave.run)
        ready: Any = Ready()
        wave: Wave[int] = Wave("named-futures", **otel.providers)
        return await wave.run([task(future, name="fetch", pool=pool), task(ready, name="ready")])

    result = run_virtual(main())
    assert [(r.outcome, r.value, r.name) for r in result.results] == [
        (Outcome.SUCCESS, 1, "fetch"), (Outcome.SUCCESS, 2, "ready")]
    assert sorted(s.name for s in otel.spans() if s.name.startswith("task ")) == ["task fetch", "task ready"]
    with pytest.raises(TypeError, match=r"^work must be a coroutine, a zero-argument async callable or another"):
        task(42)  # type: ignore[arg-type]


def test_an_item_that_is_neither_a_task_nor_awaitable_fails_saying_what_a_task_may_be() -> None:
    """It said "a wave task's callable ... must be an async callable ..., it returned int 42": nothing had
    been called, the item itself was 42."""

    async def main() -> Any:
        return await Wave[Any]("not-tasks", instrument=False).run([42, None])  # type: ignore[list-item]

    result = run_virtual(main())
    for r, shown in zip(result.results, ("int 42", "NoneType None"), strict=True):
        assert r.outcome is Outcome.FAILURE and isinstance(r.error, TypeError)
        message = str(r.error)
        assert message.startswith("a wave task must be a coroutine, a zero-argument async callable"), message
        assert message.endswith(shown) and "returned" not in message, message


def test_an_async_iterable_given_as_input_is_refused_saying_it_is_async_and_what_to_do() -> None:
    """It said "items must be an iterable, got <async_generator ...>", which an async generator's author
    reads as wrong: it is an (async) iterable."""

    async def numbers() -> AsyncGenerator[int, None]:
        yield 1

    async def double(x: int) -> int:
        return 2 * x

    wave: Wave[int] = Wave("async-input", instrument=False)
    calls: list[Callable[[], object]] = [
        lambda: wave.stream_map(double, numbers()),  # type: ignore[arg-type]  # what the annotation refuses
        lambda: wave.stream(numbers()),  # type: ignore[call-overload]
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"^(items|tasks) must be an iterable, got an async iterable .*collect it"):
            call()

    async def main() -> None:
        source = numbers()
        with pytest.raises(TypeError, match=r"^items must be an iterable, got an async iterable"):
            await wave.map(double, source)  # type: ignore[arg-type]
        await source.aclose()

    run_virtual(main())


def test_a_future_that_ended_with_a_base_exception_before_the_wave_reached_it_propagates_it() -> None:
    """As a started task's ``BaseException`` does, once the wave has ended: it was kept in the result as a failure,
    and ``result.values()`` then failed on a bare AssertionError (an ExceptionGroup cannot hold it)."""

    class StopEverythingError(BaseException):
        pass

    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def main() -> None:
        ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        ended.set_exception(StopEverythingError("ended by itself"))
        wave: Wave[int] = Wave("ended-base", max_concurrency=1, fail_fast=True, **otel.providers)
        await wave.run([_after(1, 0, fail=True), ended])  # type: ignore[arg-type]  # untyped, accepted at run time

    with pytest.raises(StopEverythingError, match="ended by itself"):
        run_virtual(main())
    assert spans.open == {}
    span = otel.span("wave ended-base")
    assert (span.attributes or {})["shannon.wave.tasks.failure"] == 2
    otel.shutdown()


@pytest.mark.parametrize("batch_size", [None, 2], ids=["pulled-by-workers", "lazy-batches-pulled-by-the-wave"])
def test_a_cancelled_error_a_streamed_input_raises_fails_the_wave_instead_of_ending_it_quietly(
    batch_size: int | None,
) -> None:
    """A generator reading a cancelled future's ``result()`` raises CancelledError midway. Raised as itself in a
    worker, asyncio took it for that worker's cancellation (which a TaskGroup ignores): the stream just ended,
    the rest of the input lost, and the report said ``success`` (or, pulled by the wave between batches,
    ``cancellation`` though nothing was cancelled). It comes out as a RuntimeError, as PEP 479 does a
    generator's StopIteration, with the CancelledError as its cause."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def double(x: int) -> int:
        return 2 * x

    async def main() -> tuple[list[int], BaseException, Any]:
        gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        gone.cancel()

        def numbers() -> Iterator[int]:
            yield 1
            yield 2
            yield gone.result()  # raises CancelledError: the input's own error
            yield 4

        wave: Wave[int] = Wave("cancelled-input", max_concurrency=1, batch_size=batch_size, **otel.providers)
        values: list[int] = []
        stream = wave.stream_map(double, numbers())

        async def consume() -> None:
            async with stream as results:
                async for r in results:  # one by one: the values before the error are kept
                    values.append(r.value)  # type: ignore[arg-type]  # noqa: PERF401

        # a group (the workers pulled it) or the error itself (the wave did, between batches)
        with pytest.raises(BaseException) as caught:  # noqa: PT011
            await consume()
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0  # nothing cancelled the consumer
        return values, caught.value, stream.report

    values, error, report = run_virtual(main())
    if isinstance(error, BaseExceptionGroup):
        assert len(error.exceptions) == 1
        error = error.exceptions[0]
    assert isinstance(error, RuntimeError) and "input raised CancelledError" in str(error), repr(error)
    assert isinstance(error.__cause__, asyncio.CancelledError)
    assert sorted(values) == [2, 4]
    assert report is not None and report.outcome is Outcome.FAILURE
    assert report.counts[Outcome.SUCCESS] == 2 and report.total == 2
    assert spans.open == {}
    span = otel.span("wave cancelled-input")
    assert span.status.status_code.name == "ERROR"
    otel.shutdown()


def test_a_string_or_unprintable_object_given_as_input_is_refused_briefly_naming_the_parameter() -> None:
    """A file's text passed as ``items`` by mistake made a TypeError as long as the file (10 MB), not saying why
    a string is refused; a non-iterable object whose ``repr()`` raises raised that error in place of the
    TypeError naming the parameter."""

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("repr broke")

    async def double(x: int) -> int:
        return 2 * x

    wave: Wave[int] = Wave("text-input", instrument=False)

    async def main() -> None:
        with pytest.raises(TypeError, match=r"^items must be an iterable, got str 'xxx.*one character at") as caught:
            await wave.map(double, "x" * 1_000_000)  # type: ignore[arg-type]
        assert len(str(caught.value)) < 300
        with pytest.raises(TypeError, match=r"^tasks must be an iterable, got \(unprintable\)$"):
            await wave.run(Unprintable())  # type: ignore[call-overload]

    run_virtual(main())
    with pytest.raises(TypeError, match=r"^tasks must be an iterable, got bytes b'yyy.*one character") as caught:
        wave.stream(b"y" * 1_000_000)  # type: ignore[arg-type]
    assert len(str(caught.value)) < 300


async def _entered(stream: Any) -> None:
    async with stream:
        pass


@pytest.mark.parametrize("call", ["map", "stream_map"])
def test_an_async_generator_function_given_as_fn_is_refused_at_the_call_naming_it(call: str) -> None:
    """Bug: it was taken, and every task then failed at run time ("must be an async callable ... returned
    async_generator"), one error per item, each retried by a policy. Now the call refuses it, as a policy's
    decorator does, and no task starts."""
    calls = 0

    async def pages(item: int) -> AsyncGenerator[int, None]:
        nonlocal calls
        calls += 1
        yield item

    fn: Any = pages  # what the type checker refuses, as the call now does

    async def main() -> None:
        wave = Wave("w", max_concurrency=2, policy=Retry(attempts=3, initial=0))
        with pytest.raises(TypeError, match=r"^fn must be an async callable taking one item, got the async gen"):
            await (wave.map(fn, [1, 2]) if call == "map" else _entered(wave.stream_map(fn, [1, 2])))

    asyncio.run(main())
    assert calls == 0
