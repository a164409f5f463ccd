"""The command under ``OTEL_SDK_DISABLED=true``: the SDK records and exports nothing; `demo` says so instead
of claiming a delivery, and `check` still checks the endpoint it was asked about."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shannon_otel.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_with_the_sdk_disabled_the_demo_never_claims_an_export() -> None:
    """It printed "OTLP export to http://127.0.0.1:PORT: ok" for a port nobody listens on (the SDK sent
    nothing), and never said why the summary had no trace and 0 spans."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), OTEL_SDK_DISABLED="true")
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.run(
        [sys.executable, "-m", "shannon_otel", "demo", "--waves", "1", "--tasks", "2", "--otlp-endpoint", endpoint,
         "--export-timeout", "0.5"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("OTEL_SDK_DISABLED=true: the OpenTelemetry SDK records no telemetry"), lines[0]
    assert f"OTLP export to {endpoint}: ok" not in proc.stdout
    assert f"OTLP export to {endpoint}: nothing sent (OTEL_SDK_DISABLED=true)" in lines
    assert proc.returncode == 0, proc.stderr


def test_with_the_sdk_disabled_check_still_checks_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The SDK's TracerProvider hands out a no-op tracer when disabled: `check` died on an AssertionError
    traceback instead of trying the endpoint the user asked about."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    code = main(["check", "--skip-prometheus", "--otlp-endpoint", f"127.0.0.1:{port}", "--timeout", "0.5"])
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL OTLP grpc http://127.0.0.1:{port}: ") and "Connection refused" in out, out
    assert code == 1
