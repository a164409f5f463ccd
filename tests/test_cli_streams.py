"""Where the command's output cannot go: a full disk (``> /dev/full``), a stdout closed before it starts
(``>&-``). Output the user asked for was lost, so it is an error (exit 1) said in one line on stderr, never
a traceback, never exit 0 having printed nothing; a closed pipe (``| head``) stays exit 0
(tests/test_cli_usage.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FULL = "/dev/full"  # every write fails with ENOSPC, as on a full disk

needs_dev_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full on this system")


def _run(
    *args: str, stdout: str | None = FULL, timeout: float = 120, env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The command with stdout on ``stdout`` (None: closed before it starts, as the shell's ``>&-``)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHONUNBUFFERED"))}, **(env or {})}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "shannon_otel", *args]
    if stdout is None:
        command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
        return subprocess.run(command, stderr=subprocess.PIPE, text=True, env=env, timeout=timeout, check=False)
    with open(stdout, "w") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, env=env, timeout=timeout,
                              check=False)


@needs_dev_full
def test_demo_onto_a_full_disk_stops_and_says_so_in_one_line() -> None:
    """It logged a hook failure with its traceback, ran every wave for nobody, then died in the summary with
    an OSError traceback (exit 1 only by accident). --duration 600: it must stop at the first failed write
    (the timeout is a guard, not a timing)."""
    proc = _run("demo", "--duration", "600", "--tasks", "6", "--concurrency", "3")
    assert "Traceback" not in proc.stderr and "failed in" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "shannon-otel demo: cannot write to stdout: No space left on device"
    assert proc.returncode == 1


@needs_dev_full
@pytest.mark.parametrize("command", ["dashboards", "rules"])
def test_assets_onto_a_full_disk_name_stdout_not_none(command: str) -> None:
    """It said "cannot write None: No space left on device": the write's error names no file."""
    proc = _run(command)
    assert proc.stderr.strip() == f"shannon-otel {command}: cannot write to stdout: No space left on device"
    assert proc.returncode == 1


@needs_dev_full
def test_a_file_on_a_full_disk_is_named_in_the_error(tmp_path: Path) -> None:
    """`rules --out FILE` where the disk fills up: write() fails, not open(), and its error names no file."""
    proc = _run("rules", "--out", FULL, stdout=str(tmp_path / "out"))
    assert proc.stderr.strip() == f"shannon-otel rules: cannot write {FULL}: No space left on device"
    assert proc.returncode == 1


@needs_dev_full
@pytest.mark.parametrize("args", [("--help",), ("demo", "--help"), ("check", "--help"), ("--version",)])
def test_help_and_version_onto_a_full_disk_exit_1(args: tuple[str, ...]) -> None:
    """argparse swallows its write errors: `--help > /dev/full` exited 0 having printed nothing."""
    proc = _run(*args)
    assert proc.stderr.strip() == "shannon-otel: cannot write to stdout: No space left on device"
    assert proc.returncode == 1


@pytest.mark.parametrize("args", [("dashboards",), ("rules",), ("demo", "--waves", "1", "--tasks", "2")])
def test_a_closed_stdout_is_an_error_in_one_line(args: tuple[str, ...]) -> None:
    """`shannon-otel dashboards >&-`: Python starts with sys.stdout None; it died with an AttributeError
    traceback ('NoneType' object has no attribute 'flush')."""
    proc = _run(*args, stdout=None)
    assert proc.stderr.strip() == f"shannon-otel {args[0]}: cannot write to stdout: it is closed"
    assert proc.returncode == 1


@pytest.mark.parametrize("args", [("--help",), ("demo", "--help"), ("--version",)])
def test_help_and_version_into_a_closed_stdout_exit_1(args: tuple[str, ...]) -> None:
    """docs/cli.md: exit 1 when stdout is closed (`>&-`), `--help` and `--version` too. They exited 0, the
    help or version written on stderr instead: argparse hands the closed stdout (None) on, read as stderr."""
    proc = _run(*args, stdout=None)
    assert proc.stderr.strip() == "shannon-otel: cannot write to stdout: it is closed"
    assert proc.returncode == 1


def test_a_usage_error_onto_a_full_disk_is_still_a_usage_error() -> None:
    """The usage goes to stderr: a full stdout changes nothing (exit 2, the reason named)."""
    proc = _run("demo", "--wavs", "2", stdout=os.devnull if not os.path.exists(FULL) else FULL)
    assert "unrecognized arguments: --wavs 2" in proc.stderr
    assert proc.returncode == 2


@needs_dev_full
@pytest.mark.parametrize("unbuffered", [False, True])
def test_check_onto_a_full_disk_says_so_and_exits_1(unbuffered: bool) -> None:
    """`check > /dev/full` exited with its own code (0 for a healthy stack) having printed nothing: its
    lines were lost at the interpreter's last flush. Unbuffered (PYTHONUNBUFFERED), the print raised."""
    with socket.socket() as sock:  # a port nobody listens on: the check fails fast
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PYTHONUNBUFFERED": "1"} if unbuffered else {}
    proc = _run("check", "--skip-prometheus", "--otlp-endpoint", f"127.0.0.1:{port}", "--timeout", "0.5", env=env)
    assert proc.stderr.strip() == "shannon-otel check: cannot write to stdout: No space left on device"
    assert proc.returncode == 1


@pytest.mark.parametrize("args", [("rules", "--slo-target", "x"), ("bogus",), ("demo", "--wavs", "2")])
def test_a_usage_error_with_stderr_closed_writes_nothing_to_stdout(args: tuple[str, ...]) -> None:
    """`rules --slo-target x 2>&- > rules.yml`: argparse passes sys.stderr (None, closed) to print_usage, which
    takes None for stdout: the usage was written into the file meant for the rules. Exit 2 and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    command = ["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "shannon_otel", *args]
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, timeout=120, check=False)
    assert proc.stdout == ""
    assert proc.returncode == 2
