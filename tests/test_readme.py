"""The README's quick start runs as written and prints readable values; its inline recipes run as written."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
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


def test_the_testing_switch_runs_as_the_readme_writes_it_and_turns_backoff_waits_off(tmp_path: Path) -> None:
    """The README said `with shannon_otel.testing.set_testing(True):`; after `import shannon_otel` that is an
    AttributeError (the package does not import its `testing` module), so the line failed as pasted."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    sentence = readme[readme.index("In your own tests"):readme.index("backoff waits off")]
    *setup, header = re.findall(r"`([^`]+)`", sentence)
    assert header.startswith("with ") and header.endswith(":"), header
    body = textwrap.dedent("""
        slept = []

        async def sleep(seconds):
            slept.append(seconds)

        calls = []

        async def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("down")
            return "ok"

        print(asyncio.run(shannon_otel.Retry(attempts=3, initial=5.0, sleep=sleep).call(flaky)), slept)
    """)
    script = tmp_path / "switch.py"
    script.write_text("\n".join(["import asyncio", "import shannon_otel", *setup, header])
                      + "\n" + textwrap.indent(body, "    "), encoding="utf-8")
    done = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok [0.0, 0.0]"  # retried twice, with no backoff wait
