"""Ctrl-C while the ``shannon-otel`` process starts or exits: one line and exit status 130.

:func:`shannon_otel.cli.main` handles Ctrl-C while a command runs. Around it, in the process that runs it as
the command (``python -m shannon_otel``, the ``shannon-otel`` script), Python's default handler raised
KeyboardInterrupt wherever the signal landed: during the 0.3-1 s import of the package, a traceback (9 of 25
Ctrl-C at random points of start-up); during the interpreter's exit (atexit callbacks, module teardown), an
"Exception ignored" line, and the exit status stayed 0. In those phases nothing is running that a Ctrl-C
should let finish (the command has not started, or has printed, flushed and counted its telemetry), so the
handler here ends the process at once. It is imported before the package's own imports, and imports only
what Python has loaded by then, and ``signal``: each import before the handler is a window for the traceback.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # not typing's: importing typing (~5 ms) before the handler was a window of its own
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import NoReturn

EXIT_INTERRUPTED = 130


def _leave(signum: int, frame: FrameType | None) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):  # what the command printed and Python has not written yet
        try:
            if stream is not None:
                stream.flush()
        except (OSError, RuntimeError, ValueError):  # closed, full, or interrupted in the middle of a write
            pass
    try:
        os.write(2, b"shannon-otel: interrupted\n")
    except OSError:  # stderr closed (`2>&-`)
        pass
    os._exit(EXIT_INTERRUPTED)


def leave_on_interrupt() -> None:
    """From now on Ctrl-C ends the process at once with exit status 130. Installed only from the main thread and
    over Python's own handler: a process where SIGINT is ignored (a background job) or handled keeps that."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _leave)
        except ValueError:  # not the main thread: Python allows handlers only there
            pass


def _interrupt_as_usual() -> None:
    if signal.getsignal(signal.SIGINT) is _leave:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_command(main: Callable[[], int]) -> int:
    """Run the command's ``main`` with Python's Ctrl-C (it handles KeyboardInterrupt itself) and return its exit
    code, leaving :func:`leave_on_interrupt` in force for the interpreter's exit. A KeyboardInterrupt out of
    ``main`` (Ctrl-C while it parsed the arguments, before the command ran) is the one line and 130 too."""
    _interrupt_as_usual()
    try:
        return main()
    except KeyboardInterrupt:
        if sys.stderr is not None:  # started with stderr closed (`2>&-`): print(file=None) writes to stdout
            print("shannon-otel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        leave_on_interrupt()


def started_by_python_m() -> bool:
    """Whether the package is being imported by ``python -m shannon_otel`` locating its ``__main__``: Python sets
    ``sys.argv[0]`` to ``-m`` while it locates the module, which ``sys.orig_argv`` names right before the
    arguments. False for a program that merely imports the package, under ``-m`` or not."""
    argv, orig = sys.argv, getattr(sys, "orig_argv", [])
    if argv[:1] != ["-m"] or len(orig) <= len(argv):
        return False
    return orig[-len(argv)].removeprefix("-m") in ("shannon_otel", "shannon_otel.__main__")
