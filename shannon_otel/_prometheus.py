"""A Prometheus pull endpoint without a collector: :class:`PrometheusReader` and :class:`MetricsServer`.

Each scrape collects the MeterProvider, merges the in-process task histograms (``attach_bridge``)
and renders it with the names, labels and exemplars the OpenTelemetry Collector's ``prometheus`` exporter
produces as the bundled ``collector-config/otelcol.yaml`` configures it (:attr:`MetricSpec.prometheus`: unit
suffixes, ``_ratio`` for unit-``1`` gauges, ``_total`` for counters; the collector's label values and
``otel_scope_*`` labels; on every series ``job``/``instance`` and, as its ``resource_to_telemetry_conversion``
writes them, ``service_name`` and ``service_namespace``), so the bundled dashboards and alert rules work against
it unchanged: their trace links search ``service_name``, right for a ``service.name`` holding a ``/``. Of the
resource it writes only those labels, each constant per process (no series more), and no ``target_info`` series
(which the OTel specification says an SDK exporter SHOULD write: the other resource attributes are not exported;
it allows copying resource attributes onto the series where the exporter is configured to, here for the bundled
assets). A scraper that accepts OpenMetrics (Prometheus does) gets it with exemplars
(trace ids on histogram buckets); any other gets text format 0.0.4. Stdlib only (``http.server`` in a
daemon thread); unlike ``opentelemetry-exporter-prometheus`` it keeps ``_ratio`` and exemplars and
sees the bridged histograms.
"""

from __future__ import annotations

import base64
import decimal
import gzip
import io
import json
import logging
import math
import operator
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    MetricReader,
    MetricsData,
    Sum,
)

from ._fork import in_forked_child, release_held
from ._metrics_bridge import MetricsBridge
from ._telemetry import METRICS, MetricSpec
from ._validate import brief, check_name, check_number, utf8_text

__all__ = ["PrometheusReader", "MetricsServer", "render", "series_name", "TEXT", "OPENMETRICS"]

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_SPECS = {spec.name: spec for spec in METRICS}
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_CLIENT_TIMEOUT_S = 30.0  # to send the whole request (line and headers), and for each write of the answer
_MAX_CONNECTIONS = 64  # served at once: each holds a thread; more get a 503 at once, not one thread each
_MAX_WARNED = 1000  # distinct notes of a reader logged once each; past that, one warning says no more are
_now = time.monotonic
_log = logging.getLogger("shannon_otel")


def series_name(name: str, unit: str, kind: str) -> str:
    """The Prometheus name of an OTel metric: the contract's translation, or the generic one."""
    spec = _SPECS.get(name)
    if spec is None:
        spec = MetricSpec(name, kind, unit, "", ())  # type: ignore[arg-type]
    return _INVALID.sub("_", spec.prometheus)


def _label(key: str) -> str:
    label = _INVALID.sub("_", key).replace(":", "_")
    if label[:1].isdigit():
        return "key_" + label  # as the collector's exporter writes it
    # Prometheus reserves names starting with "__" (``__name__`` is the metric's name): such a label
    # fails the whole scrape (the collector's exporter drops the metric with an error instead).
    return "key" + label if label.startswith("__") else label


def _text(value: object) -> str:
    """An attribute value as the collector writes it in a label (OTLP ``AsString``): booleans
    ``true``/``false``, integral floats without ``.0``, bytes in base64, sequences as compact JSON
    arrays; never raises (the SDK passes metric attributes through unchecked: anything else is ``str()``)."""
    if isinstance(value, str):
        return value
    try:
        if value is None:
            return ""
        if isinstance(value, bytes | bytearray):
            return base64.b64encode(value).decode()
        if isinstance(value, float) and not math.isfinite(value):
            return _number(value)
        shown = [_json(v) for v in value] if isinstance(value, Sequence) else value
        return json.dumps(_json(shown), separators=(",", ":"), ensure_ascii=False, default=_other)
    except Exception:  # e.g. a circular sequence
        return _plain(value)


def _plain(value: object) -> str:
    """``str(value)``, never raising: an int past Python's limit for decimal text (4300 digits), which the SDK keeps as
    an attribute, raised ValueError and failed the whole page. Such an int is written in its exact digits (a
    ``Decimal``'s text has no limit), anything else still refused (a sequence holding one) as ``<its type's name>``."""
    try:
        return str(value)
    except Exception:
        if isinstance(value, int):
            return str(decimal.Decimal(value))
        return f"<{type(value).__qualname__}>"


