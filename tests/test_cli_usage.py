"""The command as typed: usage errors naming the flag the user typed, help texts and defaults, and how it
ends (closed pipes, Ctrl-C, exit codes) without a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _command(*args: str, **options: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "shannon_otel", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, **options,
    )


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """What the CLI's parser writes to stderr refusing ``argv``, after checking it exits with 2 (a usage error)."""
    from shannon_otel.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_demo_piped_into_head_stops_when_the_reader_leaves_without_a_traceback() -> None:
    """`shannon-otel demo | head -1`: it used to log every hook's BrokenPipeError with its traceback, run all
    its waves (a --duration run for its whole duration) for nobody, and die in the summary with a traceback."""
    proc = _command("demo", "--duration", "600", "--tasks", "6", "--concurrency", "3")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does after its line
        _, err = proc.communicate(timeout=120)  # a guard against running the 600 s for nobody, not a timing
    finally:
        proc.kill()
        proc.communicate()
    assert first.startswith("[") and "wave plan: started" in first
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert "failed in" not in err, "no hook failure for a closed stdout"
    assert proc.returncode == 0, err


def test_dashboards_and_rules_into_a_closed_pipe_exit_0_without_an_error() -> None:
    """`shannon-otel dashboards | head -c 10`: it used to say "cannot write None: Broken pipe" and exit 1
    (the BrokenPipeError is an OSError, taken for a file that could not be written)."""
    for command in ("dashboards", "rules"):
        proc = _command(command)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before the first write
        _, err = proc.communicate(timeout=120)
        assert err == "", err
        assert proc.returncode == 0


def test_a_bad_rules_value_is_a_usage_error_naming_the_flag_the_user_typed() -> None:
    """docs/cli.md: exit 2 prints the subcommand's usage and the reason. `rules --slo-target 1` printed
    neither: only "slo_target must be in (0, 1)", the Python parameter, not the flag."""
    for bad, flag in ((("--slo-target", "1"), "--slo-target"), (("--stall-after", "soon"), "--stall-after"),
                      (("--stall-after-wave", "train=soon"), "--stall-after-wave"),
                      (("--stall-after-wave", "train"), "--stall-after-wave")):
        proc = _command("rules", *bad)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert err.startswith("usage: shannon-otel rules"), err
        assert f"shannon-otel rules: error: argument {flag}: " in err, err


