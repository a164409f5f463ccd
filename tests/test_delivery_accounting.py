"""configure()'s accounting as a user reads it: what ``Telemetry.shutdown()`` returns and what ``dropped`` counts
agree with what the backend really got, whatever the budget, however the SDK's own processors give up, and
whatever mix of answers the backend gives."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from _http_sink import LocalServer
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk._shared_internal import BatchProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import Telemetry, configure


class Stalled(SpanExporter):
    """A backend that takes the connection and answers only when released (bounded: a regression fails)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received = 0
        self.answered = threading.Event()
        self.shut = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.received += len(spans)
        self.answered.set()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut.set()  # the SDK's processor calls it once its worker has exported all it would


def _ended_100_spans(service: str, backend: Stalled, shutdown_timeout_s: float) -> Telemetry:
    """configure() exporting to ``backend`` only (batches of 10), with 100 spans ended and queued."""
    handle = configure(service, exporter="none", span_exporters=[backend], set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=shutdown_timeout_s, max_export_batch_size=10)
    tracer = handle.tracer_provider.get_tracer("app")
    for i in range(100):
        tracer.start_span(f"s{i}").end()
    return handle


def test_spans_the_sdk_processor_leaves_behind_at_its_own_bound_are_counted_and_shutdown_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # The SDK's BatchSpanProcessor.shutdown() waits at most 30 s for its worker, whatever configure()'s budget, then
    # returns and exports nothing more. With shutdown_timeout_s=60 against a backend stalled for 45 s (measured
    # with the real 30 s): shutdown() returned True after 30.0 s, 90 of 100 spans never exported, dropped 0.
    # Here the SDK's bound is shortened to 0.3 s so the test takes no 30 s; the code path is the same.
    monkeypatch.setattr(BatchProcessor.shutdown, "__defaults__", (300,))
    backend = Stalled()
    handle = _ended_100_spans("left-behind", backend, shutdown_timeout_s=30.0)
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert handle.shutdown() is False  # not everything was exported: said, not claimed
    assert "gave up on an export still running" in caplog.text
    assert handle.dropped["traces"] == 100  # the queue left behind and the export still running
    backend.release.set()
    assert backend.answered.wait(10)
    assert backend.received == 10  # the one export in flight ended later; nothing else was ever sent
    assert handle.dropped["traces"] == 100  # and it is not counted twice


def test_spans_counted_dropped_when_the_budget_ran_out_are_never_sent_afterwards() -> None:
    # Before: shutdown() gave up after its budget and counted the 100 spans as dropped, but the SDK's processor,
    # left to finish its own shutdown in a daemon thread, went on exporting its queue once the backend answered:
    # the backend got all 100, dropped said 100 (kept + dropped = 200 of 100 ended), in a process living on.
    backend = Stalled()
    handle = _ended_100_spans("given-up", backend, shutdown_timeout_s=0.2)
    assert handle.shutdown() is False
    assert handle.dropped["traces"] == 100
    backend.release.set()
    assert backend.shut.wait(30)  # the SDK's processor ended its shutdown: nothing more will be exported
    assert backend.received == 10  # only the export already running at the give-up (it cannot be stopped)
    assert handle.dropped["traces"] == 100


def test_a_shutdown_that_exports_everything_in_time_counts_nothing() -> None:
    backend = Stalled()
    backend.release.set()
    handle = _ended_100_spans("in-time", backend, shutdown_timeout_s=30.0)
    assert handle.shutdown() is True
    assert backend.received == 100 and handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}


class Releasing(SpanExporter):
    """A healthy backend that, once it has the spans, releases a stalled one (so a fixed shutdown ends at once)."""

    def __init__(self, stalled: Stalled) -> None:
        self.stalled = stalled
        self.received: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.received += [span.name for span in spans]
        self.stalled.release.set()
        return SpanExportResult.SUCCESS


