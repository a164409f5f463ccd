"""Where the demo's telemetry goes: in-process always, plus OTLP and/or a Prometheus endpoint on request.

:func:`setup` builds the providers through :func:`shannon_otel.configure` (never setting the global
ones) and adds an in-memory span store, so the summary can draw a trace even while exporting.
:class:`ExportProblems` captures the OTel SDK's exporter log records while exporting: the first one is
reported once on stderr, the rest are only counted (an unreachable collector must not flood the terminal).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from .._config import Telemetry, configure
from .._metrics_bridge import BridgedInMemoryReader
from ._secrets import safe_url, scrub
from ._shown import visible

_MAX_TRACES = 64


class SpanStore(SpanExporter):
    """Keeps the spans of the last ``_MAX_TRACES`` traces, plus the trace of the slowest wave so far.

    Fed by a SimpleSpanProcessor on the event loop thread; memory stays bounded however long
    ``--duration`` runs.
    """

    def __init__(self) -> None:
        self._traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._slowest: tuple[float, int, list[ReadableSpan]] | None = None
        self.count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            for span in spans:
                self.count += 1
                if span.context is None:
                    continue
                trace_id = span.context.trace_id
                bucket = self._traces.get(trace_id)
                if bucket is None:
                    bucket = self._traces[trace_id] = []
                    while len(self._traces) > _MAX_TRACES:
                        self._traces.popitem(last=False)
                bucket.append(span)
                if span.parent is None and span.name.startswith("wave ") and span.end_time and span.start_time:
                    duration = (span.end_time - span.start_time) / 1e9
                    if self._slowest is None or duration > self._slowest[0]:
                        self._slowest = (duration, trace_id, bucket)
        return SpanExportResult.SUCCESS

    def slowest_wave(self) -> list[ReadableSpan]:
        """Every span of the slowest wave's trace (empty if no wave span was recorded)."""
        with self._lock:
            return list(self._slowest[2]) if self._slowest is not None else []

    def trace(self, trace_id: int) -> list[ReadableSpan]:
        with self._lock:
            return list(self._traces.get(trace_id, ()))

    def shutdown(self) -> None:
        pass


class MemoryMetrics(BridgedInMemoryReader):
    """The embedded metric reader: collects on demand and merges the in-process task histograms."""

    def series(self) -> tuple[int, int]:
        """(metrics, data points) collected now."""
        data = self.get_metrics_data()
        metrics = points = 0
        for rm in data.resource_metrics if data else ():
            for scope in rm.scope_metrics:
                for metric in scope.metrics:
                    metrics += 1
                    points += len(list(metric.data.data_points))
        return metrics, points


def _short(message: str) -> str:
    """``StatusCode.UNAVAILABLE: <details>`` out of the gRPC exporter's long retry messages."""
    found = _GRPC.search(message)
    return f"{found.group(1)}: {found.group(2)}" if found else message


_GRPC = re.compile(r"(StatusCode\.\w+).*?[Ee]rror details: (.*)")
_REFUSED_METRICS = re.compile(r"metrics.*(UNIMPLEMENTED|\b404\b)|(UNIMPLEMENTED|\b404\b).*metrics", re.IGNORECASE)


# The loggers of the exporters and of the processors/readers that call them. Any other SDK warning (an
# invalid attribute, say) says nothing about exporting, so it stays with ordinary logging.
_EXPORT_LOGGERS = (
    "opentelemetry.exporter",
    "opentelemetry.sdk._shared_internal",  # the batch span / log processors
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.metrics._internal.export",  # the periodic metric reader
    "shannon_otel.export",  # a backend that took an export but rejected items of it (partial success)
)


