"""A process forked while another thread's call was logging does not hang at its own first log line.

The logging hook's flood limiter takes turns on a lock, and the default logging hook is one per process:
a child forked while another thread held it waited on it for good. The lock is taken directly in the
parent, as that thread would hold it at the instant of the fork.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = '''
import asyncio, json, os, time
from shannon_otel import LoggingHook
from shannon_otel.recovery import Retry

hook = LoggingHook()
retry = Retry(name="op", attempts=2, initial=0, maximum=0, hooks=[hook], instrument=False)
failed = []

async def flaky():
    if not failed:
        failed.append(1)
        raise ConnectionError("once")
    return 1

assert asyncio.run(retry.call(flaky)) == 1  # logged once: the limiter's window for this key is open
failed.clear()
lock = hook._limiter._lock
lock.acquire()  # another thread's retry being logged, at the instant of the fork
pid = os.fork()
if pid == 0:
    assert asyncio.run(retry.call(flaky)) == 1  # logs (counted in the window): takes the limiter's lock
    os._exit(0)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(json.dumps({"hung": False, "status": status}), flush=True)
        break
    time.sleep(0.02)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print(json.dumps({"hung": True}), flush=True)
lock.release()
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_the_logging_hook_logs_does_not_hang(tmp_path: Path) -> None:
    script = tmp_path / "forked.py"
    script.write_text(_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_", "SHANNON_OTEL_LOGS"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"hung": False, "status": 0}, done.stderr
