"""Round-3 probes: the README and docs/ followed literally by a first-time user, and the command's edges."""

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
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["demo", "--tasks", bad])
        assert exc.value.code == 2
        assert f"argument --tasks: must be in 1..10,000, got {bad}" in capsys.readouterr().err


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


def test_seconds_configure_refuses_are_usage_errors_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --export-timeout 5000` / `--metric-interval 1e300` passed the CLI's "> 0" check and died in
    configure() with a ValueError traceback about export_timeout_s / metric_interval_s."""
    from shannon_otel.cli import build_parser

    parser = build_parser()
    for argv, message in ((["demo", "--export-timeout", "5000"], "argument --export-timeout: must be a number "
                           "of seconds in (0, 3600], got 5000"),
                          (["demo", "--metric-interval", "1e300"], "argument --metric-interval: must be a number "
                           "of seconds in (0, 86400], got 1e300"),
                          (["check", "--timeout", "1e300"], "argument --timeout: must be a number of seconds in "
                           "(0, 3600], got 1e300")):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_the_largest_export_timeout_the_demo_takes_ends_without_a_traceback() -> None:
    """`demo --export-timeout 3600` ran, summarised, then asked Telemetry.shutdown() for twice that (its
    flush limit) and died of the ValueError (shutdown takes at most 3600 s)."""
    proc = _command("demo", "--waves", "1", "--tasks", "2", "--export-timeout", "3600")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "== Telemetry ==" in out
