"""An invalid signal-specific OTLP variable is treated as unset, so the general one applies.

The environment-variable specification: a value the implementation cannot parse (or an enum value it does not
recognise) SHOULD be warned about and ignored, "treated as not set". Before, ``configure()`` stopped at the
signal's variable: ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=abc`` with ``OTEL_EXPORTER_OTLP_TIMEOUT=3`` exported with
the SDK default of 10 s, and ``OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=brotli`` with
``OTEL_EXPORTER_OTLP_COMPRESSION=gzip`` sent uncompressed.
"""

from __future__ import annotations

import logging
import os
import warnings
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from _http_sink import LocalServer

from shannon_otel import configure
from shannon_otel._otlp_grpc import GrpcSpans
from shannon_otel._otlp_http import HttpSpans


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")


def _warnings(caplog: pytest.LogCaptureFixture, variable: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and variable in r.getMessage()]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("value", ["abc", "-1", "inf"])
def test_an_invalid_signal_timeout_leaves_the_general_one_in_force(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, protocol: str, value: str,
) -> None:
    built: list[float | None] = []
    module, real = ("shannon_otel._otlp_grpc.GrpcSpans", GrpcSpans) if protocol == "grpc" else (
        "shannon_otel._otlp_http.HttpSpans", HttpSpans)

    class Recorded(real):  # type: ignore[misc, valid-type]  # the exporter configure() builds, its timeout noted
        def __init__(self, endpoint: str | None, timeout: float | None, *args: Any) -> None:
            built.append(timeout)
            super().__init__(endpoint, timeout, *args)

    monkeypatch.setattr(module, Recorded)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value)
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        configure(set_global=False, shutdown_timeout_s=0.5).shutdown()
    assert built == [3.0]  # the general variable, not the SDK default (10 s)
    [warning] = _warnings(caplog, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")  # once, naming the variable
    assert f"={value!r}" in warning
    assert warning.endswith("ignored, 3 s used")


def test_invalid_timeouts_in_both_variables_give_the_default_with_a_warning_for_each(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "abc")
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        handle = configure(set_global=False, shutdown_timeout_s=0.5)
    handle.shutdown()
    assert handle._processors[0].exporter.inner._timeout == 10.0
    assert len(_warnings(caplog, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='abc'")) == 1
    assert len(_warnings(caplog, "OTEL_EXPORTER_OTLP_TIMEOUT='0'")) == 1


class _EncodingSink(LocalServer):
    """An OTLP/HTTP endpoint on 127.0.0.1 that answers 200 and notes each request's Content-Encoding."""

    def __init__(self) -> None:
        self.encodings: list[str | None] = []
        super().__init__(self._post)

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        request.rfile.read(int(request.headers.get("Content-Length", 0)))
        self.encodings.append(request.headers.get("Content-Encoding"))
        request.send_response(200)
        request.send_header("Content-Length", "0")
        request.end_headers()


def test_an_unknown_signal_compression_leaves_the_general_one_in_force(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli")
    sink = _EncodingSink()
    try:
        with caplog.at_level(logging.WARNING, "shannon_otel"):
            handle = configure(exporter="otlp_http", endpoint=sink.endpoint, set_global=False, export_timeout_s=10,
                               shutdown_timeout_s=10)
        handle.tracer_provider.get_tracer("fallback").start_span("compressed").end()
        assert handle.shutdown()
    finally:
        sink.close()
    assert sink.encodings == ["gzip"]  # sent uncompressed before
    assert len(_warnings(caplog, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION='brotli'")) == 1


# Every variable configure() (or the SDK under it) reads for the console exporters, set blank as deployments do
# (``OTEL_METRIC_EXPORT_TIMEOUT=${TIMEOUT}`` with TIMEOUT unset).
_BLANKABLE = [
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG", "OTEL_PYTHON_ID_GENERATOR", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BLRP_EXPORT_TIMEOUT",
    "OTEL_BLRP_MAX_QUEUE_SIZE", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT", "OTEL_METRICS_EXEMPLAR_FILTER", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
]


@pytest.mark.parametrize("variable", _BLANKABLE)
def test_a_blank_variable_is_unset_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str,
) -> None:
    """The specification: an empty value is interpreted as unset, and unset draws no warning. Before, a blank
    ``OTEL_METRIC_EXPORT_TIMEOUT`` made the SDK's reader warn "Found invalid value for export timeout, using
    default", naming no variable."""
    monkeypatch.setenv(variable, "")
    with caplog.at_level(logging.WARNING):
        handle = configure(exporter="console", logs=True, set_global=False, shutdown_timeout_s=5)
        handle.shutdown()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []



@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_blank_otlp_timeouts_are_unset_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, protocol: str,
) -> None:
    """Blank (spaces only) is unset, as configure() reads every variable. Before, with none of the timeout variables
    holding a value the OTLP/HTTP exporters were left to read them: the SDK's took ' ' as a value and warned
    "Invalid timeout value ' ', using default of 10 seconds", naming no variable (once per signal)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for signal in ("", "_TRACES", "_LOGS"):
        monkeypatch.setenv(f"OTEL_EXPORTER_OTLP{signal}_TIMEOUT", " ")
    with caplog.at_level(logging.WARNING):
        configure(set_global=False, shutdown_timeout_s=0.5).shutdown()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

# --- span limits ------------------------------------------------------------------------------------------------

def _kept_attributes(**limits: str) -> tuple[int, int]:
    """(attributes, length of one value) of a span given 200 attributes of 300 characters, as exported."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    handle = configure(exporter="none", span_exporters=[exported], set_global=False, shutdown_timeout_s=5)
    span = handle.tracer_provider.get_tracer("limits").start_span("wide")
    span.set_attributes({f"a{i}": "x" * 300 for i in range(200)})
    span.end()
    assert handle.shutdown()
    [finished] = exported.get_finished_spans()
    attributes = finished.attributes or {}
    return len(attributes), len(str(next(iter(attributes.values()))))


@pytest.mark.parametrize("variable", ["OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"])
def test_a_blank_attribute_count_limit_keeps_the_default_limit(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """Before: the SDK read a blank count limit as no limit, so a span kept all 200 attributes (unset: 128)."""
    monkeypatch.setenv(variable, "")
    assert _kept_attributes() == (128, 300)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_an_invalid_limit_is_ignored_with_a_warning_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str,
) -> None:
    """Before: ValueError out of configure() (no telemetry at all under opentelemetry-instrument); now the
    specification's reading: warned about, naming it, and ignored, so the general variable applies."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "50")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", value)
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "20")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", value)
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert _kept_attributes() == (50, 20)
    assert len(_warnings(caplog, f"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT={value!r}")) == 1
    assert len(_warnings(caplog, f"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT={value!r}")) == 1


@pytest.mark.parametrize("variables", [
    {},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT": "7", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "9"},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT": "7", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "4",
     "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": " 5 ", "OTEL_SPAN_EVENT_COUNT_LIMIT": "0", "OTEL_SPAN_LINK_COUNT_LIMIT": "2",
     "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "9", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "11"},
])
def test_valid_limits_are_the_ones_the_sdk_reads(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    from opentelemetry.sdk.trace import SpanLimits

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    handle = configure(exporter="none", set_global=False)
    handle.shutdown()
    assert vars(handle.tracer_provider._span_limits) == vars(SpanLimits())


# --- log record limits (logs on: the LoggerProvider read OTEL_ATTRIBUTE_COUNT_LIMIT itself) -------------------------

def _kept_log_attributes() -> tuple[int, int]:
    """(attributes, length of one value) of a log record given 200 attributes of 300 characters, as exported."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    handle = configure(exporter="console", logs=True, set_global=False, shutdown_timeout_s=5)  # "none": logs off
    assert handle.logger_provider is not None
    exported = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    handle.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    try:
        with warnings.catch_warnings():  # the SDK warns (a warning category) of the attributes it drops
            warnings.simplefilter("ignore")
            handle.logger_provider.get_logger("limits").emit(
                body="wide", attributes={f"a{i}": "x" * 300 for i in range(200)})
    finally:
        assert handle.shutdown()
    [finished] = exported.get_finished_logs()
    attributes = finished.log_record.attributes or {}
    return len(attributes), len(str(next(iter(attributes.values()))))


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_an_invalid_general_limit_with_logs_on_is_ignored_with_one_warning_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str,
) -> None:
    """Before: with logs on, the LoggerProvider's own LogRecordLimits raised ValueError out of configure() for an
    invalid OTEL_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT (the span limits no longer did)."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", value)
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", value)
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert _kept_log_attributes() == (128, 300)
    assert len(_warnings(caplog, f"OTEL_ATTRIBUTE_COUNT_LIMIT={value!r}")) == 1  # read once for spans and logs
    assert len(_warnings(caplog, f"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT={value!r}")) == 1


def test_a_blank_log_record_limit_keeps_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the SDK read a blank OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT as no limit (all 200 attributes kept)."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "50")
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "20")
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "")
    assert _kept_log_attributes() == (50, 20)


@pytest.mark.parametrize("variables", [
    {},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT": "7", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "0"},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT": "7", "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT": "0",
     "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "9", "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT": " 11 "},
])
def test_valid_log_record_limits_are_the_ones_the_sdk_reads(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
) -> None:
    from opentelemetry.sdk._logs import LogRecordLimits

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    handle = configure(exporter="console", logs=True, set_global=False)
    handle.shutdown()
    assert handle.logger_provider is not None
    assert vars(handle.logger_provider._log_record_limits) == vars(LogRecordLimits())
