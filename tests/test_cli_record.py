"""RunRecorder: the live counters and the RunReport the demo summarises and advises on."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shannon_otel import Anomaly, BreakerState, Outcome, Wave, task
from shannon_otel._telemetry import Severity
from shannon_otel.cli._display import PlainDisplay
from shannon_otel.cli._summary import Out, resilience_section
from shannon_otel.recovery import CircuitBreaker, CircuitOpenError, Pipeline, Retry, Saga, SagaError, Step
from shannon_otel.reporting._recorder import RunRecorder
from shannon_otel.testing import FakeClock, InMemoryTelemetry


def test_retries_rejections_transitions_and_traces_per_wave() -> None:
    otel = InMemoryTelemetry()
    recorder = RunRecorder()
    hooks = (recorder,)
    clock = FakeClock()
    breaker = CircuitBreaker("dep", failure_threshold=2, reset_timeout=10, clock=clock, hooks=hooks,
                             **otel.providers)
    # Retrying the breaker's rejections on purpose: the recorder counts them (the retry-storm advice).
    call = Pipeline(Retry(attempts=3, initial=0.0, on=(Exception, CircuitOpenError)), breaker,
                    name="dep-call", clock=clock, hooks=hooks,
                    **otel.providers)

    async def down() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        wave: Wave[None] = Wave("w", max_concurrency=1, hooks=hooks, **otel.providers)
        await wave.run([lambda: call.call(down), lambda: call.call(down)])

    asyncio.run(main())
    [live] = recorder.waves
    assert (live.label, live.size, live.done, live.failed, live.active) == ("w", 2, 2, 2, 0)
    # task 0: two failures open the breaker, the third attempt is rejected; task 1: rejected three times
    assert (live.retries, live.rejected) == (4, 4)
    assert recorder.breakers == {"dep": BreakerState.OPEN}
    [opened] = recorder.transitions
    assert (opened.from_state, opened.to_state, opened.reason) == (BreakerState.CLOSED, BreakerState.OPEN,
                                                                   "failure_threshold")
    report = recorder.report()
    op = report.operations["dep-call"]
    assert (op.calls, op.attempts, op.retries, op.rejected_retries, op.rejected) == (2, 2, 4, 2, 4)
    wave_span = otel.span("wave w")
    assert wave_span.context is not None
    trace_id = f"{wave_span.context.trace_id:032x}"
    assert live.trace_id == trace_id and op.trace_by_wave == {"w": trace_id}
    assert report.labels == ("w",) and report.waves[0].failed == 2
    assert recorder.latency.count == 2


def test_repeated_wave_names_get_unique_labels_and_anomalies_their_wave() -> None:
    recorder = RunRecorder()

    async def work() -> None:
        recorder.anomaly(Anomaly("research", "latency", 0.9, Severity.CRITICAL, 0.2, None, None, 0.0))
        recorder.anomaly(Anomaly("research", "latency", 0.1, None, 0.1, None, None, 0.0))  # an ordinary score

    async def main() -> None:
        for _ in range(3):
            wave: Wave[None] = Wave("research", hooks=(recorder,), instrument=False)
            await wave.run([work])

    asyncio.run(main())
    assert [w.label for w in recorder.waves] == ["research", "research#2", "research#3"]
    report = recorder.report()
    assert [a.score for a in recorder.anomalies] == [0.9] * 3 and list(report.anomalies) == recorder.anomalies
    assert report.anomaly_waves == ("research", "research#2", "research#3")
    assert report.labels == ("research", "research#2", "research#3")


async def ok() -> str:
    return "ok"


async def fail() -> str:
    raise RuntimeError("notify failed")


async def undo(_: object) -> None:
    pass


def test_saga_rollbacks_and_compensations_are_counted() -> None:
    recorder = RunRecorder()
    saga = Saga("publish", hooks=(recorder,), instrument=False)

    async def main() -> None:
        with pytest.raises(SagaError):
            await saga.run(Step("a", ok, undo), Step("b", ok, undo), Step("c", fail))
        await saga.run(Step("a", ok, undo))

    asyncio.run(main())
    assert recorder.compensations == 2
    assert [(name, steps) for name, steps, _ in recorder.rollbacks] == [("publish", ("b", "a"))]
    assert recorder.report().rollbacks == 1


def test_a_saga_whose_compensation_failed_is_not_counted_as_rolled_back() -> None:
    """``sagas: N rolled back`` counted every failed saga, those whose compensation failed too (their
    ``SagaResult.rolled_back`` is False: a step is left in effect): a run with no clean rollback read as clean."""
    recorder = RunRecorder()
    saga = Saga("publish", hooks=(recorder,), instrument=False)

    async def cannot_undo(_: object) -> None:
        raise OSError("cannot undo")

    async def main() -> list[bool]:
        rolled: list[bool] = []
        for steps in ((Step("a", ok, undo), Step("b", ok, cannot_undo), Step("c", fail)),
                      (Step("a", ok, undo), Step("c", fail))):
            with pytest.raises(SagaError) as raised:
                await saga.run(*steps)
            rolled.append(raised.value.result.rolled_back)
        return rolled

    assert asyncio.run(main()) == [False, True]
    run = recorder.report()
    assert (run.rollbacks, run.failed_rollbacks, run.compensations) == (1, 1, 3)
    stream = io.StringIO()
    resilience_section(Out(stream=stream), recorder, run)
    shown = "sagas: 1 rolled back, 1 failed to roll back (a compensation failed), 3 compensations run"
    assert shown in stream.getvalue()


def test_the_plain_display_hears_waves_and_transitions_as_a_hook_after_the_recorder() -> None:
    recorder, stream = RunRecorder(), io.StringIO()
    display = PlainDisplay(recorder, stream)
    hooks = (recorder, display)
    breaker = CircuitBreaker("b", failure_threshold=1, hooks=hooks, instrument=False)

    async def boom() -> None:
        raise ConnectionError

    async def main() -> None:
        for _ in range(2):
            wave: Wave[None] = Wave("w", hooks=hooks, instrument=False)
            await wave.run([lambda: breaker.call(boom)])

    asyncio.run(main())
    heard = [line.split("] ", 1)[1].split(";")[0] for line in stream.getvalue().splitlines()]
    assert heard == [
        "wave w: started, 1 task", "breaker b: closed -> open (failure_threshold)",
        "wave w: done 1/1, failed 1, retries 0, tries rejected by an open breaker 0, degraded 0",
        "wave w#2: started, 1 task",
        "wave w#2: done 1/1, failed 1, retries 0, tries rejected by an open breaker 1, degraded 0",
    ]


def test_memory_stays_bounded_and_totals_cover_every_wave() -> None:
    recorder = RunRecorder(max_waves=2)
    fetch = Retry(name="fetch", attempts=1, hooks=(recorder,), instrument=False)

    async def task() -> None:
        await fetch.call(lambda: asyncio.sleep(0))

    async def main() -> None:
        for _ in range(5):
            wave: Wave[None] = Wave("w", hooks=(recorder,), instrument=False)
            await wave.run([task, task])

    asyncio.run(main())
    assert [w.label for w in recorder.waves] == ["w#4", "w#5"]
    assert recorder.totals["waves"] == 5 and recorder.totals["success"] == 10
    assert set(recorder.report().operations["fetch"].latency_by_wave) == {"w#4", "w#5"}


def test_a_running_wave_does_not_hold_back_the_eviction_of_finished_ones() -> None:
    recorder = RunRecorder(max_waves=3)
    kept: list[int] = []

    async def ok() -> None:
        pass

    async def nested() -> None:
        inner: Wave[None] = Wave("inner", hooks=(recorder,), instrument=False)
        await inner.run([ok])
        kept.append(len(recorder.waves))

    async def main() -> None:
        outer: Wave[None] = Wave("outer", max_concurrency=1, hooks=(recorder,), instrument=False)
        await outer.run([nested] * 10)

    asyncio.run(main())
    assert max(kept) == 3, "the outer wave runs on, the finished inner waves beyond max_waves go"
    assert [w.label for w in recorder.waves] == ["outer", "inner#9", "inner#10"]
    assert recorder.totals["waves"] == 11


def test_tasks_that_never_started_are_done_and_failed_like_the_report_counts_them() -> None:
    recorder = RunRecorder()

    async def fail() -> None:
        raise RuntimeError("boom")

    async def ok() -> None:
        pass

    async def main() -> None:
        # an unknown pool fails a task before it starts
        pool_wave: Wave[None] = Wave("pools", hooks=(recorder,), instrument=False)
        with pytest.warns(DeprecationWarning, match="ResourcePool itself"):  # only a (deprecated) name can be unknown
            unknown = task(ok, pool="nope")
        await pool_wave.run([unknown, ok])
        # fail-fast: the tasks after the failure never start
        ff_wave: Wave[None] = Wave("ff", max_concurrency=1, fail_fast=True, hooks=(recorder,), instrument=False)
        await ff_wave.run([ok, fail, ok, ok])

    asyncio.run(main())
    pools, ff = recorder.waves
    assert pools.report is not None and ff.report is not None
    assert dict(pools.report.counts) == {Outcome.SUCCESS: 1, Outcome.FAILURE: 1, Outcome.TIMEOUT: 0,
                                         Outcome.CANCELLATION: 0}
    assert (pools.done, pools.failed, pools.active) == (2, 1, 0)
    assert dict(ff.report.counts) == {Outcome.SUCCESS: 1, Outcome.FAILURE: 1, Outcome.TIMEOUT: 0,
                                      Outcome.CANCELLATION: 2}
    assert (ff.done, ff.failed, ff.active) == (4, 1, 0)
    assert recorder.latency.count == 3  # only the tasks that ran have a duration


def test_no_trace_is_named_for_what_was_sampled_out() -> None:
    """Before: the recorder took the current span's trace id whatever its sampling, so a sampled-out wave's
    ``WaveLive.trace_id`` named a trace exported nowhere; and when the slowest call of an operation ran
    in a sampled-out trace, ``trace_by_wave`` kept a faster call's trace as "its slowest call"."""
    otel, clock = InMemoryTelemetry(sampled=False), FakeClock()
    recorder = RunRecorder()
    op = Retry(attempts=1, name="op", clock=clock, hooks=(recorder,), instrument=False)

    async def taking(seconds: float) -> None:
        clock.advance(seconds)

    def under(trace_id: int, sampled: bool) -> Any:
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        return trace.use_span(NonRecordingSpan(SpanContext(trace_id, 1, is_remote=True, trace_flags=flags)))

    async def main() -> None:
        with under(0xA, True):
            await op.call(taking, 0.1)
        with under(0xB, False):
            await op.call(taking, 0.5)  # the slowest, in a trace sampled out
        wave: Wave[None] = Wave("w", hooks=(recorder,), **otel.providers)
        await wave.run([lambda: taking(0.0)])

    asyncio.run(main())
    [live] = recorder.waves
    assert live.trace_id is None
    assert dict(recorder.report().operations["op"].trace_by_wave) == {}


