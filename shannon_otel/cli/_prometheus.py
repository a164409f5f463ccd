"""``--prometheus-port``: a metric reader that serves Prometheus text exposition on 127.0.0.1.

Each scrape collects the MeterProvider, merges the in-process task histograms (``attach_bridge``)
and renders the text format itself, with the same names the OpenTelemetry Collector's Prometheus
exporter produces (:attr:`MetricSpec.prometheus`), so the bundled dashboards and alert rules work
against it unchanged. Stdlib only (``http.server`` in a daemon thread): no extra dependency, and
unlike ``opentelemetry-exporter-prometheus`` it sees the bridged histograms.
"""

from __future__ import annotations

import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    MetricReader,
    MetricsData,
    Sum,
)

from .._aggregate import MetricsBridge
from .._telemetry import METRICS, MetricSpec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SPECS = {spec.name: spec for spec in METRICS}
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def series_name(name: str, unit: str, kind: str) -> str:
    """The Prometheus name of an OTel metric: the contract's translation, or the generic one."""
    spec = _SPECS.get(name)
    if spec is None:
        spec = MetricSpec(name, kind, unit, "", ())  # type: ignore[arg-type]
    return _INVALID.sub("_", spec.prometheus)


def _label(key: str) -> str:
    label = _INVALID.sub("_", key).replace(":", "_")
    return "_" + label if label[:1].isdigit() else label


def _escape(value: object) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _labels(attributes: Any, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = [(_label(k), _escape(v)) for k, v in sorted((attributes or {}).items())] + list(extra)
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(data: MetricsData | None) -> str:
    """Prometheus text exposition (format 0.0.4) of ``data``; one family per series name.

    Every family gets a HELP line: the metric's description, else the contract's, else its OTel name.
    """
    families: dict[str, tuple[str, str, list[str]]] = {}
    for rm in data.resource_metrics if data else ():
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                points = metric.data
                if isinstance(points, Histogram):
                    kind, prom = "histogram", series_name(metric.name, metric.unit or "", "histogram")
                elif isinstance(points, Sum) and points.is_monotonic:
                    kind, prom = "counter", series_name(metric.name, metric.unit or "", "counter")
                elif isinstance(points, Sum | Gauge):
                    kind = "gauge"
                    prom = series_name(metric.name, metric.unit or "", "gauge" if isinstance(points, Gauge)
                                       else "updowncounter")
                else:  # pragma: no cover - exponential histograms are never configured here
                    continue
                if kind == "counter" and not prom.endswith("_total"):
                    prom += "_total"
                spec = _SPECS.get(metric.name)
                # promtool flags a family without help text, so fall back to the contract, then the name.
                help_text = metric.description or (spec.description if spec else "") or metric.name
                lines = families.setdefault(prom, (kind, help_text, []))[2]
                for point in points.data_points:
                    attrs = point.attributes
                    if isinstance(point, HistogramDataPoint):
                        cumulative = 0
                        bounds = [*point.explicit_bounds, math.inf]
                        for bound, count in zip(bounds, point.bucket_counts, strict=True):
                            cumulative += count
                            le = _labels(attrs, (("le", _number(float(bound))),))
                            lines.append(f"{prom}_bucket{le} {cumulative}")
                        lines.append(f"{prom}_sum{_labels(attrs)} {_number(point.sum)}")
                        lines.append(f"{prom}_count{_labels(attrs)} {point.count}")
                    else:
                        lines.append(f"{prom}{_labels(attrs)} {_number(point.value)}")
    out: list[str] = []
    for prom, (kind, description, lines) in families.items():
        # Text format 0.0.4 names a counter's family by its sample name, ``_total`` included, as
        # prometheus_client writes it; without the suffix promtool reports the samples as undocumented.
        out.append(f"# HELP {prom} {_escape_help(description)}")
        out.append(f"# TYPE {prom} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n" if out else ""


class PrometheusReader(MetricReader):
    """Pull reader: :meth:`scrape` collects now and returns the exposition text. Thread-safe."""

    def __init__(self) -> None:
        super().__init__()
        self._bridge: MetricsBridge | None = None
        self._latest: MetricsData | None = None
        self._lock = threading.Lock()

    def attach_bridge(self, bridge: MetricsBridge) -> None:
        self._bridge = bridge

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._latest = metrics_data

    def scrape(self) -> str:
        with self._lock:
            self._latest = None
            self.collect()
            data = self._latest
            if self._bridge is not None:
                data = self._bridge.merge(data)
            return render(data)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class MetricsServer:
    """``GET /metrics`` on 127.0.0.1:``port`` (0 picks a free port) in a daemon thread.

    Raises OSError from the constructor when the port cannot be bound.
    """

    def __init__(self, reader: PrometheusReader, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics is served here")
                    return
                body = reader.scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, name="shannon-otel-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
