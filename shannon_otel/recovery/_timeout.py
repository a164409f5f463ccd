"""Timeout: a cancel scope (``asyncio.timeout``) around the operation, raising ``TimeoutError``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

from .._deadline import POLICY_TIMEOUTS, errors_as_is, scope_timeout
from .._events import TimedOut
from .._validate import builtin_numbers, check_not_decorated, check_number
from ._call import _attempt, _Call, notify
from ._policy import Instrumented, next_step
from ._types import Chain, Factory

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeout(Instrumented):
    """Cut the operation off after ``seconds`` (> 0, finite) and raise the builtin ``TimeoutError``
    (its message names the operation and the limit: ``"operation 'slow-api' timed out after 0.25 s (Timeout policy)"``;
    the operation is its name, the decorated function's or, in a :class:`Pipeline`, the pipeline's, whether or
    not telemetry is on; unnamed, ``"timed out after 0.25 s (Timeout policy)"``).

    Where it sits in a :class:`Pipeline` decides what it bounds: outside a :class:`Retry` it is the
    budget of the whole call (backoff sleeps included), inside it bounds each attempt.
    Around one attempt, its window opens once that attempt's start hooks have run (a hook's time is not the
    operation's); around other policies, the time of the hooks inside counts, as for any enclosing deadline.
    A cancellation from outside is re-raised unchanged, never turned into a timeout.

    The cut is a cancellation (``asyncio.timeout``), so it is cooperative: an operation that catches the
    ``CancelledError`` and goes on holds the Timeout until it ends. If it then returns a value, that value is
    returned (late, and recorded as a success: no result is thrown away); if it raises another error, that
    error propagates as it was raised, not ``TimeoutError`` (on Python 3.13 too, where ``asyncio.timeout`` would
    put a ``TimeoutError`` into its ``__context__`` chain); a ``CancelledError`` of its own subclass is still the
    cancellation, and the ``TimeoutError`` is raised from it (on 3.11 and 3.12 too, as on 3.13). Work the operation
    shields (``asyncio.shield``) does not hold it.
    Nor can it cut synchronous work: a blocking call (``time.sleep``, CPU-bound code, a sync client) holds the
    event loop, so the deadline is noticed at a later ``await`` at the earliest, and an operation that returns
    before one waits returns its value (late, a success). Run such work in ``asyncio.to_thread``: the Timeout
    then stops waiting for it on time (the thread itself runs to its end).
    """

    seconds: float

    def __post_init__(self) -> None:
        check_not_decorated("Timeout", "seconds", self.seconds, "a number in (0, inf)",
                            "@Timeout(seconds), e.g. @Timeout(5)")
        check_number("seconds", self.seconds, low=0, low_open=True,
                     finite="leave the Timeout out for no deadline")
        builtin_numbers(self, "seconds")
        self._setup("timeout")

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        # Around the observed attempt itself (alone, or innermost in a Pipeline), the window opens once the
        # attempt's start hooks have run (_attempt arms it), as a wave's task_timeout opens after task_started:
        # a hook's own time never counted against its own deadline (a 0.2 s attempt_started under Timeout(0.1)
        # timed out an operation that took no time). Around other policies it is theirs that run inside.
        own = call is not None and i == len(chain)
        scope = asyncio.timeout(None if own else self.seconds)
        # Lets what runs inside (an attempt, a fallback, a saga, a call of its own) tell this timeout's
        # cancellation from an outside one, and record it as a timeout.
        box = [scope]
        token = POLICY_TIMEOUTS.set((*POLICY_TIMEOUTS.get(), box))
        try:
            async with errors_as_is(scope):  # the operation's own error as it is, on 3.13 too
                if own:
                    assert call is not None
                    return await _attempt(fn, call, (scope, self.seconds))
                return await next_step(chain, i, fn, call)
        except TimeoutError as exc:
            if scope.expired():
                if scope_timeout(exc):
                    # The scope's own bare TimeoutError (an error the operation raised keeps its message):
                    # the user's traceback and the span's status say what timed out and after how long.
                    exc.args = (self._message(),)
                if call is not None:
                    notify(call, "timed_out", TimedOut(call.operation, self.seconds))
            raise
        finally:
            box.clear()  # for the tasks started inside that outlive it (see POLICY_TIMEOUTS)
            try:
                POLICY_TIMEOUTS.reset(token)
            except ValueError:  # closed from another context (an abandoned coroutine, collected): none to restore
                pass

    def _message(self) -> str:
        # Its own name (the decorated function's, the pipeline's: see Pipeline), never the observed call's
        # operation: that one exists only when a hook watches, and defaults to "timeout" / "pipeline".
        what = f"operation {self.name!r} timed out" if self.name else "timed out"
        return f"{what} after {self.seconds} s (Timeout policy)"
