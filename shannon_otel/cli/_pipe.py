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

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

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


def encodes(stream: Any, text: str) -> bool:
    """Whether ``stream``'s encoding can write ``text`` (``PYTHONIOENCODING=ascii``, a C locale without
    UTF-8 mode: it cannot write the waterfall's block character, nor a name such as 'd\xe9')."""
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


@contextmanager
def replacing_unencodable(stream: Any) -> Iterator[None]:
    """While a command writes: a character ``stream``'s encoding cannot write shows as '?' instead of ending
    the command with a UnicodeEncodeError traceback. What is shown is for a person to read; a file to load
    (``rules`` on stdout) checks :func:`encodes` first, as a '?' would change what it means."""
    errors = getattr(stream, "errors", None)
    if not isinstance(stream, io.TextIOWrapper) or errors != "strict" or encodes(stream, "\u2588\xe9\u2014"):
        yield
        return
    stream.reconfigure(errors="replace")
    try:
        yield
    finally:
        stream.reconfigure(errors=errors)
