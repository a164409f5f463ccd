"""configure()'s delivery guarantees: drops counted, shutdown/flush bounded, standard variables honoured.

Pins issue 11: spans dropped silently by a full queue; leaving configure() took 16-34 s with a dead or
silent collector and force_flush(timeout_s=1) ~20 s; OTEL_METRIC_EXPORT_INTERVAL=5s raised; the
per-signal OTLP variables and several exporters in OTEL_TRACES_EXPORTER were ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from benchmarks._backends import BlackHole, OtlpSink, down_endpoint
from shannon_otel import Wave, _config, configure
from shannon_otel import _telemetry as tel
from shannon_otel._delivery import CountedMetricExporter, CountedSpanProcessor, DropCounter, Rejections, bounded


class Gate(SpanExporter):
    """An exporter that blocks until opened (a slow or silent backend); counts what it got."""

    def __init__(self, fail: bool = False) -> None:
        self.open = threading.Event()
        self.received = 0
        self.fail = fail

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.open.wait(30)  # bounded so a regression fails instead of hanging the suite
        self.received += len(spans)
        return SpanExportResult.FAILURE if self.fail else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_METRIC_EXPORT_INTERVAL",
        "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_EXPORTER_OTLP_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)


def _spans(handle: object, n: int) -> None:
    tracer = handle.tracer_provider.get_tracer("t")  # type: ignore[attr-defined]
    for i in range(n):
        tracer.start_span(f"s{i}").end()


def test_a_full_queue_drops_are_counted_exactly_and_the_sdk_never_drops_uncounted() -> None:
    gate = Gate()
    reader = InMemoryMetricReader()
    handle = configure(
        "drops", exporter="none", span_exporters=[gate], metric_readers=[reader], set_global=False,
        max_queue_size=8, max_export_batch_size=4,
    )
    _spans(handle, 100)  # the exporter is stuck: at most 8 wait, the rest are refused and counted
    dropped = handle.dropped["traces"]
    assert dropped >= 100 - 8 - 4
    gate.open.set()
    assert handle.force_flush(5.0)
    assert gate.received + dropped == 100  # every span either delivered or counted, none lost silently
    (point,) = [
        p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics  # type: ignore[union-attr]
        if m.name == tel.TELEMETRY_DROPPED.name for p in m.data.data_points
    ]
    assert isinstance(point, NumberDataPoint)
    assert point.value == dropped
    assert dict(point.attributes or {}) == {tel.TELEMETRY_SIGNAL: "traces", tel.TELEMETRY_DROP_REASON: "queue_full"}
    assert handle.shutdown()


def test_failed_exports_are_counted() -> None:
    gate = Gate(fail=True)
    gate.open.set()
    handle = configure("fails", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 5)
    handle.force_flush(5.0)
    assert handle.dropped == {"traces": 5, "metrics": 0, "logs": 0}
    handle.shutdown()


def test_the_default_queue_holds_three_waves_of_two_thousand_spans() -> None:
    gate = Gate()
    handle = configure("big", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 6003)  # the scenario: SDK default queue (2048) dropped up to a third
    assert handle.dropped["traces"] == 0
    gate.open.set()
    handle.force_flush(10.0)
    assert gate.received == 6003
    handle.shutdown()


def test_shutdown_returns_within_its_budget_when_the_exporter_never_answers(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()  # a backend that accepts and never answers
    handle = configure("stuck", exporter="none", span_exporters=[gate], set_global=False, shutdown_timeout_s=0.2)
    _spans(handle, 600)  # one batch of 512 in the stuck export, 88 queued behind it
    assert handle.force_flush(0.1) is False  # returns, and says it did not finish
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert handle.shutdown() is False
    assert "did not finish within 0.2 s" in caplog.text
    assert handle.dropped["traces"] == 600  # queued or in the stuck export when the budget ran out: counted
    assert handle.shutdown() is False  # idempotent: the first call's result
    gate.open.set()


@pytest.mark.parametrize("backend", ["down", "black_hole"])
def test_leaving_configure_is_bounded_against_a_real_dead_or_silent_otlp_endpoint(backend: str) -> None:
    hole = BlackHole()
    endpoint = down_endpoint() if backend == "down" else hole.endpoint
    handle = configure("dead", exporter="otlp_http", endpoint=endpoint, set_global=False, shutdown_timeout_s=0.5,
                       export_timeout_s=30)
    _spans(handle, 10)
    # Without the bound, the HTTP exporter retries for up to export_timeout_s (30 s) here.
    finished, _ = bounded("test", handle.shutdown, 10.0)
    assert finished
    hole.close()


def test_an_unparsable_metric_interval_variable_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "5s")  # the spec says integer milliseconds
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        handle = configure("interval", exporter="none", set_global=False)
    assert "OTEL_METRIC_EXPORT_INTERVAL='5s' is not a positive integer; ignored" in caplog.text
    handle.shutdown()


def test_queue_size_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    gate = Gate()
    handle = configure("q", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 20)
    assert handle.dropped["traces"] >= 20 - 4 - 2
    gate.open.set()
    handle.shutdown()


def test_per_signal_protocol_and_endpoint_and_several_exporters_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpSink() as sink:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{sink.endpoint}/custom/traces")
        handle = configure("env", set_global=False)
        kinds = [type(p.exporter.inner) for p in handle._processors]
        assert len(kinds) == 2  # both, not only the first
        assert issubclass(kinds[0], HttpSpanExporter) and issubclass(kinds[1], ConsoleSpanExporter)
        quiet = Gate()
        quiet.open.set()
        handle._processors[1].exporter.inner = quiet  # keep the test output clean
        _spans(handle, 3)
        assert handle.force_flush(5.0)
        assert quiet.received == 3
        assert sink.paths == ["/custom/traces"] and sink.spans == 3
        assert handle.shutdown()


def test_the_exporters_read_the_timeout_variables_unless_export_timeout_s_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[object] = []
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda name, endpoint, timeout: seen.append(timeout))
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda name, endpoint, timeout: seen.append(timeout))
    configure("timeout", exporter="otlp_http", set_global=False).shutdown()
    configure("timeout", exporter="otlp_http", set_global=False, export_timeout_s=2.5).shutdown()
    # None: the SDK's exporters read OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_TIMEOUT themselves
    assert seen == [None, None, 2.5, 2.5]


def test_the_drop_counter_and_processor_work_standalone() -> None:
    drops, gate = DropCounter(), Gate()
    processor = CountedSpanProcessor(gate, drops, max_queue_size=2, max_export_batch_size=1)
    assert processor.abandon() == 0
    gate.open.set()
    processor.shutdown()


def test_the_process_exits_within_the_budget_when_the_collector_never_answers(tmp_path: Path) -> None:
    # The interpreter-exit path: no explicit shutdown, a black-hole gRPC endpoint (before: ~34 s).
    with BlackHole() as hole:
        script = tmp_path / "app.py"
        script.write_text(
            "import asyncio, time\n"
            "from shannon_otel import Wave, configure\n"
            f"configure('exit', exporter='otlp_grpc', endpoint={hole.endpoint!r}, shutdown_timeout_s=0.5)\n"
            "async def work(i): return i\n"
            "print(asyncio.run(Wave('w').map(work, range(100))).values()[-1])\n"
            "print(time.monotonic(), flush=True)\n",
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        start = time.monotonic()
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60,
                             check=True).stdout.split()
        ended = time.monotonic()
    assert out[0] == "99"
    assert ended - float(out[1]) < 0.5 + 5.0  # from the last line of the script to the process gone
    assert start < ended


class LogGate(LogRecordExporter):
    """A log exporter that blocks until opened, then fails: every record is lost, and counted."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.open.wait(30)
        return LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        return None


