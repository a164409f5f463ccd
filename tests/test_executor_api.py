"""The common case is easy: ``Wave.map``, pools passed as objects, one meaning per parameter name."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import itertools
import sys
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, cast

import pytest
from _open_spans import HookInterruptError, OpenSpans, RaisingOn
from opentelemetry.trace import StatusCode

from shannon_otel import (
    Hook,
    Outcome,
    ResourcePool,
    Retry,
    TaskResult,
    TaskSpec,
    Wave,
    WaveObserver,
    WaveReport,
    WaveStarted,
    record,
    task,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_map_runs_fn_on_every_item_in_input_order() -> None:
    wave: Wave[int] = Wave("map", max_concurrency=3, instrument=False)
    result = run_virtual(wave.map(double, range(10)))
    assert result.values() == [2 * x for x in range(10)]


def test_map_tasks_are_factories_so_a_policy_retries_them() -> None:
    calls: dict[int, int] = {}

    async def flaky(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if calls[x] == 1:
            raise ConnectionError("first try fails")
        return x

    wave: Wave[int] = Wave("retried", policy=Retry(attempts=2, initial=0.01, instrument=False), instrument=False)
    result = run_virtual(wave.map(flaky, [1, 2, 3]))
    assert result.values() == [1, 2, 3]
    assert calls == {1: 2, 2: 2, 3: 2}


def test_map_raise_errors_is_passed_on() -> None:
    async def fail(x: int) -> int:
        raise ValueError(x)

    wave: Wave[int] = Wave("errors", instrument=False)
    with pytest.raises(ExceptionGroup):
        run_virtual(wave.map(fail, [1], raise_errors=True))


@pytest.mark.parametrize("lazy", [False, True])
def test_stream_map_streams_fn_over_items_lazy_or_not(lazy: bool) -> None:
    wave: Wave[int] = Wave("smap", max_concurrency=2, instrument=False)
    items: Any = (x for x in range(7)) if lazy else list(range(7))

    async def main() -> list[int]:
        async with wave.stream_map(double, items) as results:
            return sorted([r.value async for r in results if r.value is not None])

    assert run_virtual(main()) == [2 * x for x in range(7)]


def test_a_pool_passed_as_an_object_limits_its_tasks_without_being_listed_on_the_wave() -> None:
    pool = ResourcePool("api", 2)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1

    wave: Wave[None] = Wave("pooled", max_concurrency=10, instrument=False)
    result = run_virtual(wave.run([task(work, pool=pool) for _ in range(8)]))
    assert result.report.counts[Outcome.SUCCESS] == 8
    assert peak == 2
    assert pool.in_use == 0


def test_a_pool_name_still_works_for_one_release_with_a_deprecation_warning() -> None:
    pool = ResourcePool("db", 1)

    async def one() -> int:
        return 1

    with pytest.warns(DeprecationWarning, match=r"pool='db'.*pass the ResourcePool itself") as warned:
        spec = task(one, pool="db")
    with pytest.warns(DeprecationWarning, match=r"pool='db'") as warned_spec:
        TaskSpec(one, pool="db")
    assert warned[0].filename == warned_spec[0].filename == __file__  # points at the caller's line
    wave: Wave[int] = Wave("named", pools=(pool,), instrument=False)
    assert run_virtual(wave.run([spec])).values() == [1]


def test_a_pool_of_the_wrong_type_is_refused_at_construction() -> None:
    async def one() -> int:
        return 1

    with pytest.raises(TypeError, match="pool must be a ResourcePool or None, got int"):
        task(one, pool=3)  # type: ignore[arg-type]


async def _fetch(url: str, *, retries: int = 0) -> str:
    return url


class _Client:
    async def get(self, url: str) -> str:
        return url

    async def ping(self) -> str:
        return "pong"


def _kw_only(*, url: str) -> Awaitable[str]:
    return _fetch(url)


@pytest.mark.parametrize(
    "work", [_fetch, _Client().get, _Client.ping, _kw_only], ids=["function", "method", "unbound", "kw-only"],
)
def test_task_given_a_function_that_needs_arguments_is_refused_naming_work(work: Any) -> None:
    # task(fetch) for task(lambda: fetch(url)) was accepted, and every run of it failed its task with Python's
    # bare "missing 1 required positional argument"
    with pytest.raises(TypeError, match=r"^work must be a zero-argument async callable .* cannot take"):
        task(work)


def test_task_takes_a_function_or_method_whose_parameters_all_have_defaults() -> None:
    async def defaults(url: str = "u", *args: str, retries: int = 1, **kw: str) -> str:
        return url

    specs = [task(defaults), task(_Client().ping), task(functools.partial(_fetch, "p")), task(lambda: _fetch("l"))]
    result = asyncio.run(Wave("w", instrument=False).run(specs))
    assert result.values() == ["u", "pong", "p", "l"]


def test_task_timeout_is_the_per_task_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    wave: Wave[None] = Wave("t", task_timeout=1, instrument=False)
    result = run_virtual(wave.run([slow]))
    assert result.results[0].outcome is Outcome.TIMEOUT


def test_timeout_is_a_deprecated_alias_of_task_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    with pytest.warns(DeprecationWarning, match=r"Wave\(timeout=\) is deprecated; use task_timeout=") as warned:
        wave: Wave[None] = Wave("old", timeout=1, instrument=False)
    assert warned[0].filename == __file__
    assert wave.task_timeout == 1
    assert run_virtual(wave.run([slow])).results[0].outcome is Outcome.TIMEOUT
    copy = dataclasses.replace(wave, name="copy")  # no second warning, no conflict
    assert copy.task_timeout == 1
    with pytest.raises(ValueError, match="task_timeout= only"), pytest.warns(DeprecationWarning, match="timeout"):
        Wave("both", timeout=1, task_timeout=2, instrument=False)


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-1, ValueError), (float("nan"), ValueError),
                                              (True, TypeError), ("1", TypeError)])
def test_a_bad_deprecated_timeout_is_refused_naming_timeout_the_parameter_given(value: object,
                                                                              error: type[Exception]) -> None:
    # Wave(timeout=0) was refused as "task_timeout must be in (0, inf), got 0": a parameter the caller never
    # passed (Retry(timeout=0) names timeout, the one given).
    with pytest.raises(error, match=r"^timeout must be"), pytest.warns(DeprecationWarning, match="timeout"):
        Wave("old", timeout=value, instrument=False)  # type: ignore[arg-type]


def test_report_counts_print_as_plain_strings_and_still_match_the_enum() -> None:
    async def one() -> int:
        return 1

    wave: Wave[int] = Wave("print", instrument=False)
    report = run_virtual(wave.run([one])).report
    assert repr(report.counts) == "{'success': 1, 'failure': 0, 'timeout': 0, 'cancellation': 0}"
    assert report.counts[Outcome.SUCCESS] == cast("Mapping[str, int]", report.counts)["success"] == 1
    assert f"{report.outcome}" == "success"


async def _work(i: int) -> int:
    await asyncio.sleep(0.001)
    return i


async def _consume(
    wave: Wave[int], tasks: Iterator[Callable[[], Awaitable[int]]],
) -> tuple[BaseException, list[tuple[int, Outcome]], WaveReport | None]:
    """Stream ``tasks``, whose input breaks: what the caller gets, the results read before it (sorted), the report."""
    stream = wave.stream(tasks)
    got: list[tuple[int, Outcome]] = []
    try:
        async with stream as results:
            async for r in results:
                got.append((r.index, r.outcome))  # noqa: PERF401  # a comprehension loses them as it raises
    except BaseException as exc:  # what the caller gets is the subject
        return exc, sorted(got), stream.report
    raise AssertionError("the broken input raised nothing")


def test_a_stream_left_before_it_ran_still_ends_the_wave_closes_its_coroutines_and_iterates_no_more() -> None:
    """``async with wave.stream(coros): pass`` cancelled the runner before it started: no report, no
    wave span, ten "coroutine was never awaited" warnings, and iterating afterwards hung forever."""
    otel = InMemoryTelemetry()

    async def main() -> tuple[WaveReport | None, list[TaskResult[int]]]:
        wave: Wave[int] = Wave("left", max_concurrency=2, **otel.providers)
        stream = wave.stream([_work(i) for i in range(10)])
        async with stream:
            pass
        after = [r async for r in stream]  # hung forever: nothing would ever be queued again
        return stream.report, after

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report, after = run_virtual(asyncio.wait_for(main(), 5))
        gc.collect()
    assert after == []
    assert report is not None
    assert report.counts[Outcome.CANCELLATION] == 10
    assert (otel.span("wave left").attributes or {})["shannon.task.outcome"] == "cancellation"
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


def test_a_finished_stream_iterated_again_after_its_block_stops_instead_of_hanging() -> None:
    async def main() -> tuple[list[int], list[TaskResult[int]]]:
        wave: Wave[int] = Wave("again", max_concurrency=2, instrument=False)
        stream = wave.stream_map(_work, range(3))
        async with stream as results:
            first = sorted([r.value async for r in results if r.value is not None])
        return first, [r async for r in stream]

    assert run_virtual(asyncio.wait_for(main(), 5)) == ([0, 1, 2], [])


def test_entering_a_stream_a_second_time_is_refused_instead_of_serving_stale_results_then_hanging() -> None:
    """The second run shared the first one's queue (its unconsumed results and end marker) and credits
    (held by those results): it yielded stale results, then waited forever for credits."""

    async def main() -> None:
        wave: Wave[int] = Wave("twice", max_concurrency=1, instrument=False)
        stream = wave.stream_map(_work, range(5), buffer=2)
        async with stream as results:
            async for _ in results:
                break
        with pytest.raises(RuntimeError, match="runs once"):
            async with stream:
                raise AssertionError("entered twice")

    run_virtual(asyncio.wait_for(main(), 5))


def test_a_wave_whose_lazy_input_raises_is_reported_as_a_failure_not_a_success() -> None:
    """The input iterator's error ends the wave (it propagates), yet the report and the wave span said
    ``success`` (no task had failed: the one running was cancelled)."""
    otel = InMemoryTelemetry()
    reports: list[WaveReport] = []

    class BrokenInputError(Exception):
        pass

    def tasks() -> Iterator[Callable[[], Awaitable[int]]]:
        yield functools.partial(_work, 1)
        raise BrokenInputError("the input broke")

    async def main() -> None:
        wave: Wave[int] = Wave("broken-input", max_concurrency=2, **otel.providers)
        stream = wave.stream(tasks())
        async def consume() -> None:
            async with stream as results:
                async for _ in results:
                    pass

        with pytest.raises(ExceptionGroup) as caught:  # the workers' TaskGroup carries the input's error
            await consume()
        assert caught.group_contains(BrokenInputError)
        assert stream.report is not None
        reports.append(stream.report)

    run_virtual(main())
    assert reports[0].outcome is Outcome.FAILURE
    span = otel.span("wave broken-input")
    assert (span.attributes or {})["shannon.task.outcome"] == "failure"
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("batch_size", [None, 2, 3])
def test_a_lazy_input_that_breaks_at_a_batch_start_raises_as_one_breaking_within_a_batch(
    batch_size: int | None,
) -> None:
    """A batched stream pulled the first item of each batch itself, not in a worker: an input breaking there
    (batch_size=3 after three tasks) raised its error bare, one breaking within a batch (batch_size=2) or an
    unbatched one raised the workers' ExceptionGroup; which one a caller got depended on where the input broke."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    class BrokenInputError(Exception):
        pass

    def tasks() -> Iterator[Callable[[], Awaitable[int]]]:
        for i in range(3):
            yield functools.partial(_work, i)
        raise BrokenInputError("the input broke")

    wave: Wave[int] = Wave("broken-batch", max_concurrency=2, batch_size=batch_size, **otel.providers)
    error, got, report = run_virtual(_consume(wave, tasks()))
    assert isinstance(error, ExceptionGroup) and error.subgroup(BrokenInputError) is not None
    assert [index for index, _ in got] == [0, 1, 2]
    assert report is not None and report.error is error and report.outcome is Outcome.FAILURE
    assert {o: n for o, n in report.counts.items() if n} == dict(Counter(outcome for _, outcome in got))
    assert otel.span("wave broken-batch").status.status_code is StatusCode.ERROR
    assert spans.open == {}
    otel.shutdown()


