"""Malformed standard variables and endpoints: what configure() does with them.

Each case was found by feeding configure() bad ``OTEL_*`` values: before, an unknown protocol was
silently taken as gRPC, ``OTEL_EXPORTER_OTLP_TIMEOUT=abc`` raised a bare "could not convert string
to float" from the gRPC exporter (``inf`` made the HTTP one retry forever), a blank endpoint
variable reached the exporter as an empty URL, a malformed one was accepted and every export failed,
and a huge ``OTEL_METRIC_EXPORT_INTERVAL`` killed the metric reader's thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest
from _user_calls import _one
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shannon_otel as so
from shannon_otel import configure
from shannon_otel._exporters import _choose, _metric_exporter, _metric_interval_s, _span_exporter
from shannon_otel._metrics_bridge import BridgedInMemoryReader
from shannon_otel.testing import InMemoryTelemetry

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
@pytest.mark.parametrize("value", ["bogus", "http/json", "HTTP"])
def test_an_otlp_protocol_the_exporters_do_not_speak_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be one of grpc, http/protobuf, got '{value}'"):
        configure(exporter="otlp", set_global=False)
    assert _choose("TRACES", "console") == ("console",)  # not read when no exporter is "otlp"


@pytest.mark.parametrize(("value", "chosen"), [("GRPC", "otlp_grpc"), ("HTTP/PROTOBUF", "otlp_http"),
                                               ("Http/Protobuf", "otlp_http")])
def test_an_otlp_protocol_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch, value: str, chosen: str) -> None:
    """The specification: enum values SHOULD be interpreted case-insensitively. ``GRPC`` was refused (ValueError)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value)
    assert _choose("TRACES", None) == (chosen,)


def test_a_blank_per_signal_protocol_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", " ")
    assert _choose("TRACES", None) == ("otlp_http",)


