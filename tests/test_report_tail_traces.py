"""``RunRecorder(tail_sampler=sampler)``: the RunReport names (``OperationStats.trace_by_wave``) only traces the
in-process ``TailSampler`` exported, by the rule of its exemplar filter (``TailSampler.exported``).

Before, the report named the trace of each wave's slowest call whatever the sampler then decided: a healthy call's
trace it dropped was named, and a user opening that id found "trace not found" in Jaeger.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import Retry, RunRecorder, TailSampler, Wave


def _run(
    ratio: float, *, open_root: bool = False, failing: int | None = 1,
) -> tuple[RunRecorder, set[str], TracerProvider, dict[str, Any]]:
    """Three waves, one call of operation "op" each; the call of wave ``failing`` fails (its trace kept as troubled).
    Returns the
    recorder, the trace ids exported so far, the tracer provider and what the report named while a span of the user's
    was open around the waves (``open_root``: the waves are one part of one trace then, undecided until it ends)."""
    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=ratio)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(sampler)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    recorder = RunRecorder(tail_sampler=sampler)
    providers: dict[str, Any] = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    seen: dict[str, Any] = {}

    async def op(fail: bool) -> int:
        if fail:
            raise ValueError("down")
        return 1

    async def task(retry: Retry, fail: bool) -> int:
        try:
            return await retry.call(op, fail)
        except ValueError:
            return 0

    async def waves() -> None:
        retry = Retry(attempts=1, name="op", hooks=[recorder], **providers)
        for i in range(3):
            await Wave(f"w{i}", hooks=[recorder], **providers).run([task(retry, i == failing)])

    async def main() -> None:
        if not open_root:
            await waves()
            return
        with tracer_provider.get_tracer("user").start_as_current_span("request"):
            await waves()
            seen.update(recorder.report().operations["op"].trace_by_wave)

    asyncio.run(main())
    exported = {f"{span.context.trace_id:032x}" for span in exporter.get_finished_spans() if span.context}
    return recorder, exported, tracer_provider, seen


def test_a_dropped_healthy_trace_is_not_named() -> None:
    recorder, exported, tracer_provider, _ = _run(0.0)
    named = dict(recorder.report().operations["op"].trace_by_wave)
    assert len(exported) == 1  # the failed call's trace alone
    assert named == {"w1": next(iter(exported))}
    tracer_provider.shutdown()  # asked after the sampler's shutdown: what it decided before
    assert dict(recorder.report().operations["op"].trace_by_wave) == named


def test_every_kept_trace_is_named() -> None:
    recorder, exported, tracer_provider, _ = _run(1.0)
    named = dict(recorder.report().operations["op"].trace_by_wave)
    assert set(named) == {"w0", "w1", "w2"} and set(named.values()) <= exported
    tracer_provider.shutdown()


def test_an_undecided_healthy_trace_is_not_named() -> None:
    """Under the user's open span, the waves are one undecided part of one trace: healthy so far, it is not sure to be
    exported (named nowhere while open), and once it ended it was dropped (still named nowhere)."""
    recorder, exported, tracer_provider, seen = _run(0.0, open_root=True, failing=None)
    assert seen == {} and exported == set()
    assert dict(recorder.report().operations["op"].trace_by_wave) == {}
    tracer_provider.shutdown()


def test_an_undecided_part_with_trouble_is_named() -> None:
    """The failed call keeps the part it is in: every call of it is named, while the user's span is open and after."""
    recorder, exported, tracer_provider, seen = _run(0.0, open_root=True)
    (trace_id,) = exported
    assert seen == {"w0": trace_id, "w1": trace_id, "w2": trace_id}
    assert dict(recorder.report().operations["op"].trace_by_wave) == seen
    tracer_provider.shutdown()


def test_tail_sampler_must_be_a_tail_sampler() -> None:
    with pytest.raises(TypeError, match=r"tail_sampler must be a shannon_otel\.TailSampler"):
        RunRecorder(tail_sampler=object())  # type: ignore[arg-type]
