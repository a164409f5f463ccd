"""TailSampler's life cycle as a user drives it: flush, shutdown (twice, by the provider, with work still
running), spans ending after it, two samplers on one provider, memory over many traces."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import tracemalloc

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from shannon_otel import TailSampler, Wave


class Recording(SpanProcessor):
    """The processor behind the sampler: what it was handed, before and after its shutdown."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.after_shutdown: list[str] = []
        self.shutdowns = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        (self.after_shutdown if self.shutdowns else self.ended).append(span.name)

    def shutdown(self) -> None:
        self.shutdowns += 1

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _sampled_into_a_recording(healthy_ratio: float) -> tuple[Recording, TailSampler, TracerProvider]:
    """A provider whose one processor is a TailSampler(``healthy_ratio``) in front of a Recording."""
    behind = Recording()
    sampler = TailSampler(behind, healthy_ratio=healthy_ratio)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    return behind, sampler, provider


def test_spans_ending_after_shutdown_are_handed_on_at_once_not_held() -> None:
    # Before: a span ending under a root still open at shutdown was buffered in the sampler (up to
    # max_buffered_spans of them), and neither exported nor seen (counted) by the processor behind it.
    behind, sampler, provider = _sampled_into_a_recording(1.0)
    tracer = provider.get_tracer("app")
    job = tracer.start_span("job")
    provider.shutdown()
    for i in range(5):
        tracer.start_span(f"late {i}", context=set_span_in_context(job)).end()
    assert sampler.buffered_spans == 0
    assert behind.after_shutdown == [f"late {i}" for i in range(5)]  # its rule for them applies
    job.end()
    assert behind.after_shutdown[-1] == "job" and sampler.buffered_spans == 0


def test_a_dropped_part_stays_dropped_after_shutdown() -> None:
    behind, sampler, provider = _sampled_into_a_recording(0.0)
    tracer = provider.get_tracer("app")
    job = tracer.start_span("job")
    tracer.start_span("before", context=set_span_in_context(job)).end()
    provider.shutdown()  # decides the part on what it has: healthy, dropped
    tracer.start_span("after", context=set_span_in_context(job)).end()
    job.end()
    assert behind.ended == [] and behind.after_shutdown == []
    assert (sampler.dropped_traces, sampler.buffered_spans) == (1, 0)


def test_shutting_down_twice_shuts_the_processor_down_and_raises_nothing() -> None:
    exporter = InMemorySpanExporter()
    sampler = TailSampler(BatchSpanProcessor(exporter), healthy_ratio=1.0)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    with provider.get_tracer("app").start_as_current_span("request"):
        pass
    provider.shutdown()
    provider.shutdown()
    sampler.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]


@pytest.mark.parametrize("behind", ["simple", "batch"])
def test_force_flush_delivers_every_decided_trace(behind: str) -> None:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter) if behind == "simple" else BatchSpanProcessor(
        exporter, schedule_delay_millis=3_600_000)
    sampler = TailSampler(processor, healthy_ratio=0.0)
    provider = TracerProvider()
    provider.add_span_processor(sampler)

    async def job(i: int) -> int:
        if i % 4 == 0:
            raise ValueError("boom")
        return i

    async def main() -> None:
        for _ in range(10):
            await Wave[int]("w", tracer_provider=provider).map(job, range(8))

    asyncio.run(main())
    assert provider.force_flush(10_000)
    # 10 kept waves (each has failures): the wave span and its 8 tasks each, exported by the flush
    assert len(exporter.get_finished_spans()) == 90
    assert (sampler.kept_traces, sampler.buffered_spans) == (10, 0)
    provider.shutdown()