def test_a_lazy_input_breaking_right_after_a_full_batch_lets_that_batch_finish() -> None:
    """A worker that finds its batch full pulls the input's next item at once (so the input's end is known as the last
    result is delivered). An error the input raises then is raised as the next batch begins, as before: raised at once,
    it cancelled the task of that batch still running, which succeeded when the input was pulled a batch later."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    class BrokenInputError(Exception):
        pass

    async def work(i: int) -> int:
        await asyncio.sleep(1.0 if i == 1 else 0.0)  # task 0 ends first: its worker finds the batch of 2 full
        return i

    def tasks() -> Iterator[Callable[[], Awaitable[int]]]:
        for i in range(2):
            yield functools.partial(work, i)
        raise BrokenInputError("the input broke")

    wave: Wave[int] = Wave("full-batch", max_concurrency=2, batch_size=2, **otel.providers)
    error, got, report = run_virtual(_consume(wave, tasks()))
    assert isinstance(error, ExceptionGroup) and error.subgroup(BrokenInputError) is not None
    assert got == [(0, Outcome.SUCCESS), (1, Outcome.SUCCESS)]
    assert report is not None and report.error is error and report.counts[Outcome.SUCCESS] == 2
    assert spans.open == {}
    otel.shutdown()


def test_a_sync_sleep_given_to_a_rate_limited_wave_fails_its_tasks_with_an_error_naming_sleep() -> None:
    """The waiting tasks failed with Python's "object NoneType can't be used in 'await' expression"."""
    wave: Wave[int] = Wave("rated", rate_limit=10, sleep=lambda s: None, instrument=False)  # type: ignore[arg-type,return-value]
    result = run_virtual(wave.map(_work, range(3)))
    assert result.results[0].ok  # the first start needs no wait
    for r in result.results[1:]:
        assert isinstance(r.error, TypeError)
        assert str(r.error).startswith("sleep must be an async callable")


