"""Configuration as users write it, through the standard ``OTEL_*`` variables.

Each test sets variables the way a deployment does and checks what ``configure()`` (and the CLI, and the
zero-code configurator) then does against real local collectors (tests/test_export_faults.py's
sinks). Bugs pinned:

- ``OTEL_EXPORTER_OTLP[_<signal>]_COMPRESSION=none`` (the specification's value), a blank one, ``deflate``:
  the SDK's gRPC exporters raised ``InvalidCompressionValueException`` out of ``configure()``,
  ``shannon-otel check``/``demo`` (a traceback) and the zero-code set-up (no telemetry at all); an unknown
  value over HTTP was a warning that named no variable;
- an unknown name in ``OTEL_TRACES_EXPORTER``/``OTEL_METRICS_EXPORTER``/``OTEL_LOGS_EXPORTER`` was refused as
  "exporter must be one of ...", naming an argument the user never passed; ``NONE``, which the SDK's
  configurator reads as ``none``, was refused; ``prometheus`` got no hint;
- ``OTEL_SDK_DISABLED=1``, ``OTEL_EXPORTER_OTLP_INSECURE=yes`` were read as false without a word, a
  certificate variable naming a missing file likewise (the specification asks for a warning);
- ``OTEL_BSP_MAX_QUEUE_SIZE`` was taken at any size, where ``max_queue_size=`` is bounded; ``OTEL_BLRP_MAX_QUEUE_SIZE``
  too, after the former was fixed;
- an app calling ``configure()`` run under ``opentelemetry-instrument`` with this configurator failed with
  advice (``set_global=False``, pass providers) that does not say why or what to do there.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs shipped with grpcio
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from test_export_faults import GUARD_S, N_SPANS, GrpcSink, HttpSink, _run_wave, _shutdown, answer

from shannon_otel import Telemetry, configure
from shannon_otel._delivery import DEFAULT_MAX_QUEUE_SIZE, CountedSpanProcessor
from shannon_otel._exporters import _choose
from shannon_otel.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "_OTEL_")):
            monkeypatch.delenv(name)


def _python(*args: str, variables: dict[str, str] | None = None, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a process of its own, with no OTEL_ variable but ``variables`` and this checkout's
    shannon_otel importable (unless ``variables`` gives PYTHONPATH); its exit status is the test's to check."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, "PYTHONPATH": str(ROOT),
           **(variables or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False,
                          timeout=timeout)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --- compression ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"])
@pytest.mark.parametrize("value", ["none", "NONE", "", "gzip", "GZip", "deflate"])
def test_every_compression_the_specification_names_delivers_over_grpc(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
) -> None:
    """Before: ``none``, blank and ``deflate`` raised InvalidCompressionValueException from configure()."""
    monkeypatch.setenv(variable, value)
    sink = GrpcSink(lambda context, signal, items: None)
    try:
        handle = configure(exporter="otlp_grpc", endpoint=sink.endpoint, set_global=False, export_timeout_s=10)
        assert _run_wave(handle) == [i * 2 for i in range(10)]
        assert _shutdown(handle)
        assert sink.spans == N_SPANS
        assert handle.dropped["traces"] == 0
    finally:
        sink.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unknown_compression_is_ignored_with_a_warning_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, protocol: str,
) -> None:
    """Before: gRPC raised from configure(); HTTP warned "Unsupported compression type: brotli", no variable."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "brotli")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    with caplog.at_level(logging.WARNING):
        handle = configure(set_global=False, shutdown_timeout_s=0.5, export_timeout_s=0.5)
    handle.shutdown()
    assert [w for w in _warnings(caplog) if "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION='brotli'" in w]


def test_the_check_command_honours_a_compression_of_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: ``shannon-otel check`` ended in a traceback (InvalidCompressionValueException)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    sink = GrpcSink(lambda context, signal, items: None)
    try:
        code = main(["check", "--skip-prometheus", "--otlp-endpoint", sink.endpoint, "--timeout", "10"])
    finally:
        sink.close()
    assert code == 0, capsys.readouterr()
    assert sink.spans == 1


