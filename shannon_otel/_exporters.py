"""Choosing and building the span, metric and log exporters from ``configure()``'s arguments and
the standard ``OTEL_*`` variables; the metric export interval."""

from __future__ import annotations

import os
from typing import Literal

from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from ._delivery import env_int
from ._validate import check_number

ExporterName = Literal["otlp", "otlp_grpc", "otlp_http", "console", "none"]
_EXPORTERS = ("otlp", "otlp_grpc", "otlp_http", "console", "none")
DEFAULT_METRIC_INTERVAL_S = 10.0


def _choose(kind: str, explicit: str | None) -> tuple[str, ...]:
    """The exporters of one signal (``kind`` is ``TRACES`` or ``METRICS``): ``explicit``, else the
    comma-separated ``OTEL_<kind>_EXPORTER`` (several allowed, as the specification says), with
    ``otlp`` resolved by ``OTEL_EXPORTER_OTLP_<kind>_PROTOCOL`` then ``OTEL_EXPORTER_OTLP_PROTOCOL``."""
    raw = explicit if explicit is not None else os.environ.get(f"OTEL_{kind}_EXPORTER", "otlp")
    names = [n.strip() for n in raw.split(",") if n.strip()] or ["otlp"]
    chosen: list[str] = []
    for name in names:
        if name == "otlp":
            protocol = os.environ.get(
                f"OTEL_EXPORTER_OTLP_{kind}_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            )
            name = "otlp_http" if protocol.strip().startswith("http") else "otlp_grpc"
        if name not in _EXPORTERS:
            raise ValueError(f"exporter must be one of {', '.join(_EXPORTERS)}; got {name!r}")
        if name != "none" and name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def _span_exporter(name: str, endpoint: str | None, timeout_s: float | None) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp_http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        url = f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None
        return HttpSpans(endpoint=url, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

    return GrpcSpans(endpoint=endpoint, timeout=timeout_s)


def _metric_exporter(name: str, endpoint: str | None, timeout_s: float | None) -> MetricExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleMetricExporter()
    if name == "otlp_http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

        url = f"{endpoint.rstrip('/')}/v1/metrics" if endpoint else None
        return HttpMetrics(endpoint=url, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

    return GrpcMetrics(endpoint=endpoint, timeout=timeout_s)


def _log_exporter(name: str, endpoint: str | None, timeout_s: float | None) -> LogRecordExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleLogRecordExporter()
    if name == "otlp_http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

        url = f"{endpoint.rstrip('/')}/v1/logs" if endpoint else None
        return HttpLogs(endpoint=url, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

    return GrpcLogs(endpoint=endpoint, timeout=timeout_s)


def _logs_wanted(logs: bool | None, exporter: str | None) -> tuple[str, ...] | None:
    """The log exporters' names when the logs signal is on: asked by ``logs=True`` or by a set
    ``OTEL_LOGS_EXPORTER`` other than ``none``; ``None`` when off."""
    if logs is False or (logs is None and os.environ.get("OTEL_LOGS_EXPORTER", "").strip() in ("", "none")):
        return None
    names = _choose("LOGS", exporter)
    return names or None


def _metric_interval_s(explicit: float | None) -> float:
    if explicit is not None:
        check_number("metric_interval_s", explicit, low=0, low_open=True, high=86_400.0)
        return float(explicit)
    millis = env_int("OTEL_METRIC_EXPORT_INTERVAL")  # integer milliseconds, as the spec says
    return millis / 1000 if millis is not None else DEFAULT_METRIC_INTERVAL_S
