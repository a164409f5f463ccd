"""Ctrl-C (or a second SIGTERM) while the process waits, at exit, for a backend that never answers.

The exit handler ``configure()`` registers waits up to ``shutdown_timeout_s`` for the queued spans. A user who
presses Ctrl-C then has asked to leave now: the wait ends, what was not sent is counted and said in the one
warning, and nothing else is printed (Python ignores what an exit handler raises, but printed the library's
KeyboardInterrupt traceback as "Exception ignored in atexit callback"). A real process: the black-hole
endpoint is a socket in the child that accepts and never answers, and the child sends itself SIGINT once
the shutdown's export has connected to it, so the signal lands while the exit handler waits. A second
SIGTERM under the handler docs/reliability.md gives (``sys.exit(143)``) is the same request as a Ctrl-C. The
same holds for the finalizer that shuts a multiprocessing child's telemetry down as the child leaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARD_S = 60.0  # a hang guard only: the child leaves at once after its signal


def _run(script: Path, source: str, arg: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as ``script arg`` with no OTEL_ variables and a 10-minute batch delay (only the exit
    shutdown exports), and check that its stderr counts the wave's 11 spans as not delivered."""
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
    result = subprocess.run([sys.executable, str(script), arg], capture_output=True, text=True, env=env,
                            timeout=GUARD_S)
    assert "telemetry shutdown was interrupted; not delivered over the run: 11 spans" in result.stderr
    return result

_SCRIPT = '''
import asyncio, os, signal, socket, sys, threading
from shannon_otel import Wave, configure

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the documented handler

sink = socket.socket()
sink.bind(("127.0.0.1", 0))
sink.listen(8)
held = []

def interrupt_once_connected():
    held.append(sink.accept())  # only the exit handler's shutdown exports (the schedule delay is 10 min)
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))

configure("exit-ctrl-c", exporter="otlp_http", endpoint=f"http://127.0.0.1:{sink.getsockname()[1]}",
          shutdown_timeout_s=120.0, export_timeout_s=120.0, metric_interval_s=3600.0)

async def work(i):
    return i

print(asyncio.run(Wave("w").map(work, range(10))).values(), flush=True)
threading.Thread(target=interrupt_once_connected, daemon=True).start()
'''


@pytest.mark.skipif(os.name != "posix" or not hasattr(signal, "SIGTERM"), reason="POSIX signals")
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_exit_handlers_wait_ends_it_quietly_with_the_loss_counted(
    tmp_path: Path, signal_name: str,
) -> None:
    result = _run(tmp_path / "impatient.py", _SCRIPT, signal_name)
    assert result.stdout.strip() == str(list(range(10)))
    assert "Exception ignored" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0  # the program had finished; Python ignores what an exit handler raises


_CHILD_SCRIPT = '''
import asyncio, multiprocessing, os, signal, socket, sys
from shannon_otel import Wave, configure

def child(endpoint):
    configure("exit-ctrl-c-child", exporter="otlp_http", endpoint=endpoint, shutdown_timeout_s=120.0,
              export_timeout_s=120.0, metric_interval_s=3600.0)

    async def work(i):
        return i

    print(asyncio.run(Wave("w").map(work, range(10))).values(), flush=True)

if __name__ == "__main__":
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)
    process = multiprocessing.get_context(sys.argv[1]).Process(
        target=child, args=(f"http://127.0.0.1:{sink.getsockname()[1]}",))
    process.start()
    held = sink.accept()  # only the child's finalizer exports (the schedule delay is 10 min)
    os.kill(process.pid, signal.SIGINT)
    process.join()
    print("exitcode", process.exitcode, flush=True)
'''


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_ctrl_c_during_a_multiprocessing_childs_exit_shutdown_ends_it_quietly(
    tmp_path: Path, start_method: str,
) -> None:
    # Before: the child's finalizer let the KeyboardInterrupt out: the library's traceback under "Process
    # SpawnProcess-1:", exit code 1 for a child whose work was done, and the finalizers after it skipped.
    result = _run(tmp_path / "children.py", _CHILD_SCRIPT, start_method)
    assert result.stdout.split("\n")[:2] == [str(list(range(10))), "exitcode 0"], result.stderr
    assert "Traceback" not in result.stderr, result.stderr


