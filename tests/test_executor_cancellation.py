"""Cancellation at the executor's waiting points, on virtual time: while a stream's consumer waits for
the next result and while the rate limiter sleeps. Each must re-raise CancelledError, leave no task
running and no span open, and keep the results of the tasks that completed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from shannon_otel import Hook, Outcome, TaskResult, Wave, WaveObserver, WaveReport, WaveStarted
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class OpenSpans(SpanProcessor):
    """Counts spans started and not yet ended."""

    def __init__(self) -> None:
        self.open = 0
        self.started = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.open += 1
        self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        self.open -= 1


class Reports(Hook):
    """Keeps every wave report and task result the executor hands to hooks."""

    def __init__(self) -> None:
        self.reports: list[WaveReport] = []
        self.results: list[TaskResult[Any]] = []

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        outer = self

        class Observer(WaveObserver):
            def task_finished(self, token: Any, result: TaskResult[Any]) -> None:
                outer.results.append(result)

            def task_skipped(self, result: TaskResult[Any]) -> None:
                outer.results.append(result)

            def wave_finished(self, report: WaveReport) -> None:
                outer.reports.append(report)

        return Observer()


def telemetry() -> tuple[InMemoryTelemetry, OpenSpans]:
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    return otel, spans


async def sleeps(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def test_cancelling_a_consumer_waiting_on_a_stream() -> None:
    otel, spans = telemetry()
    wave: Wave[float] = Wave("consumer", max_concurrency=2, **otel.providers)
    received: list[TaskResult[float]] = []
    streams: list[Any] = []

    async def consume() -> None:
        async with wave.stream_map(sleeps, [1.0, 2.0, 10.0, 10.0, 10.0]) as results:
            streams.append(results)
            async for result in results:  # waits in the queue for the next result
                received.append(result)  # noqa: PERF401 - kept one by one until the cancellation

    async def main() -> None:
        before = asyncio.all_tasks()
        consumer = asyncio.create_task(consume())
        await asyncio.sleep(5)  # 1.0 and 2.0 are done; two 10 s tasks run; the consumer waits
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert asyncio.all_tasks() <= before  # no orphan worker or runner

    run_virtual(main())
    assert [r.value for r in received] == [1.0, 2.0]  # the completed results were delivered and kept
    assert spans.started > 0
    assert spans.open == 0
    report = streams[0].report
    assert report is not None
    assert report.outcome is Outcome.CANCELLATION
    assert report.counts[Outcome.SUCCESS] == 2
    assert report.counts[Outcome.CANCELLATION] == 3
    outcomes = sorted(str(s.attributes["shannon.task.outcome"]) for s in otel.spans("task consumer") if s.attributes)
    assert outcomes == ["cancellation", "cancellation", "success", "success"]


@pytest.mark.parametrize("streamed", [False, True])
def test_cancelling_while_the_rate_limiter_sleeps(streamed: bool) -> None:
    otel, spans = telemetry()
    hook = Reports()

    async def main() -> list[TaskResult[float]]:
        loop = asyncio.get_running_loop()
        wave: Wave[float] = Wave(
            "limited", max_concurrency=4, rate_limit=1.0, clock=loop.time, hooks=(hook,), **otel.providers,
        )
        received: list[TaskResult[float]] = []

        async def go() -> None:
            if streamed:
                async with wave.stream_map(sleeps, [0.1] * 8) as results:
                    async for result in results:
                        received.append(result)  # noqa: PERF401 - kept one by one until the cancellation
            else:
                await wave.map(sleeps, [0.1] * 8)

        before = asyncio.all_tasks()
        runner = asyncio.create_task(go())
        await asyncio.sleep(2.5)  # tasks started at t=0, 1, 2 are done; the rest sleep in the limiter
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert asyncio.all_tasks() <= before
        return received

    received = run_virtual(main())
    assert spans.open == 0
    (report,) = hook.reports
    assert report.outcome is Outcome.CANCELLATION
    assert report.counts[Outcome.SUCCESS] == 3
    assert report.counts[Outcome.CANCELLATION] == 5
    done = sorted(r.index for r in hook.results if r.outcome is Outcome.SUCCESS)
    assert done == [0, 1, 2]
    assert all(r.value == 0.1 for r in hook.results if r.outcome is Outcome.SUCCESS)
    if streamed:
        assert sorted(r.index for r in received) == [0, 1, 2]
    assert len(otel.spans("task limited")) == 3  # tasks cancelled in the limiter never started a span


@pytest.mark.parametrize("how", ["loop closed", "task dropped"])
def test_a_wave_abandoned_pending_ends_every_task_span_when_collected(
    how: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A wave left pending (its loop closed with its task still waiting, or its task dropped while it waited on a
    future nobody holds) is closed by the garbage collector, the wave's coroutine before its workers': the wave
    ended, its run let go of its observers, and each worker closed after it met none to end its task's span with
    (an IndexError, logged as the OTel hook's failure): the task spans stayed open for good."""
    import gc
    import logging
    import warnings

    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def work(i: int) -> None:
        await asyncio.Event().wait()  # never set: the wave waits for good

    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="shannon_otel"):
        warnings.simplefilter("ignore")  # "Task was destroyed but it is pending" is logged, not raised
        if how == "loop closed":
            loop = asyncio.new_event_loop()
            wave = loop.create_task(Wave[None]("abandoned", **otel.providers).map(work, range(3)))
            for _ in range(3):  # the wave and then its workers run up to their waits
                loop.run_until_complete(asyncio.sleep(0))
            workers = asyncio.all_tasks(loop) - {wave}
            assert len(workers) == 3
            loop.close()
            # What the collector does with them, in the order it took here (any order must end every span)
            wave.get_coro().close()
            for worker in workers:
                worker.get_coro().close()
            del wave, workers
            gc.collect()
        else:
            async def drop() -> None:
                asyncio.ensure_future(Wave[None]("abandoned", **otel.providers).map(work, range(3)))  # noqa: RUF006 (dropped on purpose)
                for _ in range(3):  # the wave and then its workers run up to their waits; then nothing holds them
                    await asyncio.sleep(0)
                gc.collect()  # collected with the loop running, not cancelled by asyncio.run's shutdown
                assert spans.open == 0

            asyncio.run(drop())
    assert spans.started == 4  # the wave and its three tasks
    assert spans.open == 0
    assert sorted(s.name for s in otel.spans()) == ["task abandoned"] * 3 + ["wave abandoned"]
    assert not [r for r in caplog.records if "failed in task_finished" in r.getMessage()]
    otel.shutdown()