def test_a_sync_function_given_to_map_or_run_fails_its_tasks_with_an_error_naming_it() -> None:
    """Each task failed with Python's "object int can't be used in 'await' expression", naming nothing."""
    def double(x: int) -> int:
        return 2 * x

    wave: Wave[int] = Wave("sync-by-mistake", instrument=False)
    mapped = run_virtual(wave.map(double, [1, 10**5000]))  # type: ignore[arg-type,var-annotated]
    ran = run_virtual(wave.run([lambda: "done"]))  # type: ignore[arg-type,var-annotated]
    errors = [r.error for r in (*mapped.results, *ran.results)]
    assert all(type(e) is TypeError for e in errors)
    assert [str(e) for e in errors] == [
        "a wave task's callable (the fn of Wave.map, or a factory given to Wave.run) must be an async callable "
        f"(it must return an awaitable), it returned {what}"
        for what in ("int 2", "int an int of 16611 bits", "str 'done'")
    ]


class _RaisingObserver(RaisingOn, WaveObserver):
    pass


class RaisingWaveHook(Hook):
    def __init__(self, method: str) -> None:
        self.method = method

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        return _RaisingObserver(self.method)


@pytest.mark.parametrize("method", ["task_started", "task_finished", "task_skipped", "wave_finished"])
def test_a_wave_hook_raising_a_base_exception_propagates_it_after_every_span_is_ended(method: str) -> None:
    """The OTel hook's task span (task_started, task_finished) or wave span (task_skipped, wave_finished)
    was left open: the loop finishing the observers stopped at the first one that raised."""
    otel, spans = InMemoryTelemetry(), OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def boom() -> int:
        await asyncio.sleep(0.001)
        raise ValueError("boom")

    async def main() -> None:
        wave: Wave[int] = Wave("w", max_concurrency=1, fail_fast=True, hooks=(RaisingWaveHook(method),),
                               **otel.providers)
        with pytest.raises(BaseException) as caught:  # noqa: PT011 - alone or in the TaskGroup's group
            await wave.run([boom, functools.partial(_work, 1), functools.partial(_work, 2)])
        error = caught.value
        assert isinstance(error, HookInterruptError) or (
            isinstance(error, BaseExceptionGroup) and error.subgroup(HookInterruptError) is not None
        ), repr(error)

    run_virtual(main())
    assert spans.open == {}


