"""Whether a provider (given, or the current global) really records anything.

Checked once per wave / protected call: with no SDK installed the hooks return no observer, so
the work pays nothing for telemetry. The global can be set later (``configure()``), hence no caching.
"""

from __future__ import annotations

from opentelemetry import metrics, trace

# The API hands out this proxy until a global MeterProvider is set; it has no public name.
from opentelemetry.metrics._internal import _ProxyMeterProvider

_NOOP_TRACER_PROVIDERS = (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
_NOOP_METER_PROVIDERS = (metrics.NoOpMeterProvider, _ProxyMeterProvider)


def tracing_enabled(provider: trace.TracerProvider | None) -> bool:
    resolved = provider if provider is not None else trace.get_tracer_provider()
    return not isinstance(resolved, _NOOP_TRACER_PROVIDERS)


def metrics_enabled(provider: metrics.MeterProvider | None) -> bool:
    resolved = provider if provider is not None else metrics.get_meter_provider()
    return not isinstance(resolved, _NOOP_METER_PROVIDERS)
