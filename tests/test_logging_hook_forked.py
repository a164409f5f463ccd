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
