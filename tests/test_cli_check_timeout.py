"""``check --timeout`` bounds the endpoint's time, not the import of the exporter's modules, nor the HTTP client's
set-up (the last test).

Loading the gRPC exporter takes ~0.3 s, over 1 s on a busy machine; it happened inside the timed check, so
``check --timeout 1`` gave up before dialling and blamed the server ("no complete answer within 1 s (the server
answers too slowly, or not at all)"), against a healthy collector or, as here, a port refusing connections.
A fresh interpreter whose import of the exporter module is made slow on purpose.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

_SCRIPT = '''
import importlib.abc, sys, time
from shannon_otel.cli import main

class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == sys.argv[1]:
            time.sleep(6.0)  # a busy machine's import, longer than --timeout and its grace
        return None

sys.meta_path.insert(0, Slow())
sys.exit(main(sys.argv[2:]))
'''


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_exporters_import_does_not_count_against_the_timeout(tmp_path: Path, protocol: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    module = "shannon_otel._otlp_http" if protocol == "http/protobuf" else "shannon_otel._otlp_grpc"
    script = tmp_path / "check.py"
    script.write_text(_SCRIPT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(script), module, "check", "--skip-prometheus", "--otlp-protocol", protocol,
         "--otlp-endpoint", f"http://127.0.0.1:{port}", "--timeout", "5"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "export failed after" in proc.stdout, proc.stdout
    assert "no complete answer" not in proc.stdout


def test_the_prometheus_clients_set_up_does_not_count_against_the_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: the HTTP opener was built inside the timed check. Python 3.13's loads the system's CA certificates
    # as it is built (~1 s on a busy machine): `check --timeout 1` against a port refusing connections said "no
    # complete answer within 1 s (the server answers too slowly, ...)" (test_check_unreachable_targets_exit_1,
    # 2 runs in 4 under load). Told here by when the opener is built, not by a clock.
    from shannon_otel._delivery import bounded as real_bounded
    from shannon_otel.cli import main

    timing = {"on": False}
    built: list[bool] = []  # per opener built: whether --timeout had started
    real_build = urllib.request.build_opener

    def bounded(name: str, fn: Callable[[], T], timeout_s: float) -> tuple[bool, T | None]:
        timing["on"] = True
        try:
            return real_bounded(name, fn, timeout_s)
        finally:
            timing["on"] = False

    def build_opener(*handlers: Any) -> urllib.request.OpenerDirector:
        built.append(timing["on"])
        return real_build(*handlers)

    monkeypatch.setattr("shannon_otel.cli._check.bounded", bounded)
    monkeypatch.setattr(urllib.request, "build_opener", build_opener)
    monkeypatch.setattr(urllib.request, "_opener", None)  # as in a fresh `shannon-otel check`: none built yet
    with socket.socket() as refusing:  # bound, not listening: connections are refused at once
        refusing.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{refusing.getsockname()[1]}"
        code = main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "60"])  # 60 s: a hang guard
    assert code == 1
    assert capsys.readouterr().out.startswith(f"FAIL Prometheus {url}: unreachable: ")
    assert built == [False]