def test_a_hook_raising_cancelled_error_from_task_finished_still_gets_every_task_its_result() -> None:
    """The result was never delivered: Wave.run failed with its own ``AssertionError`` ("every input
    gets a result") instead of returning the tasks' results."""

    class CancellingObserver(WaveObserver):
        def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
            raise asyncio.CancelledError

    class CancellingHook(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver:
            return CancellingObserver()

    wave: Wave[int] = Wave("w", max_concurrency=1, hooks=(CancellingHook(),), instrument=False)
    result = run_virtual(wave.map(_work, range(3)))
    assert [r.value for r in result.results][:1] == [0]  # the task the hook interrupted kept its value
    assert all(r.outcome in (Outcome.SUCCESS, Outcome.CANCELLATION) for r in result.results)


def test_a_huge_max_concurrency_on_a_lazy_stream_starts_workers_as_the_input_needs_them() -> None:
    """Every one of max_concurrency workers was created up front: 10**6 took ~24 s and ~GBs to stream
    three items, and 10**9 never finished (a sized input is capped at its length; a lazy one was not)."""
    seen: list[int] = []

    async def work(i: int) -> int:
        seen.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0.001)
        return i

    async def main() -> list[int]:
        wave: Wave[int] = Wave("huge", max_concurrency=10_000, instrument=False)
        async with wave.stream_map(work, (i for i in range(3))) as results:
            return sorted([r.value async for r in results if r.value is not None])

    assert run_virtual(main()) == [0, 1, 2]
    assert max(seen) <= 6  # the main task, the stream's runner, a worker per item and one spare


