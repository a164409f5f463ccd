"""A process forked while another thread's call was logging does not hang at its own first log line.

The logging hook's flood limiter takes turns on a lock, and the default logging hook is one per process:
a child forked while another thread held it waited on it for good. The lock is taken directly in the
parent, as that thread would hold it at the instant of the fork.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _forked import fork_while_locked

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
'''

_SCRIPT_CHILD = '''
assert asyncio.run(retry.call(flaky)) == 1  # logs (counted in the window): takes the limiter's lock
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_the_logging_hook_logs_does_not_hang(tmp_path: Path) -> None:
    forked = fork_while_locked(tmp_path, _SCRIPT, _SCRIPT_CHILD, env_drop=("OTEL_", "_OTEL_", "SHANNON_OTEL_LOGS"))
    assert forked == {"hung": False, "status": 0}


_FLAKY = '''
calls = [0]

async def flaky():
    calls[0] += 1
    if calls[0] % 2:
        raise ConnectionError("once")
    return 1
'''


def _run(tmp_path: Path, text: str, *args: str) -> str:
    """Runs `text` as a script in a fresh interpreter (no OTel variables), checks it succeeded, returns its output."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_", "SHANNON_OTEL_LOGS"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


_INHERITED = '''
import asyncio, json, logging, os, sys
from shannon_otel import LoggingHook
from shannon_otel.recovery import Retry

messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logger = logging.getLogger("shannon_otel")
logger.addHandler(Keep())
logger.setLevel(logging.DEBUG)
hook = LoggingHook()  # the monotonic clock: the 10 s window stays open for the whole script
retry = Retry(name="op", attempts=2, initial=0, maximum=0, hooks=[hook], instrument=False)
''' + _FLAKY + '''
for _ in range(4):  # the first retry is written, the next three held back in the window
    assert asyncio.run(retry.call(flaky)) == 1
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    messages.clear()
    assert asyncio.run(retry.call(flaky)) == 1  # the child's own first retry
    hook.flush()
    os.write(write, json.dumps(messages).encode())
    os._exit(0)
os.close(write)
child = json.loads(os.read(read, 65536).decode())
os.waitpid(pid, 0)
messages.clear()
hook.flush()
print(json.dumps({"child": child, "parent": messages}), flush=True)
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_does_not_summarise_the_repeats_its_parent_held_back(tmp_path: Path) -> None:
    # The child inherited the parent's flood windows: its flush (or exit) wrote "retried op 3 times" too, so
    # the parent's three held-back retries were reported twice, once by a process where they never happened.
    import json

    result = json.loads(_run(tmp_path, _INHERITED).splitlines()[-1])
    assert [m.startswith("retried 'op' 3 times in the last ") for m in result["parent"]] == [True]
    assert result["child"] == ["retrying 'op' after 0.00 s (attempt 2/2): ConnectionError"]


_POOL_CHILD = '''
import asyncio, logging, multiprocessing, sys
from opentelemetry.sdk.trace import TracerProvider
from shannon_otel import Retry

out = sys.argv[1]
handler = logging.FileHandler(out)  # each process appends its records' messages
handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
logging.getLogger("shannon_otel").addHandler(handler)
logging.getLogger("shannon_otel").setLevel(logging.WARNING)
# an SDK provider: every call is watched, so the default logging hook logs it (built here, in the parent)
retry = Retry(name="op", attempts=2, initial=0, maximum=0, tracer_provider=TracerProvider())
''' + _FLAKY + '''
def work():
    for _ in range(4):  # the first retry is written, three are held back until the process leaves
        assert asyncio.run(retry.call(flaky)) == 1

if __name__ == "__main__":
    child = multiprocessing.get_context(sys.argv[2]).Process(target=work)
    child.start()
    child.join()
    assert child.exitcode == 0
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_multiprocessing_child_writes_the_summaries_its_default_hook_held_back(tmp_path: Path, method: str) -> None:
    # A multiprocessing child started by fork or forkserver leaves by os._exit, never running atexit: the
    # repeats the default logging hook held back there ("retried op 3 times") were lost without a trace.
    out = tmp_path / "records.txt"
    _run(tmp_path, _POOL_CHILD, str(out), method)
    messages = [line.split(" ", 1)[1] for line in out.read_text().splitlines()]
    assert messages[0] == "retrying 'op' after 0.00 s (attempt 2/2): ConnectionError"
    assert [m.startswith("retried 'op' 3 times in the last ") for m in messages[1:]] == [True]
