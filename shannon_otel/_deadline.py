"""The running wave task's deadline scope: read by the recovery policies, set by the executor.

A neutral module so that neither package imports the other: the executor stores the per-task
``asyncio.timeout`` scope here, and a policy running inside the task asks :func:`task_timed_out`
to tell that timeout's ``CancelledError`` from a real cancellation (it records ``timeout`` as the
outcome, and still re-raises the cancellation unchanged).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

__all__ = ["CURRENT_SCOPE", "TaskScope", "task_timed_out"]


class TaskScope:
    """What a policy may know of the wave task running it: its timeout scope, if it has one.

    The executor keeps one per worker and reuses it task after task (``timeout`` is reset for each),
    so a task costs no ContextVar write; its own slot type extends this one.
    """

    __slots__ = ("timeout",)

    def __init__(self) -> None:
        self.timeout: asyncio.Timeout | None = None


CURRENT_SCOPE: ContextVar[TaskScope | None] = ContextVar("shannon_otel_current_task", default=None)


def task_timed_out() -> bool:
    """Whether the running wave task's own timeout has fired (its CancelledError is that timeout).

    O(1); ``False`` outside a wave task or for a task without a timeout.
    """
    scope = CURRENT_SCOPE.get()
    return scope is not None and scope.timeout is not None and scope.timeout.expired()