def test_log_records_lost_to_a_full_queue_or_a_failed_export_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "4")
    gate = LogGate()
    monkeypatch.setattr("shannon_otel._config._log_exporter", lambda *a: gate)
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda *a: None)
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda *a: None)
    handle = configure("logs", exporter="console", logs=True, set_global=False)
    try:
        for i in range(50):
            logging.getLogger("shannon_otel.test").warning("record %d", i)
        full = handle.dropped["logs"]
        assert full >= 50 - 8 - 4  # refused and counted while the exporter is stuck
        gate.open.set()
        assert handle.force_flush(5.0)
        assert handle.dropped["logs"] == 50  # the rest failed to export: counted too, nothing lost silently
    finally:
        gate.open.set()
        handle.shutdown()


class GateMetrics(MetricExporter):
    """A metric exporter that blocks until opened (a silent backend)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.entered = threading.Event()
        self.points: list[int] = []  # the data points of each export, in order

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.points.append(sum(len(m.data.data_points) for rm in metrics_data.resource_metrics
                               for sm in rm.scope_metrics for m in sm.metrics))
        self.entered.set()
        self.open.wait(30)  # bounded so a regression fails instead of hanging the suite
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def test_metric_points_of_an_export_still_stuck_at_the_shutdown_deadline_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: a silent collector made shutdown() return False with dropped == {"metrics": 0, ...}:
    # the points it never delivered were not reported anywhere.
    # Bug too: once given up on, the exporter counted no export ever again: the reader's last export, run after the
    # give-up once the stuck one ended, failed with its points counted nowhere.
    gate = GateMetrics()
    monkeypatch.setattr(_config, "_metric_exporter", lambda name, endpoint, timeout_s: gate)
    before = set(threading.enumerate())
    handle = configure("stuck-metrics", exporter="console", set_global=False, shutdown_timeout_s=0.2,
                       span_exporters=[], metric_interval_s=3600.0)
    handle.tracer_provider.get_tracer("t")  # the provider lives; the metric below is what is stuck
    handle.meter_provider.get_meter("m").create_counter("c").add(1, {"k": "v"})
    assert handle.force_flush(0.1) is False  # the export is now stuck in the gate
    assert gate.entered.wait(5)
    assert handle.shutdown() is False
    stuck = handle.dropped["metrics"]
    assert stuck >= 1  # the counter's point (and shannon.telemetry.dropped's own, if collected)
    gate.open.set()  # its late failure is not counted a second time; the reader's last export fails too
    reader = "OtelPeriodicExportingMetricReader"  # the SDK reader's thread: its last export, then it ends
    for thread in threading.enumerate():
        if thread.name == "shannon-otel metric flush" or (thread not in before and thread.name == reader):
            thread.join(5)
    assert len(gate.points) == 2  # the stuck export, then the reader's last one (at its shutdown)
    assert gate.points[1] >= 1
    assert handle.dropped["metrics"] == stuck + gate.points[1]


def test_an_interrupted_shutdown_counts_what_it_gives_up_and_re_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a KeyboardInterrupt (a second Ctrl-C) during shutdown's wait went up with nothing counted,
    # and the exit handler, seeing the handle shut, had nothing left to count either.
    gate = Gate()
    handle = configure("interrupted", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 20)

    def interrupted(*args: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("shannon_otel._telemetry_handle.in_parallel", interrupted)
    with pytest.raises(KeyboardInterrupt):
        handle.shutdown()
    assert handle.dropped["traces"] == 20
    assert handle.shutdown() is False  # it gave up: a later call (the exit handler) says so, doing nothing more
    gate.open.set()


# Telemetry._stop_and_count: a Ctrl-C handled on that call's own entry, before its try (CI, 2026-12-06: the
# CLI's "telemetry dropped: 0 spans" again, Python 3.13)
@pytest.mark.parametrize("where", ["_Default.flush", "atexit.unregister", "Telemetry._stop_and_count"])
def test_an_interrupt_landing_before_shutdowns_wait_still_counts_what_is_given_up(
    monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    # Before: a Ctrl-C landing after shutdown() marked the handle shut but before its wait began (while
    # the logging hook's held-back repeats were written) went up with nothing counted, and every later
    # shutdown() was a no-op: the CLI's "interrupted again" line said 0 spans dropped (seen in CI).
    gate = Gate()
    handle = configure("interrupted-early", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 20)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(f"shannon_otel._telemetry_handle.{where}", interrupted)
    with pytest.raises(KeyboardInterrupt):
        handle.shutdown()
    monkeypatch.undo()
    assert handle.dropped["traces"] == 20
    assert handle.shutdown() is False  # the first call's result
    gate.open.set()


class _InterruptedOnceTaken:
    """The handle's shutdown claim, with a Ctrl-C handled the instant its claiming call returns: CPython runs
    signal handlers on the check after a C call, before the caller's next line (here: before shutdown's try)."""

    def __init__(self, claim: object) -> None:
        self._claim = claim
        self.fired = False

    def __getattr__(self, name: str) -> object:
        real = getattr(self._claim, name)

        def call(*args: object, **kwargs: object) -> object:
            result = real(*args, **kwargs)
            if not self.fired:
                self.fired = True
                raise KeyboardInterrupt
            return result

        return call


def test_an_interrupt_landing_right_after_shutdowns_claim_still_counts_what_is_given_up() -> None:
    # Before: the claim was taken one line above shutdown()'s try: a second Ctrl-C handled on the claiming call's
    # return left the handle claimed with nothing counted, and every later call (the CLI's "interrupted again"
    # line, the exit handler) waited on a shutdown nobody ran: "telemetry dropped: 0 spans" (the CI flake
    # 9fc119f7 fixed one call further on).
    gate = Gate()
    handle = configure("interrupted-on-claim", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 20)
    claim = _InterruptedOnceTaken(handle._claim)
    handle._claim = claim  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        handle.shutdown()
    assert claim.fired
    assert handle.dropped["traces"] == 20
    assert handle.shutdown(timeout_s=0) is False  # the CLI's _leave_now: the first call's result, at once
    gate.open.set()


def test_spans_ended_after_an_interrupted_shutdown_are_counted_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The give-up of a shutdown interrupted before its processors closed counts what was accepted then; those
    # spans are never sent afterwards (their count stays true). Spans ended later still reach the processor: they
    # were withheld too, uncounted (25 ended, 20 dropped, 0 sent). Now counted as ended after shutdown.
    gate = Gate()
    gate.open.set()
    handle = configure("interrupted-late", exporter="none", span_exporters=[gate], set_global=False,
                       metric_interval_s=3600.0)
    _spans(handle, 20)

    def interrupted(*args: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("shannon_otel._telemetry_handle.in_parallel", interrupted)
    with pytest.raises(KeyboardInterrupt):
        handle.shutdown()
    monkeypatch.undo()
    assert handle.dropped["traces"] == 20
    _spans(handle, 5)
    assert handle.tracer_provider.force_flush(30_000)
    assert gate.received + handle.dropped["traces"] == 25
    assert gate.received == 0  # what the give-up counted was not sent after it
    handle.tracer_provider.shutdown()


def test_a_shut_down_handle_is_not_kept_alive_until_interpreter_exit() -> None:
    # Before: the exit handler configure() registers held every handle (and its providers) for the life
    # of the process, shut down or not: configuring repeatedly (tests, notebooks, reloads) leaked them.
    import gc
    import weakref

    handle = configure("leak", exporter="none", set_global=False)
    provider = weakref.ref(handle.tracer_provider)
    assert handle.shutdown()
    del handle
    gc.collect()
    assert provider() is None


def test_a_failing_bounded_job_is_one_warning_line_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # Before: logged with its traceback at ERROR, so a second Ctrl-C in the demo (the SDK's
    # MeterProvider.shutdown raising "deadline already exceeded") printed a Traceback to stderr.
    def fails() -> None:
        raise RuntimeError("deadline already exceeded")

    with caplog.at_level(logging.INFO, logger="shannon_otel"):
        assert bounded("metric shutdown", fails, 5.0) == (True, None)
    (record,) = [r for r in caplog.records if "metric shutdown" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "deadline already exceeded" in record.getMessage()
    assert not record.exc_info


def test_an_exit_shutdown_where_no_thread_may_start_still_runs_bounded_on_threads_started_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.12 refuses to start a thread while the interpreter finalizes, which is when the exit handler
    # runs: shutdown() raised "can't create new thread at interpreter shutdown" there, delivered nothing and
    # counted nothing (seen in CI on 3.12). configure() now starts the shutdown's threads ahead of time.
    gate = Gate()
    handle = configure("exit-threads", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 5)

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refused)
    assert handle.shutdown(0.2) is False  # bounded: the stuck export is given up at the budget, not awaited
    assert handle.dropped["traces"] == 5
    gate.open.set()


class _StuckExporter(SpanExporter):
    """A span exporter whose export blocks until released: a collector that accepts and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(60)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_repeated_flushes_against_a_silent_backend_leave_one_thread_behind_not_one_per_call() -> None:
    """Each force_flush(timeout) left its thread blocked behind the previous one (the SDK's flush exports
    on the calling thread, one at a time): 30 flushes of 0.2 s against a black hole left 30 threads."""
    stuck = _StuckExporter()
    before = set(threading.enumerate())  # another test's flush may still be running
    handle = configure("svc", exporter="none", span_exporters=[stuck], set_global=False, shutdown_timeout_s=0.1)
    try:
        with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
            pass
        results = [handle.force_flush(0.01) for _ in range(5)]
        flushing = [t for t in set(threading.enumerate()) - before if "flush" in t.name]
        assert results == [False] * 5
        for thread in flushing:  # the calls' threads that only waited for the stuck flush end at their budget
            thread.join(2.0)
        assert len([t for t in flushing if t.is_alive()]) == 1
    finally:
        stuck.release.set()
        handle.shutdown()


