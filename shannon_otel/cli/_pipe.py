"""Output whose reader has gone (``shannon-otel demo | head``): write nothing more, never a traceback.

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, here or at the interpreter's
last flush. The command catches it where it writes, points the stream's file descriptor at the null
device (so every later write and that last flush succeed, unseen), and tells its caller, who stops.
Restoring SIGPIPE's default instead would let any socket the demo holds (OTLP, the metrics endpoint)
kill the process.
"""

from __future__ import annotations

import os
from typing import IO


def write_line(stream: IO[str], text: str, *, flush: bool = False) -> bool:
    """Print ``text`` and a newline to ``stream``; False when its reader has gone (then discarded)."""
    try:
        print(text, file=stream, flush=flush)
    except BrokenPipeError:
        discard(stream)
        return False
    return True


def discard(stream: IO[str]) -> None:
    """Send what ``stream`` still holds and everything written to it later to the null device."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests' StringIO): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
