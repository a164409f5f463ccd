"""The wave executor: results, outcomes, limits, cancellation, and the telemetry it emits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import AttributeValue

from shannon_otel import (
    Hook,
    Outcome,
    Progress,
    ResourcePool,
    Retry,
    TaskFinished,
    Wave,
    WaveError,
    WaveObserver,
    WaveReport,
    WaveStarted,
    record,
    record_cost,
    record_tokens,
    task,
)
from shannon_otel import _telemetry as tel
from shannon_otel.testing import FakeClock, InMemoryTelemetry, run_virtual

T = TypeVar("T")


@pytest.fixture
def otel() -> InMemoryTelemetry:
    return InMemoryTelemetry()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def attrs(span: ReadableSpan) -> Mapping[str, AttributeValue]:
    """A finished span's attributes (typed optional by the SDK, always set on a finished span)."""
    assert span.attributes is not None
    return span.attributes


def sleeper(delay: float, value: Any = None, error: BaseException | None = None) -> Callable[[], Awaitable[Any]]:
    async def work() -> Any:
        await asyncio.sleep(delay)
        if error is not None:
            raise error
        return value

    return work


class Peak:
    """Counts how many tasks run at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def work(self, delay: float = 0.001) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(delay)
            finally:
                self.now -= 1

        return body


# ---------------------------------------------------------------- results and outcomes
def test_results_come_back_in_input_order_whatever_the_completion_order(otel: InMemoryTelemetry) -> None:
    wave: Wave[int] = Wave("order", max_concurrency=5, **otel.providers)
    delays = [0.005, 0.001, 0.004, 0.0, 0.002, 0.003]
    result = run(wave.run([sleeper(d, value=i) for i, d in enumerate(delays)]))
    assert result.values() == list(range(6))
    assert [r.index for r in result.results] == list(range(6))
    assert result.report.counts[Outcome.SUCCESS] == 6


def test_coroutines_factories_and_task_specs_are_all_accepted() -> None:
    async def five() -> int:
        return 5

    wave: Wave[int] = Wave("inputs", instrument=False)
    result = run(wave.run([five(), five, task(five, name="named")]))
    assert result.values() == [5, 5, 5]
    assert [r.name for r in result.results] == ["inputs", "inputs", "named"]


def test_failures_and_timeouts_are_distinct_outcomes_with_error_spans(otel: InMemoryTelemetry) -> None:
    wave: Wave[int] = Wave("mixed", task_timeout=0.05, **otel.providers)
    result = run(wave.run([sleeper(0, 1), sleeper(0, error=KeyError("k")), sleeper(1.0)]))
    assert [r.outcome for r in result.results] == [Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT]
    assert isinstance(result.results[1].error, KeyError)
    assert isinstance(result.results[2].error, TimeoutError)
    report = result.report
    assert report.outcome is Outcome.FAILURE
    assert report.errors_by_type == {"KeyError": 1, "TimeoutError": 1}

    by_index = {attrs(s)[tel.TASK_INDEX]: s for s in otel.spans("task mixed")}
    assert by_index[0].status.status_code is StatusCode.UNSET
    assert by_index[1].status.status_code is StatusCode.ERROR
    assert attrs(by_index[1])[tel.ERROR_TYPE] == "KeyError"
    assert by_index[1].events[0].name == "exception"
    assert attrs(by_index[2])[tel.TASK_OUTCOME] == "timeout"
    assert by_index[2].status.description == "timeout"
    assert otel.span("wave mixed").status.status_code is StatusCode.ERROR


def test_one_failed_task_of_one_is_said_in_the_singular() -> None:
    # A wave of one task that failed said "1 of 1 tasks failed", in its WaveError and its span's ERROR description.
    otel = InMemoryTelemetry()
    timed: Wave[int] = Wave("timed", task_timeout=1, **otel.providers)
    run_virtual(timed.run([sleeper(5, 1)]))
    assert otel.span("wave timed").status.description == "1 of 1 task timed out"
    wave: Wave[int] = Wave("one", **otel.providers)
    with pytest.raises(WaveError, match=r"^wave 'one': 1 of 1 task failed \(ValueError x1\)$"):
        run(wave.run([sleeper(0, error=ValueError("a"))], raise_errors=True))
    assert otel.span("wave one").status.description == "1 of 1 task failed"


def test_raise_errors_gives_an_exception_group_that_keeps_every_result() -> None:
    wave: Wave[int] = Wave("raising", instrument=False)
    tasks = [sleeper(0, 1), sleeper(0, error=ValueError("a")), sleeper(0, error=ValueError("b")), sleeper(0, 4)]
    with pytest.raises(WaveError) as info:
        run(wave.run(tasks, raise_errors=True))
    group = info.value
    assert isinstance(group, ExceptionGroup)
    assert [str(e) for e in group.exceptions] == ["a", "b"]
    assert "2 of 4 tasks failed (ValueError x2)" in str(group)  # a count, not an error message "2"
    assert [r.value for r in group.result.results] == [1, None, None, 4]
    assert "in task 1 (raising) of wave 'raising'" in group.exceptions[0].__notes__


def test_fail_fast_cancels_running_tasks_and_starts_no_more(otel: InMemoryTelemetry) -> None:
    started: list[int] = []

    def work(i: int) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            started.append(i)
            await asyncio.sleep(0.001 if i == 1 else 10)
            if i == 1:
                raise RuntimeError("boom")

        return body

    wave: Wave[None] = Wave("ff", max_concurrency=3, fail_fast=True, **otel.providers)

    async def main() -> Any:
        before = asyncio.all_tasks()
        result = await wave.run([work(i) for i in range(10)])
        assert asyncio.all_tasks() == before
        return result

    result = run(main())
    assert started == [0, 1, 2]
    outcomes = [r.outcome for r in result.results]
    assert outcomes[:3] == [Outcome.CANCELLATION, Outcome.FAILURE, Outcome.CANCELLATION]
    assert outcomes[3:] == [Outcome.CANCELLATION] * 7
    assert result.report.counts[Outcome.CANCELLATION] == 9
    # Only started tasks get spans; cancellation is not an error.
    spans = otel.spans("task ff")
    assert len(spans) == 3
    cancelled = [s for s in spans if attrs(s)[tel.TASK_OUTCOME] == "cancellation"]
    assert len(cancelled) == 2
    assert all(s.status.status_code is StatusCode.UNSET for s in cancelled)


def test_collect_all_runs_every_task_despite_failures() -> None:
    wave: Wave[int] = Wave("collect", max_concurrency=2, instrument=False)
    result = run(wave.run([sleeper(0, error=ValueError())] + [sleeper(0, i) for i in range(5)]))
    assert result.report.counts[Outcome.SUCCESS] == 5
    assert result.report.counts[Outcome.FAILURE] == 1


def test_cancelling_the_wave_cancels_every_task_leaves_no_orphans_and_reraises(otel: InMemoryTelemetry) -> None:
    finished: list[WaveObserver] = []

    class Recorder(Hook):
        report: WaveReport

        def wave_started(self, event: WaveStarted) -> WaveObserver | None:
            outer = self

            class Obs(WaveObserver):
                def wave_finished(self, report: WaveReport) -> None:
                    outer.report = report
                    finished.append(self)

            return Obs()

    hook = Recorder()
    wave: Wave[None] = Wave("cancel-me", max_concurrency=4, hooks=(hook,), **otel.providers)

    async def main() -> None:
        before = asyncio.all_tasks()
        runner = asyncio.create_task(wave.run([sleeper(10) for _ in range(10)]))  # noqa: RUF006 - awaited below
        await asyncio.sleep(0.01)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert asyncio.all_tasks() <= before

    run(main())
    assert len(finished) == 1
    report = hook.report
    assert report.outcome is Outcome.CANCELLATION
    assert report.counts[Outcome.CANCELLATION] == 10
    assert report.failed == 0
    task_spans = otel.spans("task cancel-me")
    assert len(task_spans) == 4
    assert {attrs(s)[tel.TASK_OUTCOME] for s in task_spans} == {"cancellation"}
    wave_span = otel.span("wave cancel-me")
    assert attrs(wave_span)[tel.TASK_OUTCOME] == "cancellation"
    assert wave_span.status.status_code is StatusCode.UNSET


def test_a_task_that_cancels_itself_is_its_own_outcome_and_the_wave_goes_on() -> None:
    async def self_cancel() -> None:
        raise asyncio.CancelledError

    wave: Wave[Any] = Wave("self", max_concurrency=1, instrument=False)
    result = run(wave.run([self_cancel, sleeper(0, 2)]))
    assert [r.outcome for r in result.results] == [Outcome.CANCELLATION, Outcome.SUCCESS]


# ---------------------------------------------------------------- limits
def test_concurrency_limit_is_honoured() -> None:
    peak = Peak()
    wave: Wave[None] = Wave("limited", max_concurrency=3, instrument=False)
    run(wave.run([peak.work() for _ in range(20)]))
    assert peak.peak == 3


def test_resource_pools_limit_tasks_across_concurrent_waves() -> None:
    api, db = ResourcePool("api", 5), ResourcePool("db", 2)
    api_peak, db_peak = Peak(), Peak()
    w1: Wave[Any] = Wave("w1", max_concurrency=20, pools=(api, db), instrument=False)
    w2: Wave[Any] = Wave("w2", max_concurrency=20, pools=(api, db), instrument=False)

    def mixed() -> list[Any]:
        return [task(api_peak.work(), pool=api) for _ in range(15)] + [
            task(db_peak.work(), pool=db) for _ in range(6)
        ]

    async def main() -> None:
        await asyncio.gather(w1.run(mixed()), w2.run(mixed()))

    run(main())
    assert api_peak.peak == 5
    assert db_peak.peak == 2
    assert api.in_use == 0
    assert db.in_use == 0


def test_rate_limit_spaces_task_starts_with_the_injected_clock() -> None:
    clock = FakeClock()
    wave: Wave[Any] = Wave(
        "rate", max_concurrency=1, rate_limit=10.0, burst=2, clock=clock, sleep=clock.sleep, instrument=False,
    )
    starts: list[float] = []

    def work() -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            starts.append(clock())

        return body

    run(wave.run([work() for _ in range(5)]))
    # Two at once (the burst), then one every 0.1 s.
    assert [round(s - starts[0], 6) for s in starts] == [0.0, 0.0, 0.1, 0.2, 0.3]


def test_batches_run_one_after_another_and_are_recorded(otel: InMemoryTelemetry) -> None:
    peak = Peak()
    wave: Wave[None] = Wave("batched", max_concurrency=10, batch_size=3, **otel.providers)
    result = run(wave.run([peak.work() for _ in range(7)]))
    assert peak.peak == 3
    assert result.report.counts[Outcome.SUCCESS] == 7
    batches = sorted((attrs(s)[tel.TASK_INDEX], attrs(s)[tel.WAVE_BATCH]) for s in otel.spans("task batched"))
    assert [b for _, b in batches] == [0, 0, 0, 1, 1, 1, 2]


# ---------------------------------------------------------------- streaming
def test_stream_yields_as_completed_and_holds_bounded_work() -> None:
    pulled = 0
    consumed = 0
    max_outstanding = 0

    def inputs() -> Any:
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield sleeper(0.0005 * (i % 3), i)

    wave: Wave[int] = Wave("stream", max_concurrency=4, instrument=False)

    async def main() -> list[int]:
        nonlocal consumed, max_outstanding
        seen = []
        async with wave.stream(inputs(), buffer=8) as results:
            async for r in results:
                consumed += 1
                max_outstanding = max(max_outstanding, pulled - consumed)
                assert r.value is not None
                seen.append(r.value)
                await asyncio.sleep(0)
        assert results.report is not None
        assert results.report.counts[Outcome.SUCCESS] == 200
        return seen

    seen = run(main())
    assert sorted(seen) == list(range(200))
    assert max_outstanding <= 8


def test_leaving_a_stream_early_cancels_the_rest_without_orphans() -> None:
    def endless() -> Any:
        while True:
            yield sleeper(0.001, 1)

    wave: Wave[int] = Wave("endless", max_concurrency=3, instrument=False)

    async def main() -> None:
        before = asyncio.all_tasks()
        async with wave.stream(endless()) as results:
            async for r in results:
                if r.index >= 20:
                    break
        assert asyncio.all_tasks() <= before
        assert results.report is not None
        assert results.report.outcome is Outcome.CANCELLATION

    run(main())


def test_unbounded_concurrency_needs_a_sized_input_to_stream() -> None:
    wave: Wave[Any] = Wave("x", max_concurrency=None, instrument=False)
    with pytest.raises(ValueError, match="max_concurrency"):
        wave.stream(iter([]))


# ---------------------------------------------------------------- progress and measurements
def test_progress_callback_gets_live_counters_and_a_final_call() -> None:
    seen: list[Progress] = []
    clock = FakeClock()
    wave: Wave[Any] = Wave(
        "progress", max_concurrency=2, on_progress=seen.append, progress_interval=0.5, clock=clock,
        instrument=False,
    )

    def step() -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            clock.advance(0.3)

        return body

    run(wave.run([step() for _ in range(6)]))
    assert seen[-1] == Progress("progress", pending=0, active=0, done=6, failed=0)
    assert 1 < len(seen) < 7  # throttled by progress_interval


def test_tokens_and_cost_land_on_the_span_the_report_and_the_metrics(otel: InMemoryTelemetry) -> None:
    def agent(i: int) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            record_tokens(input=100, output=10 * i)
            record_tokens(input=1)
            record_cost(0.5)
            record("pages", 2)

        return body

    wave: Wave[None] = Wave("agents", **otel.providers)
    result = run(wave.run([agent(i) for i in range(1, 4)]))
    m = result.report.measurements
    assert m["shannon.task.tokens.input"].total == 303
    assert m["shannon.task.tokens.output"].total == 60
    assert m["shannon.task.tokens.output"].max == 30
    assert m["shannon.task.cost"].total == 1.5
    assert m["pages"].count == 3
    span = next(s for s in otel.spans("task agents") if attrs(s)[tel.TASK_INDEX] == 2)
    assert attrs(span)["shannon.task.tokens.input"] == 101
    assert attrs(span)["shannon.task.tokens.output"] == 30
    tokens = otel.point(tel.TASK_TOKENS.name, shannon_token_type="output")
    assert tokens.count == 3
    assert tokens.sum == 60
    assert list(tokens.explicit_bounds) == list(tel.TOKEN_BUCKETS)
    assert otel.point(tel.TASK_COST.name).value == 1.5


def test_measurements_outside_a_task_are_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="inside a task run by a Wave"):
        record_tokens(input=1)
    with pytest.raises(ValueError, match=">= 0"):
        record_cost(-1)


# ---------------------------------------------------------------- trace shape
def test_spans_nest_caller_wave_task_user_and_nested_waves(otel: InMemoryTelemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("user")
    inner: Wave[None] = Wave("inner", **otel.providers)

    async def with_user_span() -> None:
        with tracer.start_as_current_span("db.query"):
            await asyncio.sleep(0)

    async def nested() -> None:
        await inner.run([with_user_span])

    async def main() -> None:
        with tracer.start_as_current_span("caller"):
            outer_wave: Wave[None] = Wave("outer", max_concurrency=2, **otel.providers)
            await outer_wave.run([with_user_span, nested])

    run(main())
    caller, outer = otel.span("caller"), otel.span("wave outer")
    assert outer.parent is not None and outer.parent.span_id == caller.context.span_id
    tasks = otel.children(outer)
    assert sorted(s.name for s in tasks) == ["task outer", "task outer"]
    by_index = {attrs(s)[tel.TASK_INDEX]: s for s in tasks}
    assert [s.name for s in otel.children(by_index[0])] == ["db.query"]
    inner_wave = otel.span("wave inner")
    assert inner_wave.parent is not None and inner_wave.parent.span_id == by_index[1].context.span_id
    inner_task = otel.span("task inner")
    assert [s.name for s in otel.children(inner_task)] == ["db.query"]
    assert {s.context.trace_id for s in otel.spans()} == {caller.context.trace_id}
    assert attrs(outer)[tel.WAVE_NAME] == "outer"
    assert attrs(outer)[tel.WAVE_SIZE] == 2
    assert attrs(outer)[tel.WAVE_CONCURRENCY] == 2


def test_named_tasks_get_their_own_span_names(otel: InMemoryTelemetry) -> None:
    async def noop() -> None:
        return None

    wave: Wave[None] = Wave("w", **otel.providers)
    run(wave.run([task(noop, name="fetch"), noop]))
    assert sorted(s.name for s in otel.spans() if s.name.startswith("task")) == ["task fetch", "task w"]


def test_sampled_out_waves_record_no_task_spans_but_all_metrics() -> None:
    otel = InMemoryTelemetry(sampled=False)
    run(Wave("quiet", **otel.providers).run([sleeper(0, 1) for _ in range(5)]))
    assert otel.spans() == []
    assert otel.point(tel.TASK_DURATION.name, shannon_task_outcome="success").count == 5


def test_a_sampled_out_wave_makes_no_task_span_yet_user_spans_join_its_trace() -> None:
    # No per-task span when the wave is sampled out (nothing of it could reach the wire): the wave's
    # non-recording span stays current, so the user's own spans still get its trace id, unsampled.
    from opentelemetry import trace

    otel = InMemoryTelemetry(sampled=False)
    seen: list[tuple[Any, Any]] = []

    async def job() -> None:
        parent = trace.get_current_span().get_span_context()
        with otel.tracer_provider.get_tracer("user").start_as_current_span("mine") as span:
            seen.append((parent, span.get_span_context()))

    wave: Wave[None] = Wave("quiet", **otel.providers)
    run(wave.run([job, job]))
    assert len(seen) == 2 and seen[0][0] == seen[1][0]  # both under the wave's own span context
    for parent, child in seen:
        assert parent.is_valid and child.trace_id == parent.trace_id and not child.trace_flags.sampled
    assert otel.spans() == []


def test_without_an_sdk_waves_run_and_no_observer_is_made() -> None:
    wave: Wave[int] = Wave("bare")  # global providers: the API's proxies, no SDK behind them
    (otel_hook,) = wave.resolved_hooks
    assert otel_hook.wave_started(WaveStarted("bare", 1, 1, 0.0)) is None  # so no task pays for telemetry
    assert run(wave.run([sleeper(0, 1)])).values() == [1]


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize("bridged", [True, False], ids=["bridged", "plain-sdk"])
def test_task_and_wave_metrics(bridged: bool) -> None:
    otel = InMemoryTelemetry(bridged=bridged)
    wave: Wave[int] = Wave("metrics", max_concurrency=2, task_timeout=0.05, **otel.providers)
    run(wave.run([sleeper(0.001, 1), sleeper(0.001, 2), sleeper(0, error=ValueError()), sleeper(1)]))

    ok = otel.point(tel.TASK_DURATION.name, shannon_task_outcome="success")
    assert ok.count == 2
    assert ok.attributes == {tel.WAVE_NAME: "metrics", tel.TASK_OUTCOME: "success"}
    assert list(ok.explicit_bounds) == list(tel.DURATION_BUCKETS_S)
    assert 0.001 <= ok.min <= ok.max < 0.05
    failed = otel.point(tel.TASK_DURATION.name, shannon_task_outcome="failure")
    assert failed.attributes[tel.ERROR_TYPE] == "ValueError"
    timeout = otel.point(tel.TASK_DURATION.name, shannon_task_outcome="timeout")
    assert timeout.attributes[tel.ERROR_TYPE] == "TimeoutError"
    assert timeout.min >= 0.05
    assert otel.point(tel.TASK_OUTCOMES.name, shannon_task_outcome="success").value == 2
    assert otel.point(tel.TASK_OUTCOMES.name, shannon_task_outcome="timeout").value == 1
    assert otel.point(tel.TASK_QUEUE_WAIT_DURATION.name).count == 4
    assert otel.point(tel.TASKS_ACTIVE.name).value == 0
    assert otel.point(tel.TASKS_PENDING.name).value == 0
    wave_point = otel.point(tel.WAVE_DURATION.name)
    assert wave_point.count == 1
    assert wave_point.attributes[tel.TASK_OUTCOME] == "failure"
    assert 0 < otel.point(tel.WAVE_EFFICIENCY.name).value <= 1
    for metric in otel.metrics().values():
        for point in metric.data.data_points:
            assert point.attributes is not None
            assert tel.TASK_INDEX not in point.attributes  # no per-task cardinality


def test_live_gauges_show_active_and_pending_while_running(otel: InMemoryTelemetry) -> None:
    seen: dict[str, int] = {}
    gate = asyncio.Event()

    async def observe() -> None:
        seen["active"] = otel.point(tel.TASKS_ACTIVE.name).value
        seen["pending"] = otel.point(tel.TASKS_PENDING.name).value

    async def blocked() -> None:
        await gate.wait()

    async def main() -> None:
        wave: Wave[None] = Wave("live", max_concurrency=3, **otel.providers)
        runner = asyncio.create_task(wave.run([blocked] * 10))
        await asyncio.sleep(0.01)
        await observe()
        gate.set()
        await runner

    run(main())
    assert seen == {"active": 3, "pending": 7}


def test_outcome_counts_and_gauges_are_live_while_waves_of_one_name_run(otel: InMemoryTelemetry) -> None:
    # A running wave keeps its success count and gauges to itself until it ends; a collection adds them.
    gate = asyncio.Event()
    reached: list[None] = []
    seen: list[tuple[int, int, int]] = []

    def observe() -> None:
        seen.append((otel.point(tel.TASK_OUTCOMES.name, shannon_task_outcome="success").value,
                     otel.point(tel.TASKS_ACTIVE.name).value, otel.point(tel.TASKS_PENDING.name).value))

    async def quick() -> int:
        return 1

    async def blocked() -> None:
        reached.append(None)
        if len(reached) == 2:  # both waves are down to their last, blocked task
            observe()
            gate.set()
        await gate.wait()

    async def main() -> None:
        first: Wave[Any] = Wave("live", max_concurrency=2, **otel.providers)
        second: Wave[Any] = Wave("live", max_concurrency=2, **otel.providers)
        await asyncio.gather(first.run([quick] * 3 + [blocked, quick]), second.run([quick] * 2 + [blocked]))

    run(main())
    observe()
    observe()  # the ended waves' counts were folded once, not added again
    assert seen == [(6, 2, 0), (8, 0, 0), (8, 0, 0)]


# ---------------------------------------------------------------- hooks
def test_user_hooks_see_every_task_inside_the_otel_task_span(otel: InMemoryTelemetry) -> None:
    from opentelemetry import trace

    seen: list[tuple[int, Outcome, bool]] = []

    class Callback(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver:
            class Obs(WaveObserver):
                def task_finished(self, token: Any, event: TaskFinished) -> None:
                    current = trace.get_current_span()
                    seen.append((event.index, event.outcome, cast("ReadableSpan", current).name == "task hooked"))

            return Obs()

    run(Wave("hooked", hooks=(Callback(),), **otel.providers).run([sleeper(0, 1), sleeper(0, error=OSError())]))
    assert sorted(seen) == [(0, Outcome.SUCCESS, True), (1, Outcome.FAILURE, True)]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_concurrency": 0}, ValueError, r"max_concurrency must be in \(0, inf\), got 0"),
        ({"max_concurrency": -3}, ValueError, r"max_concurrency must be in \(0, inf\), got -3"),
        ({"max_concurrency": 2.5}, TypeError, r"max_concurrency must be an int in \(0, inf\) or None, got 2\.5"),
        ({"task_timeout": 0}, ValueError, r"task_timeout must be in \(0, inf\], got 0"),
        ({"task_timeout": float("nan")}, ValueError, r"task_timeout must be in \(0, inf\], got nan"),
        ({"task_timeout": "1"}, TypeError, r"task_timeout must be a number in \(0, inf\] or None"),
        ({"rate_limit": 0}, ValueError, r"rate_limit must be in \(0, inf\]"),
        ({"batch_size": 0}, ValueError, r"batch_size must be in \[1, \d+\], got 0"),
        ({"burst": 0}, ValueError, r"burst must be in \[1, inf\), got 0"),
        ({"progress_interval": 0}, ValueError, r"progress_interval must be in \(0, inf\]"),
        ({"policy": object()}, TypeError, "policy must have a call"),
        ({"name": ""}, ValueError, "name must be a non-empty string"),
        # A name of the wrong type was a ValueError here while every policy's name= gives TypeError.
        ({"name": None}, TypeError, "name must be a non-empty string, got None"),
        ({"name": 3}, TypeError, "name must be a non-empty string, got 3"),
        ({"name": b"fetch"}, TypeError, "name must be a non-empty string, got b'fetch'"),
        ({"pools": (ResourcePool("a", 1), ResourcePool("a", 2))}, ValueError, "two pools named 'a'"),
    ],
)
def test_bad_configuration_is_rejected_at_construction(kwargs: dict[str, Any], error: type, match: str) -> None:
    args = {"name": "bad", **kwargs}
    with pytest.raises(error, match=match):
        Wave(**args)


def test_bad_pool_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="ResourcePool limit must be an int >= 1"):
        ResourcePool("db", 0)


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (None, TypeError), (7, TypeError), (b"db", TypeError)])
def test_a_pool_name_of_the_wrong_type_is_a_type_error(name: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="ResourcePool name must be a non-empty string"):
        ResourcePool(name, 2)  # type: ignore[arg-type]


def test_a_task_naming_an_unknown_pool_fails_that_task_only() -> None:
    async def noop() -> None:
        return None

    wave: Wave[None] = Wave("pools", instrument=False)
    with pytest.warns(DeprecationWarning, match="pass the ResourcePool itself"):
        named = task(noop, pool="nope")  # only a (deprecated) pool name can be unknown
    result = run(wave.run([named, noop]))
    assert result.results[0].outcome is Outcome.FAILURE
    assert isinstance(result.results[0].error, KeyError)
    assert result.results[1].ok


def test_bridged_latency_histograms_carry_exemplars_linking_to_task_traces(otel: InMemoryTelemetry) -> None:
    run(Wave("ex", **otel.providers).run([sleeper(0, 1), sleeper(0.03, 2)]))
    point = otel.point(tel.TASK_DURATION.name, shannon_task_outcome="success")
    task_spans = {s.context.span_id: s for s in otel.spans("task ex")}
    assert len(point.exemplars) == 2  # two different buckets
    for exemplar in point.exemplars:
        span = task_spans[exemplar.span_id]
        assert span.end_time is not None and span.start_time is not None
        assert exemplar.trace_id == span.context.trace_id
        assert exemplar.value == pytest.approx((span.end_time - span.start_time) / 1e9, abs=0.01)


def test_wave_and_retry_delay_exemplars_stay_in_every_export(otel: InMemoryTelemetry) -> None:
    """Regression: the wave duration and retry delay histograms went through plain SDK calls, whose exemplars
    are exported once; the collector's Prometheus endpoint then showed them only until the next export, so a
    scrape between two later exports (the bundled stack: exports every 10 s, scrapes every 15 s) missed the
    dots of the "Wave duration" and "Retry delay percentiles" panels. Like the task histograms, each bucket
    now keeps its latest exemplar in every export."""
    tries = [0]

    async def flaky() -> int:
        tries[0] += 1
        if tries[0] == 1:
            raise ValueError("first")
        return tries[0]

    async def main() -> None:
        await Wave("ex", **otel.providers).run([sleeper(0, 1)])
        await Retry(attempts=2, initial=0.001, name="ex.retry", **otel.providers).call(flaky)

    run(main())
    wave_span = otel.span("wave ex")
    operation_span = otel.span("ex.retry")
    for _export in range(2):
        (wave_exemplar,) = otel.point(tel.WAVE_DURATION.name, shannon_wave_name="ex").exemplars
        assert (wave_exemplar.trace_id, wave_exemplar.span_id) == (wave_span.context.trace_id,
                                                                   wave_span.context.span_id)
        (delay_exemplar,) = otel.point(tel.RETRY_DELAY_DURATION.name, shannon_operation="ex.retry").exemplars
        assert (delay_exemplar.trace_id, delay_exemplar.span_id) == (operation_span.context.trace_id,
                                                                     operation_span.context.span_id)


def test_policies_and_waves_on_one_meter_share_the_live_counters() -> None:
    """Regression: a second OTel hook on the same meter registered duplicate observable instruments."""
    from shannon_otel._hooks import otel_hook

    otel = InMemoryTelemetry()
    first = otel_hook(otel.tracer_provider, otel.meter_provider)
    assert otel_hook(otel.tracer_provider, otel.meter_provider) is first
    run(Wave("shared", **otel.providers).run([sleeper(0, 1)]))
    run(Wave("shared", **otel.providers).run([sleeper(0, 1)]))
    assert otel.point(tel.TASK_OUTCOMES.name, shannon_task_outcome="success").value == 2
