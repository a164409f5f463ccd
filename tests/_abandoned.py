"""``abandoned_with_its_loop``: a call left pending when its event loop is closed, then garbage-collected, as a
program that closes a loop without cancelling its tasks leaves it. Returns what Python reported as ignored while
collecting it ("Exception ignored in ..."), so a test can say nothing was."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import Coroutine
from typing import Any


def abandoned_with_its_loop(coro: Coroutine[Any, Any, Any], *, steps: int = 1, close: bool = False) -> list[str]:
    """Run ``coro`` as a task for ``steps`` loop turns, close the loop, drop the task (closing its coroutine
    first when ``close``: what the collector does with it) and collect it; the reprs of the ignored errors."""
    found: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: found.append(repr(unraisable.exc_value))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Task was destroyed but it is pending" is logged, not raised
            loop = asyncio.new_event_loop()
            task = loop.create_task(coro)
            del coro  # the task's alone: collected below, while the hook above listens
            for _ in range(steps):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()
            if close:
                task.get_coro().close()
            del task
            gc.collect()
    finally:
        sys.unraisablehook = previous
    return found