def test_a_batch_above_the_queue_of_the_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "max_export_batch_size must be <= max_queue_size (100)", an argument the user never passed."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    with pytest.raises(ValueError, match=r"^max_export_batch_size must be <= OTEL_BSP_MAX_QUEUE_SIZE \(100\), got 512"):
        configure(exporter="none", set_global=False, max_export_batch_size=512)


# --- exporter names -------------------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_METRICS_EXPORTER", "otlp,prometheus"), ("OTEL_LOGS_EXPORTER", "bogus"),
])
def test_an_unknown_exporter_in_a_variable_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
) -> None:
    """Before: "exporter must be one of ..." though no ``exporter`` argument was given."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable} must be one of") as raised:
        configure(set_global=False)
    if "prometheus" in value:
        assert "PrometheusReader" in str(raised.value) and "MetricsServer" in str(raised.value)


def test_an_unknown_exporter_argument_is_still_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^exporter must be one of"):
        configure(exporter="zipkin", set_global=False)


def test_an_exporter_variable_of_none_in_any_case_is_none_as_in_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's configurator reads ``NONE`` as ``none``. Before: a ValueError (and the logs signal, which
    ``none`` keeps off, was on the way to an error for ``NONE``)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "None")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "NONE")
    handle = configure(set_global=False, shutdown_timeout_s=0.5)
    handle.shutdown()
    processors = handle.tracer_provider._active_span_processor._span_processors
    assert [type(p.exporter.inner).__name__ for p in processors if isinstance(p, CountedSpanProcessor)] == [
        "ConsoleSpanExporter"]
    assert handle.logger_provider is None
    assert handle._metric_exporters == ()


@pytest.mark.parametrize("value", ["console,NONE", "None, console"])
def test_none_in_any_case_within_an_exporter_list_is_left_out(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Alone, ``NONE`` was off; in a list with another exporter, a ValueError "got 'NONE'" (``none`` was left out)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert _choose("TRACES", None) == ("console",)


@pytest.mark.parametrize(("value", "built"), [("otlp_proto_http", "HttpSpans"), ("otlp_proto_grpc", "GrpcSpans")])
def test_the_sdks_own_otlp_exporter_names_are_taken_from_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, built: str,
) -> None:
    """The SDK's configurator takes them (opentelemetry-exporter-otlp's entry points). Before: a ValueError, so a
    zero-code program configured by this configurator had no telemetry at all."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    handle = configure(set_global=False, shutdown_timeout_s=0.5)
    handle.shutdown()
    processors = handle.tracer_provider._active_span_processor._span_processors
    assert [type(p.exporter.inner).__name__ for p in processors if isinstance(p, CountedSpanProcessor)] == [built]