def _json(value: object) -> object:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)  # JSON numbers as ES6 (and Go's pdata) write them: 2.0 -> 2
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _other(value: object) -> object:
    """What JSON has no type for, inside a sequence value: bytes in base64, anything else as ``str()``."""
    return base64.b64encode(value).decode() if isinstance(value, bytes | bytearray) else str(value)


def _escape(value: object) -> str:
    # the page is UTF-8: a lone surrogate (a user attribute) failed every scrape
    return utf8_text(str(value)).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return utf8_text(text).replace("\\", r"\\").replace("\n", r"\n")


def _labels(attributes: Any, extra: tuple[tuple[str, str], ...] = (), reserved: tuple[str, ...] = ()) -> str:
    """The label set: attributes, then ``extra`` (job, instance, le). A label name must appear once
    (Prometheus rejects the whole scrape otherwise): attributes that sanitize to one name are joined
    with ``;`` in the order of their keys (the OTel specification's rule), and an attribute named like
    one of ``extra`` or ``reserved`` becomes ``exported_<name>`` (Prometheus' own rule for a target
    label clash; every line of a histogram reserves ``le``, so its series keep one label set)."""
    taken = {k for k, _ in extra}.union(reserved)
    merged: dict[str, list[str]] = {}
    for key, value in sorted((attributes or {}).items()):
        label = _label(key)
        merged.setdefault(f"exported_{label}" if label in taken else label, []).append(_text(value))
    pairs = [(k, _escape(";".join(v))) for k, v in merged.items()] + list(extra)
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else ""


