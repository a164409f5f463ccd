"""Malformed standard variables and endpoints: what configure() does with them.

Each case was found by feeding configure() bad ``OTEL_*`` values: before, an unknown protocol was
silently taken as gRPC, ``OTEL_EXPORTER_OTLP_TIMEOUT=abc`` raised a bare "could not convert string
to float" from the gRPC exporter (``inf`` made the HTTP one retry forever), a blank endpoint
variable reached the exporter as an empty URL, a malformed one was accepted and every export failed,
and a huge ``OTEL_METRIC_EXPORT_INTERVAL`` killed the metric reader's thread.
"""

from __future__ import annotations

import logging

import pytest

from shannon_otel import configure
from shannon_otel._exporters import _choose, _metric_exporter, _metric_interval_s, _span_exporter

_VARIABLES = (
    "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_METRIC_EXPORT_INTERVAL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"])
@pytest.mark.parametrize("value", ["bogus", "http/json", "HTTP/PROTOBUF"])
def test_an_otlp_protocol_the_exporters_do_not_speak_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be one of grpc, http/protobuf, got '{value}'"):
        configure(exporter="otlp", set_global=False)
    assert _choose("TRACES", "console") == ("console",)  # not read when no exporter is "otlp"


def test_a_blank_per_signal_protocol_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", " ")
    assert _choose("TRACES", None) == ("otlp_http",)


class _Built:
    """Stands in for an SDK OTLP exporter class: records what it was built with."""

    def __init__(self, endpoint: str | None = None, timeout: float | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout


@pytest.mark.parametrize("exporter", ["otlp_grpc", "otlp_http"])
@pytest.mark.parametrize("value", ["abc", "inf", "nan", "-5", "0", "1e9"])
def test_a_malformed_otlp_timeout_variable_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, exporter: str, value: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", value)
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        # the gRPC exporter raised a bare "could not convert string to float" for "abc"
        configure(exporter=exporter, set_global=False).shutdown(1.0)  # type: ignore[arg-type]
    assert f"OTEL_EXPORTER_OTLP_TIMEOUT={value!r} is not a number of seconds" in caplog.text
    kind, prefix = ("grpc", "Grpc") if exporter == "otlp_grpc" else ("http", "Http")
    # configure()'s OTLP exporters (the SDK's, reading partial successes) are built from these
    monkeypatch.setattr(f"shannon_otel._otlp_{kind}.{prefix}Spans", _Built)
    monkeypatch.setattr(f"shannon_otel._otlp_{kind}.{prefix}Metrics", _Built)
    spans = _span_exporter(exporter, None, None)
    assert isinstance(spans, _Built)
    assert spans.timeout == 10.0  # the SDK default, not the bad value
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2.5")  # a good per-signal value wins
    metrics = _metric_exporter(exporter, None, None)
    assert isinstance(metrics, _Built)
    assert metrics.timeout == 2.5


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
@pytest.mark.parametrize("value", ["notaurl", "http://[::1", "http://127.0.0.1:99999", "ftp://collector:4317"])
def test_an_endpoint_variable_that_is_not_a_url_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be a URL"):
        configure(exporter="otlp_http", set_global=False)


@pytest.mark.parametrize(("exporter", "endpoint"), [
    ("otlp_http", "http://localhost:4318/v1/traces"), ("otlp_grpc", "localhost:4317"),
])
def test_a_blank_endpoint_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, exporter: str, endpoint: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    assert _span_exporter(exporter, None, None)._endpoint == endpoint  # type: ignore[union-attr]


def test_endpoint_variables_keep_the_sdk_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")  # a base: the path is appended
    assert _span_exporter("otlp_http", None, None)._endpoint == "http://collector:4318/v1/traces"  # type: ignore[union-attr]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/custom")  # per signal: as is
    assert _span_exporter("otlp_http", None, None)._endpoint == "http://other:4318/custom"  # type: ignore[union-attr]
    assert _metric_exporter("otlp_http", None, None)._endpoint == "http://collector:4318/v1/metrics"  # type: ignore[union-attr]
    # the endpoint= argument wins over both
    assert _span_exporter("otlp_http", "http://arg:1", None)._endpoint == "http://arg:1/v1/traces"  # type: ignore[union-attr]


@pytest.mark.parametrize("endpoint", ["http://[::1", "http://127.0.0.1:99999", "127.0.0.1:70000"])
def test_an_endpoint_argument_with_a_bad_host_or_port_is_refused_naming_it(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint must be a URL"):
        configure(exporter="otlp_grpc", endpoint=endpoint, set_global=False)


def test_a_metric_interval_variable_beyond_a_day_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "99999999999999999999")
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert _metric_interval_s(None) == 10.0
    assert "OTEL_METRIC_EXPORT_INTERVAL=99999999999999999999 ms is above" in caplog.text
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "86400000")  # one day is allowed
    assert _metric_interval_s(None) == 86_400.0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"exporter": ""}, ValueError, "exporter must be one of"),  # was silently "otlp"
    ({"exporter": " , "}, ValueError, "exporter must be one of"),
    ({"set_global": None}, TypeError, "set_global must be a bool, got None"),  # was silently False
])
def test_blank_or_none_arguments_are_refused_not_read_as_a_default(
    kwargs: dict[str, object], error: type[Exception], match: str,
) -> None:
    with pytest.raises(error, match=match):
        configure(**kwargs)  # type: ignore[arg-type]


def test_a_blank_exporter_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", " ")
    assert _choose("TRACES", None) == ("otlp_grpc",)


@pytest.mark.parametrize("endpoint", [
    "unix:///run/otel.sock", "dns:///collector:4317", "collector:4317", "https://otlp.example.com/v1/traces",
])
def test_endpoint_variables_the_exporters_accept_stay_accepted(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    # the gRPC exporter dials unix:///path itself: validating the variable must not break that set-up
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    configure(exporter="otlp_grpc", set_global=False).shutdown(1.0)