@pytest.mark.parametrize(("value", "chosen"), [
    ("OTLP", ("otlp_grpc",)), ("Console,OTLP_PROTO_HTTP", ("console", "otlp_http")),
])
def test_exporter_names_are_read_in_any_case(
    monkeypatch: pytest.MonkeyPatch, value: str, chosen: tuple[str, ...],
) -> None:
    """The specification reads enum values case-insensitively: ``OTLP`` was a ValueError out of configure()."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert _choose("TRACES", None) == chosen


def test_an_unknown_exporter_name_is_named_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "Zipkin")
    with pytest.raises(ValueError, match=r"^OTEL_TRACES_EXPORTER must be one of .*; got 'Zipkin'"):
        configure(set_global=False)


# --- booleans and files read silently as something else ---------------------------------------------

@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_SDK_DISABLED", "1"), ("OTEL_SDK_DISABLED", "yes"), ("OTEL_EXPORTER_OTLP_INSECURE", "on"),
    ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "1"),
])
def test_a_boolean_variable_read_as_false_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str,
) -> None:
    """The specification: only ``true`` is true, and any other value than ``false`` or blank SHOULD be
    warned about. Before: ``OTEL_SDK_DISABLED=1`` left the SDK on without a word."""
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        handle = configure(exporter="otlp_grpc", set_global=False, shutdown_timeout_s=0.5)
    handle.shutdown()
    assert [w for w in _warnings(caplog) if f"{variable}={value!r}" in w and "read as false" in w]


@pytest.mark.parametrize("value", ["true", "TRUE", "false", ""])
def test_a_boolean_variable_with_a_proper_value_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", value)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        configure(exporter="none", set_global=False).shutdown()
    assert not [w for w in _warnings(caplog) if "OTEL_SDK_DISABLED" in w]


def test_a_certificate_variable_naming_a_missing_file_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    missing = str(tmp_path / "ca.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", missing)
    (tmp_path / "client.pem").write_text("x")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(tmp_path / "client.pem"))  # exists
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        configure(exporter="otlp_http", endpoint="https://127.0.0.1:1", set_global=False,
                  shutdown_timeout_s=0.5).shutdown()
    named = [w for w in _warnings(caplog) if "CERTIFICATE" in w]
    assert len(named) == 1  # once, though traces and metrics both read it
    assert named[0].startswith(f"OTEL_EXPORTER_OTLP_CERTIFICATE={missing!r}: no such file")


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE"])
def test_a_certificate_variable_naming_a_directory_is_refused_naming_it_over_grpc(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path, variable: str,
) -> None:
    # Before: IsADirectoryError out of configure() (the SDK's gRPC exporter reads the file when built and
    # catches a missing file only), naming neither the variable nor the exporter; the warning said "no such file".
    monkeypatch.setenv(variable, str(tmp_path))
    named = re.escape(f"{variable}={str(tmp_path)!r}: the OTLP/gRPC exporter cannot read it")
    with caplog.at_level(logging.WARNING, logger="shannon_otel"), pytest.raises(ValueError, match=f"^{named}"):
        configure(exporter="otlp_grpc", endpoint="https://127.0.0.1:1", set_global=False, shutdown_timeout_s=0.5)
    assert [w for w in _warnings(caplog) if w.startswith(f"{variable}={str(tmp_path)!r}: a directory, not a file")]


@pytest.mark.parametrize("file", ["a directory", "missing"])
def test_the_check_command_says_what_the_grpc_exporter_made_of_a_certificate_variable(
    tmp_path: Path, file: str,
) -> None:
    # Before: a directory ended `check` in a traceback (IsADirectoryError); a missing file printed the SDK's
    # traceback (logged while the exporter was built, before the capture of the export's records began).
    # In a process of its own: the SDK's filter drops an exporter error repeating the last one's template.
    path = str(tmp_path if file == "a directory" else tmp_path / "ca.pem")
    out = _python("-m", "shannon_otel", "check", "--skip-prometheus", "--otlp-endpoint", "https://127.0.0.1:1",
                  "--timeout", "1", variables={"OTEL_EXPORTER_OTLP_CERTIFICATE": path})
    assert out.returncode == 1
    if file == "a directory":
        refused = f"not checked: OTEL_EXPORTER_OTLP_CERTIFICATE={path!r}: the OTLP/gRPC exporter cannot read it"
        assert refused in out.stdout
        assert out.stderr == ""
    else:
        assert out.stdout.startswith("FAIL OTLP grpc https://127.0.0.1:1: export failed")
        assert out.stderr == f"Failed to read file: {path}. Please check if the file exists and is accessible.\n"


# --- sizes ----------------------------------------------------------------------------------------

def test_a_span_queue_size_variable_beyond_the_arguments_bound_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """``max_queue_size=10**11`` is a ValueError; the variable was taken as it was."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(10**11))
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        handle = configure(exporter="console", set_global=False)
    handle.shutdown()
    processor = handle.tracer_provider._active_span_processor._span_processors[0]
    assert isinstance(processor, CountedSpanProcessor)
    assert processor.max_queue_size == DEFAULT_MAX_QUEUE_SIZE
    assert [w for w in _warnings(caplog) if w.startswith("OTEL_BSP_MAX_QUEUE_SIZE=") and "ignored" in w]


