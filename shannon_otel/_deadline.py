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
from types import TracebackType

__all__ = [
    "CURRENT_SCOPE", "POLICY_TIMEOUTS", "TaskScope", "cancel_base", "cancel_requested", "errors_as_is",
    "task_timed_out", "timed_out",
]


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


# The scopes of the Timeout policies around the running code, innermost last (and a saga's compensation_timeout_s
# around a compensation): each policy adds its own around what it bounds and takes it off after, so only enclosing
# scopes are ever seen (tasks started inside, such as a hedge's attempts, inherit them like any context). Each in a
# box the policy empties as it
# leaves the scope: a task started inside that outlives it (work left running in the background) inherited the
# expired scope, and its own cancellation, long after, was recorded as that timeout.
POLICY_TIMEOUTS: ContextVar[tuple[list[asyncio.Timeout], ...]] = ContextVar("shannon_otel_policy_timeouts", default=())


def timed_out() -> bool:
    """Whether a cancellation of the running code is a timeout: the wave task's own timeout, or that of
    a ``Timeout`` policy around it, has fired, and nothing else cancelled the task too (each expired scope
    cancelled it once; a request more, say fail-fast or a cancelled wave at the same moment, makes it a
    cancellation, as ``asyncio.timeout`` and the wave task then see it). Requests are counted from the count the
    task had when the outermost expired scope was entered, as ``asyncio.timeout`` counts them (3.11.3+): one left
    before by a caught TaskGroup failure on 3.11 / 3.12 made every timeout a cancellation (not retried, labelled
    ``cancellation``). O(enclosing Timeout policies)."""
    scope = CURRENT_SCOPE.get()
    expired = [box[0] for box in POLICY_TIMEOUTS.get() if box and box[0].expired()]
    if scope is not None and scope.timeout is not None and scope.timeout.expired() and not scope.ended:
        expired.append(scope.timeout)
    if not expired:
        return False
    task = asyncio.current_task()
    # asyncio.Timeout's own private count (absent before 3.11.3: counted from 0 then, as asyncio did), of the task
    # that entered it: a task started inside (a hedge's attempt) inherits the scope and counts from 0
    before = min(getattr(t, "_cancelling", 0) if getattr(t, "_task", None) is task else 0 for t in expired)
    return task is None or task.cancelling() <= before + len(expired)


def cancel_base() -> int:
    """The running task's cancellation requests already delivered and never taken back (0 outside a task or a
    running loop), read by a block that must later tell a cancellation of itself from a count it found on entry.
    O(1).

    Such counts outlive what made them: a ``TaskGroup`` whose child failed leaves its request on the task that
    awaited it before Python 3.13 (CPython gh-116720), and code that caught a ``CancelledError`` and went on
    leaves its own. A request not delivered yet (``cancel()`` of a task about to run) lands inside the block: it
    is the block's.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return 0
    if task is None:
        return 0
    count = task.cancelling()
    return count and count - bool(getattr(task, "_must_cancel", False))


def cancel_requested(error: BaseException, since: int = 0) -> bool:
    """Whether ``error`` stands in for a cancellation of the running task: a cancellation was requested of it and
    not taken back (``Task.cancelling()``; an ``asyncio.timeout`` or a ``Timeout`` policy that expired inside what
    is running takes its own back when it is left, so a timed-out attempt is not one), and ``error`` was raised
    while a ``CancelledError`` was being handled (its ``__context__`` / ``__cause__`` chain, or an exception group's
    members, hold one).

    Asked by a policy about to act on an error (retry, fall back, degrade), on that path only: the error may be
    what the operation raised in place of the ``CancelledError`` (a ``finally`` or an ``except BaseException``
    that raised while it was cancelled). Acting on it lost the cancellation: a ``Timeout`` around a retry, a
    wave's ``task_timeout``, ``task.cancel()`` waited for every retry and backoff (attempts=5: 56 s, not 1 s), a
    fallback or degradation ran and its result was returned to a caller that had been cancelled.

    The chain is asked too because ``cancelling()`` alone is not enough on Python 3.11 and 3.12: a
    ``TaskGroup`` whose child failed while the task waited in its ``async with`` leaves the count at 1 after the
    user caught the group's error (fixed in 3.13), and every later error of that task read as a cancellation:
    a ``Retry`` made one attempt, a ``Fallback`` served nothing.

    ``since``: the task's count when the code that raised ``error`` began (:func:`cancel_base`): as a policy's call
    began (the operation's error), or as a fallback or cheaper began (its own): only a request made since then is its
    cancellation. A chain holding a ``CancelledError`` is no proof alone: code that awaited a task it had cancelled
    itself raised from that, and a count left before the call (see :func:`cancel_base`) is no request of this one.

    ``False`` with no running asyncio loop (a policy's coroutine driven by hand, ``coro.send(None)``, or by another
    event loop library): no asyncio task, so none was cancelled, as :func:`cancel_base` reads 0 there. It raised
    ``RuntimeError("no running event loop")`` in place of the operation's error (a ``Fallback`` or ``Degrade`` served
    nothing, a ``Retry(attempts=1)`` lost the error it re-raises).
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return False
    return task is not None and task.cancelling() > since and _raised_while_cancelled(error)


