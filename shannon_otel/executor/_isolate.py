"""Run a coroutine inside its own :class:`contextvars.Context` without creating an asyncio Task.

A wave worker runs many tasks one after another; each must see only its own context, as under
``gather`` or a ``TaskGroup``. Creating an ``asyncio.Task`` per input does that but costs about a
``gather`` per item; stepping the coroutine inside ``context.run`` (what a Task does internally on
every step) costs one C call per suspension, and nothing extra for a task that never suspends.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any, TypeVar

T = TypeVar("T")


@types.coroutine
def run_in(context: Context, coro: Coroutine[Any, Any, T]) -> Generator[Any, Any, T]:
    """``await run_in(ctx, coro)``: the result of ``coro``, every step of which runs inside ``ctx``.

    The awaiting task stays the current task (``asyncio.timeout`` and ``cancel()`` act on it);
    what it yields (futures, bare ``yield``) passes through unchanged, and what is thrown into it
    (CancelledError) is thrown into ``coro`` inside ``ctx``. Exceptions keep their tracebacks.
    ``ctx`` must not be entered elsewhere while this runs (a fresh copy per coroutine).
    """
    run = context.run
    try:
        signal = run(coro.send, None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        step: Callable[[Any], Any] = coro.send
        try:
            value = yield signal
        except GeneratorExit:
            run(coro.close)
            raise
        except BaseException as exc:  # thrown in by the event loop (cancellation): forwarded, not handled
            step, value = coro.throw, exc
        # Thrown in outside the `except` block: inside it the thrown exception was the one being handled, and
        # became the __context__ of whatever the task raised next (a task that caught its cancellation and then
        # raised got "During handling of CancelledError" that `await fn()` does not show; a nested wave's
        # KeyboardInterrupt carried it too).
        try:
            signal = run(step, value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            value = None  # the thrown exception is not kept by this frame (its traceback would hold it)