def _number(value: Any) -> str:
    """A value as Prometheus reads it: integers exact (``True`` is ``1``) within float's range, anything else as a
    float (past its range ``+Inf`` / ``-Inf``, as Prometheus would hold it). The SDK passes
    on what the user's code gives: ``gauge.set(True)`` (an observable gauge's ``Observation(flag)``) wrote ``True``,
    a ``Fraction`` ``1/3``, and Prometheus refused the whole page, every series of the target ("expected float")."""
    try:
        whole = operator.index(value)  # int, bool, numpy's integers: exact
    except TypeError:
        pass
    else:
        try:
            float(whole)  # past float's range (a counter's sum of ints): Prometheus refused the whole page for it
        except OverflowError:  # (its parser reads a float: "expected float as value"); as a float it is infinite
            return "+Inf" if whole > 0 else "-Inf"
        return str(whole)
    try:
        number = float(value)
    except OverflowError:  # a Fraction past float's range: infinite as a float, as an int past it is
        return "+Inf" if value > 0 else "-Inf"
    except ValueError:  # a Decimal signaling NaN: no float to write
        return "NaN"
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def _target(resource: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The labels of the resource on every series: ``job`` and ``instance`` as the collector's exporter derives
    them, and ``service_name`` / ``service_namespace`` (``service.name`` / ``service.namespace`` unchanged) as
    the bundled collector config writes them (``resource_to_telemetry_conversion``): the trace links of the
    dashboards and alerts read ``service_name``, which ``job`` cannot give back when ``service.name`` holds a ``/``.
    Constant per resource, so no series more."""
    name, namespace = resource.get("service.name"), resource.get("service.namespace")
    out: list[tuple[str, str]] = []
    if name:
        out.append(("job", _escape(f"{namespace}/{name}" if namespace else name)))
    if resource.get("service.instance.id"):
        out.append(("instance", _escape(resource["service.instance.id"])))
    if name:
        out.append(("service_name", _escape(_text(name))))
    if namespace:
        out.append(("service_namespace", _escape(_text(namespace))))
    return tuple(out)


def _histogram(prom: str, point: HistogramDataPoint, labels: str, openmetrics: bool) -> list[str]:
    """The lines of one histogram point whose label set (``le`` reserved) is ``labels``: each bucket's is that set with
    ``le`` last, as ``_labels`` writes it (built once, not sorted and escaped again for every bucket)."""
    exemplars: dict[int, str] = {}
    if openmetrics:
        for e in point.exemplars or ():
            if e.trace_id and e.span_id:
                index = next((i for i, b in enumerate(point.explicit_bounds) if e.value <= b),
                             len(point.explicit_bounds))
                exemplars[index] = (f' # {{trace_id="{e.trace_id:032x}",span_id="{e.span_id:016x}"}} '
                                    f"{_number(e.value)} {e.time_unix_nano / 1e9:.3f}")
    lines, cumulative = [], 0
    bounds = [*point.explicit_bounds, math.inf]
    for index, (bound, count) in enumerate(zip(bounds, point.bucket_counts, strict=True)):
        cumulative += count
        le = f'{labels[:-1]},le="{_number(float(bound))}"}}' if labels else f'{{le="{_number(float(bound))}"}}'
        lines.append(f"{prom}_bucket{le} {cumulative}{exemplars.get(index, '')}")
    lines.append(f"{prom}_sum{labels} {_number(point.sum)}")
    lines.append(f"{prom}_count{labels} {point.count}")
    return lines


class _Family:
    """The lines of one Prometheus metric family being built, and what it holds already."""

    __slots__ = ("help", "kind", "lines", "series")

    def __init__(self, kind: str, help_text: str) -> None:
        self.kind, self.help = kind, help_text
        self.lines: list[str] = []
        self.series: set[str] = set()  # the label sets written: one series holds one sample


def render(data: MetricsData | None, *, openmetrics: bool = False, dropped: list[str] | None = None) -> str:
    """Text format 0.0.4, or OpenMetrics 1.0 with exemplars, of ``data``; one family per series name.

    Every family gets a HELP line: the metric's description, else the contract's, else its OTel name.
    What the page cannot hold is left out and said in ``dropped`` (when given), one sentence each, as the
    OTel specification asks ("the exporter SHOULD warn the user"): a metric whose kind differs from the
    family's it would join, a point whose series the family holds already (``a.b`` and ``a_b`` are both
    ``a_b``), a second HELP text; in OpenMetrics a family named like another's ``_created`` series and a counter's
    negative point; an exponential histogram; a metric with no name left once sanitized (a View's ``"é"``).
    Never raises for data the SDK produces.
    """
    notes: list[str] = [] if dropped is None else dropped
    families: dict[str, _Family] = {}
    for rm in data.resource_metrics if data else ():
        job_instance = _target(rm.resource.attributes)
        for scope in rm.scope_metrics:
            # The scope labels the collector's exporter adds to every series: one metric name made by two
            # scopes stays two series (without them, the same label set twice: Prometheus keeps one).
            target = (*job_instance, ("otel_scope_name", _escape(scope.scope.name)),
                      ("otel_scope_schema_url", _escape(scope.scope.schema_url or "")),
                      ("otel_scope_version", _escape(scope.scope.version or "")))
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
                else:  # an exponential histogram (a user's View): neither text format holds one; it was left out unsaid
                    notes.append(f"metric {metric.name!r} (an exponential histogram): the text formats cannot hold it")
                    continue
                if not prom:  # a View's name of no letter, digit or ``_`` ("é"): ``# HELP  é`` failed the whole page
                    notes.append(f"metric {metric.name!r}: no Prometheus name is left of it")
                    continue
                if kind == "counter" and not prom.endswith("_total"):
                    prom += "_total"
                spec = _SPECS.get(metric.name)
                # promtool flags a family without help text, so fall back to the contract, then the name.
                help_text = metric.description or (spec.description if spec else "") or metric.name
                family = families.setdefault(prom, _Family(kind, help_text))
                if family.kind != kind:
                    # A metric of another kind under the same name (a gauge ``lat_seconds`` beside a histogram
                    # ``lat`` of unit ``s``): its samples under the first one's TYPE made a page a strict
                    # OpenMetrics parser refuses, or one series of two values. The first is kept, as below.
                    notes.append(f"metric {metric.name!r} (a {kind}): {prom} is a {family.kind} already")
                    continue
                if metric.description and metric.description != family.help:
                    notes.append(f"the description of metric {metric.name!r}: {prom} has another")
                clash = negative = False
                for point in points.data_points:
                    # One label set once per family: two metrics of one name and scope after sanitizing
                    # (``a.b`` and ``a_b``; or two points, attributes ``a.b`` and ``a_b``) wrote one series
                    # twice, and Prometheus silently kept the first value (a counter's 5 read 1): the first
                    # is kept, and said.
                    if (openmetrics and kind == "counter" and not isinstance(point, HistogramDataPoint)
                            and point.value < 0):
                        # An observable counter's callback returning a negative total: OpenMetrics forbids a negative
                        # counter, and a strict parser refused the whole page for it. Text format 0.0.4 takes it.
                        negative = True
                        continue
                    key = _labels(point.attributes, target, ("le",) if kind == "histogram" else ())
                    if key in family.series:
                        clash = True
                        continue
                    family.series.add(key)
                    if isinstance(point, HistogramDataPoint):
                        family.lines.extend(_histogram(prom, point, key, openmetrics))
                    else:
                        family.lines.append(f"{prom}{key} {_number(point.value)}")
                if clash:
                    notes.append(f"points of metric {metric.name!r}: their series of {prom} were written already")
                if negative:
                    notes.append(f"points of metric {metric.name!r}: a negative value, "
                                 "which an OpenMetrics counter cannot hold")
    out: list[str] = []
    written: set[str] = set()
    for prom, family in families.items():
        # Text format 0.0.4 names a counter's family by its sample name, ``_total`` included, as
        # prometheus_client writes it; OpenMetrics names the family without the suffix.
        name = prom.removesuffix("_total") if openmetrics and family.kind == "counter" else prom
        names = {name, prom} | ({f"{prom}_{s}" for s in ("bucket", "sum", "count")}
                                if family.kind == "histogram" else set())
        if openmetrics and family.kind in ("counter", "histogram"):
            # OpenMetrics reserves ``_created`` of a counter or histogram (its start time): a gauge ``jobs_created``
            # beside a counter ``jobs`` made the strict parser refuse the page ("Clashing name"), though no
            # ``_created`` is written.
            names.add(f"{name}_created")
        if names & written:
            # Two families claiming one name (OpenMetrics: a counter ``jobs`` and a gauge ``jobs`` of two
            # scopes; any format: a gauge ``x_count`` beside a histogram ``x``) make the whole page
            # invalid: Prometheus drops every series of the target. The first is kept, as a client
            # registry refuses the second; text format keeps both of the first case (``jobs_total``).
            notes.append(f"the {family.kind} {prom}: its name is another family's")
            continue
        written |= names
        text = _escape(family.help) if openmetrics else _escape_help(family.help)
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {family.kind}")
        out.extend(family.lines)
    if openmetrics:
        out.append("# EOF")
    return "\n".join(out) + "\n" if out else ""


class PrometheusReader(MetricReader):
    """A pull metric reader: :meth:`scrape` collects now and returns the exposition. Thread-safe.

    Give it to ``configure(metric_readers=[reader])`` (which merges the task histograms into it) or
    to a ``MeterProvider``; serve it with :class:`MetricsServer`, or call :meth:`scrape` from your
    own web framework.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bridge: MetricsBridge | None = None
        self._latest: MetricsData | None = None
        self._warned: set[str] = set()  # what the page left out, logged once (not at every scrape); bounded
        self._lock = threading.Lock()
        in_forked_child(self._forked)  # held by a scrape on another thread at a fork: the child's would hang

    def _forked(self) -> None:
        release_held(self._lock)

    def attach_bridge(self, bridge: MetricsBridge) -> None:
        """Called by ``configure()``: merge the in-process task histograms into every scrape."""
        self._bridge = bridge

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._latest = metrics_data

    def scrape(self, *, openmetrics: bool = False) -> str:
        """Collect and render now: text format 0.0.4, or OpenMetrics with exemplars. What the page cannot
        hold (a second point of one label set, a metric of another kind under a name taken) is logged once as a
        warning on the ``shannon_otel`` logger (the first 1,000 distinct notes; then one warning says no more are)."""
        with self._lock:
            self._latest = None
            self.collect()
            data = self._latest
            if self._bridge is not None:
                data = self._bridge.merge(data)
            dropped: list[str] = []
            text = render(data, openmetrics=openmetrics, dropped=dropped)
            for note in dropped:
                if note in self._warned or len(self._warned) > _MAX_WARNED:
                    continue
                if len(self._warned) == _MAX_WARNED:  # one note per metric name: bounded, however many the names
                    _log.warning("the Prometheus page left out %d things, each logged once: what it leaves out "
                                 "from now on is not logged", _MAX_WARNED)
                    self._warned.add("")  # the set is full: nothing more is added or logged
                    break
                self._warned.add(note)
                _log.warning("the Prometheus page leaves out %s", note)
            return text

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _weighted(header: str) -> Iterator[tuple[str, float]]:
    """Each entry of an ``Accept``-style header, lower-cased, with its ``q`` weight clamped to [0, 1] (RFC 9110:
    1 when absent; ``q=0`` refuses; a malformed or NaN weight counts as 0, as if not offered)."""
    for entry in header.split(","):
        name, *params = (part.strip().lower() for part in entry.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    weight = 0.0
                if math.isnan(weight):
                    weight = 0.0
        yield name, weight


def _wants_openmetrics(accept: str) -> bool:
    """Whether an ``Accept`` header prefers OpenMetrics to text 0.0.4 (RFC 9110 negotiation: media
    types compared case-insensitively, ``q`` weights honoured, ``q=0`` refuses; on a tie OpenMetrics,
    which carries exemplars). A header that accepts neither gets text, as Prometheus' own clients do."""
    openmetrics = text = 0.0
    for media, weight in _weighted(accept):
        if media == "application/openmetrics-text":
            openmetrics = max(openmetrics, weight)
        elif media in ("text/plain", "text/*", "*/*"):
            text = max(text, weight)
    return openmetrics > 0 and openmetrics >= text


def _wants_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (Prometheus sends ``gzip``): ``gzip`` or ``x-gzip``
    with a weight above 0, else ``*`` with one (RFC 9110: ``*`` stands for codings not listed)."""
    weights: dict[str, float] = {}
    for coding, weight in _weighted(accept_encoding):
        weights[coding] = max(weights.get(coding, 0.0), weight)
    named = [weights[c] for c in ("gzip", "x-gzip") if c in weights]
    return max(named) > 0 if named else weights.get("*", 0.0) > 0


class _Deadline(io.RawIOBase):
    """A connection's reads, each waiting at most until ``deadline`` (``_now()`` seconds): a request must arrive
    whole by then. The socket's own timeout applies to each read afresh, so a client sending one header line
    every 29 s held its thread for ~50 min (100 header lines), and one byte every 29 s, for days."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self._connection, self._deadline = connection, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - _now()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(remaining)
        return self._connection.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    """An HTTP server in the host's address family: IPv4 when the host has an IPv4 address (so
    ``localhost`` stays 127.0.0.1, what scrapers are pointed at), IPv6 for ``::1`` and IPv6-only
    names, which the IPv4-only ``ThreadingHTTPServer`` could not even resolve."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        families = [info[0] for info in socket.getaddrinfo(*address, type=socket.SOCK_STREAM)]
        self.address_family = socket.AF_INET if socket.AF_INET in families else families[0]
        self._open: set[socket.socket] = set()  # connections being served: close() ends them
        self._open_lock = threading.Lock()
        self._refused = False  # whether the connection cap was logged (once per server)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= _MAX_CONNECTIONS
            if not full:
                self._open.add(request)
        if full:
            # Each connection holds a thread until its request is answered or its deadline passes: 10,000 idle
            # connections were 10,000 threads. Answered here, on the accepting thread (one short write into a
            # new socket's empty buffer: it cannot block), without reading the request.
            if not self._refused:
                self._refused = True
                _log.warning("the metrics endpoint has %d connections open: it answers 503 to more, at once, "
                             "until some end (each ends within %g s)", _MAX_CONNECTIONS, _CLIENT_TIMEOUT_S)
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:  # the client left already, or its buffer is full: closing says enough
                pass
            super().shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A scraper that left mid-answer (Prometheus' scrape timeout, ``curl`` stopped) is routine:
        ignored. Anything else goes to the ``shannon_otel`` logger; socketserver printed a traceback
        on the application's stderr for either."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError):
            _log.warning("the metrics endpoint failed to answer %s", client_address, exc_info=error)

    def end_connections(self) -> None:
        """Shut down every connection still open (a client that never sent its request, or reads
        slowly): its thread returns and its socket is freed, instead of both living on after close()."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by its own thread
                pass


class MetricsServer:
    """``GET /metrics`` of ``reader`` on ``host``:``port`` (0 picks a free port) in a daemon thread.

    OpenMetrics (with exemplars) when the scraper's ``Accept`` header prefers it (``q`` weights
    honoured), text 0.0.4 otherwise; gzip-compressed when ``Accept-Encoding`` takes gzip (Prometheus
    asks for it); ``HEAD`` answers the same headers without the body; another method HTTP defines (``POST``...)
    is answered 405 with ``Allow: GET, HEAD`` (one it does not know, 501). The page is
    at ``/metrics`` and ``/`` (a query ignored; ``http://host/metrics``, the absolute form, too); any other
    path is 404. Binds 127.0.0.1 unless told otherwise; :attr:`port` is the bound port (the one picked
    for 0) and :attr:`url` the page. Raises OSError naming ``host:port`` from the constructor when the
    port cannot be bound (``[::1]:9464`` for an IPv6 address), ValueError naming ``host`` for a name no resolver
    takes (a label over 63 characters, or an empty one) or one in a URL's brackets (``[::1]``). A connection
    that has not sent its whole request within 30 s of connecting is dropped (each write of the answer may
    take 30 s too); past 64 connections open at once, more are answered 503 at once (logged once), so idle
    clients cannot pile up threads;
    a scraper leaving mid-answer is no error (other failures go to the ``shannon_otel`` logger; a
    scrape that raises, such as the SDK's timeout on slow callbacks, is a 500);
    :meth:`close` stops listening and ends the connections still open (a second call does nothing).
    """

    def __init__(self, reader: PrometheusReader, port: int = 9464, host: str = "127.0.0.1") -> None:
        if not isinstance(reader, PrometheusReader):
            raise TypeError(f"reader must be a PrometheusReader, got {reader!r}")
        check_number("port", port, low=0, high=65535, integer=True)
        check_name("host", host, telemetry=False)
        if host.startswith("[") and host.endswith("]"):  # copied from a URL: it failed naming '[[::1]]:9464'
            raise ValueError(f"host must be an address or name without the brackets of a URL, got {brief(host)} "
                             f"(give {brief(host[1:-1])})")
        class Handler(BaseHTTPRequestHandler):
            # A client that connects and never sends (or stops reading) frees its thread and socket
            # after this many seconds instead of holding them for good; other scrapes never wait on it.
            timeout = _CLIENT_TIMEOUT_S

            def setup(self) -> None:
                super().setup()
                deadline = _Deadline(self.connection, _now() + _CLIENT_TIMEOUT_S)
                self.rfile: io.BufferedIOBase = io.BufferedReader(deadline)

            def do_GET(self, head: bool = False) -> None:
                self.connection.settimeout(_CLIENT_TIMEOUT_S)  # for the answer: the request's reads left less
                # The path of the target in any form a client may send: origin (``/metrics?x``) or absolute
                # (``http://host/metrics``, which RFC 9112 says a server MUST accept: it got a 404 saying
                # only /metrics was served); the query and a fragment are ignored.
                try:
                    path = urlsplit(self.path).path
                except ValueError:  # "http://[/metrics": no URL at all
                    self.send_error(400, "the request target is not a URL")
                    return
                if path not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics is served here")
                    return
                openmetrics = _wants_openmetrics(self.headers.get("Accept", ""))
                try:
                    body = reader.scrape(openmetrics=openmetrics).encode()
                except Exception as exc:  # the SDK's MetricsTimeoutError (slow callbacks): the scraper got no
                    # answer at all ("EOF"), as if the server had died; it gets a 500 saying what failed.
                    _log.warning("the metrics endpoint failed to collect for %s", self.client_address, exc_info=exc)
                    self.send_error(500, None, f"collecting the metrics failed: {type(exc).__name__}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", OPENMETRICS if openmetrics else TEXT)
                if _wants_gzip(self.headers.get("Accept-Encoding", "")):
                    # Prometheus asks for gzip at every scrape; a page of many series shrinks ~10x.
                    body = gzip.compress(body, compresslevel=6)
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Vary", "Accept, Accept-Encoding")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # ``curl -I``: the GET's status and headers, no body (was 501)
                self.do_GET(head=True)

            def _refuse(self) -> None:
                # A method HTTP defines that the page does not allow: 405 with the Allow header RFC 9110 requires
                # (it was 501 "Unsupported method", which says the server does not know the method at all; one it
                # does not know, ``FOO``, still gets that).
                self.send_response(405, "Method Not Allowed")
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")  # a request body, if any, is never read (ends the connection)
                self.end_headers()

            # http.server's names for them
            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        authority = f"[{host}]" if ":" in host else host  # an IPv6 address in brackets: "::1:9464" read as one address
        try:
            self._server = _Server((host, port), Handler)
        except UnicodeError as exc:  # the resolver's IDNA encoding: a label over 63 characters or an empty one, "a..b"
            raise ValueError(f"host must be a host name (dot-separated labels of 1 to 63 characters) or an IP address, "
                             f"got {brief(host)} ({exc})") from None
        except OSError as exc:  # name the address, as open() names its file: "Address already in use" said not which
            raise OSError(exc.errno, exc.strerror or str(exc), f"{authority}:{port}") from exc
        self.port: int = int(self._server.server_address[1])
        self.url: str = f"http://{authority}:{self.port}/metrics"
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._server.serve_forever, name="shannon-otel-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and end the connections still open; a second call does nothing.

        In a forked child it only closes the child's copy of the listening socket: the serving thread
        is the parent's (waiting for it hung the child for good) and so are the connections."""
        if os.getpid() != self._pid:
            self._server.server_close()
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.end_connections()
