"""``configure()``: the one place that builds SDK providers and may set the global ones."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ._aggregate import BridgedExporter, MetricsBridge, histograms_cumulative
from ._otel._providers import globals_set, register_bridge

ExporterName = Literal["otlp", "otlp_grpc", "otlp_http", "console", "none"]
_EXPORTERS = ("otlp", "otlp_grpc", "otlp_http", "console", "none")


class Telemetry:
    """The providers ``configure()`` built. ``shutdown()`` flushes and stops them (bounded by timeouts).

    Use as a context manager to shut down on exit. Export failures never raise here: the SDK logs
    them, and the user's work and results are unaffected.
    """

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
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
        return bool(traces_ok and metrics_ok)

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def _check_globals_unset() -> None:
    """The OTel API sets the global providers once; a second attempt would be ignored (only logged)."""
    if globals_set():
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
) -> Telemetry:
    """Build a TracerProvider and a MeterProvider and (by default) make them the global ones.

    Exporters come from ``exporter`` or, when it is None, the standard variables
    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``) and
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or ``http/protobuf``). ``endpoint`` overrides
    ``OTEL_EXPORTER_OTLP_ENDPOINT``. The resource merges ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` (an explicit ``service_name`` wins). Extra ``metric_readers`` and
    ``span_exporters`` are added as given; a reader with an ``attach_bridge(bridge)`` method merges
    the in-process task histograms itself (see ``_aggregate``), any other reader makes the task
    metrics fall back to plain SDK calls. Raises ValueError for an unknown exporter or bad interval.
    """
    if metric_interval_s is None:
        metric_interval_s = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "10000")) / 1000
    if not metric_interval_s > 0:
        raise ValueError(f"metric_interval_s must be > 0, got {metric_interval_s!r}")
    if not export_timeout_s > 0:
        raise ValueError(f"export_timeout_s must be > 0, got {export_timeout_s!r}")
    if set_global:
        _check_globals_unset()
    attributes: dict[str, str] = dict(resource_attributes or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)  # merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "shannon-otel"}))

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
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider)
