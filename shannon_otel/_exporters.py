"""Choosing and building the span, metric and log exporters from ``configure()``'s arguments and
the standard ``OTEL_*`` variables; the metric export interval."""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
from typing import Literal

from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from ._delivery import env_int
from ._validate import check_endpoint, check_number

ExporterName = Literal["otlp", "otlp_grpc", "otlp_http", "console", "none"]
_EXPORTERS = ("otlp", "otlp_grpc", "otlp_http", "console", "none")
DEFAULT_METRIC_INTERVAL_S = 10.0
_MAX_METRIC_INTERVAL_S = 86_400.0
_SDK_DEFAULT_TIMEOUT_S = 10.0  # what the OTLP exporters use when no timeout is set
_MAX_TIMEOUT_S = 3600.0
_PROTOCOLS = ("grpc", "http/protobuf")  # what the Python OTLP exporters speak
_DEFAULT_ENDPOINTS = {"otlp_grpc": "http://localhost:4317", "otlp_http": "http://localhost:4318"}
_log = logging.getLogger("shannon_otel")


def _env(name: str) -> str | None:
    """A variable's value, stripped; None when unset or blank (the specification: empty means unset)."""
    raw = os.environ.get(name)
    return raw.strip() if raw is not None and raw.strip() else None


def _first_env(*names: str) -> tuple[str, str] | None:
    """(name, value) of the first of ``names`` that is set and not blank."""
    for name in names:
        value = _env(name)
        if value is not None:
            return name, value
    return None


