"""Module-level task functions for the Dask tests: workers import them by reference."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry import trace


def square(x: int) -> int:
    return x * x


async def async_double(x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


def current_parent(_: int) -> tuple[int, int]:
    """The trace and span id current on the worker: the client's span when context propagated."""
    ctx = trace.get_current_span().get_span_context()
    return ctx.trace_id, ctx.span_id


def fail_first(marker: str) -> str:
    """Raise ConnectionError the first time (per marker file), succeed afterwards."""
    path = Path(marker)
    if not path.exists():
        path.write_text("1")
        raise ConnectionError("first call fails")
    return "ok"


def die_first(marker: str) -> int:
    """Kill the worker process the first time it runs for ``marker``; return the pid afterwards."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return os.getpid()


def die_always(marker: str) -> int:
    """Kill the worker every time, counting the runs in ``marker``."""
    with Path(marker).open("a") as f:
        f.write("x")
    os._exit(1)


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def fails(x: int) -> int:
    raise ValueError(f"bad {x}")


def nap(seconds: float) -> float:
    """Sleep in the worker thread (releases the GIL, unlike a busy loop)."""
    time.sleep(seconds)
    return seconds


def returns_lock(_: int) -> object:
    """Runs fine, but its result cannot be sent back to the client (a lock does not pickle)."""
    import threading

    return threading.Lock()


def exits(code: int) -> int:
    """Raise SystemExit on the worker (takes the worker process down with it)."""
    raise SystemExit(code)


def square_unless_flagged(x: int, flag: str) -> int:
    """``x * x``, or ValueError while the file ``flag`` exists (a dependency that went down)."""
    if Path(flag).exists():
        raise ValueError(f"down for {x}")
    return x * x


def freeze_soon(marker: str) -> int:
    """Return, then freeze this worker process (SIGSTOP) 20 ms later, as a hung worker (paused, swapping, cut
    off) would be: its result is on the worker and cannot be fetched. Writes the pid to ``marker`` so the test
    resumes it (SIGCONT)."""
    import signal
    import threading

    Path(marker).write_text(str(os.getpid()))

    def stop() -> None:
        time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGSTOP)

    threading.Thread(target=stop, daemon=True).start()
    return os.getpid()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def slow_the_first_time(marker: str) -> str:
    """Sleep 5 s the first time (per marker file), answer at once afterwards: a hedge's second attempt wins."""
    path = Path(marker)
    if not path.exists():
        path.write_text("1")
        time.sleep(5)
        return "slow"
    return "fast"


def append_line(path: str, line: str) -> str:
    with Path(path).open("a") as f:
        f.write(f"{line}\n")
    return line


def undo_line(path: str, line: str) -> None:
    """The compensation of ``append_line``: gets the step's result (the line it wrote)."""
    append_line(path, f"undo {line}")


def records(x: int, fail: bool = False) -> int:
    """Record tokens and cost for the wave task calling it, then return ``x`` (or raise ConnectionError)."""
    from shannon_otel import record_cost, record_tokens

    record_tokens(input=10, output=x)
    record_cost(0.5)
    if fail:
        raise ConnectionError(f"down {x}")
    return x


async def async_records(x: int) -> int:
    from shannon_otel import record

    await asyncio.sleep(0)
    record("pages", x)
    return x


class Scaler:
    def scaled(self, x: int) -> int:
        return x


class TenfoldScaler(Scaler):
    """Its method calls ``super()``: Python gives it a ``__class__`` cell (a closure in form only)."""

    def scaled(self, x: int) -> int:
        return super().scaled(x) * 10


class ThrottledError(Exception):
    """An error class with its own ``__reduce__`` (as botocore's ``ClientError``): its pickle keeps only its
    arguments, none of its instance's attributes."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return ThrottledError, (self.code,)


def records_then_throttled(x: int) -> int:
    """Record tokens for the wave task calling it, then raise ThrottledError."""
    from shannon_otel import record_tokens

    record_tokens(input=10, output=x)
    raise ThrottledError(f"throttled {x}")


def records_then_long_error(x: int) -> int:
    """Record tokens for the wave task calling it, then raise a ValueError whose message is over Dask's
    ``distributed.admin.max-error-length`` (10,000 characters: Dask rebuilds such an error, its attributes lost)."""
    from shannon_otel import record_tokens

    record_tokens(input=10, output=x)
    raise ValueError("x" * 20_000)


def gate(folder: str, x: int) -> int:
    """Note that it ran (``{folder}/ran-{x}``), then wait until the worker whose pid is in ``{folder}/dead`` is gone
    (at most 60 s; one on that worker dies with it, never finishing first); return ``x``."""
    Path(folder, f"ran-{x}").write_text("")
    deadline = time.monotonic() + 60
    while not _gone(Path(folder, "dead")):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not die")
        time.sleep(0.01)
    return x


def _gone(marker: Path) -> bool:
    try:
        os.kill(int(marker.read_text()), 0)
    except (FileNotFoundError, ValueError):  # not written yet (or half written)
        return False
    except ProcessLookupError:
        return True
    return False


def die_holding_a_queued_task(folder: str, x: int) -> int:
    """Wait until this worker holds more tasks than it has threads (one assigned to it but not started), then
    write its pid in ``{folder}/dead`` and kill the worker process."""
    from distributed import get_worker

    state = get_worker().state
    deadline = time.monotonic() + 60
    while len(state.tasks) <= state.nthreads:
        if time.monotonic() > deadline:
            raise TimeoutError("no task was queued on this worker")
        time.sleep(0.01)
    Path(folder, "dead").write_text(str(os.getpid()))
    os._exit(1)


class Abandon(BaseException):
    """A BaseException of the user's own (not an Exception): Dask sends it back as any error."""


def records_then_abandons(x: int) -> int:
    """Record tokens for the wave task calling it, then raise Abandon."""
    from shannon_otel import record_tokens

    record_tokens(input=10, output=x)
    raise Abandon(f"abandoned {x}")


class LockedError(Exception):
    """An error that does not pickle (it holds a lock): Dask sends the client ``Exception(repr(error))`` instead."""

    def __init__(self, x: int) -> None:
        super().__init__(f"locked {x}")
        self.lock = threading.Lock()


def records_then_unpicklable_error(x: int) -> int:
    """Record tokens for the wave task calling it, then raise LockedError."""
    from shannon_otel import record_tokens

    record_tokens(input=10, output=x)
    raise LockedError(x)


async def async_records_then_unpicklable_error(x: int) -> int:
    """``records_then_unpicklable_error`` as an ``async def`` (run on the worker's event loop)."""
    await asyncio.sleep(0)
    return records_then_unpicklable_error(x)


def greet(greeting: str, name: str = "world") -> str:
    """A function with a parameter called ``name`` (as ``backend.task``'s own keyword), with a default."""
    return f"{greeting}, {name}"


async def wait_for_ever(marker: str) -> None:
    """An ``async def`` that never ends on its own: writes "started" to ``marker``, "cancelled" once cancelled."""
    path = Path(marker)
    path.write_text("started")  # noqa: ASYNC240 - a few bytes, for the test to read
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        path.write_text("cancelled")  # noqa: ASYNC240 - a few bytes, for the test to read
        raise
