"""``check --timeout`` bounds the endpoint's time, not the import of the exporter's modules.

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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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