def _one_span_for_a_stalled_and_a_healthy_exporter(
    monkeypatch: pytest.MonkeyPatch, service: str,
) -> tuple[Telemetry, Stalled, Releasing]:
    """configure() with two span exporters, a stalled one first in line and a healthy one whose export releases it,
    and one span ended: still queued (no scheduled export for an hour) when the caller's shutdown or flush begins."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    stalled = Stalled()
    healthy = Releasing(stalled)
    handle = configure(service, exporter="none", span_exporters=[stalled, healthy], set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=5.0)
    handle.tracer_provider.get_tracer("app").start_span("etl").end()
    return handle, stalled, healthy


def test_a_stalled_exporter_does_not_keep_the_spans_from_the_other_exporters_at_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: Telemetry.shutdown() stopped the tracer provider, whose processors the SDK shuts down one after the
    # other: with configure()'s OTLP endpoint down or silent (first in line) a second exporter (span_exporters=: a
    # file, the console, another collector) got none of the spans, only a count of them as dropped at the give-up.
    handle, stalled, healthy = _one_span_for_a_stalled_and_a_healthy_exporter(monkeypatch, "two-backends")
    try:
        assert handle.shutdown() is True
        assert healthy.received == ["etl"]
        assert stalled.received == 1 and handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}
    finally:
        stalled.release.set()  # a regression: the stalled export ends (the healthy one never got the span)


class _StalledLogs(LogRecordExporter):
    """A log backend that answers only when released (bounded: a regression fails)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.release.wait(30)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _ReleasingLogs(LogRecordExporter):
    """A healthy log backend that, once it has the records, releases a stalled one."""

    def __init__(self, stalled: _StalledLogs) -> None:
        self.stalled = stalled
        self.received: list[object] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.received += [record.log_record.body for record in batch]
        self.stalled.release.set()
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_a_stalled_log_exporter_does_not_keep_the_records_from_the_other_exporters_at_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: Telemetry.shutdown() stopped the logger provider, whose processors the SDK shuts down one after the
    # other: with OTEL_LOGS_EXPORTER=otlp,console and the collector silent, the console printed no record (each
    # counted as dropped at the give-up), as spans did before their processors were shut down in parallel.
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "3600000")
    stalled = _StalledLogs()
    healthy = _ReleasingLogs(stalled)
    backends = iter([stalled, healthy])
    monkeypatch.setattr("shannon_otel._config._log_exporter", lambda *a: next(backends))
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda *a: None)
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda *a: None)
    handle = configure("two-log-backends", exporter="otlp,console", logs=True, set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=5.0)
    try:
        logging.getLogger("shannon_otel.test").warning("etl failed")
        assert handle.shutdown() is True
        assert healthy.received == ["etl failed"]
        assert handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}
    finally:
        stalled.release.set()  # a regression: the stalled export ends (the healthy one never got the record)


