"""What a forked child must redo: callbacks run in the child after every ``fork()``.

A forked child inherits the parent's locks as they were at that instant, but only the thread that
forked. A lock another thread held then (a metric reader collecting, an exporter counting) stays held
in the child forever, and the child's next wave or collection waits on it for good. Imports nothing
of the SDK, so the OTel hook's modules can use it (``import shannon_otel`` stays light).
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

# The live objects' callbacks, in the order they were registered, each forgotten as its object is collected.
# One ``os.register_at_fork`` registration runs them all: registrations cannot be removed, so one per object
# (a LoggingHook, RunRecorder or AnomalyDetector made per request) kept ~0.8 KB for good after the object was
# gone, and every fork called every dead one.
_CALLBACKS: dict[int, tuple[weakref.ref[Any], Callable[[Any], None]]] = {}
_KEYS = itertools.count()


def in_forked_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in the child process after every ``fork()`` while its object lives.

    The object is held weakly, and its entry goes with it.
    """
    if not hasattr(os, "register_at_fork"):  # Windows: no fork
        return
    key = next(_KEYS)
    owner, function = method.__self__, method.__func__  # type: ignore[attr-defined]  # a bound method
    pop = _CALLBACKS.pop  # bound now: at interpreter exit the callback may run after the module's globals are gone

    def gone(_: object) -> None:
        pop(key, None)

    # A plain weak reference, not a WeakMethod: at interpreter exit a WeakMethod collected after its function
    # raised from its own callback ("'NoneType' object has no attribute '_alive'").
    _CALLBACKS[key] = (weakref.ref(owner, gone), function)


def _after_in_child() -> None:
    # Each one runs, whatever an earlier one raised: a callback skipped left its lock held, and the child's next
    # wave waited on it for good. Their errors are raised after the rest, for Python to report (as unraisable):
    # one alone as itself, several together in an ExceptionGroup (only the first was raised, the others vanished).
    errors: list[Exception] = []
    for ref, function in list(_CALLBACKS.values()):
        if (owner := ref()) is not None:
            try:
                function(owner)
            except Exception as exc:
                errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup(f"{len(errors)} of shannon-otel's after-fork callbacks raised in the child", errors)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_in_child)


def release_held(lock: threading.Lock) -> None:
    """In a forked child: free ``lock`` if a thread of the parent held it at the fork.

    That thread does not exist in the child, and the child's only thread never holds one of these
    locks at a fork (nothing run under them forks), so a held lock is a dead thread's. A plain
    ``threading.Lock`` may be released by any thread; the object stays the same, so whatever shares
    it (a bound recorder) keeps working.
    """
    if lock.locked():
        lock.release()
