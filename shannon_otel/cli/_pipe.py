"""Output that cannot be written: a reader that has gone (``shannon-otel demo | head``), a full disk
(``> /dev/full``), an I/O error. The command writes nothing more, never a traceback.

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, here or at the interpreter's
last flush. The command catches it where it writes, points the stream's file descriptor at the null
device (so every later write and that last flush succeed, unseen), and tells its caller, who stops.
Restoring SIGPIPE's default instead would let any socket the demo holds (OTLP, the metrics endpoint)
kill the process.

A closed pipe is the reader's choice (exit 0). Any other write error (ENOSPC, EIO) means output the user
asked for was lost: it is discarded the same way, remembered, and :func:`lost` hands it to ``main()``,
which says so on stderr and exits 1 (the demo's hooks print, and a hook's exception is never raised).
"""

from __future__ import annotations

import os
from typing import IO

_lost: list[OSError] = []  # write errors other than a closed pipe since reset(); one process, one command


def write_line(stream: IO[str], text: str, *, flush: bool = False) -> bool:
    """Print ``text`` and a newline to ``stream``; False when it cannot be written (then discarded)."""
    try:
        print(text, file=stream, flush=flush)
    except BrokenPipeError:
        discard(stream)
        return False
    except OSError as exc:  # the output is lost from here on: not a reader's choice, an error
        _lost.append(exc)
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


def lost(stream: IO[str], exc: OSError | None = None) -> OSError | None:
    """The first write error of the command (``exc``, if given, is one more: then ``stream`` is discarded)."""
    if exc is not None:
        _lost.append(exc)
        discard(stream)
    return _lost[0] if _lost else None


def reset() -> None:
    """Forget the write errors of an earlier command (``main()`` called again in one process)."""
    _lost.clear()