class _RefusingExporter(SpanExporter):
    """A backend that answers at once and refuses everything (connection refused, a 4xx)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("refusing", [True, False])
def test_a_shutdown_that_lost_telemetry_says_so_once_with_every_signal(
    refusing: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """Against a backend that refuses at once, shutdown finished in time and shannon-otel said nothing: the
    spans lost were only in ``Telemetry.dropped`` and the SDK's per-attempt lines (which users silence); and
    the warning of a shutdown past its budget counted the spans only, not the metric points and log records."""
    exporter: SpanExporter = _RefusingExporter() if refusing else InMemorySpanExporter()
    handle = configure("svc", exporter="none", span_exporters=[exporter], set_global=False)
    with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
        pass
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert handle.shutdown()
    said = [r.getMessage() for r in caplog.records if r.name == "shannon_otel"]
    if refusing:
        assert said == ["telemetry shutdown finished; not delivered over the run: 1 spans, 0 metric points, "
                        "0 log records (Telemetry.dropped, metric shannon.telemetry.dropped)"]
    else:
        assert said == []


class _GiveUpWhileCounting(DropCounter):
    """A drop counter whose first ``export_failed`` count is when the shutdown budget runs out: the give-up (as
    ``Telemetry`` does it) lands between the failed export's check and its bookkeeping, where a real one can."""

    def __init__(self) -> None:
        super().__init__()
        self.processor: CountedSpanProcessor | None = None

    def add(self, signal: str, reason: tel.DropReason, n: int = 1) -> None:
        super().add(signal, reason, n)
        processor, self.processor = self.processor, None
        if processor is not None and reason is tel.DropReason.EXPORT_FAILED:
            super().add(signal, tel.DropReason.SHUTDOWN, processor.abandon())