def test_the_resilience_legend_is_true_of_hedges_failed_fallbacks_and_any_degraded_mode() -> None:
    # The legend said degraded counts "calls answered by Degrade's last good value" (a default or a cheaper call
    # counts too), fallbacks "calls answered by a Fallback" (one whose fallback failed counts too, as the
    # shannon.fallbacks metric does) and calls + retries = attempts + rejected (a Hedge's extra attempts break it).
    from shannon_otel import Degrade, Fallback, Hedge

    recorder = RunRecorder()
    hooks = (recorder,)

    async def down() -> None:
        raise TimeoutError("down")

    async def also_down(error: Exception) -> None:
        raise KeyError("fallback down too")

    async def cheap() -> str:
        return "cheap"

    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    fallback = Fallback(also_down, name="fb", hooks=hooks, instrument=False)
    static = Degrade(default="d", name="static", hooks=hooks, instrument=False)
    cheaper = Degrade(cheaper=cheap, name="cheaper", hooks=hooks, instrument=False)
    hedge = Hedge(delay=1, attempts=3, name="hedge", hooks=hooks, instrument=False)

    async def main() -> None:
        wave: Wave[Any] = Wave("w", hooks=hooks, instrument=False)
        await wave.run([lambda: fallback.call(down), lambda: static.call(down), lambda: cheaper.call(down),
                        lambda: hedge.call(slow)])

    from shannon_otel.testing import run_virtual

    run_virtual(main())
    run = recorder.report()
    ops = run.operations
    assert (ops["fb"].fallbacks, ops["fb"].failed) == (1, 1)
    assert ops["static"].degraded == ops["cheaper"].degraded == 1
    assert (ops["hedge"].calls, ops["hedge"].retries, ops["hedge"].attempts) == (1, 0, 3)
    stream = io.StringIO()
    resilience_section(Out(stream=stream), recorder, run)
    legend = " ".join(stream.getvalue().split())
    assert "a Hedge's extra attempts are counted in attempts alone" in legend
    assert "degraded: calls Degrade answered with a degraded result (its default, last good value or cheaper call)" \
        in legend
    assert "fallbacks: calls whose Fallback ran (one that failed too, then also failed)" in legend


@pytest.mark.parametrize("sampled", [False, True])
def test_the_saga_line_names_only_recorded_traces(sampled: bool) -> None:
    """Before: rollbacks in sampled-out traces (no trace id) were listed as "  - publish: ..." under
    "traces of some:", a heading promising traces the summary did not have (all of them fell on one key)."""
    otel = InMemoryTelemetry(sampled=sampled)
    recorder = RunRecorder()
    saga = Saga("publish", hooks=(recorder,), **otel.providers)

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(SagaError):
                await saga.run(Step("a", ok, undo), Step("c", fail))

    asyncio.run(main())
    stream = io.StringIO()
    resilience_section(Out(stream=stream), recorder, recorder.report())
    text = stream.getvalue()
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and "compensated" in line]
    exported = {format(s.context.trace_id, "032x") for s in otel.spans() if s.context is not None}
    assert "sagas: 3 rolled back" in text
    if sampled:
        assert "traces of some:" in text and len(listed) == 3 and set(listed) <= exported
    else:
        assert "traces of some" not in text and listed == [] and "no trace of them recorded" in text
    otel.shutdown()
