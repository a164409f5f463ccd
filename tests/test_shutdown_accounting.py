"""Leaving configure(): what ``Telemetry.shutdown()`` returns and what ``dropped`` counts agree with what the
backend really got, whatever the budget and however the SDK's own processors give up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk._shared_internal import BatchProcessor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from shannon_otel import configure


class Stalled(SpanExporter):
    """A backend that takes the connection and answers only when released (bounded: a regression fails)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received = 0
        self.answered = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.received += len(spans)
        self.answered.set()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def test_spans_the_sdk_processor_leaves_behind_at_its_own_bound_are_counted_and_shutdown_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # The SDK's BatchSpanProcessor.shutdown() waits at most 30 s for its worker, whatever configure()'s budget, then
    # returns and exports nothing more. With shutdown_timeout_s=60 against a backend stalled for 45 s (measured
    # with the real 30 s): shutdown() returned True after 30.0 s, 90 of 100 spans never exported, dropped 0.
    # Here the SDK's bound is shortened to 0.3 s so the test takes no 30 s; the code path is the same.
    monkeypatch.setattr(BatchProcessor.shutdown, "__defaults__", (300,))
    backend = Stalled()
    handle = configure("left-behind", exporter="none", span_exporters=[backend], set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=30.0, max_export_batch_size=10)
    tracer = handle.tracer_provider.get_tracer("app")
    for i in range(100):
        tracer.start_span(f"s{i}").end()
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert handle.shutdown() is False  # not everything was exported: said, not claimed
    assert "gave up on an export still running" in caplog.text
    assert handle.dropped["traces"] == 100  # the queue left behind and the export still running
    backend.release.set()
    assert backend.answered.wait(10)
    assert backend.received == 10  # the one export in flight ended later; nothing else was ever sent
    assert handle.dropped["traces"] == 100  # and it is not counted twice


def test_a_shutdown_that_exports_everything_in_time_counts_nothing() -> None:
    backend = Stalled()
    backend.release.set()
    handle = configure("in-time", exporter="none", span_exporters=[backend], set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=30.0, max_export_batch_size=10)
    tracer = handle.tracer_provider.get_tracer("app")
    for i in range(100):
        tracer.start_span(f"s{i}").end()
    assert handle.shutdown() is True
    assert backend.received == 100 and handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}
