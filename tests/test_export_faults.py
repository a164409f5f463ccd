"""Telemetry delivery against a misbehaving backend and across process life cycles.

Every backend here is a real server on 127.0.0.1 (OTLP/HTTP with ``http.server``, OTLP/gRPC with
grpc's server API, raw sockets for resets and trickles), started and closed by the test. Each test
checks what a user relies on: the wave's results are untouched, ``shutdown()`` returns (a 60 s guard,
never a timing assertion), and every span not delivered is counted in ``Telemetry.dropped``.

Bugs pinned:
- an OTLP partial success (the backend took the request but rejected items of it) was counted as
  delivered: the SDK's exporters never read the answer, ``dropped`` said 0 and the demo "ok";
- an HTTP redirect (301/302/307/308) was counted as delivered, silently: the SDK's HTTP exporter never
  follows one and treats every answer below 400 as a success;
- ``shannon-otel check`` said "ok ... accepted a test span" for both;
- a multiprocessing child (``Process``, ``ProcessPoolExecutor`` workers) leaves by ``os._exit``
  without running ``atexit``: the spans of its waves were lost, never exported nor counted;
- a forked child inherited the parent's count of queued spans (a queue the SDK empties in the child)
  and its drop counts and locks: it refused its own spans as ``queue_full`` with an empty queue,
  reported the parent's drops again, and hung if the fork landed while a drop was being counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs shipped with grpcio
import pytest
from _forked import fork_while_locked
from _http_sink import LocalServer
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shannon_otel import Telemetry, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel._delivery import bounded
from shannon_otel.cli._check import check_otlp
from shannon_otel.cli._exporting import setup

ROOT = Path(__file__).resolve().parents[1]
GUARD_S = 60.0  # a hang guard only: every wait below normally ends in well under a second
N_TASKS = 10
N_SPANS = N_TASKS + 1  # the task spans and the wave span


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "_OTEL_")):
            monkeypatch.delenv(name)


# --- backends -------------------------------------------------------------------------------------

Answer = Callable[[BaseHTTPRequestHandler, str, int], None]


class HttpSink(LocalServer):
    """An OTLP/HTTP endpoint on 127.0.0.1 answering each request with ``answer(handler, signal, items)``
    (``items``: spans or metric data points in the request). Counts what it was sent."""

    def __init__(self, answer: Answer) -> None:
        self.requests = 0
        self.spans = 0
        self._answer = answer
        self._lock = threading.Lock()
        super().__init__(self._post)

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        signal, items = "other", 0
        if request.path.endswith("/v1/logs"):
            signal, items = "logs", _records_in(logs_pb.ExportLogsServiceRequest.FromString(body))
        elif request.path.endswith("/v1/traces"):
            signal, items = "traces", _spans_in(trace_pb.ExportTraceServiceRequest.FromString(body))
        elif request.path.endswith("/v1/metrics"):
            signal, items = "metrics", _points_in(metrics_pb.ExportMetricsServiceRequest.FromString(body))
        with self._lock:
            self.requests += 1
            self.spans += items if signal == "traces" else 0
        self._answer(request, signal, items)


def _spans_in(request: trace_pb.ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)


def _records_in(request: logs_pb.ExportLogsServiceRequest) -> int:
    return sum(len(scope.log_records) for rl in request.resource_logs for scope in rl.scope_logs)


def _points_in(request: metrics_pb.ExportMetricsServiceRequest) -> int:
    points = 0
    for rm in request.resource_metrics:
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                points += len(getattr(metric, kind).data_points) if kind else 0
    return points


def answer(status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    def write(handler: BaseHTTPRequestHandler, signal: str, items: int) -> None:
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Type", "application/x-protobuf")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return write


class Rejecting:
    """An HTTP answer: 200 with a partial success rejecting up to ``spans`` spans, ``points`` metric
    points and ``records`` log records of each request; ``rejected`` holds what it rejected, by signal."""

    def __init__(self, spans: int, points: int, records: int = 0) -> None:
        self.limit = {"traces": spans, "metrics": points, "logs": records}
        self.rejected = {"traces": 0, "metrics": 0, "logs": 0}
        self._lock = threading.Lock()

    def __call__(self, handler: BaseHTTPRequestHandler, signal: str, items: int) -> None:
        body = b""
        if signal in self.limit:
            rejected = min(items, self.limit[signal])
            with self._lock:
                self.rejected[signal] += rejected
            body = self.partial(signal, rejected)
        answer(200, body)(handler, signal, items)

    @staticmethod
    def partial(signal: str, rejected: int) -> bytes:
        if signal == "traces":
            return bytes(trace_pb.ExportTraceServiceResponse(
                partial_success=trace_pb.ExportTracePartialSuccess(rejected_spans=rejected, error_message="span quota"),
            ).SerializeToString())
        if signal == "logs":
            return bytes(logs_pb.ExportLogsServiceResponse(
                partial_success=logs_pb.ExportLogsPartialSuccess(rejected_log_records=rejected, error_message="no"),
            ).SerializeToString())
        return bytes(metrics_pb.ExportMetricsServiceResponse(
            partial_success=metrics_pb.ExportMetricsPartialSuccess(
                rejected_data_points=rejected, error_message="point quota"),
        ).SerializeToString())


Behave = Callable[[grpc.ServicerContext, str, int], Any]


class GrpcSink:
    """An OTLP/gRPC endpoint on 127.0.0.1: ``behave(context, signal, items)`` returns the answer (None:
    an empty success) or aborts the call."""

    def __init__(self, behave: Behave) -> None:
        self.spans = 0

        sink = self

        class Traces(trace_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
                items = _spans_in(request)
                sink.spans += items
                return behave(context, "traces", items) or trace_pb.ExportTraceServiceResponse()

        class Metrics(metrics_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
                return behave(context, "metrics", _points_in(request)) or metrics_pb.ExportMetricsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)  # type: ignore[no-untyped-call]
        metrics_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)  # type: ignore[no-untyped-call]
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self._server.stop(None).wait(GUARD_S)


class RawSink:
    """A TCP listener on 127.0.0.1 that hands each connection to ``behave(conn, stop)`` in its own thread."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]) -> None:
        self.stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._conns: list[socket.socket] = []

        def accept() -> None:
            while True:
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    return
                self._conns.append(conn)
                threading.Thread(target=behave, args=(conn, self.stop), daemon=True).start()

        self._thread = threading.Thread(target=accept, name="round5-raw-sink", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(GUARD_S)
        for conn in self._conns:
            conn.close()


def _reset_after_reading(conn: socket.socket, stop: threading.Event) -> None:
    """Accept the connection, read the request's start, then reset it (RST, not FIN)."""
    try:
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def _one_byte_a_second(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request, then answer a 200 one byte per second (until the test ends)."""
    try:
        conn.recv(1 << 16)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n":
            conn.send(bytes([byte]))
            if stop.wait(1.0):
                return
    except OSError:
        return


# --- helpers --------------------------------------------------------------------------------------


def _run_wave(handle: Telemetry) -> list[int]:
    wave: Wave[int] = Wave("round5", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider)

    async def work(i: int) -> int:
        return i * 2

    return [value for value in asyncio.run(wave.map(work, range(N_TASKS))).values() if value is not None]


def _shutdown(handle: Telemetry) -> bool:
    """``handle.shutdown()`` under a hang guard: fails the test instead of hanging the suite."""
    finished, result = bounded("test shutdown", handle.shutdown, GUARD_S)
    assert finished, "shutdown() did not return"
    return bool(result)


def _dropped_points(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    found: dict[tuple[str, str], int] = {}
    for rm in data.resource_metrics if data else ():
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                if metric.name == tel.TELEMETRY_DROPPED.name:
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes or {})
                        key = (str(attributes[tel.TELEMETRY_SIGNAL]), str(attributes[tel.TELEMETRY_DROP_REASON]))
                        found[key] = int(point.value)  # type: ignore[union-attr]
    return found


# --- partial success ------------------------------------------------------------------------------


@pytest.mark.parametrize("redacted", [False, True])
def test_spans_and_points_an_http_collector_rejects_in_a_partial_success_are_counted(
    caplog: pytest.LogCaptureFixture, redacted: bool,
) -> None:
    # Before: dropped == {"traces": 0, "metrics": 0}: the SDK's HTTP exporters count any 200 as delivered.
    # (With redact=, the span exporter is wrapped: its rejections are still read.)
    rejecting = Rejecting(spans=3, points=1)
    sink = HttpSink(rejecting)
    reader = InMemoryMetricReader()
    handle = configure("round5-partial", exporter="otlp_http", endpoint=sink.endpoint, set_global=False,
                       metric_readers=[reader], metric_interval_s=3600.0,
                       redact=(lambda type_name, message: None) if redacted else None)
    try:
        with caplog.at_level(logging.WARNING, "shannon_otel"):
            assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
            assert handle.force_flush(GUARD_S)
        assert sink.spans == N_SPANS  # all sent; the collector kept all but the rejected ones
        assert rejecting.rejected["traces"] > 0 and rejecting.rejected["metrics"] > 0
        assert handle.dropped == {"traces": rejecting.rejected["traces"],
                                  "metrics": rejecting.rejected["metrics"], "logs": 0}
        by_reason = _dropped_points(reader)
        assert by_reason[("traces", "rejected")] == rejecting.rejected["traces"]
        assert by_reason[("metrics", "rejected")] == rejecting.rejected["metrics"]
        assert "rejected 3 of an export's spans (partial success: 'span quota')" in caplog.text
    finally:
        _shutdown(handle)
        sink.close()


def test_log_records_an_http_collector_rejects_in_a_partial_success_are_counted() -> None:
    rejecting = Rejecting(spans=0, points=0, records=1_000_000)
    sink = HttpSink(rejecting)
    handle = configure("round5-partial-logs", exporter="otlp_http", endpoint=sink.endpoint, set_global=False,
                       logs=True, metric_interval_s=3600.0, shutdown_timeout_s=GUARD_S)
    try:
        for i in range(5):
            logging.getLogger("shannon_otel.round5").warning("record %d", i)
        assert handle.force_flush(GUARD_S)
    finally:
        assert _shutdown(handle)  # everything emitted was exported (the handler goes first): nothing in flight
        sink.close()
    # the five records, and the library's own warning about the first rejection (also a shannon_otel record)
    assert rejecting.rejected["logs"] >= 5
    assert handle.dropped["logs"] == rejecting.rejected["logs"]


def test_spans_and_points_a_grpc_collector_rejects_in_a_partial_success_are_counted() -> None:
    # Before: dropped == {"traces": 0, "metrics": 0}: the SDK's gRPC exporters discard Export's answer.
    points: list[int] = []

    def reject_all(context: grpc.ServicerContext, signal: str, items: int) -> Any:
        if signal == "traces":
            return trace_pb.ExportTraceServiceResponse(
                partial_success=trace_pb.ExportTracePartialSuccess(rejected_spans=items, error_message="no"))
        points.append(items)
        return metrics_pb.ExportMetricsServiceResponse(
            partial_success=metrics_pb.ExportMetricsPartialSuccess(rejected_data_points=items, error_message="no"))

    sink = GrpcSink(reject_all)
    handle = configure("round5-partial-grpc", exporter="otlp_grpc", endpoint=sink.endpoint, set_global=False,
                       metric_interval_s=3600.0)
    try:
        assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
        assert handle.force_flush(GUARD_S)
        assert sink.spans == N_SPANS
        assert sum(points) > 0
        assert handle.dropped == {"traces": N_SPANS, "metrics": sum(points), "logs": 0}
    finally:
        _shutdown(handle)
        sink.close()


def test_a_full_success_answer_counts_nothing_over_http_and_grpc() -> None:
    # The control: an answer without partial_success (or with rejected 0) is delivery, not a drop.
    http, grpc_sink = HttpSink(answer(200, Rejecting.partial("traces", 0))), GrpcSink(lambda *a: None)
    handles = [
        configure("round5-ok", exporter="otlp_http", endpoint=http.endpoint, set_global=False,
                  shutdown_timeout_s=GUARD_S),
        configure("round5-ok", exporter="otlp_grpc", endpoint=grpc_sink.endpoint, set_global=False,
                  shutdown_timeout_s=GUARD_S),
    ]
    try:
        for handle in handles:
            _run_wave(handle)
            assert handle.force_flush(GUARD_S)
        assert (http.spans, grpc_sink.spans) == (N_SPANS, N_SPANS)
        for handle in handles:
            assert _shutdown(handle)
            assert handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}
    finally:
        http.close()
        grpc_sink.close()


def test_the_demo_reports_a_partial_success_as_an_export_problem(capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the demo's summary said "OTLP export to ...: ok" while the collector rejected every span.
    sink = HttpSink(Rejecting(spans=1_000_000, points=0))
    run = setup(endpoint=sink.endpoint, protocol="http", readers=(), export_timeout_s=5.0, metric_interval_s=3600.0,
                service_name="round5-demo")
    try:
        with run.problems:
            _run_wave(run.telemetry)
            assert run.close(GUARD_S)
        assert run.problems.count >= 1
        assert run.problems.first is not None and "rejected" in run.problems.first
        assert "telemetry export to" in capsys.readouterr().err
        assert run.telemetry.dropped["traces"] == N_SPANS
    finally:
        sink.close()


@pytest.mark.parametrize("case", ["redirect", "partial success over http", "partial success over grpc",
                                  "accepted over http", "accepted over grpc"])
def test_the_check_command_fails_an_endpoint_that_kept_nothing(case: str) -> None:
    # Before: "ok   OTLP ...: accepted a test span" (exit 0) for a redirecting endpoint and for a collector
    # rejecting the span in a partial success.
    grpc_answer: Behave = lambda context, signal, items: None  # noqa: E731
    http_answer = answer(200)
    if case == "redirect":
        http_answer = answer(308, headers=(("Location", "https://127.0.0.1:1/v1/traces"),))
    elif case == "partial success over http":
        http_answer = answer(200, Rejecting.partial("traces", 1))
    elif case == "partial success over grpc":
        def grpc_answer(context: grpc.ServicerContext, signal: str, items: int) -> Any:
            return trace_pb.ExportTraceServiceResponse(
                partial_success=trace_pb.ExportTracePartialSuccess(rejected_spans=items, error_message="span quota"))
    sink: HttpSink | GrpcSink = GrpcSink(grpc_answer) if case.endswith("grpc") else HttpSink(http_answer)
    try:
        ok, text = check_otlp(sink.endpoint, "grpc" if case.endswith("grpc") else "http", 10.0)
    finally:
        sink.close()
    if case.startswith("accepted"):
        assert ok and text.startswith("accepted a test span")
    elif case == "redirect":
        assert not ok
        assert "answered 308 (redirect to 'https://127.0.0.1:1/v1/traces')" in text
        assert "give the final URL as the endpoint" in text
    else:
        assert not ok
        assert text.endswith("rejected 1 of an export's spans (partial success: 'span quota')")


# --- error statuses and broken transports ---------------------------------------------------------

HUGE = "100000"  # seconds: a Retry-After far beyond any budget


@pytest.mark.parametrize(("status", "retry_after"), [
    (429, None), (503, None), (429, "1"), (503, HUGE), (429, HUGE), (400, None), (413, None), (500, None),
])
def test_an_error_status_never_loses_a_result_and_every_span_is_counted(status: int, retry_after: str | None) -> None:
    headers = (("Retry-After", retry_after),) if retry_after else ()
    sink = HttpSink(answer(status, headers=headers))
    handle = configure("round5-status", exporter="otlp_http", endpoint=sink.endpoint, set_global=False,
                       shutdown_timeout_s=0.5, export_timeout_s=30.0, metric_interval_s=3600.0)
    try:
        assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
        _shutdown(handle)  # retrying 429/503 outlives the budget: given up and counted, not waited for
        assert handle.dropped["traces"] == N_SPANS  # failed (export_failed) or given up (shutdown), never lost
    finally:
        sink.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_the_exporter_does_not_follow_is_counted_not_delivered(
    status: int, caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: dropped == {"traces": 0, "metrics": 0} and not a log line: the SDK's HTTP exporter counts any
    # answer below 400 as delivered and never follows a redirect (an http:// endpoint an ingress moves to
    # https://), so everything was lost silently.
    sink = HttpSink(answer(status, headers=(("Location", "https://127.0.0.1:1/v1/traces"),)))
    handle = configure("round5-redirect", exporter="otlp_http", endpoint=sink.endpoint, set_global=False,
                       metric_interval_s=3600.0)
    try:
        with caplog.at_level(logging.WARNING, "shannon_otel"):
            assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
            assert handle.force_flush(GUARD_S)
        assert sink.spans == N_SPANS  # sent to the redirecting server, which kept nothing
        assert handle.dropped["traces"] == N_SPANS
        assert handle.dropped["metrics"] > 0
        assert f"answered {status} (redirect to 'https://127.0.0.1:1/v1/traces')" in caplog.text
    finally:
        _shutdown(handle)
        sink.close()


@pytest.mark.parametrize("status", [200, 202, 204])
def test_any_success_status_without_a_body_counts_nothing(status: int) -> None:
    sink = HttpSink(answer(status))
    handle = configure("round5-2xx", exporter="otlp_http", endpoint=sink.endpoint, set_global=False,
                       metric_interval_s=3600.0, shutdown_timeout_s=GUARD_S)
    try:
        _run_wave(handle)
        assert handle.force_flush(GUARD_S)
        assert sink.spans == N_SPANS
        assert _shutdown(handle)
        assert handle.dropped == {"traces": 0, "metrics": 0, "logs": 0}
    finally:
        sink.close()


def _grpc_abort(code: grpc.StatusCode, retry_delay_s: int | None = None) -> Behave:
    def behave(context: grpc.ServicerContext, signal: str, items: int) -> Any:
        if retry_delay_s is not None:
            from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]

            info = RetryInfo()
            info.retry_delay.seconds = retry_delay_s
            context.set_trailing_metadata((("google.rpc.retryinfo-bin", info.SerializeToString()),))
        context.abort(code, "round5")

    return behave


@pytest.mark.parametrize(("code", "retry_delay_s"), [
    (grpc.StatusCode.UNAVAILABLE, None), (grpc.StatusCode.RESOURCE_EXHAUSTED, 100_000),
    (grpc.StatusCode.INVALID_ARGUMENT, None), (grpc.StatusCode.UNAUTHENTICATED, None),
])
def test_a_grpc_error_status_never_loses_a_result_and_every_span_is_counted(
    code: grpc.StatusCode, retry_delay_s: int | None,
) -> None:
    sink = GrpcSink(_grpc_abort(code, retry_delay_s))
    handle = configure("round5-grpc-status", exporter="otlp_grpc", endpoint=sink.endpoint, set_global=False,
                       shutdown_timeout_s=0.5, export_timeout_s=30.0, metric_interval_s=3600.0)
    try:
        assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
        _shutdown(handle)
        assert handle.dropped["traces"] == N_SPANS
    finally:
        sink.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(exporter, endpoint) of one broken backend, closed after the test."""
    kind = request.param
    closers: list[Callable[[], None]] = []
    if kind == "reset":
        raw = RawSink(_reset_after_reading)
        closers.append(raw.close)
        yield "otlp_http", raw.endpoint
    elif kind == "one byte a second":
        raw = RawSink(_one_byte_a_second)
        closers.append(raw.close)
        yield "otlp_http", raw.endpoint
    elif kind in ("https to plain http", "grpc over tls to plain http", "grpc exporter to http"):
        http = HttpSink(answer(200))
        closers.append(http.close)
        exporter = "otlp_http" if kind == "https to plain http" else "otlp_grpc"
        endpoint = http.endpoint if kind == "grpc exporter to http" else http.endpoint.replace("http:", "https:")
        yield exporter, endpoint
    else:  # the HTTP exporter given a gRPC endpoint
        grpc_sink = GrpcSink(lambda *a: None)
        closers.append(grpc_sink.close)
        yield "otlp_http", grpc_sink.endpoint
    for close in closers:
        close()


@pytest.mark.parametrize("backend", [
    "reset", "one byte a second", "https to plain http", "grpc over tls to plain http", "grpc exporter to http",
    "http exporter to grpc",
], indirect=True)
def test_a_broken_transport_never_loses_a_result_and_every_span_is_counted(backend: tuple[str, str]) -> None:
    exporter, endpoint = backend
    handle = configure("round5-transport", exporter=exporter, endpoint=endpoint,
                       set_global=False, shutdown_timeout_s=0.5, export_timeout_s=30.0, metric_interval_s=3600.0)
    assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
    _shutdown(handle)  # given up within the budget (or failed at once): either way every span is counted
    assert handle.dropped["traces"] == N_SPANS


@pytest.mark.parametrize("exporter", ["otlp_grpc", "otlp_http"])
def test_a_shutdown_whose_exports_failed_in_time_returns_true_and_counts_them_as_its_docstring_says(
    exporter: str,
) -> None:
    # Before, the docstring: "True when everything was exported". Against a refused connection every export fails
    # at once (the first retry's backoff is beyond the export timeout), so shutdown() finishes in time and returns
    # True with nothing exported: True means "ended in time", what failed is in dropped (as force_flush says).
    with socket.socket() as probe:  # bound, never listening: connection refused
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
        handle = configure("refused", exporter=exporter, endpoint=endpoint, set_global=False, logs=True,
                           export_timeout_s=0.2, shutdown_timeout_s=GUARD_S, metric_interval_s=3600.0)
        assert _run_wave(handle) == [i * 2 for i in range(N_TASKS)]
        assert _shutdown(handle) is True
    assert handle.dropped["traces"] == N_SPANS and handle.dropped["metrics"] > 0
    doc = " ".join((Telemetry.shutdown.__doc__ or "").split())
    assert "True does not mean the backend accepted the data" in doc
    assert "everything was exported" not in doc


# --- process life cycle ---------------------------------------------------------------------------

_CHILDREN = '''
import asyncio, json, multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from shannon_otel import Wave, configure

async def work(i):
    return i

def wave(n):
    return len(asyncio.run(Wave("child").map(work, range(n))).values())

def setup(endpoint):
    configure("worker", exporter="otlp_http", endpoint=endpoint, metric_interval_s=3600.0, shutdown_timeout_s=30.0)

if __name__ == "__main__":
    case, endpoint = sys.argv[1], sys.argv[2]
    if case == "process after configure":
        configure("parent", exporter="otlp_http", endpoint=endpoint, metric_interval_s=3600.0, shutdown_timeout_s=30.0)
        child = multiprocessing.get_context("fork").Process(target=wave, args=(20,))
        child.start()
        child.join(60)
        results = [child.exitcode]
    elif case == "executor after configure":
        configure("parent", exporter="otlp_http", endpoint=endpoint, metric_interval_s=3600.0, shutdown_timeout_s=30.0)
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(wave, [5, 15]))
    else:  # "executor, configured by each worker" with the fork or the spawn start method
        method = case.rsplit(" ", 1)[1]
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method), initializer=setup,
                                 initargs=(endpoint,)) as pool:
            results = list(pool.map(wave, [5, 15]))
    print(json.dumps(results), flush=True)
'''


@pytest.mark.parametrize("case", [
    "process after configure", "executor after configure", "executor, configured by each worker fork",
    "executor, configured by each worker spawn",
])
def test_the_spans_of_waves_run_in_multiprocessing_children_are_exported(tmp_path: Path, case: str) -> None:
    # Before: 0 spans arrived from a forked child (it leaves by os._exit: atexit never ran), none counted.
    sink = HttpSink(answer(200))
    script = tmp_path / "children.py"
    script.write_text(_CHILDREN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    try:
        done = subprocess.run([sys.executable, str(script), case, sink.endpoint], capture_output=True, text=True,
                              env=env, timeout=GUARD_S, check=False, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        results = json.loads(done.stdout.splitlines()[-1])
        expected = [0] if case == "process after configure" else [5, 15]
        assert results == expected
        waves = 1 if case == "process after configure" else 2
        assert sink.spans == 20 + waves  # every child's 20 task spans and its wave spans reached the collector
    finally:
        sink.close()


_STALLED = '''
import asyncio, json, multiprocessing, os, sys, time
from shannon_otel import Wave, configure

telemetry = configure("parent", exporter="otlp_http", endpoint=sys.argv[1], set_global=False,
                      metric_interval_s=3600.0, max_queue_size=16, max_export_batch_size=4, shutdown_timeout_s=30.0)

async def work(i):
    return i

def wave(name, n):
    run = Wave(name, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    return asyncio.run(run.map(work, range(n))).values()

def child(queue):
    wave("child", 10)
    finished = telemetry.shutdown()
    queue.put({"dropped": telemetry.dropped, "finished": finished})

if __name__ == "__main__":
    wave("parent", 40)  # 41 spans, the first export stalled: the queue (16) fills, the rest is refused
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.01)  # until the stalled export reached the collector (the child's must not be the first)
    parent_dropped = telemetry.dropped["traces"]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    print(json.dumps({"parent": parent_dropped, "child": queue.get(timeout=60)}), flush=True)
    process.join(60)
    telemetry.shutdown(timeout_s=0.1)  # the stalled export is given up at once, not waited for
'''


def test_a_child_forked_while_the_parents_export_is_stalled_exports_its_own_spans(tmp_path: Path) -> None:
    # Before: the child inherited the parent's count of queued spans (16, the queue the SDK empties in the
    # child) and refused 7+ of its own 11 spans as queue_full, with an empty queue; its dropped also
    # carried the parent's drops, reported a second time at its exit.
    release = threading.Event()
    stalled: list[bool] = []
    arrived = tmp_path / "arrived"

    def stall_the_first_export(handler: BaseHTTPRequestHandler, signal: str, items: int) -> None:
        if signal == "traces" and not stalled:
            stalled.append(True)
            arrived.touch()
            release.wait(GUARD_S)  # the parent's collector hangs on its first export
        answer(200)(handler, signal, items)

    sink = HttpSink(stall_the_first_export)
    script = tmp_path / "stalled.py"
    script.write_text(_STALLED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    try:
        done = subprocess.run([sys.executable, str(script), sink.endpoint, str(arrived)], capture_output=True,
                              text=True, env=env, timeout=GUARD_S, check=False)
    finally:
        release.set()
        sink.close()
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["parent"] >= 41 - 16 - 4  # the parent's own refusals, counted (in the parent only)
    assert seen["child"] == {"dropped": {"traces": 0, "metrics": 0, "logs": 0}, "finished": True}


_LOCKED = '''
from shannon_otel import configure

telemetry = configure("parent", exporter="none", set_global=False)
lock = telemetry._drops._lock  # an exporter thread counting a drop at the instant of the fork
'''

_LOCKED_CHILD = '''
telemetry.dropped  # takes the drop counter's lock
telemetry.shutdown()
'''


def test_a_child_forked_while_a_drop_is_being_counted_does_not_deadlock(tmp_path: Path) -> None:
    # Before: the child inherited the drop counter's lock held (by a thread that does not exist in the
    # child) and hung forever at its first count or its exit's shutdown. (The lock is taken directly
    # here: a fork landing inside an exporter thread's count is otherwise a matter of luck.)
    assert fork_while_locked(tmp_path, _LOCKED, _LOCKED_CHILD, timeout_s=GUARD_S) == {"hung": False, "status": 0}


_EXIT = '''
import asyncio, sys
from shannon_otel import Wave, configure
case, endpoint = sys.argv[1], sys.argv[2]
configure("exit", exporter="otlp_http", endpoint=endpoint, shutdown_timeout_s=0.5, metric_interval_s=3600.0)

async def work(i):
    if case == "sys.exit in a task" and i == 5:
        sys.exit(3)
    return i

print(asyncio.run(Wave("w").map(work, range(100))).values()[-1], flush=True)
raise RuntimeError("unhandled at top level")
'''


def _run_exit_app(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``source`` as a program given ``args`` and then an OTLP endpoint where nothing listens."""
    with socket.socket() as probe:  # a port with no listener: connection refused
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    script = tmp_path / "app.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, str(script), *args, endpoint], capture_output=True, text=True, env=env,
                          timeout=GUARD_S, check=False)


@pytest.mark.parametrize("case", ["unhandled exception", "sys.exit in a task"])
def test_leaving_the_interpreter_abnormally_still_shuts_telemetry_down_and_counts_it(tmp_path: Path, case: str) -> None:
    # Correct already; pinned. The exit handler runs, its one warning counts what the dead collector lost,
    # and the program's own exit status (1 for the exception, 3 for sys.exit(3)) is kept.
    done = _run_exit_app(tmp_path, _EXIT, case)
    assert "telemetry shutdown did not finish within 0.5 s" in done.stderr
    if case == "unhandled exception":
        assert done.returncode == 1
        assert done.stdout.split() == ["99"]
        assert "RuntimeError: unhandled at top level" in done.stderr
        assert "not delivered over the run: 101 spans" in done.stderr  # 100 tasks and the wave: all counted
    else:
        assert done.returncode == 3
        assert done.stdout == ""


_EXIT_QUIET = '''
import asyncio, atexit, logging, sys
from shannon_otel import Wave, configure

def after_ours():  # registered first, so it runs after the handle's own exit handler (atexit is LIFO)
    loggers = logging.Logger.manager.loggerDict
    names = sorted(n for n, lg in loggers.items() if n.startswith("opentelemetry.exporter")
                   and isinstance(lg, logging.Logger) and not lg.disabled)
    print("still logging:", names, flush=True)

atexit.register(after_ours)
configure("exit", exporter="otlp_http", endpoint=sys.argv[1], shutdown_timeout_s=0.5, metric_interval_s=3600.0)

async def work(i):
    return i

print(asyncio.run(Wave("w").map(work, range(10))).values()[-1], flush=True)
'''


def test_an_exit_that_gave_up_on_the_collector_silences_the_exports_left_running(tmp_path: Path) -> None:
    """Before: the exports given up on at exit went on retrying in daemon threads, logging each failure. A daemon
    thread frozen by the interpreter's finalization inside a log call held the handler's lock for good, and the
    main thread's next log (asyncio's "Task was destroyed but it is pending!", from the garbage collector) hung the
    exit: about 1 exit in 50 after ``sys.exit()`` in a wave task, with the collector down. The SDK's loggers are
    now silenced once the exit gave up (what they would say is counted in the one warning)."""
    done = _run_exit_app(tmp_path, _EXIT_QUIET)
    assert "telemetry shutdown did not finish within 0.5 s" in done.stderr
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["9", "still logging: []"]