def test_a_give_up_landing_as_a_failed_export_is_counted_counts_its_spans_once() -> None:
    # Before: the failed batch was counted as export_failed, then the give-up (settled not yet including it)
    # counted it again as shutdown: 10 dropped of 5 spans.
    drops, gate = _GiveUpWhileCounting(), Gate(fail=True)
    gate.open.set()
    processor = CountedSpanProcessor(gate, drops, max_queue_size=100, max_export_batch_size=100)
    drops.processor = processor
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    for i in range(5):
        provider.get_tracer("t").start_span(f"s{i}").end()
    assert processor.force_flush(30_000)
    assert drops.processor is None  # the give-up happened
    assert drops.total("traces") == 5
    provider.shutdown()


def test_a_give_up_landing_as_a_failed_metric_export_ends_counts_its_points_once() -> None:
    # Before: the export marked no points in flight, the give-up found none to count, and the export, given up on,
    # did not count its failure either: 0 dropped of a failed export's points.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("m").create_counter("c")
    for key in ("a", "b", "c"):
        counter.add(1, {"k": key})
    data = reader.get_metrics_data()
    assert data is not None
    drops = DropCounter()
    counted: list[CountedMetricExporter] = []

    class GiveUpOnAnswer(Rejections):
        def take(self) -> tuple[int, bool]:  # read as the export returns: the budget runs out right then
            drops.add("metrics", tel.DropReason.SHUTDOWN, counted[0].abandon())
            return super().take()

    class Failing(MetricExporter):
        def __init__(self) -> None:
            super().__init__()
            self.rejections = GiveUpOnAnswer("metric points")

        def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                   **kwargs: object) -> MetricExportResult:
            return MetricExportResult.FAILURE

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
            return None

    counted.append(CountedMetricExporter(Failing(), drops))
    assert counted[0].export(data) is MetricExportResult.FAILURE
    assert drops.total("metrics") == 3
    provider.shutdown()


