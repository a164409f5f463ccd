"""The README's quick start runs as written and prints readable values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start() -> str:
    """The first ``python`` code block under the README's "Quick start" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_quick_start_runs_as_written_with_no_collector(tmp_path: Path) -> None:
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start(), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # no collector listens here: configure() must still return, and export failures are not ours
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
    }
    done = subprocess.run(  # a guard against a hang, not a timing assertion
        [sys.executable, "-W", "error", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "[\"answer to 'What is a span?'\", \"answer to 'Why retry with jitter?'\", "
        "\"answer to 'When does a breaker open?'\"]"
    )
    assert lines[1].startswith("{'success': 3, 'failure': 0, 'timeout': 0, 'cancellation': 0} p95 latency ")
    assert "<" not in done.stdout  # no enum or object reprs