def test_two_samplers_on_one_provider_decide_alone_and_deliver_whole_traces() -> None:
    errors, everything = InMemorySpanExporter(), InMemorySpanExporter()
    only_errors = TailSampler(SimpleSpanProcessor(errors), healthy_ratio=0.0)
    all_kept = TailSampler(SimpleSpanProcessor(everything), healthy_ratio=1.0)
    provider = TracerProvider()
    provider.add_span_processor(only_errors)
    provider.add_span_processor(all_kept)
    tracer = provider.get_tracer("app")
    for i in range(6):
        with tracer.start_as_current_span(f"request {i}"), tracer.start_as_current_span("step") as step:
            if i % 3 == 0:
                step.set_status(Status(StatusCode.ERROR))
    assert sorted(s.name for s in errors.get_finished_spans()) == ["request 0", "request 3", "step", "step"]
    assert len(everything.get_finished_spans()) == 12
    assert (only_errors.kept_traces, only_errors.dropped_traces, all_kept.kept_traces) == (2, 4, 6)


def test_a_provider_shut_down_while_a_wave_runs_leaves_nothing_held(caplog: pytest.LogCaptureFixture) -> None:
    behind, sampler, provider = _sampled_into_a_recording(1.0)
    started = asyncio.Event()

    async def job(i: int) -> int:
        if i == 0:
            started.set()
        await asyncio.sleep(0)
        return i

    async def main() -> list[int | None]:
        wave: Wave[int] = Wave("w", max_concurrency=1, tracer_provider=provider)
        run = asyncio.create_task(wave.map(job, range(5)))
        await started.wait()
        provider.shutdown()  # the user's own shutdown, mid-wave
        return list((await run).values())

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(main()) == [0, 1, 2, 3, 4]  # the user's results are untouched
    assert sampler.buffered_spans == 0
    assert len(behind.ended) + len(behind.after_shutdown) == 6  # every span handed on, none held
    assert not caplog.records


def test_many_short_dropped_traces_keep_memory_bounded() -> None:
    # Ratio 0, nothing troubled: every trace is decided and dropped; what is remembered of decisions is capped by
    # max_decisions, so memory after 4,000 traces and after 14,000 is the same (counted allocations, no timing).
    sampler = TailSampler(SimpleSpanProcessor(InMemorySpanExporter()), healthy_ratio=0.0, max_decisions=500)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer("app")

    def traces(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("request"):
                tracer.start_span("step").end()

    traces(1_000)  # warm caches of the SDK and the interpreter
    tracemalloc.start()
    try:
        traces(3_000)
        gc.collect()
        after_five, _ = tracemalloc.get_traced_memory()
        traces(10_000)
        gc.collect()
        after_all, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_all - after_five < 16_384  # bytes: no per-trace state past the cap (a leak: >= 10,000 x ~100 B)
    assert sampler.stats() == {"kept_traces": 0, "dropped_traces": 14_000, "overflow_traces": 0, "abandoned_spans": 0,
                               "buffered_spans": 0}


def test_the_part_under_an_abandoned_local_root_is_decided_when_the_sweep_forgets_that_root() -> None:
    """A local root collected without end() never ends: its part's ended spans waited for it until an overflow or
    the shutdown (at ratio 1, a healthy step under an abandoned job span was exported by neither), though the sweep
    had counted the root abandoned. Now the sweep decides that part on what it has, and a child of it still open
    then follows that decision at its end."""
    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=1.0)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer(__name__)

    def job() -> trace.Span:
        root = tracer.start_span("job")  # an error path skipped its end(): dropped without ending
        context = set_span_in_context(root)
        tracer.start_span("step", context=context).end()
        return tracer.start_span("late", context=context)  # still open when the root is collected

    late = job()
    gc.collect()
    assert sampler.buffered_spans == 1
    held = [tracer.start_span(f"open {i}") for i in range(4100)]  # past 4,096 open spans: a sweep
    assert sampler.abandoned_spans == 1
    assert [s.name for s in exporter.get_finished_spans()] == ["step"]  # was []: held until an overflow
    assert sampler.stats() == {"kept_traces": 1, "dropped_traces": 0, "overflow_traces": 0, "abandoned_spans": 1,
                               "buffered_spans": 0}
    late.end()  # follows its part's decision
    assert [s.name for s in exporter.get_finished_spans()] == ["step", "late"]
    for span in held:
        span.end()
    provider.shutdown()


