"""``configure()``: the one place that builds SDK providers and may set the global ones."""

from __future__ import annotations

import logging
import os
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Literal

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics, trace
from opentelemetry._logs._internal import ProxyLoggerProvider  # the unset global has no public name
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ._aggregate import BridgedExporter, MetricsBridge, histograms_cumulative
from ._otel._providers import globals_set, register_bridge
from ._telemetry import SCOPE_NAME as LOGGER_ROOT  # the logging hook's loggers are its children

ExporterName = Literal["otlp", "otlp_grpc", "otlp_http", "console", "none"]
_EXPORTERS = ("otlp", "otlp_grpc", "otlp_http", "console", "none")


class Telemetry:
    """The providers ``configure()`` built. ``shutdown()`` flushes and stops them (bounded by timeouts).

    Use as a context manager to shut down on exit. Export failures never raise here: the SDK logs
    them, and the user's work and results are unaffected.
    """

    def __init__(
        self, tracer_provider: TracerProvider, meter_provider: MeterProvider,
        logger_provider: LoggerProvider | None = None, log_handler: logging.Handler | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider  # None unless the logs signal was asked for
        self._log_handler = log_handler
        self._shut = False

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export what is buffered, within ``timeout_s`` for traces and metrics together.

        True means every processor and reader finished in time; it does not mean the backend
        accepted the data (exporters report failures through the SDK's logs).
        """
        deadline = time.monotonic() + timeout_s
        traces_ok = self.tracer_provider.force_flush(int(timeout_s * 1000))
        left_ms = max(0, int((deadline - time.monotonic()) * 1000))
        metrics_ok = left_ms > 0 and self.meter_provider.force_flush(left_ms)
        logs_ok = True
        if self.logger_provider is not None:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            logs_ok = left_ms > 0 and self.logger_provider.force_flush(left_ms)
        return bool(traces_ok and metrics_ok and logs_ok)

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        if self._log_handler is not None:
            logging.getLogger(LOGGER_ROOT).removeHandler(self._log_handler)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def _check_globals_unset(logs: bool) -> None:
    """The OTel API sets the global providers once; a second attempt would be ignored (only logged)."""
    if globals_set() or (logs and not isinstance(otel_logs.get_logger_provider(), ProxyLoggerProvider)):
        raise RuntimeError(
            "the global OTel providers are already set (OTel allows that once per process); "
            "call configure(..., set_global=False) and pass tracer_provider=/meter_provider= instead",
        )


def _choose(kind: str, explicit: str | None) -> str:
    name = explicit or os.environ.get(f"OTEL_{kind}_EXPORTER", "otlp").split(",")[0].strip() or "otlp"
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        name = "otlp_http" if protocol.startswith("http") else "otlp_grpc"
    if name not in _EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(_EXPORTERS)}; got {name!r}")
    return name


def _span_exporter(name: str, endpoint: str | None, timeout_s: float) -> SpanExporter | None:
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


def _metric_exporter(name: str, endpoint: str | None, timeout_s: float) -> MetricExporter | None:
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


def _log_exporter(name: str, endpoint: str | None, timeout_s: float) -> LogRecordExporter | None:
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


def _logs_wanted(logs: bool | None, exporter: str | None) -> str | None:
    """The log exporter's name when the logs signal is on: asked by ``logs=True`` or by a set
    ``OTEL_LOGS_EXPORTER`` other than ``none``; ``None`` when off."""
    if logs is False or (logs is None and os.environ.get("OTEL_LOGS_EXPORTER", "").strip() in ("", "none")):
        return None
    name = _choose("LOGS", exporter)
    return None if name == "none" else name


def _log_handler(provider: LoggerProvider) -> logging.Handler:
    with warnings.catch_warnings():
        # The SDK's handler is deprecated in favour of opentelemetry-instrumentation-logging's (same
        # behaviour); this one ships with the SDK we already depend on, so no new dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        return LoggingHandler(logger_provider=provider)


def configure(
    service_name: str | None = None,
    *,
    exporter: ExporterName | None = None,
    endpoint: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    metric_interval_s: float | None = None,
    export_timeout_s: float = 5.0,
    metric_readers: Sequence[MetricReader] = (),
    span_exporters: Sequence[SpanExporter] = (),
    set_global: bool = True,
    logs: bool | None = None,
) -> Telemetry:
    """Build a TracerProvider and a MeterProvider and (by default) make them the global ones.

    Exporters come from ``exporter`` or, when it is None, the standard variables
    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``) and
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or ``http/protobuf``). ``endpoint`` overrides
    ``OTEL_EXPORTER_OTLP_ENDPOINT``. The resource merges ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` (an explicit ``service_name`` wins); without a ``service.instance.id`` from
    the user, the environment or the SDK it gets a random one, so replicas never share series.
    Extra ``metric_readers`` and ``span_exporters`` are added as given; a reader with an
    ``attach_bridge(bridge)`` method merges the in-process task histograms itself (see
    ``_aggregate``), any other reader makes the task metrics fall back to plain SDK calls.
    Raises ValueError for an unknown exporter or bad interval.

    The logs signal is set up when ``logs=True`` or, with ``logs=None``, when ``OTEL_LOGS_EXPORTER``
    is set (``otlp``, ``console``; ``none`` or unset: off): a LoggerProvider with a batching
    exporter (made the global one with ``set_global``), and an OTel handler on the ``shannon_otel``
    logger, so the logging hook's records (docs/logging.md) reach the collector, stamped with the
    trace and span ids of the span current when they were written. ``shutdown()`` removes the handler.
    """
    if metric_interval_s is None:
        metric_interval_s = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "10000")) / 1000
    if not metric_interval_s > 0:
        raise ValueError(f"metric_interval_s must be > 0, got {metric_interval_s!r}")
    if not export_timeout_s > 0:
        raise ValueError(f"export_timeout_s must be > 0, got {export_timeout_s!r}")
    log_exporter_name = _logs_wanted(logs, exporter)
    if set_global:
        _check_globals_unset(log_exporter_name is not None)
    attributes: dict[str, str] = dict(resource_attributes or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)  # merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "shannon-otel"}))
    if SERVICE_INSTANCE_ID not in resource.attributes:
        # SDKs before 1.43 set none: replicas of one service would then write the same series
        # (job/instance alike) and each scrape would flip between their values.
        resource = resource.merge(Resource({SERVICE_INSTANCE_ID: str(uuid.uuid4())}))

    tracer_provider = TracerProvider(resource=resource)
    span_exporter = _span_exporter(_choose("TRACES", exporter), endpoint, export_timeout_s)
    for each in (*([span_exporter] if span_exporter else []), *span_exporters):
        tracer_provider.add_span_processor(BatchSpanProcessor(each))

    bridge = MetricsBridge(resource)
    readers = list(metric_readers)
    metric_exporter = _metric_exporter(_choose("METRICS", exporter), endpoint, export_timeout_s)
    # The bridge may serve only if every reader of the provider merges it (``attach_bridge``).
    bridged = all(hasattr(r, "attach_bridge") for r in readers) and (
        metric_exporter is None or histograms_cumulative(metric_exporter)
    )
    if bridged:
        for reader in readers:
            reader.attach_bridge(bridge)  # type: ignore[attr-defined]
    if metric_exporter is not None:
        readers.append(PeriodicExportingMetricReader(
            BridgedExporter(metric_exporter, bridge) if bridged else metric_exporter,
            export_interval_millis=metric_interval_s * 1000,
            export_timeout_millis=export_timeout_s * 1000,
        ))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if bridged:
        register_bridge(meter_provider, bridge)
    logger_provider: LoggerProvider | None = None
    handler: logging.Handler | None = None
    if log_exporter_name is not None:
        logger_provider = LoggerProvider(resource=resource)
        log_exporter = _log_exporter(log_exporter_name, endpoint, export_timeout_s)
        if log_exporter is not None:
            logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(log_exporter, export_timeout_millis=export_timeout_s * 1000),
            )
        handler = _log_handler(logger_provider)
        logging.getLogger(LOGGER_ROOT).addHandler(handler)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        if logger_provider is not None:
            otel_logs.set_logger_provider(logger_provider)
    return Telemetry(tracer_provider, meter_provider, logger_provider, handler)
