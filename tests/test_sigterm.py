"""A process ended by SIGTERM (``docker stop``, ``kill``, Kubernetes) and the spans it still had queued.

Python's default for SIGTERM is to die at once: no exit handler runs, so the batch processor's queue is
lost. shannon-otel installs no signal handler (the program's choice: servers such as uvicorn and gunicorn
install their own); the handler docs/reliability.md and the README give turns the signal into a normal
exit, whose exit handler shuts the telemetry down and exports the queue. A real process, a real OTLP/HTTP
collector stand-in on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_export_faults import GUARD_S, HttpSink, answer

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = '''
import asyncio, signal, sys, time
from shannon_otel import Wave, configure

if sys.argv[2] == "handler":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the documented handler

configure("sigterm", exporter="otlp_http", endpoint=sys.argv[1], metric_interval_s=3600.0)

async def work(i):
    return i

print(asyncio.run(Wave("w").map(work, range(10))).values(), flush=True)  # 11 spans, queued
time.sleep(120)  # still running (a server) when the signal comes
'''


def _terminated(tmp_path: Path, source: str, ready: str, *args: str) -> tuple[subprocess.Popen[str], str, int]:
    """Run ``source`` against an OTLP/HTTP stand-in, SIGTERM it once it prints ``ready``: the process, its stderr
    and the spans the stand-in received."""
    sink = HttpSink(answer(200))
    script = tmp_path / "server.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"  # nothing leaves before the signal but by the exit handler
    with subprocess.Popen([sys.executable, str(script), sink.endpoint, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline().strip() == ready
            process.send_signal(signal.SIGTERM)
            process.wait(GUARD_S)
            stderr = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            sink.close()
    return process, stderr, sink.spans


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("handler", [True, False], ids=["with-handler", "default"])
def test_sigterm_exports_the_queued_spans_only_with_the_documented_handler(tmp_path: Path, handler: bool) -> None:
    # the wave ran; its spans are queued
    process, stderr, spans = _terminated(tmp_path, _SCRIPT, str(list(range(10))), "handler" if handler else "none")
    if handler:
        assert process.returncode == 143, stderr
        assert spans == 11  # the wave span and its 10 task spans, exported by the exit handler
    else:
        assert process.returncode == -signal.SIGTERM
        assert spans == 0  # died at once: the queue went with it, uncounted


_ASYNCIO_SCRIPT = '''
import asyncio, signal, sys
from shannon_otel import Wave, configure

configure("sigterm", exporter="otlp_http", endpoint=sys.argv[1], metric_interval_s=3600.0)
started = 0

async def work(i):
    global started
    started += 1
    if started == 10:
        print("running", flush=True)  # every task is inside its span when the signal comes
    await asyncio.sleep(120)

async def main():
    # the README's recipe for an asyncio program: the signal cancels the main task, at an await
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    await Wave("w").map(work, range(10))

try:
    asyncio.run(main())
except asyncio.CancelledError:
    sys.exit(143)
'''


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_mid_wave_under_the_asyncio_recipe_ends_and_exports_every_span(tmp_path: Path) -> None:
    """The README's recipe for an asyncio program: SIGTERM while a wave runs cancels it at an ``await`` (a
    ``sys.exit`` handler's SystemExit lands at any bytecode, docs/reliability.md), so every span ends and the
    exit handler exports them all."""
    process, stderr, spans = _terminated(tmp_path, _ASYNCIO_SCRIPT, "running")
    assert process.returncode == 143, stderr
    assert spans == 11  # the wave span and its 10 task spans: all ended (cancelled) and exported