def test_a_log_record_queue_size_variable_is_bounded_as_the_span_queues_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """``OTEL_BLRP_MAX_QUEUE_SIZE=10**11`` was taken as it was: a log record queue as good as unbounded (memory runs out
    before a record is dropped and counted), where the span queue's variable is ignored beyond 10,000,000."""
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", str(10**11))
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        handle = configure(exporter="console", logs=True, set_global=False)
    handle.shutdown()
    [processor] = handle._log_processors
    assert processor.max_queue_size == 2048  # the SDK's default, as when the variable is unset
    assert [w for w in _warnings(caplog) if w.startswith(f"OTEL_BLRP_MAX_QUEUE_SIZE='{10**11}' is above 10000000")]
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "10000000")  # the bound itself is taken
    handle = configure(exporter="console", logs=True, set_global=False)
    handle.shutdown()
    assert handle._log_processors[0].max_queue_size == 10_000_000


# --- zero-code --------------------------------------------------------------------------------------

def test_configure_under_the_zero_code_configurator_says_why_it_cannot_set_the_globals() -> None:
    """The README's app run as its zero-code line says (opentelemetry-instrument calls the configurator
    first): the error names opentelemetry-instrument and what to do, not only "already set"."""
    script = """
from shannon_otel import configure
from shannon_otel._autoconfig import Configurator

Configurator().configure(auto_instrumentation_version="0")
try:
    configure("my-service")
except RuntimeError as exc:
    print(exc)
"""
    out = _python("-c", script, variables={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                                           "OTEL_PYTHON_CONFIGURATOR": "shannon_otel"})
    assert out.returncode == 0, out.stderr
    assert "opentelemetry-instrument" in out.stdout and "leave configure() out" in out.stdout


# --- a refused configure() leaves nothing running ---------------------------------------------------------

@pytest.mark.parametrize("variables", [
    {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "notaurl"},
    {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "notaurl"},
    # (OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT=abc no longer refuses configure(): warned about and ignored, see
    # tests/test_configure_env_fallback.py)
])
def test_a_configure_refused_for_a_later_signals_variable_starts_no_thread(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
) -> None:
    """Before: the span processor (and, for logs, the metric reader) was started before the metric/log
    endpoint variable was checked: every refused call left its threads running (a program retrying
    configure() on a config reload gained two threads a try)."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match=f"^{next(reversed(variables))} must be"):
        configure(set_global=False)
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:  # the SDK's resource detection (1.45.0) leaves a pool worker that ends by itself;
        thread.join(2.0)  # a processor's or reader's worker never does
    assert [t.name for t in started if t.is_alive()] == []


_OTHER_CONFIGURATOR = """
class Other:
    def configure(self, **kwargs):
        print("other configurator ran with", sorted(kwargs))
"""

_RUN_OURS_FIRST = """
from opentelemetry import trace
from shannon_otel._autoconfig import Configurator

Configurator().configure(auto_instrumentation_version="0")  # first in entry-point order, as installed here
print("shannon_otel configured:", Configurator._configured is not None)
"""


@pytest.mark.parametrize("chosen", [None, "shannon_otel"])
def test_the_configurator_hands_over_to_another_installed_one_unless_named(tmp_path: Path, chosen: str | None) -> None:
    """opentelemetry-instrument runs the first configurator installed when OTEL_PYTHON_CONFIGURATOR is unset.
    Before: installing shannon-otel next to opentelemetry-distro (whose configurator came second) replaced the
    distro's set-up with this one, silently (the app's root-logger records were no longer exported)."""
    (tmp_path / "other_configurator.py").write_text(_OTHER_CONFIGURATOR)
    info = tmp_path / "other_configurator-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-configurator\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[opentelemetry_configurator]\nother = other_configurator:Other\n")
    variables = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "OTEL_TRACES_EXPORTER": "none",
                 "OTEL_METRICS_EXPORTER": "none"}
    if chosen is not None:
        variables["OTEL_PYTHON_CONFIGURATOR"] = chosen
    out = _python("-c", _RUN_OURS_FIRST, variables=variables)
    assert out.returncode == 0, out.stderr
    if chosen is None:
        assert "other configurator ran with ['auto_instrumentation_version']" in out.stdout
        assert "shannon_otel configured: False" in out.stdout
    else:
        assert "other configurator ran" not in out.stdout
        assert "shannon_otel configured: True" in out.stdout


# --- shannon-otel check against a server of another protocol ------------------------------------------------

class _Html(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>not prometheus</html>")

    def log_message(self, *args: object) -> None:
        pass


def test_check_of_prometheus_at_a_grpc_port_fails_with_a_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: http.client.BadStatusLine (not an OSError) escaped check_prometheus: a traceback."""
    sink = GrpcSink(lambda context, signal, items: None)
    try:
        code = main(["check", "--skip-otlp", "--prometheus", sink.endpoint, "--timeout", "10"])
    finally:
        sink.close()
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL Prometheus {sink.endpoint}: answered in another protocol than HTTP/1.1" in out