def test_a_stream_abandoned_with_its_loop_ends_its_wave_span_when_collected() -> None:
    """A streamed wave left pending when its loop was closed is closed by the garbage collector. Closing its wave
    before its consumer, the results of the tasks never started (and the end) were queued for that consumer, and
    waking it raised "Event loop is closed" out of the wave's end: its span stayed open for good."""
    import gc
    import warnings

    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def work(i: int) -> None:
        await asyncio.Event().wait()  # never set

    async def consume() -> None:
        async with Wave[None]("abandoned", max_concurrency=2, **otel.providers).stream_map(work, range(4)) as results:
            async for _ in results:
                pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Task was destroyed but it is pending" is logged, not raised
        loop = asyncio.new_event_loop()
        consumer = loop.create_task(consume())
        for _ in range(3):  # the consumer, the wave and its workers run up to their waits
            loop.run_until_complete(asyncio.sleep(0))
        made = sorted(asyncio.all_tasks(loop) - {consumer}, key=lambda t: int(t.get_name().rsplit("-", 1)[1]))
        assert len(made) == 3  # the stream's wave, then its two workers
        loop.close()
        for task in [*made, consumer]:  # what the collector does with them, in the order they were made
            with contextlib.suppress(RuntimeError):  # the consumer's own cancel of its closed loop's wave
                task.get_coro().close()
        del consumer, made, task
        gc.collect()
    assert spans.started == 3  # the wave and the two tasks started
    assert spans.open == 0
    otel.shutdown()