def scope_timeout(error: BaseException) -> bool:
    """Whether ``error`` is an ``asyncio.timeout`` scope's own ``TimeoutError``: exactly that class, bare, raised
    from the cancellation the scope took back. Only that one may be given a message saying what timed out; a
    ``TimeoutError`` subclass or one with arguments is the user's own, raised as it is (a frozen one refused the
    message, and the caller got a ``FrozenInstanceError``)."""
    return type(error) is TimeoutError and not error.args and isinstance(error.__cause__, asyncio.CancelledError)


class errors_as_is:  # noqa: N801 (used as a context manager, like the scope it wraps)
    """``async with errors_as_is(scope):`` for ``async with scope:`` (an ``asyncio.timeout`` around the user's code):
    an error other than ``CancelledError`` leaving it once it has expired (the code swallowed the cancellation and
    raised its own) reaches the caller as it was raised, on every Python.

    From Python 3.13 (CPython gh-96037) asyncio walks such an error's ``__context__`` chain to put a
    ``TimeoutError`` in it: with no cycle check (a chain the user's code made cyclic looped for good, the event loop
    held) and through the class's ``__setattr__`` (a frozen dataclass exception raised ``FrozenInstanceError``, the
    user's error lost). The scope is told it was left without one, which is all it does differently then (it takes
    its cancellation back either way), so the error propagates unchanged, as on 3.11 and 3.12. Everything else
    (the scope's own ``TimeoutError``, a cancellation, a scope not expired) is the scope's to handle as usual.

    A ``CancelledError`` of a subclass (the code caught the cancellation and raised its own kind, as aiorpcX's
    ``TaskTimeout`` is) is a cancellation, as the scope of 3.13 takes it (CPython gh-113848): once the scope has
    expired, and nothing else cancelled the task, the caller gets the scope's ``TimeoutError`` raised from it, on
    every Python. The scopes of 3.11 and 3.12 took only ``CancelledError`` itself: the subclass reached a caller
    nobody had cancelled, recorded as a ``cancellation`` (the wave task, the operation) where 3.13 recorded a timeout.
    """

    __slots__ = ("_scope",)

    def __init__(self, scope: asyncio.Timeout) -> None:
        self._scope = scope

    async def __aenter__(self) -> asyncio.Timeout:
        return await self._scope.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None,
    ) -> None:  # never suppresses: asyncio's scope raises its TimeoutError or lets the error go
        if isinstance(error, asyncio.CancelledError):  # the scope of 3.11 / 3.12 takes the class itself only
            await self._scope.__aexit__(asyncio.CancelledError, error, tb)
        elif error is not None and self._scope.expired():
            await self._scope.__aexit__(None, None, None)  # the error then propagates as it is
        else:
            await self._scope.__aexit__(kind, error, tb)


def _raised_while_cancelled(error: BaseException) -> bool:
    """Whether a ``CancelledError`` is in ``error``'s cause/context chain or its group's members (bounded walk:
    chains may be long or, through user code, cyclic), short of an expired timeout's ``TimeoutError``: asyncio
    raised that one from the cancellation it took back, so it found no other request."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo and len(seen) < 256:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, asyncio.CancelledError):
            return True
        if isinstance(exc, TimeoutError) and isinstance(exc.__cause__, asyncio.CancelledError):
            continue  # an expired timeout's own (asyncio.timeout raises it from its CancelledError): no stand-in
        if isinstance(exc, BaseExceptionGroup):
            todo.extend(exc.exceptions)
        todo.extend(linked for linked in (exc.__cause__, exc.__context__) if linked is not None)
    return False