def test_check_of_prometheus_at_a_web_page_says_it_is_not_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "unreachable: Expecting value: line 1 column 1 (char 0)" for a server that answered."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code = main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "10"])
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    assert "answered, but not with Prometheus' JSON query API" in capsys.readouterr().out


def test_check_of_otlp_http_at_a_grpc_port_names_the_protocol_not_its_bytes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: "BadStatusLine: " followed by the HTTP/2 frame's raw bytes, printed on the terminal."""
    sink = GrpcSink(lambda context, signal, items: None)
    try:
        code = main(["check", "--skip-prometheus", "--otlp-protocol", "http/protobuf", "--otlp-endpoint",
                     sink.endpoint, "--timeout", "10"])
    finally:
        sink.close()
    out = capsys.readouterr().out
    assert code == 1
    assert "answered in another protocol than HTTP/1.1 (a gRPC port?" in out
    assert all(c.isprintable() for c in out.rstrip("\n"))


@pytest.mark.parametrize("headers", ["Bearer%20s3cr3t-token", "x-team=a,Bearer s3cr3t-token"])
def test_the_cli_never_prints_a_malformed_header_variables_token(headers: str) -> None:
    """docs/reliability.md: the CLI never prints header values. Before: the SDK's "Header format invalid! ...:
    Bearer s3cr3t-token" (a pair without "=", the token pasted without its key) reached stderr as it was."""
    out = _python("-m", "shannon_otel", "check", "--skip-prometheus", "--otlp-endpoint", "http://127.0.0.1:1",
                  "--timeout", "0.5", variables={"OTEL_EXPORTER_OTLP_HEADERS": headers})
    assert out.returncode == 1
    assert "Header format invalid" in out.stderr  # the SDK's warning is still shown, its quote masked
    assert "s3cr3t" not in out.stdout + out.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"])
