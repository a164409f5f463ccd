"""The deadline scopes around the running code: read by the recovery policies and the saga, set by the
executor (the wave task's timeout) and the ``Timeout`` policy.

A neutral module so that neither package imports the other: the executor stores the per-task
``asyncio.timeout`` scope here, the ``Timeout`` policy the scope it puts around what it bounds, and a
policy, an attempt or a saga asks :func:`timed_out` to tell a timeout's ``CancelledError`` from a real
cancellation (it records ``timeout`` as the outcome, and still re-raises the cancellation unchanged).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

__all__ = ["CURRENT_SCOPE", "POLICY_TIMEOUTS", "TaskScope", "cancel_requested", "task_timed_out", "timed_out"]


class TaskScope:
    """What a policy may know of the wave task running it: its timeout scope, if it has one.

    The executor keeps one per worker and reuses it task after task (``timeout`` is reset for each),
    so a task costs no ContextVar write; its own slot type extends this one.
    """

    __slots__ = ("ended", "timeout")

    def __init__(self) -> None:
        self.timeout: asyncio.Timeout | None = None
        self.ended = False  # the task has ended: work it left running (a background task) is no longer in it


CURRENT_SCOPE: ContextVar[TaskScope | None] = ContextVar("shannon_otel_current_task", default=None)


def task_timed_out() -> bool:
    """Whether the running wave task's own timeout has fired (its CancelledError is that timeout).

    O(1); ``False`` outside a wave task or for a task without a timeout.
    """
    scope = CURRENT_SCOPE.get()
    return scope is not None and scope.timeout is not None and scope.timeout.expired() and not scope.ended


# The scopes of the Timeout policies around the running code, innermost last: each policy adds its own
# around what it bounds and takes it off after, so only enclosing scopes are ever seen (tasks started
# inside, such as a hedge's attempts, inherit them like any context). Each in a box the policy empties as it
# leaves the scope: a task started inside that outlives it (work left running in the background) inherited the
# expired scope, and its own cancellation, long after, was recorded as that timeout.
POLICY_TIMEOUTS: ContextVar[tuple[list[asyncio.Timeout], ...]] = ContextVar("shannon_otel_policy_timeouts", default=())


def timed_out() -> bool:
    """Whether a cancellation of the running code is a timeout: the wave task's own timeout, or that of
    a ``Timeout`` policy around it, has fired, and nothing else cancelled the task too (each expired scope
    cancelled it once; a request more, say fail-fast or a cancelled wave at the same moment, makes it a
    cancellation, as ``asyncio.timeout`` and the wave task then see it). O(enclosing Timeout policies)."""
    expired = task_timed_out() + sum(box[0].expired() for box in POLICY_TIMEOUTS.get() if box)
    if not expired:
        return False
    task = asyncio.current_task()
    return task is None or task.cancelling() <= expired


def cancel_requested() -> bool:
    """Whether the running task is being cancelled: a cancellation was requested of it and not taken back
    (``Task.cancelling()``; an ``asyncio.timeout`` or a ``Timeout`` policy that expired inside what is running
    takes its own back when it is left, so a timed-out attempt is not one).

    Asked by a policy about to act on an error (retry, fall back, degrade), on that path only: the error may be
    what the operation raised in place of the ``CancelledError`` (a ``finally`` or an ``except BaseException``
    that raised while it was cancelled). Acting on it lost the cancellation: a ``Timeout`` around a retry, a
    wave's ``task_timeout``, ``task.cancel()`` waited for every retry and backoff (attempts=5: 56 s, not 1 s), a
    fallback or degradation ran and its result was returned to a caller that had been cancelled.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
