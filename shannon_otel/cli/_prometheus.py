"""``--prometheus-port``: the demo serves its metrics with the library's public endpoint.

The reader and server live in :mod:`shannon_otel._prometheus` (public as
``shannon_otel.PrometheusReader`` / ``shannon_otel.MetricsServer``); this module keeps the CLI's import.
"""

from __future__ import annotations

from .._prometheus import MetricsServer, PrometheusReader, render, series_name

__all__ = ["MetricsServer", "PrometheusReader", "render", "series_name"]