def test_an_open_root_decided_early_keeps_its_decision_past_max_decisions() -> None:
    """A local root still open when its part was decided (at the buffer bound) had that decision forgotten after
    ``max_decisions`` later ones: its later spans made a new part under it, decided anew, so a failure after the
    overflow kept the job span and that failure but not the steps dropped before (a partial trace, and under
    concurrent waves a kept wave whose parent was dropped). An open root's decision is now kept until it ends."""
    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=0.0, max_buffered_spans=1, max_decisions=1)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer(__name__)
    job = tracer.start_span("job")  # open around everything
    context = set_span_in_context(job)
    tracer.start_span("step 1", context=context).end()
    tracer.start_span("step 2", context=context).end()  # past max_buffered_spans: job's part decided, dropped
    assert sampler.stats()["overflow_traces"] == 1
    tracer.start_span("other request").end()  # one more decision: past max_decisions
    failed = tracer.start_span("step 3", context=context)
    failed.set_status(Status(StatusCode.ERROR))
    failed.end()
    job.end()
    assert [s.name for s in exporter.get_finished_spans()] == []  # was ["step 3", "job"]: steps 1-2 missing
    assert sampler.stats() == {"kept_traces": 0, "dropped_traces": 2, "overflow_traces": 1, "abandoned_spans": 0,
                               "buffered_spans": 0}
    provider.shutdown()


def test_open_roots_decided_early_cost_no_walk_over_them_at_each_later_decision() -> None:
    """The decisions of open local roots decided early were rotated inside the bounded ``max_decisions`` record:
    with K such roots past the bound, every later decision walked all K under the lock (4,000 open roots: 4,000
    healthy traces took 7.8 s instead of 0.2 s). They are now held apart until their root ends: the bounded record
    stays at ``max_decisions`` (no walk over them), and each such root still follows its early decision."""
    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=0.0, max_buffered_spans=1, max_decisions=2)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer(__name__)
    jobs = []
    for i in range(50):  # each open job's part is decided early (dropped) at the buffer bound
        job = tracer.start_span(f"job {i}")
        context = set_span_in_context(job)
        tracer.start_span("step a", context=context).end()
        tracer.start_span("step b", context=context).end()
        jobs.append((job, context))
    for _ in range(10):
        tracer.start_span("other request").end()
    assert len(sampler._decided) <= 2  # was 52: every open root rotated in it, walked at each decision
    for job, context in jobs:
        failed = tracer.start_span("step c", context=context)
        failed.set_status(Status(StatusCode.ERROR))
        failed.end()  # follows its job's early decision (dropped), not a part of its own
        job.end()
    assert exporter.get_finished_spans() == ()
    assert sampler._held == {}  # each released as its root ended
    provider.shutdown()


class _StuckFlush(Recording):
    """A processor whose flush ignores its timeout until released, as the SDK's batch flush does behind an
    exporter stuck on a silent backend."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.flushing = threading.Event()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.flushing.set()
        self.release.wait()
        return True


def test_force_flush_returns_within_its_timeout_when_the_processor_behind_is_stuck() -> None:
    # Before: TailSampler.force_flush handed the call on and waited as long as it ran: the provider's
    # force_flush(50) through the sampler never returned while the processor behind was stuck.
    behind = _StuckFlush()
    provider = TracerProvider()
    provider.add_span_processor(TailSampler(behind, healthy_ratio=1.0))
    results: list[bool] = []
    caller = threading.Thread(target=lambda: results.extend([provider.force_flush(50), provider.force_flush(50)]),
                              daemon=True)
    try:
        caller.start()
        caller.join(30)  # a generous bound on a call of 50 ms: without its budget it is still blocked then
        assert not caller.is_alive()
        assert results == [False, False]  # neither finished: the second waited for the first, within its budget
        assert behind.flushing.wait(30)  # the flush did reach the processor behind
    finally:
        behind.release.set()
    caller.join()
    assert provider.force_flush(5_000) is True  # released: a flush finishes and says so