def test_an_otlp_timeout_in_the_specifications_milliseconds_is_warned_about_as_such(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The specification gives OTEL_EXPORTER_OTLP_TIMEOUT in milliseconds, the Python exporters (and
    opentelemetry-instrument) read seconds: ``5000`` meant as 5 s was refused as "not a number of seconds in
    (0, 3600]", without saying why a spec-following value is wrong."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        configure(exporter="otlp_http", set_global=False).shutdown(1.0)
    assert "not the specification's milliseconds" in caplog.text


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
        configure(exporter=exporter, set_global=False).shutdown(1.0)
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


@pytest.mark.parametrize("endpoint", [
    "http://[::1", "http://127.0.0.1:99999", "127.0.0.1:70000", "http://127.0.0.1:0", "127.0.0.1:0",
])
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


loose: Any = so  # the public API, untyped: these tests pass what the annotations forbid on purpose


def _exemplar_counts(reader: BridgedInMemoryReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    return {m.name: sum(len(getattr(p, "exemplars", None) or ()) for p in m.data.data_points)
            for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics}


@pytest.mark.parametrize(("value", "kept"), [("always_off", False), ("ALWAYS_OFF", False), ("trace_based", True)])
def test_the_exemplar_filter_variable_applies_to_the_task_and_wave_histograms_too(
    otel_env: pytest.MonkeyPatch, value: str, kept: bool,
) -> None:
    """The in-process histograms (task duration and queue wait, wave duration) record beside the SDK's meters
    with the SDK's default filter: with OTEL_METRICS_EXEMPLAR_FILTER=always_off they alone kept exemplars
    (trace links on the dashboards' dots), where the specification makes no measurement eligible."""
    otel_env.setenv("OTEL_METRICS_EXEMPLAR_FILTER", value)
    reader = BridgedInMemoryReader()
    with so.configure(exporter="none", metric_readers=[reader], set_global=False) as tel:
        wave = so.Wave("w", tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
        assert asyncio.run(wave.map(_same, [1, 2])).values() == [1, 2]
        counts = _exemplar_counts(reader)
    bridged = ("shannon.task.duration", "shannon.task.queue_wait.duration", "shannon.wave.duration")
    assert {name: counts.get(name, 0) > 0 for name in bridged} == dict.fromkeys(bridged, kept), counts


def test_in_memory_telemetry_applies_the_exemplar_filter_variable_to_its_histograms(
    otel_env: pytest.MonkeyPatch,
) -> None:
    otel_env.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")
    telemetry = InMemoryTelemetry()
    try:
        wave = so.Wave("w", **telemetry.providers)
        assert asyncio.run(wave.map(_same, [1, 2])).values() == [1, 2]
        assert not any(getattr(p, "exemplars", None) for p in telemetry.points("shannon.task.duration"))
        assert telemetry.points("shannon.task.duration")  # recorded, without exemplars
    finally:
        telemetry.shutdown()


async def _same(x: int) -> int:
    return x


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME",
                 "OTEL_RESOURCE_ATTRIBUTES", "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_BSP_MAX_QUEUE_SIZE",
                 "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_BSP_SCHEDULE_DELAY",
                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
                 "OTEL_BLRP_MAX_QUEUE_SIZE", "OTEL_METRICS_EXEMPLAR_FILTER"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("endpoint", ["localhost:4318", "127.0.0.1:4318", "unix:///run/otel.sock"])
def test_an_http_endpoint_without_a_scheme_is_refused_naming_the_parameter(
    otel_env: pytest.MonkeyPatch, endpoint: str,
) -> None:
    """Before: accepted ("host:port" is a gRPC target), then every export logged "No connection adapters
    were found for 'localhost:4318/v1/traces'" and the telemetry was counted as dropped."""
    with pytest.raises(ValueError, match=r"^endpoint must be an http:// or https:// URL for the OTLP/HTTP exporter"):
        so.configure(exporter="otlp_http", endpoint=endpoint, set_global=False)


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_an_http_endpoint_variable_without_a_scheme_is_refused_naming_the_variable(
    otel_env: pytest.MonkeyPatch, variable: str,
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    otel_env.setenv(variable, "localhost:4318")
    with pytest.raises(ValueError, match=f"^{variable} must be an http:// or https:// URL"):
        so.configure(exporter="otlp", set_global=False)


def test_a_grpc_target_without_a_scheme_is_still_accepted(otel_env: pytest.MonkeyPatch) -> None:
    """The gRPC exporter takes host:port (TLS unless OTEL_EXPORTER_OTLP_INSECURE, as the spec says)."""
    tel = so.configure(exporter="otlp_grpc", endpoint="localhost:4317", set_global=False, shutdown_timeout_s=0.5)
    tel.shutdown(timeout_s=0.5)
    tel = so.configure(exporter="otlp_http", endpoint="http://localhost:4318/", set_global=False,
                       shutdown_timeout_s=0.5)
    tel.shutdown(timeout_s=0.5)


@pytest.mark.parametrize("where", ["endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"])
def test_a_grpc_endpoint_with_credentials_is_refused_naming_it_without_the_password(
    otel_env: pytest.MonkeyPatch, where: str,
) -> None:
    # Before: accepted; the gRPC exporter dialled "alice:PASSW0RD-xyz@127.0.0.1:1" as a host, every export failed
    # ("Misformatted domain name") and each of the SDK's warnings quoted the password.
    url = "https://alice:PASSW0RD-xyz@127.0.0.1:1"
    if where != "endpoint":
        otel_env.setenv(where, url)
    with pytest.raises(ValueError, match=f"^{where} of the OTLP/gRPC exporter cannot carry credentials") as refused:
        so.configure(exporter="otlp_grpc", endpoint=url if where == "endpoint" else None, set_global=False)
    assert "give 'https://127.0.0.1:1'" in str(refused.value)
    assert "PASSW0RD-xyz" not in str(refused.value)


@pytest.mark.parametrize(("where", "url"), [
    ("endpoint", "http://127.0.0.1:1/v1/traces"), ("endpoint", "http://127.0.0.1:1/otlp/v1/metrics/"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1/v1/traces"),
])
def test_an_http_base_url_ending_in_a_signals_path_is_refused_naming_it(
    otel_env: pytest.MonkeyPatch, where: str, url: str,
) -> None:
    # Before: accepted; traces were posted to /v1/traces/v1/traces and metrics to /v1/traces/v1/metrics (404).
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if where != "endpoint":
        otel_env.setenv(where, url)
    with pytest.raises(ValueError, match=f"^{where} is the collector's base URL, to which the OTLP/HTTP exporter"):
        so.configure(exporter="otlp", endpoint=url if where == "endpoint" else None, set_global=False)


def test_the_check_command_refuses_such_a_base_url_as_configure_does(capsys: pytest.CaptureFixture[str]) -> None:
    # Before: "FAIL ... export failed after 3 ms: HTTP 404 from http://.../v1/traces/v1/traces" from a healthy collector
    from shannon_otel.cli import main

    code = main(["check", "--skip-prometheus", "--otlp-protocol", "http/protobuf", "--otlp-endpoint",
                 "http://127.0.0.1:1/v1/traces", "--timeout", "1"])
    assert code == 1
    assert "not checked: --otlp-endpoint is the collector's base URL" in capsys.readouterr().out


@pytest.mark.parametrize("source", ["--otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"])
@pytest.mark.parametrize(("protocol", "url", "reason"), [
    ("http/protobuf", "http://127.0.0.1:1/v1/traces", "is the collector's base URL"),
    ("grpc", "http://user:pw@127.0.0.1:1", "of the OTLP/gRPC exporter cannot carry credentials"),
])
def test_the_commands_name_the_flag_or_variable_the_endpoint_came_from(
    otel_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], source: str, protocol: str, url: str,
    reason: str,
) -> None:
    # Before: the demo's usage error named configure()'s parameter ("error: endpoint is the collector's base URL"),
    # which a command-line user never set, and check named --otlp-endpoint for a URL from the variable.
    from shannon_otel.cli import main

    flags = ["--otlp-endpoint", url] if source == "--otlp-endpoint" else []
    if not flags:
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--waves", "1", "--tasks", "1", "--otlp-protocol", protocol, *flags])
    assert exited.value.code == 2
    assert f"shannon-otel demo: error: {source} {reason}" in capsys.readouterr().err
    # check refuses them too (before: gRPC dialled "user:pw@127.0.0.1:1", failing on "Misformatted domain name")
    code = main(["check", "--skip-prometheus", "--otlp-protocol", protocol, "--timeout", "1", *flags])
    assert code == 1
    assert f"not checked: {source} {reason}" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["argument", "variable"])
def test_the_signals_path_goes_before_a_query_of_the_base_url(otel_env: pytest.MonkeyPatch, where: str) -> None:
    # Before: "http://gw:4318/?tenant=a/v1/traces": every signal posted to / (the path pasted into the query).
    base = "http://127.0.0.1:1/otlp/?tenant=a"
    if where == "variable":
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    explicit = base if where == "argument" else None
    assert _span_exporter("otlp_http", explicit, None)._endpoint == (  # type: ignore[union-attr]
        "http://127.0.0.1:1/otlp/v1/traces?tenant=a")
    assert _metric_exporter("otlp_http", explicit, None)._endpoint == (  # type: ignore[union-attr]
        "http://127.0.0.1:1/otlp/v1/metrics?tenant=a")


def test_a_signals_own_endpoint_variable_is_still_used_as_it_is(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    assert _span_exporter("otlp_http", None, None)._endpoint == "http://127.0.0.1:1/v1/traces"  # type: ignore[union-attr]


def _configure_and_run(exporter: InMemorySpanExporter) -> so.Telemetry:
    tel = so.configure(exporter="none", set_global=False, span_exporters=[exporter], shutdown_timeout_s=1.0)

    async def main() -> None:
        await loose.Wave("w", tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider).run([_one])

    asyncio.run(main())
    tel.shutdown()
    return tel


@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_METRIC_EXPORT_INTERVAL", "-1"), ("OTEL_METRIC_EXPORT_INTERVAL", "1.5"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "0"), ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
])
def test_a_numeric_variable_out_of_range_is_ignored_with_a_warning_naming_it(
    otel_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str,
) -> None:
    """The environment-variable specification: a value the SDK cannot parse or out of range SHOULD
    be warned about and treated as not set."""
    otel_env.setenv(variable, value)
    spans = InMemorySpanExporter()
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        _configure_and_run(spans)
    assert any(variable in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)
    assert [s.name for s in spans.get_finished_spans()]  # the defaults were used: the spans were delivered


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_service_name_variable_counts_as_unset(otel_env: pytest.MonkeyPatch, value: str) -> None:
    otel_env.setenv("OTEL_SERVICE_NAME", value)
    tel = so.configure(exporter="none", set_global=False)
    tel.shutdown()
    assert tel.tracer_provider.resource.attributes["service.name"] == "shannon-otel"


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_service_name_variable_leaves_the_resource_attributes_service_name(
    otel_env: pytest.MonkeyPatch, value: str,
) -> None:
    """Blank is unset, so OTEL_RESOURCE_ATTRIBUTES' service.name names the service (the resource detector's
    order). Before: a blank of spaces replaced it in the SDK's detector, and the service became `shannon-otel`:
    its Jaeger service and Prometheus `job` were not the one the deployment named."""
    otel_env.setenv("OTEL_SERVICE_NAME", value)
    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=check%20out,service.version=2")
    tel = so.configure(exporter="none", set_global=False)
    tel.shutdown()
    assert tel.tracer_provider.resource.attributes["service.name"] == "check out"
    assert tel.meter_provider._sdk_config.resource.attributes["service.name"] == "check out"


@pytest.mark.parametrize("value", ["novalue", "=b,a=1", "a=%zz", "service.name="])
def test_malformed_resource_attributes_keep_the_valid_pairs_and_a_service_name(
    otel_env: pytest.MonkeyPatch, value: str,
) -> None:
    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", value)
    tel = so.configure(exporter="none", set_global=False)
    tel.shutdown()
    attributes = tel.tracer_provider.resource.attributes
    assert attributes["service.name"] == "shannon-otel"
    assert "" not in attributes
    if value == "=b,a=1":
        assert attributes["a"] == "1"


def test_sdk_disabled_gives_working_no_op_telemetry(otel_env: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: the SDK providers hand out no-op tracers; the wave still runs and
    returns its results, and nothing is exported (never an error)."""
    otel_env.setenv("OTEL_SDK_DISABLED", "true")
    spans = InMemorySpanExporter()
    tel = _configure_and_run(spans)
    assert spans.get_finished_spans() == ()
    assert sum(tel.dropped.values()) == 0


@pytest.mark.parametrize("arg", ["2", "-1", "nan", "abc"])
def test_a_sampler_ratio_out_of_range_falls_back_to_the_sdk_default(otel_env: pytest.MonkeyPatch, arg: str) -> None:
    """OTEL_TRACES_SAMPLER_ARG outside [0, 1]: the SDK warns and uses 1.0 (every span kept)."""
    otel_env.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    otel_env.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    spans = InMemorySpanExporter()
    _configure_and_run(spans)
    assert "wave w" in {s.name for s in spans.get_finished_spans()}


def test_configure_twice_without_globals_gives_two_independent_handles(otel_env: pytest.MonkeyPatch) -> None:
    first = so.configure(exporter="none", set_global=False)
    second = so.configure(exporter="none", set_global=False)
    assert first.tracer_provider is not second.tracer_provider
    assert first.shutdown() is not None
    assert first.shutdown() == first.shutdown()  # shutting down again is a no-op, never an error
    second.shutdown()


def test_a_wave_span_after_its_telemetry_was_shut_down_is_dropped_not_raised(otel_env: pytest.MonkeyPatch) -> None:
    spans = InMemorySpanExporter()
    tel = so.configure(exporter="none", set_global=False, span_exporters=[spans], shutdown_timeout_s=1.0)
    tel.shutdown()

    async def main() -> Any:
        return await loose.Wave("w", tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider).run([_one])

    result = asyncio.run(main())
    assert [r.value for r in result.results] == [1]  # the user's result is untouched
    assert spans.get_finished_spans() == ()


def _batch_settings(tel: so.Telemetry) -> dict[str, Any]:
    spans = tel._processors[0]._inner._batch_processor  # the SDK's own BatchProcessor, as it was built
    logs = tel._log_processors[0]._inner._batch_processor
    return {"bsp_delay": spans._schedule_delay_millis, "bsp_batch": spans._max_export_batch_size,
            "blrp_delay": logs._schedule_delay_millis, "blrp_batch": logs._max_export_batch_size}


_BATCH_DEFAULTS = {"bsp_delay": 5000, "bsp_batch": 512, "blrp_delay": 1000, "blrp_batch": 512}


@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_BSP_SCHEDULE_DELAY", "-1"), ("OTEL_BSP_SCHEDULE_DELAY", "0"), ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "999999"), ("OTEL_BLRP_SCHEDULE_DELAY", "0"),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "5000"), ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "-3"),
])
def test_a_batch_processor_variable_out_of_range_is_ignored_with_a_warning_naming_it(
    otel_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str,
) -> None:
    """The environment-variable specification (opentelemetry-specification#2963): a numeric value that
    cannot be parsed or is out of range SHOULD be warned about and treated as not set. Before, the SDK
    processors raised "schedule_delay_millis must be positive." (or "max_export_batch_size must be less
    than or equal to max_queue_size.") out of configure(), naming no variable."""
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        otel_env.setenv(name, "none")
    otel_env.setenv("OTEL_LOGS_EXPORTER", "console")
    otel_env.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        tel = so.configure(set_global=False, span_exporters=[InMemorySpanExporter()], shutdown_timeout_s=1.0)
    try:
        assert _batch_settings(tel) == _BATCH_DEFAULTS
        assert any(variable in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)
    finally:
        tel.shutdown()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_batch_export_timeout_variable_out_of_range_is_ignored_with_a_warning_naming_it(
    otel_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str,
) -> None:
    """Before: the SDK logged "Unable to parse value for OTEL_BSP_EXPORT_TIMEOUT as integer" with a traceback
    (ValueError: invalid literal for int()) for "abc", and took 0 or a negative value without a word."""
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        otel_env.setenv(name, "none")
    otel_env.setenv("OTEL_LOGS_EXPORTER", "console")
    for variable in ("OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BLRP_EXPORT_TIMEOUT"):
        otel_env.setenv(variable, value)
    with caplog.at_level(logging.WARNING):
        tel = so.configure(set_global=False, span_exporters=[InMemorySpanExporter()], shutdown_timeout_s=1.0)
    try:
        assert tel._processors[0]._inner._batch_processor._export_timeout_millis == 30_000
        assert tel._log_processors[0]._inner._batch_processor._export_timeout_millis == 30_000
        for variable in ("OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BLRP_EXPORT_TIMEOUT"):
            assert [r.getMessage() for r in caplog.records if variable in r.getMessage()] == [
                f"{variable}={value!r} is not a positive integer; ignored"]
        assert not [r for r in caplog.records if r.exc_info]  # no traceback in the log
    finally:
        tel.shutdown()


def test_batch_processor_variables_in_range_are_used(otel_env: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        otel_env.setenv(name, "none")
    otel_env.setenv("OTEL_LOGS_EXPORTER", "console")
    for name, value in [("OTEL_BSP_SCHEDULE_DELAY", "250"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
                        ("OTEL_BLRP_SCHEDULE_DELAY", "300"), ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "32")]:
        otel_env.setenv(name, value)
    tel = so.configure(set_global=False, span_exporters=[InMemorySpanExporter()], shutdown_timeout_s=1.0)
    try:
        assert _batch_settings(tel) == {"bsp_delay": 250, "bsp_batch": 64, "blrp_delay": 300, "blrp_batch": 32}
    finally:
        tel.shutdown()


def test_a_second_shutdown_refuses_a_nan_budget_like_the_first(otel_env: pytest.MonkeyPatch) -> None:
    """Before: the idempotent early return came first, so ``shutdown(timeout_s=nan)`` on a handle
    already shut down returned True, while the same call on a fresh handle raised ValueError."""
    tel = so.configure(exporter="none", set_global=False)
    assert tel.shutdown() is True
    with pytest.raises(ValueError, match=r"^timeout_s must be in \[0, 3600"):
        tel.shutdown(timeout_s=math.nan)
    assert tel.shutdown() is True  # still idempotent


@pytest.mark.parametrize(("value", "expected"), [
    ("bogus", "TraceBasedExemplarFilter"), ("ALWAYS_ON", "AlwaysOnExemplarFilter"),
    (" always_off ", "AlwaysOffExemplarFilter"), ("always_on", "AlwaysOnExemplarFilter"),
    ("", "TraceBasedExemplarFilter"), ("  ", "TraceBasedExemplarFilter"),  # blank is unset: no warning
])
def test_an_unknown_exemplar_filter_variable_falls_back_to_the_default_with_a_warning(
    otel_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str, expected: str,
) -> None:
    """Before: the SDK's MeterProvider raised "Unknown exemplar filter 'bogus'." out of configure()
    (and for "ALWAYS_ON": the specification reads enum values case-insensitively)."""
    otel_env.setenv("OTEL_METRICS_EXEMPLAR_FILTER", value)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        tel = so.configure(exporter="none", set_global=False)
    tel.shutdown()
    assert type(tel.meter_provider._sdk_config.exemplar_filter).__name__ == expected
    warned = any("OTEL_METRICS_EXEMPLAR_FILTER" in r.getMessage() for r in caplog.records)
    assert warned == (value == "bogus")