class _WhereShut(MetricExporter):
    """A metric backend noting the thread its shutdown ran on (the meter provider's shutdown's)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread())


def test_every_shutdown_job_has_a_thread_started_ahead_when_no_thread_may_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.12 refuses new threads while the interpreter finalizes (the exit handler's shutdown): configure()
    # starts spare threads for the shutdown's jobs. Once each log processor had a job of its own, the spares were
    # still counted without them, and the last jobs (the metrics' final export) ran on the exit handler's own
    # thread, unbounded by shutdown_timeout_s.
    metrics = _WhereShut()
    backends = iter([_StalledLogs(), _StalledLogs()])  # nothing logged: their shutdowns return at once
    monkeypatch.setattr("shannon_otel._config._log_exporter", lambda *a: next(backends))
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda *a: None)
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda *a: metrics)
    handle = configure("spares", exporter="otlp,console", logs=True, set_global=False, metric_interval_s=3600.0,
                       shutdown_timeout_s=5.0)

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    with monkeypatch.context() as finalizing:
        finalizing.setattr(threading.Thread, "start", refused)
        assert handle.shutdown() is True
    assert metrics.threads and threading.current_thread() not in metrics.threads  # before: the caller's


def test_a_stalled_exporter_does_not_keep_the_spans_from_the_other_exporters_at_force_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: force_flush() flushed the tracer provider, whose processors the SDK flushes one after the other (and
    # whose batch flush ignores the timeout): with configure()'s OTLP endpoint silent (first in line),
    # force_flush(2) returned False and span_exporters=[ConsoleSpanExporter()] had printed nothing.
    handle, stalled, healthy = _one_span_for_a_stalled_and_a_healthy_exporter(monkeypatch, "two-backends-flush")
    try:
        assert handle.force_flush(10.0) is True  # the healthy export released the stalled one: all ended in time
        assert healthy.received == ["etl"]
        assert stalled.received == 1 and handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}
    finally:
        stalled.release.set()  # a regression: the stalled export ends (the healthy one never got the span)
        handle.shutdown()


def test_force_flush_against_a_stalled_exporter_returns_false_and_a_later_flush_ends_it_true(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the other exporter's spans are exported at once, but the flush says it did not finish; once the silent
    # backend answers, the next flush (waiting for the one still running rather than starting another) is True
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    stalled = Stalled()
    healthy = Releasing(Stalled())  # releases nothing that matters here
    handle = configure("stalled-flush", exporter="none", span_exporters=[stalled, healthy], set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=5.0)
    handle.tracer_provider.get_tracer("app").start_span("etl").end()
    try:
        assert handle.force_flush(0.3) is False
        assert healthy.received == ["etl"]
        stalled.release.set()
        assert handle.force_flush(10.0) is True
        assert stalled.received == 1
    finally:
        stalled.release.set()
        handle.shutdown()


def test_force_flush_flushes_each_processor_once_its_own_and_those_a_user_added(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: force_flush() flushed each of configure()'s span and log processors in a thread of its own, then each
    # provider, whose flush ran every one of them again (once the first pass had ended): two passes per processor.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    for signal, name in (("TRACES", "none"), ("METRICS", "none"), ("LOGS", "console")):
        monkeypatch.setenv(f"OTEL_{signal}_EXPORTER", name)
    flushed: list[BatchProcessor[Any]] = []
    sdk_flush = BatchProcessor.force_flush

    def counted(self: BatchProcessor[Any], timeout_millis: int | None = None) -> bool:
        flushed.append(self)
        return sdk_flush(self, timeout_millis)

    monkeypatch.setattr(BatchProcessor, "force_flush", counted)
    ours, users = InMemorySpanExporter(), InMemorySpanExporter()
    handle = configure("flush-once", span_exporters=[ours], logs=True, set_global=False,
                       metric_interval_s=3600.0)
    handle.tracer_provider.add_span_processor(BatchSpanProcessor(users))
    try:
        handle.tracer_provider.get_tracer("app").start_span("etl").end()
        assert handle.force_flush(10.0) is True
        # ours (spans, logs) and the user's, each once
        assert len(flushed) == 3 and len({id(each) for each in flushed}) == 3
        assert [s.name for s in ours.get_finished_spans()] == [s.name for s in users.get_finished_spans()] == ["etl"]
    finally:
        handle.shutdown()
    capsys.readouterr()


def test_a_stalled_exporter_of_configure_does_not_keep_a_processor_the_user_added_from_its_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the provider's flush (for processors a user added) ran configure()'s processors first, again: there it
    # waited for the stalled one until the budget was all but spent, and only then flushed the user's processor (here
    # whose export releases the stalled one): force_flush(5) returned False after 5 s.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    stalled = Stalled()
    users = Releasing(stalled)
    handle = configure("stalled-and-users", exporter="none", span_exporters=[stalled], set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=5.0)
    handle.tracer_provider.add_span_processor(BatchSpanProcessor(users))
    handle.tracer_provider.get_tracer("app").start_span("etl").end()
    try:
        assert handle.force_flush(5.0) is True  # the user's export released the stalled one: all ended in time
        assert users.received == ["etl"] and stalled.received == 1
    finally:
        stalled.release.set()
        handle.shutdown()


class MixedCollector(LocalServer):
    """An OTLP/HTTP endpoint on 127.0.0.1 answering trace exports in turn: taken whole, refused (400, not retried),
    taken with 2 spans rejected (a partial success). Counts the spans it really kept."""

    def __init__(self) -> None:
        self.kept = 0
        self.exports = 0
        super().__init__(self._post)

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        status, answer = 200, b""
        if request.path.endswith("/v1/traces"):
            export = trace_pb.ExportTraceServiceRequest.FromString(body)
            spans = sum(len(scope.spans) for rs in export.resource_spans for scope in rs.scope_spans)
            turn = self.exports % 3
            self.exports += 1
            if turn == 0:
                self.kept += spans
            elif turn == 1:
                status = 400
            else:
                rejected = min(2, spans)
                self.kept += spans - rejected
                answer = trace_pb.ExportTraceServiceResponse(partial_success=trace_pb.ExportTracePartialSuccess(
                    rejected_spans=rejected, error_message="quota")).SerializeToString()
        request.send_response(status)
        request.send_header("Content-Type", "application/x-protobuf")
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)


def test_what_a_collector_kept_plus_what_is_counted_dropped_is_every_span_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    collector = MixedCollector()
    try:
        handle = configure("mixed", exporter="otlp_http", endpoint=collector.endpoint, set_global=False,
                           metric_interval_s=3600.0, max_export_batch_size=7, shutdown_timeout_s=30.0)
        tracer = handle.tracer_provider.get_tracer("app")
        for i in range(100):
            tracer.start_span(f"s{i}").end()
            if i % 10 == 9:
                assert handle.force_flush(30.0)
        assert handle.shutdown() is True
        assert collector.exports >= 3  # every kind of answer was given
        assert collector.kept + handle.dropped["traces"] == 100
        assert 0 < handle.dropped["traces"] < 100
    finally:
        collector.close()
