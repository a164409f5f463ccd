"""The ``shannon-otel`` command run as a subprocess: output sections, plain output, errors, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_cli_prometheus import promtool_check_metrics

from shannon_otel._exporters import _choose, _endpoint
from shannon_otel.cli import main
from shannon_otel.cli._check import check_otlp, check_prometheus

SECTIONS = ("== Waves (", "== Resilience ==", "== Anomalies (", "== Slowest wave trace: ", "== Recommendations (",
            "== Telemetry ==")
SMALL = ("--waves", "5", "--tasks", "12")


def cli(*args: str, timeout: float = 90, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m shannon_otel ARGS`` with stdout a pipe (not a terminal) and no OTEL_* surprises."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "shannon_otel", *args], capture_output=True, text=True, timeout=timeout,
        env={**clean, **(env or {})}, check=False,
    )


@pytest.fixture(scope="module")
def default_run() -> subprocess.CompletedProcess[str]:
    return cli("demo")


def test_default_demo_prints_every_section_and_exits_0(default_run: subprocess.CompletedProcess[str]) -> None:
    out = default_run.stdout
    assert default_run.returncode == 0, default_run.stderr
    assert default_run.stderr == ""
    positions = [out.index(section) for section in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    assert "== Waves (8) ==" in out
    assert re.search(r"^all\s+384\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d,]+\s+\$[\d.]+\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+ ms",
                     out, re.MULTILINE)
    assert "breaker search-api:" in out and "rolled back" in out and "compensations run" in out
    # The injected latency anomaly (wave research#6) is found by the detector, with its trace id.
    assert re.search(r"(critical|warning) +latency of research in wave research#6: .* trace [0-9a-f]{32}", out)
    flagged = re.findall(r"^(?:critical|warning) +\S+ of \S+ in wave (\S+):", out, re.MULTILINE)
    assert set(flagged) == {"research#6"}, "no clean plan, research or write wave is flagged"
    # The title names the run (research#6) and the root span, which the waterfall's first row shows.
    title = re.search(r"^== Slowest wave trace: (\S+), span '(wave \w+)' ==$", out, re.MULTILINE)
    assert title and title.group(1) == "research#6", "the anomaly wave is the slowest"
    assert re.search(rf"^{title.group(2)}\s+\|#+\|", out, re.MULTILINE), "waterfall root row"
    assert re.search(r"^trace [0-9a-f]{32}$", out, re.MULTILINE)
    assert re.search(r"^      attempt 1\s+\|", out, re.MULTILINE), "waterfall attempt rows"
    assert "[queue_wait]" in out and "[latency_anomaly] operation 'vector-db.query'" in out
    assert "metrics: " in out and "kept in-process" in out


def test_output_to_a_pipe_is_plain_lines(default_run: subprocess.CompletedProcess[str]) -> None:
    out = default_run.stdout
    assert "\x1b[" not in out, "no terminal escape codes when stdout is not a terminal"
    assert re.search(r"^\[\s*\d+\.\d\ds\] wave plan: started, 48 tasks$", out, re.MULTILINE)
    assert re.search(r"^\[\s*\d+\.\d\ds\] wave write: done 48/48, failed \d+, retries \d+", out, re.MULTILINE)
    assert re.search(r"^\[\s*\d+\.\d\ds\] breaker search-api: closed -> open \(failure_threshold\)$", out,
                     re.MULTILINE)


def test_seed_reproduces_the_simulated_workload() -> None:
    """Token counts come from the seeded per-task random streams, whatever order tasks run in."""
    def tokens(result: subprocess.CompletedProcess[str]) -> list[str]:
        return re.findall(r"^(plan|write)\s+.*?([\d,]+)\s+\$", result.stdout, re.MULTILINE)

    first, second, other = cli("demo", "--waves", "3", "--tasks", "8", "--seed", "3"), \
        cli("demo", "--waves", "3", "--tasks", "8", "--seed", "3"), cli("demo", "--waves", "3", "--tasks", "8")
    assert tokens(first) and tokens(first) == tokens(second) != tokens(other)


def test_python_m_and_bad_flag_exit_2_with_a_message() -> None:
    result = cli("demo", "--waves", "0")
    assert result.returncode == 2
    assert "usage: shannon-otel demo" in result.stderr
    assert "argument --waves: must be >= 1, got 0" in result.stderr


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: COMMAND"),
    (["nope"], "invalid choice: 'nope'"),
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--tasks", "many"], "argument --tasks: expected a whole number, got 'many'"),
    (["demo", "--duration", "-1"], "argument --duration: must be a number of seconds > 0, got -1"),
    (["demo", "--otlp-endpoint", "ftp://x:1"], "expected a URL like http://127.0.0.1:4317"),
    (["demo", "--otlp-endpoint", "http://host:notaport"], "expected a URL like http://127.0.0.1:4317"),
    (["demo", "--otlp-endpoint", "notaurl"], "got 'notaurl'"),
    (["demo", "--otlp-endpoint", "collector"], "without a scheme, host:port"),
    (["demo", "--otlp-protocol", "thrift"], "expected grpc or http/protobuf, got 'thrift'"),
    (["demo", "--prometheus-port", "70000"], "must be in 0..65535"),
    (["demo", "--otlp-endpoint", "http://[::1"], "argument --otlp-endpoint: expected a URL"),
    (["check", "--otlp-endpoint", "http://127.0.0.1:0"], "argument --otlp-endpoint: expected a URL"),  # dialled :80
    (["check", "--timeout", "0"], "argument --timeout: must be a number of seconds in (0, 3600], got 0"),
    (["demo", "--service-name", ""], "argument --service-name: expected a non-empty name"),  # was a traceback
    (["rules", "--jaeger-url", "notaurl"], "argument --jaeger-url: expected an http(s) URL"),  # was a broken link
    (["rules", "--runbook-url", ""], "argument --runbook-url: expected an http(s) URL"),
    (["check", "--skip-otlp", "--skip-prometheus"],
     "argument --skip-prometheus: not allowed with argument --skip-otlp"),
])
def test_bad_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "check", "rules", "dashboards"])
def test_an_unknown_flag_shows_the_subcommand_s_usage(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: shannon-otel {command} ")
    assert f"shannon-otel {command}: error: unrecognized arguments: --bogus" in err


def test_accepted_endpoint_forms() -> None:
    from shannon_otel.cli import endpoint_url

    assert endpoint_url("collector:4317") == "http://collector:4317"
    assert endpoint_url("https://otlp.example.com/") == "https://otlp.example.com"
    assert endpoint_url("http://[::1]:4317") == "http://[::1]:4317"


@pytest.mark.parametrize("value", ["ftp://nowhere", "http://[::1"])  # the second was a ValueError traceback
def test_bad_endpoint_from_the_environment_is_a_usage_error(value: str) -> None:
    result = cli("demo", env={"OTEL_EXPORTER_OTLP_ENDPOINT": value})
    assert result.returncode == 2 and "OTEL_EXPORTER_OTLP_ENDPOINT: expected a URL" in result.stderr


def test_unreachable_otlp_endpoint_reports_once_and_still_summarises() -> None:
    result = cli("demo", *SMALL, "--otlp-endpoint", "http://127.0.0.1:9", "--export-timeout", "1", timeout=60)
    assert result.returncode == 3
    assert result.stderr.count("shannon-otel: telemetry export to http://127.0.0.1:9 failed") == 1
    assert "StatusCode.UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr
    for section in SECTIONS:
        assert section in result.stdout
    assert "OTLP export to http://127.0.0.1:9: FAILED" in result.stdout


def test_otlp_endpoint_from_the_environment_is_used() -> None:
    result = cli("demo", "--waves", "2", "--tasks", "4", "--export-timeout", "1", timeout=60,
                 env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 3
    assert "exporting traces and metrics over OTLP to http://127.0.0.1:9" in result.stdout


@contextlib.contextmanager
def _demo(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``shannon-otel demo *args`` in a child process (no OTEL_ variables; SIGINT is Ctrl-C to it, even from a
    background shell, which ignores SIGINT), its output piped as text; killed after the block if still running."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "shannon_otel", "demo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_prometheus_endpoint_serves_the_contract_names_while_running() -> None:
    with _demo("--duration", "60", "--prometheus-port", "0", "--tasks", "8") as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = re.search(r"serving Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)", first)
        assert url, first
        deadline_lines = []
        for line in proc.stdout:  # wait until a wave has finished, so there is something to scrape
            deadline_lines.append(line)
            if "done" in line:
                break
        with urllib.request.urlopen(url.group(1), timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        # Stopped once scraped, not by --duration: a demo of 3 s closed its endpoint before a test process starved
        # on a loaded machine had scraped it (Python 3.13's first urlopen alone loads the CA certificates, ~1 s).
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "# TYPE shannon_task_duration_seconds histogram" in text
    assert re.search(r'^shannon_task_duration_seconds_bucket\{.*shannon_wave_name="plan".*le="\+Inf"\} \d+$', text,
                     re.MULTILINE)
    assert re.search(r'^shannon_task_outcomes_total\{.*shannon_task_outcome="success".*\} \d+', text, re.MULTILINE)
    assert "Prometheus endpoint http://127.0.0.1:" in out
    assert "kept in-process" not in out, "the metrics were served, not kept"
    assert f"also served for scraping at {url.group(1)}" in out
    assert promtool_check_metrics(text) == ""


def test_prometheus_port_in_use_is_an_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("demo", "--prometheus-port", str(port))
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


# --------------------------------------------------------------------------- dashboards and rules
def test_dashboards_print_and_write(tmp_path: Path) -> None:
    everything = json.loads(cli("dashboards").stdout)
    assert set(everything) == {"shannon-otel-overview.json", "shannon-otel-resilience.json",
                               "shannon-otel-anomalies.json"}
    overview = json.loads(cli("dashboards", "overview").stdout)
    assert overview == everything["shannon-otel-overview.json"]
    written = cli("dashboards", "--out", str(tmp_path)).stdout.split()
    assert (tmp_path / "shannon-otel-overview.json").is_file()
    assert any("provisioning" in p for p in written)
    unknown = cli("dashboards", "nope")
    assert unknown.returncode == 2 and "choose one of: overview, resilience, anomalies" in unknown.stderr


def test_rules_print_and_write(tmp_path: Path) -> None:
    printed = cli("rules", "--jaeger-url", "http://jaeger.example:16686")
    assert printed.returncode == 0 and "groups:" in printed.stdout
    assert "http://jaeger.example:16686" in printed.stdout
    target = tmp_path / "rules" / "shannon.yml"
    assert cli("rules", "--out", str(target)).returncode == 0
    assert target.read_text().startswith("# Generated")
    unwritable = cli("rules", "--out", str(target / "below-a-file.yml"))
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr


def test_rules_take_the_slo_target_and_stall_windows() -> None:
    tuned = cli("rules", "--slo-target", "0.999", "--stall-after", "20m", "--stall-after-wave", "train=40m")
    assert tuned.returncode == 0, tuned.stderr
    assert "> 0.0144\n" in tuned.stdout  # 14.4 x (1 - 0.999)
    assert 'shannon_wave_name="train"' in tuned.stdout and "offset 40m" in tuned.stdout
    assert "offset 20m" in tuned.stdout
    for bad, message in ((("--slo-target", "1.5"), "slo_target must be in (0, 1)"),
                         (("--stall-after-wave", "train"), "WAVE=DURATION"),
                         (("--stall-after", "soon"), "stall_after must be a Prometheus duration")):
        result = cli("rules", *bad)
        assert result.returncode == 2 and message in result.stderr, result.stderr


# --------------------------------------------------------------------------- check
def test_check_unreachable_targets_exit_1() -> None:
    result = cli("check", "--otlp-endpoint", "http://127.0.0.1:9", "--prometheus", "http://127.0.0.1:9",
                 "--timeout", "1", timeout=60)
    assert result.returncode == 1
    assert re.search(r"^FAIL OTLP grpc http://127\.0\.0\.1:9: export failed", result.stdout, re.MULTILINE)
    assert re.search(r"^FAIL Prometheus http://127\.0\.0\.1:9: unreachable", result.stdout, re.MULTILINE)


class _Stub(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts anything and a Prometheus query API with canned answers."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"] or 0))
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        value = "1" if "query=up" in self.path else "42"
        body = json.dumps({"status": "success", "data": {"result": [{"value": [0, value]}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_check_reachable_targets_exit_0(stub: str) -> None:
    result = cli("check", "--otlp-endpoint", stub, "--otlp-protocol", "http/protobuf", "--prometheus", stub)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^ok   OTLP http .*: accepted a test span", result.stdout, re.MULTILINE)
    assert "ok   Prometheus" in result.stdout and "1/1 scrape targets up, 42 shannon-otel series" in result.stdout


@pytest.mark.parametrize("signal_url", [True, False], ids=["traces-endpoint", "base-endpoint"])
def test_check_sends_its_span_where_configure_sends_traces(stub: str, signal_url: bool) -> None:
    """`check` read OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL only, while configure() sends traces by the traces signal's
    own variables first: with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a URL used as is) and _TRACES_PROTOCOL set, it
    tested gRPC on the general endpoint and said FAIL (or ok) about a target the program never uses."""
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
           # the stub answers 404 to any path but /v1/traces: the traces URL is posted to as is
           **({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{stub}/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT":
               "http://127.0.0.1:9"} if signal_url else {"OTEL_EXPORTER_OTLP_ENDPOINT": stub})}
    with pytest.MonkeyPatch.context() as patch:  # the exporter configure() builds for these variables
        for name, value in env.items():
            patch.setenv(name, value)
        assert _choose("TRACES", None) == ("otlp_http",)
        assert _endpoint("TRACES", "otlp_http", None) == f"{stub}/v1/traces"
    result = cli("check", "--skip-prometheus", "--timeout", "5", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = f"{stub}/v1/traces" if signal_url else stub
    assert result.stdout.startswith(f"ok   OTLP http {shown}: accepted a test span"), result.stdout


@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP"),
])
def test_a_protocol_variable_configure_refuses_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str,
) -> None:
    """configure() takes grpc or http/protobuf (in any case). `check` took `http` from
    OTEL_EXPORTER_OTLP_PROTOCOL (the flag's shorthand) and said ok for a setting the program refuses to start with,
    and never read OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, so a bad value there went unnoticed."""
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable} must be one of grpc, http/protobuf, got '{value}'$"):
        _choose("TRACES", None)
    with pytest.raises(SystemExit) as exc:
        main(["check", "--skip-prometheus"])
    assert exc.value.code == 2
    assert f"error: {variable}: expected grpc or http/protobuf, got '{value}'" in capsys.readouterr().err


def test_check_reads_a_protocol_variable_in_any_case_as_configure_does(stub: str) -> None:
    """The specification reads enum values case-insensitively: OTEL_EXPORTER_OTLP_PROTOCOL=HTTP/Protobuf was a usage
    error ("exactly, in lower case"), and configure() refused it."""
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/Protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": stub}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert _choose("TRACES", None) == ("otlp_http",)
    result = cli("check", "--skip-prometheus", "--timeout", "5", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok   OTLP http {stub}: accepted a test span"), result.stdout


def test_check_otlp_http_failure_names_the_underlying_error(stub: str) -> None:
    ok, text = check_otlp("http://127.0.0.1:9", "http", 1.0)
    assert not ok and "ConnectionRefusedError: [Errno 111] Connection refused" in text, text
    assert "due to timeout, max retries or shutdown" not in text
    ok, text = check_otlp(f"{stub}/wrong-path", "http", 1.0)
    assert not ok and f"HTTP 404 from {stub}/wrong-path/v1/traces" in text, text


class _SlowPrometheus(_Stub):
    def do_GET(self) -> None:
        time.sleep(0.6)
        super().do_GET()


def test_check_prometheus_timeout_bounds_both_queries_together() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Each query answers within the 1 s timeout, the two together do not.
        ok, text = check_prometheus(f"http://127.0.0.1:{server.server_address[1]}", 1.0)
    finally:
        server.shutdown()
        server.server_close()
    assert not ok and "timed out" in text, text


@pytest.fixture
def dripping() -> Iterator[str]:
    """A server answering every request one byte every 0.1 s (~16 s in all), each read well within any timeout."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 100:
                if stop.wait(0.1):
                    return
                conn.sendall(bytes([byte]))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_check_of_a_server_answering_a_byte_at_a_time_ends_at_its_timeout(
    dripping: str, capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: `check --timeout 2` took ~57 s against such a server, its --help promising "per target, all its
    # requests and retries included": the HTTP clients time each read, and each byte came within its timeout.
    code = main(["check", "--otlp-endpoint", dripping, "--otlp-protocol", "http/protobuf", "--prometheus", dripping,
                 "--timeout", "0.5"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines == [f"FAIL {target} {dripping}: no complete answer within 0.5 s (the server answers too slowly, "
                     "or not at all)" for target in ("OTLP http", "Prometheus")]


def test_ctrl_c_summarises_what_ran_and_exits_130() -> None:
    with _demo("--duration", "60", "--tasks", "8") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " done " in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: summarising what ran" in out
    # The interrupted wave's cancelled tasks have a column (the live display counted them done).
    header = next(line for line in out.splitlines() if line.startswith("wave ") and " tasks " in line)
    total = next(line for line in out.splitlines() if line.startswith("all "))
    cells = dict(zip(header.split(), total.split(), strict=False))
    assert int(cells["tasks"]) == sum(int(cells.get(k, 0)) for k in ("ok", "failed", "timeout", "cancelled"))
    for section in SECTIONS:
        assert section in out
    assert "Traceback" not in err


def _interrupted_while_flushing(*run: str, once_before: str | None = None) -> tuple[int, str]:
    """(exit code, stderr) of a plain demo (``run``: its waves, tasks) exporting to a backend that never answers,
    sent Ctrl-C as it starts flushing; with ``once_before``, also once at the first line holding that text."""
    from benchmarks._backends import BlackHole

    hole = BlackHole()  # the flush waits on it: the Ctrl-C lands inside the flush
    try:
        with _demo("--plain", *run, "--tasks", "8", "--otlp-endpoint", hole.endpoint, "--export-timeout", "20") as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if once_before is not None and once_before in line:
                    proc.send_signal(signal.SIGINT)
                    once_before = None
                if line.startswith("flushing telemetry to"):
                    proc.send_signal(signal.SIGINT)
                    break
            _, err = proc.communicate(timeout=60)
    finally:
        hole.close()
    return proc.returncode, err


def test_a_second_ctrl_c_while_flushing_leaves_at_once_with_the_unsent_spans_counted() -> None:
    # Before: a traceback ending in KeyboardInterrupt (from the shutdown's wait), exit by signal, and
    # the spans given up on counted nowhere (the exit handler saw the telemetry already shut down).
    code, err = _interrupted_while_flushing("--duration", "60", once_before=" done ")  # the first Ctrl-C: a wave done
    assert code == 130, err
    assert "Traceback" not in err
    found = re.search(r"interrupted again: left without flushing; telemetry dropped: (\d+) spans", err)
    assert found is not None, err
    assert int(found.group(1)) > 0


def test_a_first_ctrl_c_while_flushing_leaves_at_once_and_is_not_called_a_second() -> None:
    """The waves had all run; one Ctrl-C during the flush said "interrupted again", of the only one sent."""
    code, err = _interrupted_while_flushing("--waves", "2")
    assert code == 130, err
    assert "Traceback" not in err and "interrupted again" not in err, err
    found = re.search(r"interrupted while summarising or flushing: left without flushing; telemetry dropped: "
                      r"(\d+) spans", err)
    assert found is not None, err
    assert int(found.group(1)) > 0


def test_verbose_demo_prints_the_logging_hooks_records_among_the_progress_lines() -> None:
    run = cli("demo", "--waves", "3", "--tasks", "20", "--verbose")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # the records go to stdout, through the demo's output, never to stderr
    out = run.stdout
    assert re.search(r"^  log WARNING shannon_otel\.retry: retrying \S+ after [\d.]+ s \(attempt \d/\d\): ", out, re.M)
    assert re.search(r"^  log ERROR   shannon_otel\.breaker: circuit breaker 'search-api' is open \(was closed\)", out,
                     re.M)
    assert re.search(r"^  log WARNING shannon_otel\.breaker: rejected [\d,]+ calls to 'search-api' in the last", out,
                     re.M)
    quiet = cli("demo", "--waves", "3", "--tasks", "20")
    assert "  log " not in quiet.stdout and quiet.stderr == ""


class _EchoingAuth(_Stub):
    """Refuses every export, quoting the Authorization header it got (as some proxies do)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"] or 0))
        body = f"denied: {self.headers.get('Authorization')}".encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_check_never_prints_header_values_or_url_credentials() -> None:
    """Issue 11 deliver 5: OTLP header values (API keys) and URL passwords stay out of the CLI's output."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        headers = "authorization=Bearer%20TOKEN-s3cr3t-42,x-api-key=KEY-9f8e7d"
        env = {**os.environ, "OTEL_EXPORTER_OTLP_HEADERS": headers}
        result = cli("check", "--otlp-endpoint", f"http://alice:PASSW0RD-xyz@127.0.0.1:{port}", "--otlp-protocol",
                     "http/protobuf", "--skip-prometheus", "--timeout", "2", env=env, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "FAIL OTLP http http://alice:***@127.0.0.1" in out, out
    for secret in ("TOKEN-s3cr3t-42", "KEY-9f8e7d", "PASSW0RD-xyz"):
        assert secret not in out, out


def test_check_over_grpc_never_prints_the_urls_password() -> None:
    # Before: "FAIL OTLP grpc http://alice:***@127.0.0.1:9: ... Failed to export traces to alice:PASSW0RD-xyz@...":
    # the gRPC exporter's error names its target, the URL without its scheme, password and all. (In a process of
    # its own: the SDK's filter drops the exporter's next error within 20 s when it repeats the message's template.)
    result = cli("check", "--otlp-endpoint", "http://alice:PASSW0RD-xyz@127.0.0.1:9", "--skip-prometheus",
                 "--timeout", "2", timeout=60)
    assert result.returncode == 1
    # refused before dialling now, as configure() refuses it (gRPC failed on "Misformatted domain name")
    assert result.stdout.startswith("FAIL OTLP grpc http://alice:***@127.0.0.1:9: not checked: --otlp-endpoint of "
                                    "the OTLP/gRPC exporter cannot carry credentials"), result.stdout
    assert "PASSW0RD-xyz" not in result.stdout + result.stderr


def test_scrub_and_safe_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from shannon_otel.cli._secrets import safe_url, scrub

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=abc%2Fdef")
    assert scrub("got abc/def and abc%2Fdef") == "got *** and ***"
    assert safe_url("https://u:p@host:4318/v1?token=x") == "https://u:***@host:4318/v1?***"
    assert safe_url("http://127.0.0.1:4317") == "http://127.0.0.1:4317"