def _protocol(kind: str) -> str:
    """``OTEL_EXPORTER_OTLP_<kind>_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``grpc``, in any case
    (the specification reads enum values case-insensitively: ``GRPC`` was refused); ValueError naming the variable
    for a protocol the OTLP exporters do not speak (as the SDK's own configurator refuses it)."""
    found = _first_env(f"OTEL_EXPORTER_OTLP_{kind}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if found is None:
        return "grpc"
    name, value = found
    if value.lower() not in _PROTOCOLS:
        raise ValueError(f"{name} must be one of {', '.join(_PROTOCOLS)}, got {value!r}")
    return value.lower()


def _endpoint(kind: str, exporter: str, explicit: str | None) -> str | None:
    """The URL the OTLP exporter of signal ``kind`` gets: ``explicit`` (a base URL), else
    ``OTEL_EXPORTER_OTLP_<kind>_ENDPOINT`` (used as is), else ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a
    base URL); HTTP appends ``/v1/<signal>`` to a base. Blank variables count as unset (the SDK
    would pass an empty URL on); a malformed one is a ValueError naming it. None: the SDK default."""
    http = exporter == "otlp_http"
    path = f"/v1/{kind.lower()}"
    if explicit is not None:
        _check_target("endpoint", explicit, http)
        return _signal_url("endpoint", explicit, path) if http else explicit
    signal_var, base_var = f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
    found = _first_env(signal_var, base_var)
    if found is None:
        if signal_var not in os.environ and base_var not in os.environ:
            return None
        found = (base_var, _DEFAULT_ENDPOINTS[exporter])  # set but blank: the default, not ""
    name, value = found
    check_endpoint(name, value)
    _check_target(name, value, http)
    return _signal_url(name, value, path) if http and name == base_var else value


def _signal_url(name: str, base: str, path: str) -> str:
    """The OTLP/HTTP URL of one signal: ``path`` (``/v1/traces``...) appended to ``base``'s path. A base that already
    ends in a signal's path (the URL the SDK's own exporter takes, pasted here) is a ValueError naming it: traces
    went to ``/v1/traces/v1/traces`` and metrics to ``/v1/traces/v1/metrics``, every export answered 404."""
    parts = urllib.parse.urlsplit(base)
    given = parts.path.rstrip("/")
    if given.endswith(_SIGNAL_PATHS):
        raise ValueError(
            f"{name} is the collector's base URL, to which the OTLP/HTTP exporter appends /v1/traces, /v1/metrics and "
            f"/v1/logs; got one whose path is {given!r}: leave the signal's path out",
        )
    # the path goes before a query (http://gw:4318?tenant=a: it was appended to the query, posting to /)
    return parts._replace(path=f"{given}{path}").geturl()


_SIGNAL_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


def _check_http_url(name: str, value: str) -> None:
    """The OTLP/HTTP exporter posts to a URL: a gRPC-style ``host:port`` (or ``unix:``) target, which
    ``check_endpoint`` accepts for gRPC, made every export fail ("No connection adapters were found
    for 'localhost:4318/v1/traces'") and the telemetry was dropped, counted but never delivered."""
    if urllib.parse.urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(
            f"{name} must be an http:// or https:// URL for the OTLP/HTTP exporter (protocol http/protobuf), "
            f"such as 'http://127.0.0.1:4318'; got {value!r}",
        )


def _check_target(name: str, value: str, http: bool) -> None:
    """An endpoint the exporter can reach: a URL for OTLP/HTTP; for OTLP/gRPC, no ``user:password@``, which the
    gRPC exporter dialled as part of the host: every export failed ("Misformatted domain name") and the SDK's
    log lines quoted the password at each attempt."""
    if http:
        _check_http_url(name, value)
        return
    parts = urllib.parse.urlsplit(value)  # check_endpoint has refused what it cannot read
    if "@" in parts.netloc:
        bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
        raise ValueError(
            f"{name} of the OTLP/gRPC exporter cannot carry credentials (user:password@), which gRPC never sends: "
            f"give {bare!r} and the credentials as a header (OTEL_EXPORTER_OTLP_HEADERS)",
        )


def _timeout_s(kind: str, explicit: float | None) -> float:
    """``explicit``, else ``OTEL_EXPORTER_OTLP_<kind>_TIMEOUT``, else ``OTEL_EXPORTER_OTLP_TIMEOUT``
    (seconds, as the Python exporters read them, where the specification says milliseconds: ``5000`` meant
    as 5 s is refused, ``500`` meant as half a second is 500 s); a value that is not a number in (0, 3600] is
    ignored with a logged warning, as if unset (the specification's rule): the general variable then applies,
    else the SDK default (10 s) (the gRPC exporters would raise a bare ``could not convert string to float``,
    the HTTP ones accept ``inf`` and retry forever). Neither set (or blank): 10 s, passed so that the exporter
    never reads the variables itself: the OTLP/HTTP ones took a blank ``' '`` as a value and warned "Invalid timeout
    value ' ', using default of 10 seconds", naming no variable."""
    if explicit is not None:
        return explicit
    found = _bounded_env((f"OTEL_EXPORTER_OTLP_{kind}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"), _MAX_TIMEOUT_S,
                         _SDK_DEFAULT_TIMEOUT_S, "%s=%r is not a number of seconds in (0, %g] (seconds, as the Python "
                         "OTLP exporters read it, not the specification's milliseconds); ignored, %s used", " s")
    return _SDK_DEFAULT_TIMEOUT_S if found is None else found


def _bounded_env(names: tuple[str, ...], high: float, default: float, warning: str, unit: str) -> float | None:
    """The first of ``names`` set to a number in (0, ``high``], or None when none is set. One set to anything else
    is treated as unset, as the specification asks of an unparsable value: ignored with ``warning`` (formatted
    with the variable, its value, ``high`` and what is used instead: the next variable's value or ``default``,
    with ``unit``), and the next of ``names`` read; ``default`` when none of them is valid. Before, an invalid
    ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` made the SDK default apply over a valid ``OTEL_EXPORTER_OTLP_TIMEOUT``."""
    invalid: list[tuple[str, str]] = []
    value: float | None = None
    for name in names:
        raw = _env(name)
        if raw is None:
            continue
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if 0 < number <= high:  # False for NaN
            value = number
            break
        invalid.append((name, os.environ[name]))
    if value is None and invalid:
        value = default
    for name, raw in invalid:
        _log.warning(warning, name, raw, high, f"{value:g}{unit}")
    return value


def _choose(kind: str, explicit: str | None) -> tuple[str, ...]:
    """The exporters of one signal (``kind`` is ``TRACES``, ``METRICS`` or ``LOGS``): ``explicit``, else the
    comma-separated ``OTEL_<kind>_EXPORTER`` (several allowed, as the specification says; the names known here
    in any case, as the specification reads enum values: ``OTLP`` was refused; the SDK's ``otlp_proto_grpc``
    and ``otlp_proto_http`` too), with ``otlp`` resolved by
    ``OTEL_EXPORTER_OTLP_<kind>_PROTOCOL`` then ``OTEL_EXPORTER_OTLP_PROTOCOL``. An unknown name is a
    ValueError naming where it came from: ``exporter``, or the variable (which the user set, not ``exporter``)."""
    variable = f"OTEL_{kind}_EXPORTER"
    source = "exporter" if explicit is not None else variable
    raw = explicit if explicit is not None else os.environ.get(variable, "otlp")
    if explicit is None and raw.strip().lower() == "none":  # the SDK's configurator: OTEL_LOGS_EXPORTER=NONE is off
        return ()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names and explicit is not None:  # a blank variable means unset; a blank argument is a mistake
        raise ValueError(f"exporter must be one of {', '.join(_EXPORTERS)} (comma-separated); got {explicit!r}")
    names = names or ["otlp"]
    chosen: list[str] = []
    for name in names:
        if explicit is None:  # "console,NONE", "OTLP": a known name in any case ("none" in a list too)
            known = name.lower()
            name = _SDK_NAMES.get(known, known if known in _EXPORTERS else name)
        if name == "otlp":
            name = "otlp_http" if _protocol(kind) == "http/protobuf" else "otlp_grpc"
        if name not in _EXPORTERS:
            raise ValueError(f"{source} must be one of {', '.join(_EXPORTERS)} (comma-separated); got {name!r}"
                             f"{_PROMETHEUS_HINT if name == 'prometheus' and kind == 'METRICS' else ''}")
        if name != "none" and name not in chosen:
            chosen.append(name)
    return tuple(chosen)


# The names the SDK's configurator also takes (entry points of opentelemetry-exporter-otlp, used in its docs):
# OTEL_TRACES_EXPORTER=otlp_proto_http left a zero-code program here with no telemetry at all (a ValueError).
_SDK_NAMES = {"otlp_proto_grpc": "otlp_grpc", "otlp_proto_http": "otlp_http"}

# The SDK's own configurator loads a `prometheus` exporter from opentelemetry-exporter-prometheus; here the
# scrape endpoint is the library's own, with the same series names as the collector's.
_PROMETHEUS_HINT = (" (for a Prometheus scrape endpoint pass configure(metric_readers=[PrometheusReader()]) and "
                    "serve it with MetricsServer, docs/stack.md)")


def _span_exporter(name: str, endpoint: str | None, timeout_s: float | None) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp_http":
        from ._otlp_http import HttpSpans

        return HttpSpans(endpoint=_endpoint("TRACES", name, endpoint), timeout=_timeout_s("TRACES", timeout_s))
    from ._otlp_grpc import GrpcSpans

    return GrpcSpans(endpoint=_endpoint("TRACES", name, endpoint), timeout=_timeout_s("TRACES", timeout_s))


def _metric_exporter(name: str, endpoint: str | None, timeout_s: float | None) -> MetricExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleMetricExporter()
    if name == "otlp_http":
        from ._otlp_http import HttpMetrics

        return HttpMetrics(endpoint=_endpoint("METRICS", name, endpoint), timeout=_timeout_s("METRICS", timeout_s))
    from ._otlp_grpc import GrpcMetrics

    return GrpcMetrics(endpoint=_endpoint("METRICS", name, endpoint), timeout=_timeout_s("METRICS", timeout_s))


def _log_exporter(name: str, endpoint: str | None, timeout_s: float | None) -> LogRecordExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleLogRecordExporter()
    if name == "otlp_http":
        from ._otlp_http import HttpLogs

        return HttpLogs(endpoint=_endpoint("LOGS", name, endpoint), timeout=_timeout_s("LOGS", timeout_s))
    from ._otlp_grpc import GrpcLogs

    return GrpcLogs(endpoint=_endpoint("LOGS", name, endpoint), timeout=_timeout_s("LOGS", timeout_s))


def _logs_wanted(logs: bool | None, exporter: str | None) -> tuple[str, ...] | None:
    """The log exporters' names when the logs signal is on: asked by ``logs=True`` or by a set
    ``OTEL_LOGS_EXPORTER`` other than ``none``; ``None`` when off."""
    if logs is False or (logs is None and os.environ.get("OTEL_LOGS_EXPORTER", "").strip().lower() in ("", "none")):
        return None
    names = _choose("LOGS", exporter)
    return names or None


def _exemplar_filter() -> ExemplarFilter:
    """The MeterProvider's exemplar filter from ``OTEL_METRICS_EXEMPLAR_FILTER`` (the in-process histograms
    apply it too, so it is resolved here whatever the value). A value the SDK does not know (or knows only in
    another case, ``ALWAYS_ON``) made the SDK raise "Unknown exemplar filter 'x'." out of ``configure()``; the
    specification asks for a warning and the default (``trace_based``) for an unrecognised value, and for enum
    values read case-insensitively.
    Blank is unset (the specification's rule): the default, without the warning it used to get."""
    raw = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "")
    name = raw.strip().lower() or "trace_based"
    if name not in _EXEMPLAR_FILTERS:
        _log.warning("OTEL_METRICS_EXEMPLAR_FILTER=%r is not one of %s; ignored, trace_based used",
                     raw, ", ".join(_EXEMPLAR_FILTERS))
        name = "trace_based"
    return _EXEMPLAR_FILTERS[name]()