@pytest.mark.parametrize("name", [
    "shannon.task.outcome", "shannon.task.index", "shannon.task.queue_wait", "shannon.wave.batch", "error.type",
    "shannon.task.tokens.input", "shannon.task.tokens.output", "shannon.task.cost",
])
def test_record_refuses_a_name_the_library_itself_sets_on_the_task_span(name: str) -> None:
    """record("shannon.task.outcome", 1.0) overwrote the task span's outcome (a failed task read 1.0)
    and record("shannon.task.index", 99) its index; token and cost names bypassed the checks of
    record_tokens / record_cost (a negative token count reached the tokens histogram)."""
    errors: list[BaseException | None] = []

    async def task() -> None:
        record(name, 1.0)

    wave: Wave[None] = Wave("w", instrument=False)
    result = run_virtual(wave.run([task]))
    errors.append(result.results[0].error)
    assert isinstance(errors[0], ValueError)
    assert str(errors[0]).startswith(f"record(): name {name!r} is set by shannon-otel")


def test_a_batched_stream_of_a_lazy_input_pulls_items_as_it_runs_them_not_a_whole_batch_ahead() -> None:
    """Each batch was materialised as a tuple first: a stream holding O(concurrency) results pulled
    batch_size items up front (an endless input with batch_size=10**12 never started a task)."""
    pulled: list[int] = []

    def endless() -> Iterator[int]:
        for i in itertools.count():
            pulled.append(i)
            yield i

    async def main() -> list[int]:
        wave: Wave[int] = Wave("batched", max_concurrency=2, batch_size=100_000, instrument=False)
        got: list[int] = []
        async with wave.stream_map(_work, endless()) as results:
            async for r in results:
                assert r.value is not None
                got.append(r.value)
                if len(got) == 4:
                    break
        return got

    assert len(run_virtual(main())) == 4
    assert len(pulled) <= 10  # what ran, what the buffer (2 x concurrency) holds, one spare


def test_two_consumers_of_one_stream_share_its_results_and_both_stop() -> None:
    """The end marker reached one consumer only: the other waited for the next result forever."""

    async def main() -> list[int]:
        wave: Wave[int] = Wave("shared", max_concurrency=2, instrument=False)
        async with wave.stream_map(_work, range(10)) as results:

            async def consume() -> list[int]:
                return [r.value async for r in results if r.value is not None]

            first, second = await asyncio.wait_for(asyncio.gather(consume(), consume()), 5)
        return sorted(first + second)

    assert run_virtual(main()) == list(range(10))


def test_a_batch_size_beyond_sys_maxsize_is_refused_at_construction() -> None:
    """``Wave(batch_size=2**63)`` was accepted, then every run failed with itertools' "Stop argument for
    islice() must be None or an integer: 0 <= x <= sys.maxsize"."""
    with pytest.raises(ValueError, match=rf"^batch_size must be in \[1, {sys.maxsize}\], got {2**63}"):
        Wave("w", batch_size=2**63)
    assert Wave("w", batch_size=sys.maxsize).batch_size == sys.maxsize


def test_values_holds_none_for_a_cancelled_task_and_raises_for_a_failed_one_as_its_docstring_says() -> None:
    """`values()` said only "raises WaveError if any task failed": a task that cancelled itself came back as a
    silent ``None`` (cancellation is an outcome, not an error), which is why it is typed ``list[T | None]``;
    its docstring and docs/api.md now say so."""
    async def work(x: int) -> int:
        if x == 1:
            raise asyncio.CancelledError
        if x == 2:
            raise ValueError(x)
        return x

    wave: Wave[int] = Wave("values", instrument=False)
    assert run_virtual(wave.map(work, [0, 1, 3])).values() == [0, None, 3]
    with pytest.raises(ExceptionGroup):
        run_virtual(wave.map(work, [0, 2])).values()
    from shannon_otel import WaveResult

    assert "cancelled task" in (WaveResult.values.__doc__ or "")
