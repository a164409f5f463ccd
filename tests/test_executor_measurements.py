"""Task measurements (record, record_tokens, record_cost) and tasks ending in a BaseException.

Pins issue 11: one non-finite measurement used to lose the whole wave (ExceptionGroup(OverflowError),
results lost, spans left open) or poison the cost/token metrics for the life of the process; a task
raising a BaseException that is not an Exception left its span open and the wave marked success.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from shannon_otel import Outcome, Wave, record, record_cost, record_tokens
from shannon_otel import _telemetry as tel
from shannon_otel._metrics_bridge import HistogramAggregate
from shannon_otel._stats import LogHistogram
from shannon_otel.executor._report import ReportBuilder
from shannon_otel.testing import InMemoryTelemetry

INF, NAN = float("inf"), float("nan")

BAD_CALLS: list[tuple[Callable[[], None], type[Exception], str]] = [
    (lambda: record_cost(INF), ValueError, r"record_cost\(\): amount must be finite and >= 0, got inf"),
    (lambda: record_cost(NAN), ValueError, r"amount must be finite"),
    (lambda: record_cost(-0.5), ValueError, r"amount must be >= 0"),
    (lambda: record_cost("1"), TypeError, r"amount must be a finite number"),  # type: ignore[arg-type]
    (lambda: record("x", INF), ValueError, r"record\(\): value must be finite, got inf"),
    (lambda: record("x", -INF), ValueError, r"value must be finite"),
    (lambda: record("x", NAN), ValueError, r"value must be finite"),
    (lambda: record("x", None), TypeError, r"value must be a finite number"),  # type: ignore[arg-type]
    (lambda: record("", 1.0), ValueError, r"name must be a non-empty string"),  # a str: the type is right
    (lambda: record_tokens(input=INF), TypeError, r"record_tokens\(\): input must be an int"),  # type: ignore[arg-type]
    (lambda: record_tokens(input=NAN), TypeError, r"input must be an int"),  # type: ignore[arg-type]
    (lambda: record_tokens(output=1.5), TypeError, r"output must be an int"),  # type: ignore[arg-type]
    (lambda: record_tokens(output=True), TypeError, r"output must be an int"),
    (lambda: record_tokens(input=-1), ValueError, r"input must be >= 0"),
    # an int beyond any float raised a bare OverflowError naming nothing
    (lambda: record("x", 10**400), ValueError, r"record\(\): value must be finite"),
    (lambda: record_cost(10**400), ValueError, r"record_cost\(\): amount must be finite"),
    (lambda: record_tokens(output=10**400), ValueError, r"record_tokens\(\): output must be finite"),
    # record() under the names record_cost/record_tokens own ran the cost counter backwards
    (lambda: record(tel.TASK_COST_ATTR, -5.0), ValueError,
     r"record\(\): name 'shannon.task.cost' is set by shannon-otel itself: use record_cost\(\)"),
    (lambda: record(tel.TASK_INPUT_TOKENS, -5), ValueError, r"itself: use record_tokens\(input="),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_a_bad_measurement_is_a_clear_error_in_the_task_and_costs_nothing_else(
    call: Callable[[], None], error: type[Exception], message: str,
) -> None:
    otel = InMemoryTelemetry()

    async def bad() -> str:
        record_cost(1.0)
        record_tokens(input=10, output=2)
        call()  # raises: the task fails with a clear error, nothing it recorded before is lost
        return "unreachable"

    async def good() -> str:
        record_cost(1.0)
        record_tokens(input=10, output=2)
        return "ok"

    wave: Wave[str] = Wave("measured", **otel.providers)
    result = asyncio.run(wave.run([good, bad, good]))
    assert [r.value for r in result.results] == ["ok", None, "ok"]
    failed = result.results[1]
    assert failed.outcome is Outcome.FAILURE
    assert isinstance(failed.error, error)
    assert __import__("re").search(message, str(failed.error)), str(failed.error)
    # telemetry stays finite and complete: every span ended, sums true
    spans = otel.spans()
    assert len(spans) == 4 and all(s.end_time is not None for s in spans)
    assert otel.span("wave measured").status.is_ok is False  # one task failed
    assert otel.point(tel.TASK_COST.name).value == 3.0
    assert otel.point(tel.TASK_TOKENS.name, shannon_token_type="input").sum == 30
    assert result.report.measurements[tel.TASK_COST_ATTR].total == 3.0
    otel.shutdown()


def test_a_sum_that_would_overflow_is_refused_not_turned_into_inf() -> None:
    async def work() -> None:
        record("big", 1e308)
        record("big", 1e308)

    otel = InMemoryTelemetry()
    wave: Wave[None] = Wave("overflow", **otel.providers)
    result = asyncio.run(wave.run([work]))
    assert isinstance(result.results[0].error, ValueError)
    assert "overflow" in str(result.results[0].error)
    assert math.isfinite(result.report.measurements["big"].total)
    otel.shutdown()


def test_aggregates_never_raise_and_never_take_non_finite_values() -> None:
    # Defence in depth: the report and the histograms are fed by the executor, which must never fail
    # a wave because of what a task measured (before: OverflowError from LogHistogram.add(inf)).
    hist = LogHistogram()
    for v in (1.0, INF, -INF, NAN, 2.0):
        hist.add(v)
    assert (hist.count, hist.total, hist.rejected, hist.max) == (2, 3.0, 3, 2.0)

    builder = ReportBuilder()
    builder.add(Outcome.SUCCESS, 0.1, 0.0, None, {"x": INF, "y": NAN, "z": 1.0})
    report = builder.build("w", 1.0, 1, cancelled=False)
    assert report.measurements["z"].total == 1.0
    assert report.measurements["x"].count == 0

    aggregate = HistogramAggregate(tel.TASK_TOKENS)
    aggregate.record(("w", "input"), NAN)
    aggregate.record(("w", "input"), INF)
    aggregate.record(("w", "input"), 5.0)
    metric = aggregate.to_metric(0, 1)
    assert metric is not None
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert (point.count, point.sum, aggregate.rejected) == (1, 5.0, 2)


def test_finite_amounts_of_several_tasks_whose_sum_overflows_never_make_a_metric_inf() -> None:
    """Each task's own total is refused when it would overflow (above), but the totals of several tasks were
    added without a check: two tasks recording a cost of 1e308 made the wave's cost counter inf, which the SDK
    drops at every collection ("non-finite value inf ... ignoring measurement"), so the wave's
    ``shannon.task.cost`` series was gone for the life of the process, later tasks' costs too; their token
    counts made the token histogram's sum inf for good, and the report's totals inf. Such an amount is now
    left out (counted as rejected) as a non-finite one is."""
    otel = InMemoryTelemetry()

    async def huge() -> None:
        record_cost(1e308)
        record_tokens(input=10**308)
        record("big", 1e308)

    async def cheap() -> None:
        record_cost(1.0)

    wave: Wave[None] = Wave("overflow", **otel.providers)
    result = asyncio.run(wave.run([huge, huge]))
    asyncio.run(wave.run([cheap]))
    assert otel.point(tel.TASK_COST.name).value == 1e308
    tokens = otel.point(tel.TASK_TOKENS.name, shannon_token_type="input")
    assert (tokens.sum, tokens.count) == (1e308, 1)
    assert (result.report.measurements["big"].total, result.report.measurements["big"].count) == (1e308, 1)
    assert result.report.measurements[tel.TASK_COST_ATTR].total == 1e308
    otel.shutdown()

    hist = LogHistogram()
    for v in (-1e308, -1e308, 1.0):
        hist.add(v)
    assert (hist.count, hist.total, hist.rejected) == (2, -1e308 + 1.0, 1)
    aggregate = HistogramAggregate(tel.TASK_TOKENS)
    for v in (1e308, 1e308, 5.0):
        aggregate.record(("w", "input"), v)
    metric = aggregate.to_metric(0, 1)
    assert metric is not None
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert (point.count, point.sum, aggregate.rejected) == (2, 1e308 + 5.0, 1)


# ---------------------------------------------------------------- BaseException
class Abort(BaseException):
    """A BaseException that is not an Exception (like KeyboardInterrupt, SystemExit)."""


def _wave_with_base_exception(raised: BaseException, otel: InMemoryTelemetry) -> Callable[[], Any]:
    wave: Wave[str] = Wave("interrupted", max_concurrency=2, **otel.providers)
    tasks = _tasks_with_base_exception(raised)
    return lambda: wave.run(tasks)


def _tasks_with_base_exception(raised: BaseException) -> list[Callable[[], Any]]:
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    async def quick() -> str:
        return "ok"

    async def boom() -> str:
        await started.wait()
        raise raised

    return [slow, boom, quick, quick]


def _assert_failed_and_closed(otel: InMemoryTelemetry, error_type: str) -> None:
    spans = otel.spans()
    assert spans and all(s.end_time is not None for s in spans)
    wave_span = otel.span("wave interrupted")
    assert wave_span.status.is_ok is False
    assert wave_span.attributes is not None
    assert wave_span.attributes[tel.TASK_OUTCOME] == "failure"
    failed = [s for s in spans if s.name.startswith("task") and s.attributes
              and s.attributes.get(tel.ERROR_TYPE) == error_type]
    assert len(failed) == 1
    # one exception, one event: the task span's (the wave span names the error it raised, and records no copy)
    events = [(s.name, e.attributes["exception.type"]) for s in spans for e in s.events  # type: ignore[index]
              if e.name == "exception"]
    assert len(events) == 1 and events[0][0] == failed[0].name
    outcomes = {s.attributes[tel.TASK_OUTCOME] for s in spans if s.name.startswith("task")}  # type: ignore[index]
    assert outcomes == {"failure", "cancellation"}  # the sibling was cancelled, nothing "success" by mistake


def test_a_custom_base_exception_propagates_after_spans_end_and_the_wave_fails() -> None:
    otel = InMemoryTelemetry()
    run = _wave_with_base_exception(Abort("stop"), otel)

    async def main() -> None:
        await run()

    with pytest.raises(BaseExceptionGroup) as caught:
        asyncio.run(main())
    assert caught.group_contains(Abort)  # never swallowed
    _assert_failed_and_closed(otel, "test_executor_measurements.Abort")
    otel.shutdown()


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), SystemExit(3)])
def test_keyboard_interrupt_and_system_exit_propagate_as_themselves(raised: BaseException) -> None:
    otel = InMemoryTelemetry()
    run = _wave_with_base_exception(raised, otel)

    async def main() -> None:
        await run()

    with pytest.raises(type(raised)):
        asyncio.run(main())
    _assert_failed_and_closed(otel, type(raised).__qualname__)
    otel.shutdown()


@pytest.mark.parametrize("entry", ["run", "stream"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_a_tasks_keyboard_interrupt_reaches_the_callers_handler_with_the_loop_still_going(
    kind: type[BaseException], entry: str,
) -> None:
    # A wave task runs in a worker Task (a stream's wave in a runner Task too), and asyncio re-raises a Task's
    # KeyboardInterrupt / SystemExit out of the event loop itself: the caller's `except KeyboardInterrupt` got it,
    # but the loop stopped under its handler (asyncio.run raised it though the caller handled it), where
    # `await fn()` without the wave reached the handler alone. The very object now reaches the caller only.
    otel = InMemoryTelemetry()
    raised = kind("user")
    handled: list[str] = []

    async def main() -> BaseException | None:
        wave: Wave[str] = Wave("interrupted", max_concurrency=2, **otel.providers)
        try:
            if entry == "run":
                await wave.run(_tasks_with_base_exception(raised))
            else:
                async with wave.stream(_tasks_with_base_exception(raised)) as results:
                    async for _ in results:
                        pass
        except kind as exc:
            await asyncio.sleep(0)  # the handler goes on, on a running loop
            handled.append("done")
            return exc
        return None

    try:
        seen = asyncio.run(main())
    except (KeyboardInterrupt, SystemExit) as exc:  # failing this test, not stopping the session
        pytest.fail(f"the task's {exc!r} stopped the event loop instead of reaching the caller alone")
    assert seen is raised and handled == ["done"]
    assert seen.__context__ is None  # nothing of ours chained to it
    _assert_failed_and_closed(otel, kind.__qualname__)
    otel.shutdown()


@pytest.mark.parametrize("bridged", [True, False])
def test_non_finite_measurements_that_bypass_record_never_poison_the_metrics(bridged: bool) -> None:
    # A bug (or a future record path) writing NaN/inf straight into a task's measurements: the
    # executor and the OTel hook must still finish the wave and keep every metric finite.
    from shannon_otel.executor._task import CURRENT_TASK

    otel = InMemoryTelemetry(bridged=bridged)

    async def poisoned() -> str:
        slot = CURRENT_TASK.get()
        assert slot is not None
        slot.measurements = {tel.TASK_COST_ATTR: NAN, tel.TASK_INPUT_TOKENS: INF, "x": -INF}
        return "kept"

    async def fine() -> str:
        record_cost(2.0)
        record_tokens(input=5)
        return "ok"

    wave: Wave[str] = Wave("poisoned", **otel.providers)
    result = asyncio.run(wave.run([poisoned, fine]))
    assert [r.value for r in result.results] == ["kept", "ok"]
    assert all(s.end_time is not None for s in otel.spans())
    assert otel.point(tel.TASK_COST.name).value == 2.0
    assert otel.point(tel.TASK_TOKENS.name, shannon_token_type="input").sum == 5
    assert result.report.measurements["x"].count == 0
    otel.shutdown()


def test_threads_of_one_task_recording_at_once_lose_no_amount() -> None:
    # A task gathering asyncio.to_thread calls that each record (a sync client's token counts): two threads
    # read a sum, each added its amount and wrote it back; one amount was lost (30,199 of 40,000 tokens under
    # an 8-thread stress). Here both threads read the sum at once unless recording takes turns.
    import threading

    from shannon_otel.executor._task import CURRENT_TASK

    meet = threading.Barrier(2, timeout=1.0)  # with the fix the other thread waits outside: the meeting fails

    class Meeting(dict[str, float]):
        def get(self, key: str, default: Any = None) -> Any:
            value = super().get(key, default)
            try:
                meet.wait()  # without the fix: both threads have read the sum, neither has written it
            except threading.BrokenBarrierError:
                pass
            return value

    async def work() -> float:
        slot = CURRENT_TASK.get()
        assert slot is not None
        slot.measurements = Meeting()
        await asyncio.gather(*(asyncio.to_thread(record, "calls", 1) for _ in range(2)))
        return 0.0

    result = asyncio.run(Wave("threads", instrument=False).run([work]))
    assert result.results[0].measurements == {"calls": 2.0}


def test_recording_from_a_thread_that_does_not_see_its_task_says_how_to_carry_the_task() -> None:
    # A threading.Thread a task starts does not carry the task's context: record_cost() there raised "must be called
    # from inside a task run by a Wave", which the caller (inside one) read as a contradiction. The error now says
    # why and how (asyncio.to_thread); the task's own result and measurements are untouched by it.
    import threading

    otel = InMemoryTelemetry()
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            record_cost(1.0)
        except RuntimeError as exc:
            errors.append(exc)

    async def work() -> str:
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        await asyncio.to_thread(record_cost, 0.5)  # the way that carries the task: recorded
        return "done"

    result = asyncio.run(Wave("threads", **otel.providers).run([work]))
    assert result.values() == ["done"]
    assert result.results[0].measurements == {tel.TASK_COST_ATTR: 0.5}
    (error,) = errors
    assert str(error).startswith("record_cost() must be called from inside a task run by a Wave (called in a thread")
    assert "asyncio.to_thread" in str(error)
    (span,) = [s for s in otel.spans() if s.name.startswith("task ")]
    assert span.attributes is not None and span.attributes[tel.TASK_COST_ATTR] == 0.5
    with pytest.raises(RuntimeError, match=r"inside a task run by a Wave$"):  # the main thread: no thread hint
        record_cost(1.0)
    otel.shutdown()