def test_configure_logs_no_malformed_header_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, protocol: str, variable: str,
) -> None:
    """Before: the SDK's parser logged "Header format invalid! ...: Bearer s3cr3t-token" into the app's logs
    (shipped, often, to a log backend) when configure() built the OTLP exporters."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv(variable, "x-team=a,Bearer s3cr3t-token")
    with caplog.at_level(logging.WARNING):
        handle = configure(set_global=False, shutdown_timeout_s=0.5, export_timeout_s=0.5)
    handle.shutdown()
    assert [m for m in _warnings(caplog) if "Header format invalid" in m]  # still said, its quote masked
    assert "s3cr3t" not in caplog.text
    # the mask is lifted once the exporters exist (the CLI's own scrubbing filter may be there: main() adds it)
    filters = logging.getLogger("opentelemetry.util.re").filters
    assert [f for f in filters if type(f).__name__ == "_HeaderTextMasked"] == []


@pytest.mark.parametrize(("exporter", "headers", "bad"), [
    ("otlp_http", "x-team=a,authorization=s3cr3t%E0%A4%A", "authorization"),  # a malformed escape: U+FFFD
    ("otlp_http", "authorization=s3cr3t%0D%0Ax", "authorization"),  # an encoded line break
    ("otlp_grpc", "authorization=s3cr3t%E0%A4%A", "authorization"),
    ("otlp_grpc", "x-team=caf%C3%A9s3cr3t", "x-team"),  # UTF-8, which gRPC metadata cannot carry
])
def test_a_header_variable_that_decodes_to_an_unsendable_value_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, exporter: str, headers: str, bad: str,
) -> None:
    """Before: not a word at configure(); every export failed (counted as dropped), the SDK logging per export
    "Invalid metadata" or "'latin-1' codec can't encode character '\\ufffd'", naming no variable (and, for a line
    break, requests' message quoting the header's value)."""
    sink = HttpSink(answer(200)) if exporter == "otlp_http" else GrpcSink(lambda *a: None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
    try:
        with caplog.at_level(logging.WARNING, "shannon_otel"):
            handle = configure("headers", exporter=exporter, endpoint=sink.endpoint, set_global=False,
                               shutdown_timeout_s=GUARD_S, metric_interval_s=3600.0)
        said = [m for m in _warnings(caplog) if "percent-decodes" in m]
        assert len(said) == 1, said  # one variable: one warning, whatever the signals reading it
        assert said[0].startswith(f"OTEL_EXPORTER_OTLP_HEADERS: header {bad!r} ")
        assert "every export will fail" in said[0]
        assert "s3cr3t" not in caplog.text
        _run_wave(handle)
        handle.force_flush(GUARD_S)
        assert sink.spans == 0  # what the warning says: nothing got through
        assert _shutdown(handle)
        assert handle.dropped["traces"] == N_SPANS
    finally:
        sink.close()


@pytest.mark.parametrize("exporter", ["otlp_http", "otlp_grpc"])
def test_well_formed_header_variables_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, exporter: str,
) -> None:
    # escapes decoding to printable ASCII; an entry the SDK takes as written (a space: not percent-decoded)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-team=a b%E0,x-id=%41")
    with caplog.at_level(logging.WARNING, "shannon_otel"):
        configure("headers", exporter=exporter, set_global=False, shutdown_timeout_s=0.5).shutdown()
    assert not [m for m in _warnings(caplog) if "percent-decodes" in m]


@pytest.mark.parametrize("exporter", ["otlp_http", "otlp_grpc"])
@pytest.mark.parametrize("headers", [
    "authorization=s3cr3t%E0%A4%A,Authorization=Bearer%20ok",  # the later entry of a header is the one sent
    "x-team=s3cr3t%E0%A4%A, x-team=a b",  # also by one the SDK takes as written
])
def test_a_header_entry_a_later_one_replaces_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, exporter: str, headers: str,
) -> None:
    """Before: the first entry was warned about ("every export will fail") though the SDK sends the later one's
    value, as a dict of headers does, and every export got through."""
    sink = HttpSink(answer(200)) if exporter == "otlp_http" else GrpcSink(lambda *a: None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", headers)
    try:
        with caplog.at_level(logging.WARNING, "shannon_otel"):
            handle = configure("headers", exporter=exporter, endpoint=sink.endpoint, set_global=False,
                               shutdown_timeout_s=GUARD_S, metric_interval_s=3600.0)
        assert not [m for m in _warnings(caplog) if "percent-decodes" in m]
        _run_wave(handle)
        assert _shutdown(handle)
        assert sink.spans == N_SPANS  # what a warning would have denied: every span got through
        assert handle.dropped["traces"] == 0
    finally:
        sink.close()


_RACE = """
import threading
from opentelemetry import metrics, trace
import shannon_otel._config as config

real = config.MetricsBridge
meet = threading.Barrier(2, timeout=30)

def bridge(*args, **kwargs):
    meet.wait()  # both calls are past configure()'s first check of the globals, building their providers
    return real(*args, **kwargs)

config.MetricsBridge = bridge
results = []

def configure_globals():
    try:
        results.append(config.configure(exporter="none"))
    except RuntimeError as exc:
        results.append(exc)