def test_a_shutdown_called_while_another_runs_waits_for_its_result_within_its_own_budget() -> None:
    # Before: a second shutdown() (another thread, the exit handler) returned True at once while the first was
    # still stuck on a silent backend, and the first then gave up and counted the spans it lost.
    gate = Gate()
    handle = configure("twice", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 10)
    first: list[bool] = []
    thread = threading.Thread(target=lambda: first.append(handle.shutdown(timeout_s=30)))
    thread.start()
    while not handle._shut:  # the first call has begun
        time.sleep(0.001)
    assert handle.shutdown(timeout_s=0.05) is False  # the first has not finished within this call's budget
    assert handle.force_flush(0.05) is False  # nor within this one's
    gate.open.set()
    assert handle.shutdown(timeout_s=30) is True  # waits for the first, which now finishes: its result
    thread.join()
    assert first == [True]
    assert gate.received == 10 and handle.dropped["traces"] == 0
    assert handle.shutdown() is True and handle.force_flush() is True  # after it returned: its result, at once


def test_a_flush_after_shutdown_counts_nothing_more_as_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: force_flush() after shutdown() (a refused OTLP/HTTP endpoint) collected the metrics again into the
    # stopped exporter and counted those points as dropped: `dropped` grew (25 -> 34 points in the probe) after the
    # shutdown's one warning had given the totals. Once shut down nothing is buffered: a flush does nothing.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    handle = configure("after", endpoint=down_endpoint(), set_global=False, export_timeout_s=1, shutdown_timeout_s=10)

    async def echo(x: int) -> int:
        return x

    result = asyncio.run(Wave("w", tracer_provider=handle.tracer_provider,
                              meter_provider=handle.meter_provider).map(echo, range(5)))
    assert result.values() == list(range(5))
    finished = handle.shutdown()
    reported = handle.dropped
    assert reported["metrics"] > 0  # the endpoint refused them
    assert handle.force_flush(1.0) is finished
    assert handle.dropped == reported


