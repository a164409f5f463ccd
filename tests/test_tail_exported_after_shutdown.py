"""``TailSampler.exported()`` asked after ``shutdown()`` says what the processor behind really exported.

Before, a span ending after the shutdown (kept: a failure, or a trace under ``healthy_ratio``) was handed on at once to
the processor behind, shut down, which dropped it (the SDK's batch processor ignores a span after its shutdown), yet
``exported()`` said True for it: a trace id a report names as exported that no backend has."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from shannon_otel import TailSampler


def _provider(healthy_ratio: float) -> tuple[InMemorySpanExporter, TailSampler, TracerProvider]:
    exporter = InMemorySpanExporter()
    sampler = TailSampler(BatchSpanProcessor(exporter), healthy_ratio=healthy_ratio)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    return exporter, sampler, provider


def test_spans_ending_after_shutdown_are_not_said_exported() -> None:
    exporter, sampler, provider = _provider(1.0)  # every trace kept
    tracer = provider.get_tracer("app")
    before = tracer.start_span("before")
    before.end()
    job = tracer.start_span("job")  # open across the shutdown
    provider.shutdown()
    late = tracer.start_span("late", context=set_span_in_context(job))
    late.set_status(Status(StatusCode.ERROR))  # troubled: kept, handed on at once
    late.end()
    assert not sampler.exported(job.get_span_context())  # open: it ends after the shutdown
    job.end()
    exported = {span.name for span in exporter.get_finished_spans()}
    assert exported == {"before"}  # the processor behind, shut down, dropped the late ones
    for name, span in (("before", before), ("job", job), ("late", late)):
        assert sampler.exported(span.get_span_context()) == (name in exported), name


def test_a_failed_trace_started_after_shutdown_is_not_said_exported() -> None:
    exporter, sampler, provider = _provider(0.0)  # only troubled traces kept
    tracer = provider.get_tracer("app")
    provider.shutdown()
    root = tracer.start_span("root")
    root.set_status(Status(StatusCode.ERROR))
    root.end()
    assert exporter.get_finished_spans() == ()
    assert sampler.kept_traces == 1  # decided kept, handed on: dropped behind
    assert not sampler.exported(root.get_span_context())
