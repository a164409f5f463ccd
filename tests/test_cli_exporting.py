"""The demo's export-problem capture: only the SDK's exporter log records, only when exporting."""

from __future__ import annotations

import logging
import threading

import pytest

from shannon_otel._config import Telemetry
from shannon_otel.cli._exporting import setup


def test_exporter_warnings_are_counted_and_the_first_reported(capsys: pytest.CaptureFixture[str]) -> None:
    run = setup(endpoint="http://127.0.0.1:9", protocol="http", readers=(), export_timeout_s=1.0,
                metric_interval_s=60.0, service_name="exporting-test")
    try:
        with run.problems:
            logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").warning("refused")
            logging.getLogger("opentelemetry.sdk._shared_internal").error("Exception while exporting Span.")
    finally:
        run.telemetry.shutdown()
    assert (run.problems.count, run.problems.first) == (2, "refused")
    assert "telemetry export to http://127.0.0.1:9 failed: refused" in capsys.readouterr().err


def test_other_sdk_warnings_are_not_export_problems(caplog: pytest.LogCaptureFixture) -> None:
    run = setup(endpoint="http://127.0.0.1:9", protocol="http", readers=(), export_timeout_s=1.0,
                metric_interval_s=60.0, service_name="exporting-test")
    try:
        with run.problems:
            logging.getLogger("opentelemetry.attributes").warning("Invalid type dict for attribute 'x'")
    finally:
        run.telemetry.shutdown()
    assert run.problems.count == 0
    assert "Invalid type dict" in caplog.text, "left to ordinary logging, not swallowed"


def test_nothing_is_counted_without_an_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    run = setup(endpoint=None, protocol=None, readers=(), export_timeout_s=1.0, metric_interval_s=60.0,
                service_name="exporting-test")
    try:
        with run.problems:
            logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").warning("stray")
    finally:
        run.telemetry.shutdown()
    assert run.problems.count == 0 and run.problems.first is None


class _Provider:
    """A provider whose shutdown blocks until released (an exporter stuck on an unreachable endpoint)."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.release = release
        self.calls = 0
        self.called = threading.Event()

    def shutdown(self, timeout_millis: float | None = None) -> None:
        self.calls += 1
        self.called.set()
        if self.release is not None:
            self.release.wait(30)


def test_close_gives_up_at_its_limit_and_counts_it(capsys: pytest.CaptureFixture[str]) -> None:
    # The SDK bounds each export, not the flush: the demo must stop waiting when it said it would.
    release = threading.Event()
    run = setup(endpoint="http://127.0.0.1:9", protocol="http", readers=(), export_timeout_s=1.0,
                metric_interval_s=60.0, service_name="exporting-test")
    real = run.telemetry
    stuck, fine = _Provider(release), _Provider()
    run.telemetry = Telemetry(stuck, fine)  # type: ignore[arg-type]
    try:
        with run.problems:
            assert run.close(0.05) is False
        # Both were asked while the stuck one still blocks: at once, not in turn. (Waited for: on a loaded machine
        # the second thread may start after close() has given up at 0.05 s.)
        assert stuck.called.wait(10) and fine.called.wait(10), "traces and metrics are flushed at once, not in turn"
        assert (stuck.calls, fine.calls) == (1, 1)
        assert run.problems.count == 1 and "gave up flushing after 0.05 s" in capsys.readouterr().err
    finally:
        release.set()
        real.shutdown()


def test_close_returns_true_when_the_flush_finishes() -> None:
    run = setup(endpoint=None, protocol=None, readers=(), export_timeout_s=1.0, metric_interval_s=60.0,
                service_name="exporting-test")
    assert run.close(30) is True
    assert run.problems.count == 0


def test_the_endpoints_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    # Before: "telemetry export to http://alice:PASSW0RD-xyz@127.0.0.1:9 failed: ..." on stderr, and an exporter
    # message quoting the target (as the gRPC exporter's did, user:password@host:port) there and in the summary.
    run = setup(endpoint="http://alice:PASSW0RD-xyz@127.0.0.1:9", protocol="http", readers=(), export_timeout_s=1.0,
                metric_interval_s=60.0, service_name="exporting-test")
    try:
        with run.problems:
            logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").warning(
                "Failed to export to %s: refused", "alice:PASSW0RD-xyz@127.0.0.1:9")
    finally:
        run.telemetry.shutdown()
    err = capsys.readouterr().err
    assert "telemetry export to http://alice:***@127.0.0.1:9 failed: Failed to export to alice:***@127.0.0.1:9" in err
    assert run.problems.first is not None and "alice:***@127.0.0.1:9" in run.problems.first
    assert "PASSW0RD-xyz" not in err + run.problems.first


@pytest.mark.parametrize(("protocol", "expected"), [(None, "Grpc"), ("grpc", "Grpc"), ("http", "Http")])
def test_both_signals_use_the_demos_protocol_whatever_the_per_signal_variables_say(
    monkeypatch: pytest.MonkeyPatch, protocol: str | None, expected: str,
) -> None:
    # The demo announces one protocol (--otlp-protocol, else $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc) for its one
    # endpoint; a per-signal variable set for another program sent the traces over HTTP to the gRPC port.
    other = "grpc" if expected == "Http" else "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", other)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", other)
    run = setup(endpoint="http://127.0.0.1:9", protocol=protocol, readers=(), export_timeout_s=1.0,
                metric_interval_s=3600.0, service_name="t")
    try:
        spans = [p.exporter.inner for p in run.telemetry._processors]
        metrics = [m.inner for m in run.telemetry._metric_exporters]
        assert [type(e).__name__ for e in spans] == [f"{expected}Spans"]
        assert [type(e).__name__ for e in metrics] == [f"{expected}Metrics"]
    finally:
        run.telemetry.shutdown(timeout_s=0.1)


def test_an_embedded_demo_is_not_bounded_by_the_export_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    # Without --otlp-endpoint nothing is exported, yet the flush of the in-memory readers was given
    # --export-timeout: a tiny one gave up on them, exited 3 and said "telemetry export to the in-process SDK failed".
    from shannon_otel.cli import main

    code = main(["demo", "--waves", "1", "--tasks", "2", "--export-timeout", "1e-9", "--plain"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "failed" not in captured.err
    assert "spans recorded: " in captured.out