def test_a_shutdown_called_again_from_the_thread_running_the_first_does_not_wait_for_it() -> None:
    # Bug: a call from the thread running the first shutdown() (a SIGTERM handler calling shutdown(), run in the
    # main thread while it waits for the exports) waited for the first's result, which cannot come before it
    # returns: it waited its whole budget (8 s here), holding the first past its own (5 s), which then gave up on
    # spans its exporter had been let send, and counted them as dropped. Now it returns False (not finished) at once.
    gate = Gate()
    entered = threading.Event()
    export = gate.export

    def entering(spans: Sequence[ReadableSpan]) -> SpanExportResult:
        entered.set()
        return export(spans)

    gate.export = entering  # type: ignore[method-assign]
    handle = configure("reentrant", exporter="none", span_exporters=[gate], set_global=False)
    _spans(handle, 10)
    inner: list[bool] = []

    def on_signal(signum: int, frame: object) -> None:
        if inner:  # a repeated signal (below) that came before the first was handled
            return
        inner.append(handle.shutdown(timeout_s=8))
        gate.open.set()  # the backend answers once the handler has returned

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        main = threading.get_ident()  # the signal to this thread (os.kill's may land on another, left unhandled)

        def raise_signal() -> None:
            # The first shutdown() is under way, waiting for the exporter. Sent again until handled: a signal that
            # lands just before the main thread blocks in its wait is only handled when that wait ends (CPython
            # checks for signals between bytecodes and when a wait is interrupted): here after the whole budget.
            if entered.wait(30):
                while not gate.open.wait(0.05):
                    signal.pthread_kill(main, signal.SIGUSR1)

        raiser = threading.Thread(target=raise_signal)
        raiser.start()
        first = handle.shutdown(timeout_s=5)
        raiser.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        gate.open.set()
    assert inner == [False]  # the first had not finished when the handler asked
    assert first is True  # it finished within its own budget, once the handler let the exporter go
    assert gate.received == 10 and handle.dropped["traces"] == 0