_SECOND_SCRIPT = '''
import atexit, logging, os, signal, socket, sys, threading
from opentelemetry import trace
from shannon_otel import configure

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the documented handler


class InterruptedLock:
    """The lock of one of the program's log handlers: the signal comes while the exit handler, its shutdown
    done, waits for a log call under way on it (before: ``before``) or has just taken it (``after``)."""

    def __init__(self):
        self.inner = threading.RLock()
        self.armed = False

    def acquire(self, blocking=True, timeout=-1):
        interrupt, self.armed = self.armed, False
        if interrupt and sys.argv[2] == "before":
            print("signal in the wait", file=sys.stderr, flush=True)
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        taken = self.inner.acquire(blocking, timeout)
        if interrupt and sys.argv[2] == "after":
            print("signal in the wait", file=sys.stderr, flush=True)
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        return taken

    def release(self):
        self.inner.release()

    def __enter__(self):  # Python 3.13's logging takes a handler's lock with `with`
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def _is_owned(self):
        return self.inner._is_owned()


lock = InterruptedLock()
handler = logging.StreamHandler()
handler.lock = lock
logging.getLogger("app").addHandler(handler)
# runs after the library's exit handler (registered later, run earlier)
atexit.register(lambda: print("lock held after exit:", lock.inner._is_owned(), file=sys.stderr, flush=True))
sink = socket.socket()  # a black hole: the exit shutdown gives up, then waits for the log handlers
sink.bind(("127.0.0.1", 0))
sink.listen(8)
configure("exit-second-ctrl-c", exporter="otlp_http", endpoint=f"http://127.0.0.1:{sink.getsockname()[1]}",
          shutdown_timeout_s=0.5, export_timeout_s=120.0, metric_interval_s=3600.0)
trace.get_tracer("app").start_span("queued").end()
atexit.register(lambda: setattr(lock, "armed", True))  # runs before the library's exit handler
print("done", flush=True)
'''


@pytest.mark.skipif(os.name != "posix" or not hasattr(signal, "SIGTERM"), reason="POSIX signals")
@pytest.mark.parametrize(("signal_name", "landing"), [("SIGINT", "before"), ("SIGINT", "after"), ("SIGTERM", "before")])
def test_a_signal_after_the_exit_shutdown_while_it_waits_for_log_handlers_ends_it_quietly(
    tmp_path: Path, signal_name: str, landing: str,
) -> None:
    # Before: the exit handler guarded only its shutdown; a second Ctrl-C in its wait for the handlers' locks
    # after it (up to 0.5 s each) printed "Exception ignored in atexit callback" and the library's traceback.
    script = tmp_path / "second.py"
    script.write_text(_SECOND_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, str(script), signal_name, landing], capture_output=True, text=True,
                            env=env, timeout=GUARD_S)
    assert result.stdout.strip() == "done"
    assert "telemetry shutdown did not finish within 0.5 s" in result.stderr  # it gave up, then waited
    assert "signal in the wait" in result.stderr  # the signal came where it is meant to
    assert "Traceback" not in result.stderr, result.stderr
    assert "lock held after exit: False" in result.stderr, result.stderr  # given back, not left held
    assert result.returncode == 0


_ASYNC_SCRIPT = '''
import asyncio, os, signal, socket, sys, threading
from shannon_otel import Wave, configure

sink = socket.socket()
sink.bind(("127.0.0.1", 0))
sink.listen(8)
held = []

def interrupt_once_connected():
    held.append(sink.accept())  # only the with block's shutdown exports (the schedule delay is 10 min)
    os.kill(os.getpid(), signal.SIGINT)

async def main():
    with configure("async-ctrl-c", exporter="otlp_http", endpoint=f"http://127.0.0.1:{sink.getsockname()[1]}",
                   # after an interrupted force_flush, the cancelled program's shutdown runs a short budget
                   shutdown_timeout_s=0.5 if sys.argv[1] == "force_flush" else 120.0, export_timeout_s=120.0,
                   metric_interval_s=3600.0) as telemetry:
        async def work(i):
            return i

        print((await Wave("w").map(work, range(10))).values(), flush=True)
        threading.Thread(target=interrupt_once_connected, daemon=True).start()
        if sys.argv[1] == "force_flush":
            print("flushed", telemetry.force_flush(120.0), flush=True)
            await asyncio.sleep(0)  # where the cancellation is delivered

try:
    asyncio.run(main())  # the README's shape: asyncio.run's own SIGINT handler only cancels main()
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
'''


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("waiting_in", ["shutdown", "force_flush"])
def test_ctrl_c_under_asyncio_run_ends_a_blocking_wait_on_the_loops_thread(tmp_path: Path, waiting_in: str) -> None:
    # Before: asyncio.run's SIGINT handler only cancels the main task, delivered at its next await; the with block's
    # shutdown (a force_flush) blocked the loop's thread until its whole budget ran out (here 120 s: the guard's
    # 60 s expired first).
    script = tmp_path / "async_impatient.py"
    script.write_text(_ASYNC_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
    result = subprocess.run([sys.executable, str(script), waiting_in], capture_output=True, text=True, env=env,
                            timeout=GUARD_S)
    flushed = ["flushed False"] if waiting_in == "force_flush" else []  # the flush did not finish: it says so
    assert result.stdout.split("\n")[:-1] == [str(list(range(10))), *flushed, "KeyboardInterrupt"], result.stderr
    if waiting_in == "shutdown":
        assert "telemetry shutdown was interrupted" in result.stderr, result.stderr
    assert "not delivered over the run: 11 spans" in result.stderr  # counted, said once
    assert "Traceback" not in result.stderr, result.stderr
