"""Wave-level tail sampling: whole traces kept or dropped; troubled ones always kept; memory bounded."""

from __future__ import annotations

import asyncio
import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from shannon_otel import TailSampler, Wave
from shannon_otel import _telemetry as tel


class _SeededIds(IdGenerator):
    """Deterministic ids, so ratio assertions hold exactly run after run."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def _setup(ratio: float, **kwargs: int) -> tuple[TracerProvider, InMemorySpanExporter, TailSampler]:
    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=ratio, **kwargs)
    provider = TracerProvider(id_generator=_SeededIds(7))
    provider.add_span_processor(sampler)
    return provider, exporter, sampler


def _waves(provider: TracerProvider, count: int, fail_every: int | None = None, mode: str = "error") -> None:
    async def ok() -> int:
        return 1

    async def bad() -> int:
        if mode == "anomaly":
            trace.get_current_span().add_event(tel.EVENT_ANOMALY, {})
            return 1
        if mode == "timeout":
            await asyncio.sleep(10)
        raise ValueError("boom")

    async def main() -> None:
        for i in range(count):
            troubled = fail_every is not None and i % fail_every == 0
            wave: Wave[int] = Wave(f"w{i}", max_concurrency=2, tracer_provider=provider,
                                   task_timeout=0.001 if mode == "timeout" else None)
            await wave.run([ok(), bad() if troubled else ok(), ok()])

    asyncio.run(main())


def _by_trace(spans: tuple[ReadableSpan, ...]) -> dict[int, list[ReadableSpan]]:
    traces: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        assert span.context is not None
        traces.setdefault(span.context.trace_id, []).append(span)
    return traces


def _assert_complete(spans: tuple[ReadableSpan, ...]) -> None:
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in spans:
        assert span.parent is None or span.parent.span_id in ids, f"{span.name} lost its parent"


def test_no_kept_trace_misses_a_span_and_every_failing_wave_is_kept() -> None:
    provider, exporter, sampler = _setup(0.05)
    _waves(provider, 300, fail_every=10)
    spans = exporter.get_finished_spans()
    _assert_complete(spans)
    traces = _by_trace(spans)
    assert all(len(t) == 4 for t in traces.values())  # the wave span and its three tasks, never part of one
    failing = {t for t, ss in traces.items() if any(s.status.status_code is trace.StatusCode.ERROR for s in ss)}
    assert len(failing) == 30  # every one of the 30 failing waves
    assert sampler.kept_traces == len(traces) and sampler.kept_traces + sampler.dropped_traces == 300
    assert sampler.buffered_spans == 0 and sampler.overflow_traces == 0


@pytest.mark.parametrize("mode", ["timeout", "anomaly"])
def test_timed_out_and_anomalous_waves_are_kept(mode: str) -> None:
    provider, exporter, sampler = _setup(0.0)
    _waves(provider, 20, fail_every=4, mode=mode)
    traces = _by_trace(exporter.get_finished_spans())
    assert len(traces) == 5 and sampler.dropped_traces == 15


def test_healthy_waves_are_kept_at_the_ratio() -> None:
    provider, exporter, sampler = _setup(0.25)
    _waves(provider, 1000)
    kept = len(_by_trace(exporter.get_finished_spans()))
    assert 0.8 * 250 <= kept <= 1.2 * 250
    assert sampler.kept_traces == kept


def test_a_wave_inside_a_user_span_is_decided_when_the_user_span_ends() -> None:
    provider, exporter, _ = _setup(0.0)
    tracer = provider.get_tracer("app")

    async def bad() -> None:
        raise ValueError("boom")

    async def main() -> None:
        with tracer.start_as_current_span("request"):
            await Wave[None]("inner", tracer_provider=provider).run([bad()])
            assert exporter.get_finished_spans() == ()  # still buffered: the trace is not over

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} == {"request", "wave inner", "task inner"}
    _assert_complete(spans)


def test_buffered_spans_are_capped_and_the_overflow_is_counted() -> None:
    provider, exporter, sampler = _setup(1.0, max_buffered_spans=5)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("long request"):
        for i in range(12):
            tracer.start_span(f"child {i}").end()
        assert sampler.buffered_spans <= 5
    assert sampler.overflow_traces >= 1
    assert len(exporter.get_finished_spans()) == 13  # kept (ratio 1): the late root follows the decision


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="healthy_ratio"):
        TailSampler(SimpleSpanProcessor(InMemorySpanExporter()), healthy_ratio=1.5)
    with pytest.raises(ValueError, match="max_buffered_spans"):
        TailSampler(SimpleSpanProcessor(InMemorySpanExporter()), max_buffered_spans=0)