class ExportProblems(logging.Handler):
    """Catches the SDK exporters' warnings: reports the first on stderr once, counts the others.

    Inactive (``target`` None: nothing is exported) it captures nothing. An endpoint that accepts
    traces but not metrics (Jaeger) is a notice, not a failure.
    """

    def __init__(self, target: str | None) -> None:
        super().__init__(logging.WARNING)
        self.target = target
        self._shown = safe_url(target) if target is not None else "the in-process SDK"  # never its password
        self.count = 0
        self.first: str | None = None
        self.metrics_refused = 0
        self._loggers = [logging.getLogger(name) for name in _EXPORT_LOGGERS] if target is not None else []
        self._propagate = [logger.propagate for logger in self._loggers]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = _short(record.getMessage().splitlines()[0])
        except Exception:  # a malformed record must not break the exporter thread
            message = str(record.msg)
        # the gRPC exporter quotes its target, the endpoint's password included ("user:password@host:port")
        message = scrub(message, self.target) if self.target is not None else message
        message = visible(message)  # the backend's words, printed on stderr and in the summary
        if _REFUSED_METRICS.search(message):
            self.metrics_refused += 1
            if self.metrics_refused == 1:
                print(
                    f"shannon-otel: {self._shown} does not accept OTLP metrics ({message}); traces are still "
                    "exported. Jaeger takes traces only: point --otlp-endpoint at the OpenTelemetry Collector "
                    "for metrics.", file=sys.stderr, flush=True,
                )
            return
        self.count += 1
        if self.first is None:
            self.first = message
            print(
                f"shannon-otel: telemetry export to {self._shown} failed: {message}\n"
                "shannon-otel: the demo goes on; further export errors are counted in the summary.",
                file=sys.stderr, flush=True,
            )

    def __enter__(self) -> ExportProblems:
        for logger in self._loggers:
            logger.addHandler(self)
            logger.propagate = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        for logger, propagate in zip(self._loggers, self._propagate, strict=True):
            logger.removeHandler(self)
            logger.propagate = propagate


@dataclass
class Exporting:
    telemetry: Telemetry
    spans: SpanStore
    metrics: MemoryMetrics | None
    endpoint: str | None
    problems: ExportProblems

    @property
    def disabled(self) -> bool:
        """``OTEL_SDK_DISABLED=true``: the SDK's providers record nothing (no-op tracers and meters), so
        nothing is exported either, whatever the endpoint. The SDK's own rule, read as it reads it."""
        return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.telemetry.tracer_provider, "meter_provider": self.telemetry.meter_provider}

    def close(self, limit_s: float) -> bool:
        """Flush and shut the providers down, waiting at most ``limit_s`` seconds; never raises.

        ``Telemetry.shutdown`` flushes traces, metrics and logs at once against one deadline and leaves
        a stuck export to a daemon thread: True when everything finished, False when what was still
        unsent is given up (counted as dropped, and reported here as a problem). Once shut down, the
        exit handler ``configure()`` registered has nothing left to do.
        """
        if self.telemetry.shutdown(timeout_s=limit_s):
            return True
        self.problems.emit(logging.makeLogRecord(
            {"msg": f"gave up flushing after {limit_s:g} s; the telemetry not yet sent is dropped"}))
        return False


def setup(
    *, endpoint: str | None, protocol: str | None, readers: Sequence[MetricReader], export_timeout_s: float,
    metric_interval_s: float | None, service_name: str,
) -> Exporting:
    """Providers for one demo run. ``endpoint=None``: embedded (nothing leaves the process). ``protocol``
    (``grpc`` or ``http``, None: ``grpc``) is that of traces and metrics alike, whatever the per-signal
    ``OTEL_EXPORTER_OTLP_<signal>_PROTOCOL`` variables say."""
    memory = MemoryMetrics() if endpoint is None else None
    all_readers = [*readers, *([memory] if memory is not None else [])]
    exporter: Any = "none"
    if endpoint is not None:
        # Both signals over the one protocol the demo announces (--otlp-protocol, else grpc): "otlp" let
        # OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf send the traces over HTTP to the gRPC port given.
        exporter = {"grpc": "otlp_grpc", "http": "otlp_http"}[protocol or "grpc"]
    problems = ExportProblems(endpoint)
    telemetry = configure(
        service_name, exporter=exporter, endpoint=endpoint, export_timeout_s=export_timeout_s,
        metric_interval_s=metric_interval_s, metric_readers=all_readers, set_global=False,
    )
    spans = SpanStore()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    return Exporting(telemetry, spans, memory, endpoint, problems)
