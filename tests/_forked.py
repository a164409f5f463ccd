"""Fork a child while one of our locks is held, as another thread would hold it at the instant of the fork, and
tell whether the child finished or hung.

A test gives the set-up code (it must bind ``lock``) and the child's body. The script runs in its own interpreter:
it takes ``lock``, forks, waits at most 20 s for the child (then kills it), prints one JSON line
(``{"hung": false, "status": <wait status>}`` or ``{"hung": true}``) and releases the lock.

``run_python`` runs such a script (any ``python`` command) in a clean OTel environment, for the other tests too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_TEMPLATE = '''
import json, os, sys, time
{setup}
lock.acquire()  # another thread holds it at the instant of the fork
pid = os.fork()
if pid == 0:
{child}
    os._exit(0)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(json.dumps({{"hung": False, "status": status}}), flush=True)
        break
    time.sleep(0.02)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print(json.dumps({{"hung": True}}), flush=True)
lock.release()
'''


def fork_while_locked(tmp_path: Path, setup: str, child: str, *args: str,
                      env_drop: tuple[str, ...] = ("OTEL_", "_OTEL_"), timeout_s: float = 120.0) -> dict[str, Any]:
    """Run the fork script built from ``setup`` and ``child`` (with ``args`` as ``sys.argv[1:]``); its JSON line."""
    script = tmp_path / "forked.py"
    body = textwrap.indent(textwrap.dedent(child).strip(), "    ")
    script.write_text(_TEMPLATE.format(setup=textwrap.dedent(setup).strip(), child=body))
    done = run_python(str(script), *args, env_drop=env_drop, timeout_s=timeout_s)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def run_python(*args: str, env_drop: tuple[str, ...] = ("OTEL_", "_OTEL_"), extra_env: dict[str, str] | None = None,
               timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python *args`` in an interpreter of its own, this checkout on its PYTHONPATH, without the variables whose
    names start with one of ``env_drop`` (and with ``extra_env``); asserted to exit 0 (its stderr shown if not)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(env_drop)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra_env or {})
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout_s,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done