_EXEMPLAR_FILTERS: dict[str, type[ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter, "always_on": AlwaysOnExemplarFilter, "always_off": AlwaysOffExemplarFilter,
}


def _metric_interval_s(explicit: float | None) -> float:
    if explicit is not None:
        check_number("metric_interval_s", explicit, low=0, low_open=True, high=_MAX_METRIC_INTERVAL_S)
        return float(explicit)
    millis = env_int("OTEL_METRIC_EXPORT_INTERVAL")  # integer milliseconds, as the spec says
    if millis is not None and millis / 1000 > _MAX_METRIC_INTERVAL_S:
        # the SDK reader's thread would die at its first wait (OverflowError) and never export
        _log.warning("OTEL_METRIC_EXPORT_INTERVAL=%d ms is above %g s; ignored", millis, _MAX_METRIC_INTERVAL_S)
        millis = None
    return millis / 1000 if millis is not None else DEFAULT_METRIC_INTERVAL_S


_SDK_METRIC_EXPORT_TIMEOUT_MS = 30_000.0  # the periodic reader's default


def _metric_export_timeout_ms() -> float:
    """``OTEL_METRIC_EXPORT_TIMEOUT`` (milliseconds) for the periodic reader, else the reader's default (30,000),
    passed to the reader so it never reads the variable itself: a blank one, which the specification reads as
    unset, made it warn "Found invalid value for export timeout, using default" naming no variable. A value that
    is not a number of milliseconds in (0, 3,600,000] is ignored with a warning naming it and 30,000 used: the
    SDK's reader took 0 or a negative value, every collection then timed out before it began ("Metric collection
    timed out" each interval), and no metric point was ever exported nor counted."""
    found = _bounded_env(("OTEL_METRIC_EXPORT_TIMEOUT",), _MAX_TIMEOUT_S * 1000, _SDK_METRIC_EXPORT_TIMEOUT_MS,
                         "%s=%r is not a number of milliseconds in (0, %d]; ignored, %s used", " ms")
    return _SDK_METRIC_EXPORT_TIMEOUT_MS if found is None else found