def test_a_task_count_the_demo_cannot_hold_is_refused_naming_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --tasks 100000000000000000000` (a typo away from 100) sat building its task list, printing
    nothing, until memory ran out; the slowest wave's trace is held in memory for the summary too."""
    from shannon_otel.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo", "--tasks", "10000"]).tasks == 10_000
    for bad in ("10001", "100000000000000000000"):
        assert f"argument --tasks: must be in 1..10,000, got {bad}" in _usage_error(capsys, ["demo", "--tasks", bad])


@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "notaurl"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
])
@pytest.mark.parametrize("command", ["demo", "check"])
def test_an_otlp_variable_the_command_refuses_shows_the_usage_of_the_subcommand_given(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, command: str,
) -> None:
    """docs/cli.md: a refused `OTEL_*` variable is a usage error for which "argparse prints the usage of the
    subcommand given and the reason". A bad OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL printed the top-level usage
    (`usage: shannon-otel [-h] [--version] COMMAND ...`, `shannon-otel: error: ...`), as if no subcommand had been
    given, while a variable configure() refuses showed the subcommand's."""
    from shannon_otel.cli import main

    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        main([command])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: shannon-otel {command} ")
    assert f"shannon-otel {command}: error: {variable}: " in err


def test_a_bounded_flag_below_its_range_is_refused_naming_the_whole_range(capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --tasks 0` said "must be >= 1" and `--export-timeout 0` / `check --timeout 0` "must be a number of
    seconds > 0", while one above the limit named the range: a user fixing the low end learnt of the high end only
    by hitting it. Every out-of-range value of a bounded flag now names the whole range."""
    for argv, message in ((["demo", "--tasks", "0"], "argument --tasks: must be in 1..10,000, got 0"),
                          (["demo", "--tasks", "-3"], "argument --tasks: must be in 1..10,000, got -3"),
                          (["demo", "--export-timeout", "0"], "argument --export-timeout: must be a number of "
                           "seconds in (0, 3600], got 0"),
                          (["demo", "--metric-interval", "nan"], "argument --metric-interval: must be a number of "
                           "seconds in (0, 86400], got nan"),
                          (["check", "--timeout", "-1"], "argument --timeout: must be a number of seconds in "
                           "(0, 3600], got -1")):
        assert message in _usage_error(capsys, argv)


@pytest.mark.parametrize(("variable", "value"), [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "bogus"), ("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ROOT)),
])  # (an invalid limit variable, once a case here, is warned about and ignored since b8fbcc65, as the spec says)
def test_a_variable_configure_refuses_is_a_demo_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str,
) -> None:
    # Before: a 30-line traceback out of configure() and exit 1, the variable named only on its last line.
    from shannon_otel.cli import main

    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--waves", "1", "--tasks", "1", "--otlp-endpoint", "https://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("usage: shannon-otel demo") and f"shannon-otel demo: error: {variable}" in err, err
    assert "Traceback" not in err


def test_ctrl_c_while_check_waits_on_a_silent_endpoint_exits_130_without_a_traceback() -> None:
    """docs/cli.md: 130 is Ctrl-C. `check` against an endpoint that accepts and never answers, interrupted,
    died of the KeyboardInterrupt with its traceback (exit status -SIGINT)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = _command("check", "--skip-otlp", "--prometheus", url, "--timeout", "600",
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            connection, _ = silent.accept()  # the check is connected and waits for an answer
            with connection:
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip() == "shannon-otel check: interrupted"


def test_blank_standard_variables_count_as_unset_as_configure_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SERVICE_NAME=" " made `demo` fail with "argument --service-name: expected a non-empty name" (a flag
    the user never typed), and a blank OTEL_EXPORTER_OTLP_ENDPOINT was "not a URL"; the specification (and
    configure(), docs/reliability.md) takes a blank variable as unset."""
    from shannon_otel.cli import build_parser

    for name in ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.setenv(name, "  ")
    args = build_parser().parse_args(["demo"])
    assert args.service_name == "shannon-otel-demo"
    assert args.env_endpoint is None and args.env_protocol is None


def test_the_demo_service_name_falls_back_to_the_resource_attributes_as_configure_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The specification (and configure()): without OTEL_SERVICE_NAME the service.name of
    OTEL_RESOURCE_ATTRIBUTES names the service. `demo` passed "shannon-otel-demo" to configure() instead, which
    overrode it: OTEL_RESOURCE_ATTRIBUTES=service.name=checkout,deployment.environment=staging gave a staging
    "shannon-otel-demo". Percent-decoded as the SDK decodes it; OTEL_SERVICE_NAME still wins."""
    from shannon_otel.cli import build_parser

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging, service.name = check%20out")
    assert build_parser().parse_args(["demo"]).service_name == "check out"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "payments")
    assert build_parser().parse_args(["demo"]).service_name == "payments"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "")
    assert build_parser().parse_args(["demo"]).service_name == "shannon-otel-demo"