threads = [threading.Thread(target=configure_globals) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
handles = [r for r in results if isinstance(r, config.Telemetry)]
print("handles", len(handles), "refused", sum(isinstance(r, RuntimeError) for r in results))
print("global", [h.tracer_provider is trace.get_tracer_provider() and h.meter_provider is metrics.get_meter_provider()
                 for h in handles])
"""


def test_two_configure_calls_racing_for_the_globals_give_one_handle_and_one_error() -> None:
    """Before: both passed the check of the globals, both returned a handle; only one's providers were global
    (the other's telemetry went nowhere the program looked, and OTel logged only "Overriding ... not allowed")."""
    out = _python("-c", _RACE, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["handles 1 refused 1", "global [True]"], out.stdout + out.stderr


def _exported_while_running(caplog: pytest.LogCaptureFixture, kind: str, metric_interval_s: float, failure: str,
                            emit: Callable[[Telemetry], object]) -> None:
    """configure() to an OTLP/gRPC sink (its warnings into ``caplog``), ``emit`` on its handle, and wait (30 s at
    most, else fail with ``failure``) for the first export of ``kind`` ("traces", "metrics") before shutdown."""
    exported = threading.Event()
    sink = GrpcSink(lambda context, signal, items: exported.set() if signal == kind and items else None)
    try:
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            handle = configure(exporter="otlp_grpc", endpoint=sink.endpoint, set_global=False,
                               metric_interval_s=metric_interval_s)
        emit(handle)
        try:
            assert exported.wait(30), failure  # a hang guard
        finally:
            _shutdown(handle)
    finally:
        sink.close()


@pytest.mark.parametrize("value", ["0", "-5", "abc"])
def test_a_metric_export_timeout_variable_out_of_range_is_ignored_and_metrics_are_exported_while_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str,
) -> None:
    """Before: the SDK's reader took 0 or a negative OTEL_METRIC_EXPORT_TIMEOUT; every periodic collection timed
    out before it began ("Metric collection timed out"), so a running service exported no metric point at all
    (only its exit's collection did), and nothing counted it."""
    monkeypatch.setenv("OTEL_METRIC_EXPORT_TIMEOUT", value)
    _exported_while_running(
        caplog, "metrics", 0.05, "no periodic metric export reached the collector",
        lambda handle: handle.meter_provider.get_meter("round6").create_counter("round6.calls").add(1))
    assert [w for w in _warnings(caplog) if w.startswith(f"OTEL_METRIC_EXPORT_TIMEOUT={value!r}") and "ignored" in w]


def test_a_schedule_delay_variable_beyond_a_day_is_ignored_and_spans_are_exported_while_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: OTEL_BSP_SCHEDULE_DELAY=10**13 (ms) was passed on; the SDK's worker thread died at its first wait
    (OverflowError: timestamp out of range), so spans were exported only by a flush or the exit (the queue
    filling up, then dropping, meanwhile)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", str(10**13))
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")  # a live worker exports each span at once
    _exported_while_running(caplog, "traces", 3600, "the span processor exported nothing while running",
                            lambda handle: handle.tracer_provider.get_tracer("round6").start_span("one").end())
    assert [w for w in _warnings(caplog) if w.startswith("OTEL_BSP_SCHEDULE_DELAY=") and "ignored" in w]


class _MetricKinds(metrics_grpc.MetricsServiceServicer):
    """An OTLP/gRPC metrics endpoint keeping each metric's data kind and point count."""

    def __init__(self) -> None:
        self.kinds: dict[str, tuple[str, int]] = {}

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802  # the gRPC method's name
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    counted = sum(p.count for p in getattr(metric, kind).data_points) if "histogram" in kind else 0
                    self.kinds[metric.name] = (kind, counted)
        return metrics_pb.ExportMetricsServiceResponse()


def test_the_task_histograms_follow_an_exponential_default_histogram_aggregation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the in-process bridge kept shannon.task.duration and its queue wait explicit-bucket while the wave's
    and the user's histograms became exponential, as OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION
    asked: one service, two histogram kinds. The bridge now stands aside for such an exporter."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram")
    servicer = _MetricKinds()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_grpc.add_MetricsServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        handle = configure(exporter="otlp_grpc", endpoint=f"http://127.0.0.1:{port}", set_global=False,
                           metric_interval_s=3600)
        assert _run_wave(handle) == [i * 2 for i in range(10)]
        _shutdown(handle)  # its collection is the one export
    finally:
        server.stop(None).wait(60)
    for name in ("shannon.task.duration", "shannon.task.queue_wait.duration", "shannon.wave.duration"):
        assert servicer.kinds[name][0] == "exponential_histogram", (name, servicer.kinds)
    assert servicer.kinds["shannon.task.duration"][1] == 10