def test_seconds_configure_refuses_are_usage_errors_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --export-timeout 5000` / `--metric-interval 1e300` passed the CLI's "> 0" check and died in
    configure() with a ValueError traceback about export_timeout_s / metric_interval_s."""
    for argv, message in ((["demo", "--export-timeout", "5000"], "argument --export-timeout: must be a number "
                           "of seconds in (0, 3600], got 5000"),
                          (["demo", "--metric-interval", "1e300"], "argument --metric-interval: must be a number "
                           "of seconds in (0, 86400], got 1e300"),
                          (["check", "--timeout", "1e300"], "argument --timeout: must be a number of seconds in "
                           "(0, 3600], got 1e300")):
        assert message in _usage_error(capsys, argv)


def test_the_largest_export_timeout_the_demo_takes_ends_without_a_traceback() -> None:
    """`demo --export-timeout 3600` ran, summarised, then asked Telemetry.shutdown() for twice that (its
    flush limit) and died of the ValueError (shutdown takes at most 3600 s)."""
    proc = _command("demo", "--waves", "1", "--tasks", "2", "--export-timeout", "3600")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "== Telemetry ==" in out


_USAGE_ERRORS: list[tuple[list[str], str]] = [
    (["demo", "--waves", "0"], "--waves"), (["demo", "--waves", "1e400"], "--waves"),
    (["demo", "--tasks", "-1"], "--tasks"), (["demo", "--concurrency", "nan"], "--concurrency"),
    (["demo", "--seed", "1e5"], "--seed"), (["demo", "--duration", "nan"], "--duration"),
    (["demo", "--duration", "inf"], "--duration"), (["demo", "--duration", "1e400"], "--duration"),
    (["demo", "--export-timeout", "-0.0"], "--export-timeout"),
    (["demo", "--metric-interval", "inf"], "--metric-interval"),
    (["demo", "--prometheus-port", "70000"], "--prometheus-port"),
    (["demo", "--service-name", "   "], "--service-name"),
    (["demo", "--otlp-endpoint", ""], "--otlp-endpoint"),
    (["demo", "--otlp-endpoint", "unix:///x.sock"], "--otlp-endpoint"),
    (["demo", "--otlp-protocol", "http/json"], "--otlp-protocol"),
    (["rules", "--slo-target", "nan"], "--slo-target"), (["rules", "--slo-target", "1e-400"], "--slo-target"),
    (["rules", "--slo-target", "0.9999999999999999999"], "--slo-target"),
    (["rules", "--stall-after", "0s"], "--stall-after"),
    (["rules", "--stall-after-wave", "=5m"], "--stall-after-wave"),
    (["rules", "--stall-after-wave", "a=5m", "--stall-after-wave", "a=6m"], "--stall-after-wave"),
    (["rules", "--jaeger-url", "javascript:alert(1)"], "--jaeger-url"),
    (["check", "--timeout", "nan"], "--timeout"), (["check", "--prometheus", "x"], "--prometheus"),
]


@pytest.mark.parametrize(("argv", "flag"), _USAGE_ERRORS, ids=[" ".join(a) for a, _ in _USAGE_ERRORS])
def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str],
) -> None:
    from shannon_otel.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert f"error: argument {flag}: " in err, err
    assert "Traceback" not in err


def test_a_wave_given_twice_to_stall_after_wave_is_refused_not_silently_replaced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: the later window silently replaced the earlier (exit 0, the rules said 6m)."""
    from shannon_otel.cli import main

    with pytest.raises(SystemExit):
        main(["rules", "--stall-after-wave", "train=40m", "--stall-after-wave", "train=50m"])
    assert "wave 'train' is given more than once" in capsys.readouterr().err


def test_an_unknown_dashboard_is_a_usage_error_with_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/cli.md: exit 2 prints the subcommand's usage and the reason. `dashboards nope` printed only
    the reason."""
    from shannon_otel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: shannon-otel dashboards"), err
    assert "no dashboard 'nope'; choose one of: overview, resilience, anomalies" in err


def test_one_dashboard_written_with_out_gets_the_provisioning_files_the_help_promises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--out DIR`'s help says "write DIR/<dashboard>.json and DIR/provisioning/..."; with a NAME only the
    JSON was written, so its trace links had no Jaeger datasource to open."""
    from shannon_otel.assets import provisioning_files
    from shannon_otel.cli import main

    assert main(["dashboards", "overview", "--out", str(tmp_path)]) == 0
    written = {Path(line).relative_to(tmp_path).as_posix() for line in capsys.readouterr().out.split()}
    assert written == {"shannon-otel-overview.json", *(f"provisioning/{rel}" for rel in provisioning_files())}
    assert all((tmp_path / rel).is_file() for rel in written)


def test_the_metric_interval_help_gives_the_variables_unit(capsys: pytest.CaptureFixture[str]) -> None:
    """`--metric-interval SECONDS ... (default: $OTEL_METRIC_EXPORT_INTERVAL, else 10)` read as a number of
    seconds; the variable is milliseconds (the specification's unit, as configure() reads it)."""
    from shannon_otel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "$OTEL_METRIC_EXPORT_INTERVAL, which is in milliseconds, else 10 s" in text


def test_a_bad_prometheus_url_is_shown_an_example_of_prometheus_not_of_otlp(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --prometheus notaurl` answered "expected a URL like http://127.0.0.1:4317", the OTLP port: a
    user copying it would point the Prometheus check at the collector's OTLP receiver."""
    err = _usage_error(capsys, ["check", "--prometheus", "notaurl"])
    assert "argument --prometheus: expected a URL like http://127.0.0.1:9090 " in err, err


def test_every_flag_whose_default_comes_from_a_variable_says_so_in_its_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--service-name NAME ... (default shannon-otel-demo)` while OTEL_SERVICE_NAME=checkout made it
    `checkout`: the help named a default the command did not use."""
    from shannon_otel.cli import build_parser, main

    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert build_parser().parse_args(["demo"]).service_name == "checkout"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]
    for flag, variable in (("--service-name", "OTEL_SERVICE_NAME"), ("--otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
                           ("--otlp-protocol", "OTEL_EXPORTER_OTLP_PROTOCOL"),
                           ("--metric-interval", "OTEL_METRIC_EXPORT_INTERVAL")):
        help_text = text[text.index(f"{flag} "):]
        help_text = help_text[:help_text.index(" --", 3)]
        assert f"(default: ${variable}" in help_text, (flag, help_text)


def test_check_over_otlp_http_defaults_to_the_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --otlp-protocol http/protobuf` without an endpoint posted to http://127.0.0.1:4317, the gRPC
    port, and failed against a healthy collector; the specification's OTLP/HTTP default is port 4318."""
    from shannon_otel.cli import _check, main

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    checked: list[tuple[str, str]] = []

    def check_otlp(endpoint: str, protocol: str, timeout_s: float, source: str) -> tuple[bool, str]:
        checked.append((protocol, endpoint))
        return True, "accepted"

    monkeypatch.setattr(_check, "check_otlp", check_otlp)
    assert main(["check", "--skip-prometheus", "--otlp-protocol", "http/protobuf"]) == 0
    assert main(["check", "--skip-prometheus"]) == 0
    assert checked == [("http", "http://127.0.0.1:4318"), ("grpc", "http://127.0.0.1:4317")]


@pytest.mark.parametrize(("spelling", "protocol"), [("GRPC", "grpc"), ("Grpc", "grpc"), ("HTTP/PROTOBUF", "http"),
                                                  ("Http/Protobuf", "http"), ("HTTP", "http")])
def test_the_otlp_protocol_flag_is_read_in_any_case_as_the_variables_are(
    monkeypatch: pytest.MonkeyPatch, spelling: str, protocol: str,
) -> None:
    """`--otlp-protocol GRPC` was a usage error (exit 2) while OTEL_EXPORTER_OTLP_PROTOCOL=GRPC was taken, as the
    specification reads enum values case-insensitively; the flag now takes the same spellings (and its own
    shorthand ``http``) in any case."""
    from shannon_otel.cli import _check, build_parser, main

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    assert build_parser().parse_args(["demo", "--otlp-protocol", spelling]).otlp_protocol == protocol
    checked: list[tuple[str, str]] = []

    def check_otlp(endpoint: str, protocol: str, timeout_s: float, source: str) -> tuple[bool, str]:
        checked.append((protocol, endpoint))
        return True, "accepted"

    monkeypatch.setattr(_check, "check_otlp", check_otlp)
    assert main(["check", "--skip-prometheus", "--otlp-protocol", spelling]) == 0
    assert checked == [(protocol, "http://127.0.0.1:4318" if protocol == "http" else "http://127.0.0.1:4317")]


@pytest.mark.parametrize("command", ["demo", "check"])
def test_an_otlp_protocol_flag_value_refused_names_the_flag_and_the_allowed_values(
    capsys: pytest.CaptureFixture[str], command: str,
) -> None:
    err = _usage_error(capsys, [command, "--otlp-protocol", "HTTP/JSON"])
    assert "error: argument --otlp-protocol: expected grpc or http/protobuf, got 'HTTP/JSON'" in err, err


def test_an_infinite_number_of_seconds_is_refused_for_being_infinite_not_for_being_0_or_less(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --duration inf` (or `1e400`) was refused as "must be a number of seconds > 0, got inf", a reason the
    value does not have; `--export-timeout inf` / `check --timeout 1e400` too, where docs/cli.md and --help give
    the flag's range (0, 3600]."""
    for argv, message in ((["demo", "--duration", "inf"], "argument --duration: must be a finite number of "
                           "seconds > 0, got inf"),
                          (["demo", "--duration", "1e400"], "argument --duration: must be a finite number of "
                           "seconds > 0, got 1e400"),
                          (["demo", "--export-timeout", "inf"], "argument --export-timeout: must be a number of "
                           "seconds in (0, 3600], got inf"),
                          (["check", "--timeout", "1e400"], "argument --timeout: must be a number of seconds in "
                           "(0, 3600], got 1e400")):
        assert message in _usage_error(capsys, argv)


@pytest.mark.parametrize("command", ["demo", "check"])
def test_an_otel_variable_the_sdk_refuses_as_it_is_imported_is_a_usage_error_naming_it(command: str) -> None:
    """docs/cli.md: an `OTEL_*` variable refused is a usage error (exit 2) naming it. The OTel SDK checks its span
    limit variables when `opentelemetry.sdk.trace` is imported, which the subcommand's first import did, outside
    the guard around `configure()`: `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=-1 shannon-otel demo` was a ValueError
    traceback and exit 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="-1")
    done = subprocess.run([sys.executable, "-m", "shannon_otel", command], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"shannon-otel {command}: error: OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT must be a non-negative integer" in (
        done.stderr)
