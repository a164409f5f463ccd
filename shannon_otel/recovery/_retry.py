"""Retry: an immutable policy; the attempt counter and backoff state live in each call's frame."""

from __future__ import annotations

import asyncio
import inspect
import logging
import numbers
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar, cast

from .._clock import made_up, wall_ns
from .._deadline import cancel_base, cancel_requested
from .._events import RetryScheduled
from .._validate import (
    awaitable_from,
    brief,
    builtin_numbers,
    check_arity,
    check_exceptions,
    check_makes_awaitable,
    check_number,
    check_reading,
    check_sync_callable,
    int64_or_none,
    not_callable,
    other_number,
    sync_result,
)
from ._backoff import TESTING, Jitter, JitterName, RandomSource, delay, parse_jitter, uniform_source
from ._call import _Call, clock_logged, first_failed, notify, observed, rerun, start_call
from ._circuit_open import CircuitOpenError
from ._decorated import (
    DecoratedCall,
    MisuseError,
    NotAwaitableError,
    NotSyncError,
    not_a_factory,
    not_awaitable,
    not_entered,
    wrong_call,
)
from ._policy import Instrumented, next_step
from ._types import END, Chain, Factory, Sleep

T = TypeVar("T")
_log = logging.getLogger("shannon_otel")
P = ParamSpec("P")
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
DelayHook = Callable[[BaseException, int], float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry(Instrumented):
    """Call again after a failure, with exponential backoff and jitter.

    ``attempts``: maximum attempts including the first (>= 1). ``budget_s``: maximum total seconds
    (> 0) from the first attempt's start; a retry whose delay would end past it is not started (a
    running attempt is never cut short: put a :class:`Timeout` around the retry for that). A ``clock`` reading
    that fails between attempts (raises, NaN, an infinity) ends the retrying: the budget cannot be checked, so the
    last attempt's error is raised (never the clock's) and the clock's error is logged (``shannon_otel``, warning).
    ``timeout`` is its deprecated old name (DeprecationWarning; removed in the next release).
    ``initial``/``maximum``/``multiplier``: the backoff ``min(maximum, initial * multiplier**(n-1))``
    after failed attempt ``n``, randomised by ``jitter`` (finite: ``initial`` >= 0, ``maximum`` >=
    ``initial``, ``multiplier`` >= 1). ``on``: exception types to retry, or a
    predicate; only ``Exception`` subclasses are ever retried (cancellation never is, nor an error raised in its
    place while the task is being cancelled: docs/architecture.md); a returned value is never retried.
    A :class:`CircuitOpenError` (a breaker rejecting the call) is not retried unless asked: list it
    (or a subclass) in ``on``, let the ``on`` predicate accept it, or set ``wait_retry_after=True``,
    which retries it (whatever ``on`` says) after waiting the breaker's ``retry_after_s`` (its
    remaining reset timeout, capped at ``maximum`` like every wait: a 30 s reset timeout and the default
    ``maximum=10`` is rejected again after 10 s; the backoff when it has none, half-open or forced
    open) instead of the backoff: a sleep ending up to 5 ms short of that wait on the retry's ``clock`` (uvloop's
    millisecond timers) is made up, so the breaker, on the same clock, admits the retry.
    Retrying a rejection at backoff pace is a retry storm against the breaker.
    ``next_delay(error, attempt)`` may return the delay before the next attempt (e.g. from a
    Retry-After value) or ``None`` to use the backoff; its delay is capped at ``maximum`` (so an
    ``inf`` or huge Retry-After never sleeps forever) and counts against ``budget_s`` like any
    other (any real number, numpy's too, is slept as a float); NaN, a negative number or a non-number
    raises ``ValueError``/``TypeError`` naming ``next_delay`` (chained to the attempt's error) instead of
    retrying (a rejection's ``retry_after_s`` likewise, naming it). ``sleep`` and ``random`` (a
    ``random.Random`` or a callable returning a number in ``[0, 1]``) are injectable for deterministic tests.
    ``sleep(seconds)`` is awaited once per wait (what it returns is ignored; one returning early only makes the next
    attempt come sooner: ``attempts`` still bounds them). An error it raises is raised in place of retrying, with the
    last attempt's error as its ``__context__`` (a sync ``sleep``: ``NotAwaitableError`` naming ``sleep``); a
    cancellation while it waits ends the call at once.

    Every call keeps its own attempt counter and previous delay: concurrent calls share nothing.
    While :func:`shannon_otel.testing.set_testing` is on, backoff waits are zero (and attempts capped
    if it says so); this is read on the retry path only.
    """

    attempts: int = 3
    budget_s: float | None = None
    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter | JitterName = Jitter.FULL
    on: RetryOn = Exception
    next_delay: DelayHook | None = None
    wait_retry_after: bool = False
    sleep: Sleep = asyncio.sleep
    random: RandomSource | None = field(default=None, compare=False)
    _types: tuple[type[BaseException], ...] = field(init=False, repr=False, compare=False)
    _predicate: Callable[[BaseException], bool] | None = field(init=False, repr=False, compare=False)
    _rand: Callable[[], float] = field(init=False, repr=False, compare=False)
    _open: bool = field(init=False, repr=False, compare=False)  # CircuitOpenError is retryable
    timeout: float | None = field(default=None, repr=False, compare=False)  # deprecated: budget_s

    def __post_init__(self) -> None:
        if self.timeout is not None:
            warnings.warn(
                "Retry(timeout=...) is deprecated: it is the retry's total budget, now called budget_s "
                "(a Timeout policy cuts attempts short)", DeprecationWarning, stacklevel=3,
            )
            if self.budget_s is not None:
                raise TypeError("pass budget_s only (timeout is its deprecated old name)")
            check_number("timeout", self.timeout, low=0, low_open=True)
            object.__setattr__(self, "budget_s", self.timeout)
            object.__setattr__(self, "timeout", None)
        check_number("attempts", self.attempts, low=1, integer=True)
        check_number("budget_s", self.budget_s, low=0, low_open=True, allow_none=True)
        # maximum caps every wait (an inf Retry-After too): an infinite one would let a retry sleep forever
        finite = "maximum caps every backoff wait"
        check_number("initial", self.initial, low=0, finite=finite)
        check_number("maximum", self.maximum, low=0, finite=finite)
        check_number("multiplier", self.multiplier, low=1, finite=finite)
        if self.maximum < self.initial:
            raise ValueError(f"maximum must be >= initial ({self.initial}), got {self.maximum!r}")
        builtin_numbers(self, "attempts", "budget_s", "initial", "maximum", "multiplier")
        object.__setattr__(self, "jitter", parse_jitter(self.jitter))
        listed = isinstance(self.on, Iterable) and not isinstance(self.on, str | bytes) and not callable(self.on)
        if isinstance(self.on, type | tuple) or listed:  # a list of types: check_exceptions says to pass a tuple
            types = check_exceptions("on", self.on, handled=True)
            object.__setattr__(self, "_types", types)
            object.__setattr__(self, "_predicate", None)
            asked = any(issubclass(t, CircuitOpenError) for t in types)
        elif callable(self.on):
            check_sync_callable("on", self.on, "exception types or a predicate (error) -> bool", takes=1)
            object.__setattr__(self, "_types", (Exception,))
            object.__setattr__(self, "_predicate", self.on)
            asked = True  # the predicate sees the CircuitOpenError and decides
        else:
            raise not_callable("on", self.on, "exception types or a predicate")
        if not isinstance(self.wait_retry_after, bool):
            raise TypeError(f"wait_retry_after must be a bool, got {self.wait_retry_after!r}")
        object.__setattr__(self, "_open", asked or self.wait_retry_after)
        check_sync_callable("next_delay", self.next_delay, "a callable (error, attempt) -> seconds | None",
                            allow_none=True, takes=2)
        if not callable(self.sleep):
            raise not_callable("sleep", self.sleep, "an async callable taking seconds")
        check_makes_awaitable("sleep", self.sleep, "an async callable taking seconds")
        check_arity("sleep", self.sleep, 1, "an async callable taking seconds")
        object.__setattr__(self, "_rand", uniform_source(self.random))
        self._setup("retry")

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # The hot path: first attempt inline, no clock read unless a total budget is set.
        if args or kwargs:
            fn = DecoratedCall(fn, *args, **kwargs)
        hooks = self._hooks
        if hooks:
            try:
                first = hooks[0].call_started(self._started)
            except Exception as exc:
                first = first_failed(hooks, exc)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, self._started, self.clock, first)
                if call is not None:
                    return await observed(self, END, 0, fn, call)
        start = self.clock() if self.budget_s is not None else 0.0
        base = cancel_base()  # a count the task holds already (a failed TaskGroup's, 3.11 / 3.12) is not this call's
        made: object = self  # what fn() returned, once it has returned
        try:
            made = fn()  # type: ignore[call-arg]
            return await made
        except Exception as exc:
            if not callable(fn):  # checked on the error path only: the success path is budgeted
                raise not_a_factory(fn) from None
            if made is not self and not inspect.isawaitable(made):
                raise not_awaitable(made) from None
            if made is self and type(exc) is TypeError and not_entered(exc):  # fn() itself: its arguments
                raise wrong_call(exc) from exc
            if not self._retryable(exc, base):
                raise
            error = exc
        return await self._resume(END, 0, fn, None, error, start, base)

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        start = self.clock() if self.budget_s is not None else 0.0
        base = cancel_base()
        try:
            return await next_step(chain, i, fn, call)
        except Exception as exc:
            if not self._retryable(exc, base):
                raise
            error = exc
        return await self._resume(chain, i, fn, call, error, start, base)

    def _retryable(self, error: Exception, base: int) -> bool:
        """Whether ``error`` is retried. ``base``: the task's cancellation count as the call began (cancel_base): only
        a request made since makes an error raised while a ``CancelledError`` was handled the caller's cancellation's
        stand-in. Counting from 0, a count left before the call (a failed TaskGroup on 3.11 / 3.12, a swallowed
        cancel) made an operation error chained to a task the operation had cancelled itself never retried."""
        if isinstance(error, MisuseError):  # a programming error: running the sync function again changes nothing
            return False
        if isinstance(error, CircuitOpenError):
            if not self._open:
                return False
            if self.wait_retry_after:
                return not cancel_requested(error, since=base)
        if not isinstance(error, self._types):
            return False
        if self._predicate is not None and not sync_result("on", self._predicate(error), NotSyncError):
            return False
        return not cancel_requested(error, since=base)  # the error stands in for a cancellation (see cancel_requested)

    async def _resume(
        self, chain: Chain, i: int, fn: Factory[T], call: _Call | None, error: Exception, start: float, base: int,
    ) -> T:
        attempt = 1
        previous = self.initial
        again = rerun(call, self._started.operation)
        while True:
            step = self._schedule(error, attempt, previous, start, call)
            if step is None:
                context = error.__context__
                try:
                    raise error
                finally:  # a raise sets __context__ to what the caller is handling (awaited in an `except`):
                    # the error keeps its own (its cause, a hedge's earlier errors). Set past the class's
                    # __setattr__, as the raise sets it: a frozen dataclass exception's refuses it (its
                    # FrozenInstanceError replaced the user's error, and no outer policy recognised that).
                    object.__setattr__(error, "__context__", context)
            wait, start, exact, scheduled = step
            handling = sys.exception()  # the caller's, when it awaits this retry in an `except` block
            try:
                await self._wait(wait, exact)
            except Exception as exc:
                # The sleep's error is raised (a sync sleep's NotAwaitableError names it); the attempt's error stays
                # reachable as its __context__. Awaited outside the `except` that caught it, the sleep's error had
                # none (or the caller's exception): the operation's error was lost without a trace.
                if exc is not error and (exc.__context__ is None or exc.__context__ is handling):
                    object.__setattr__(exc, "__context__", error)  # past a frozen exception's __setattr__
                raise
            if scheduled is not None and call is not None:
                # Told as the retry runs, its wait over (stamped when scheduled): told before the wait, a retry whose
                # wait was cancelled (a losing hedged attempt, the caller's cancellation, a Timeout around it) was
                # counted in shannon.retry.delay, the span events and the RunReport's retries, yet never ran.
                notify(call, "retry_scheduled", scheduled)
            attempt += 1
            previous = wait
            try:
                return await next_step(chain, i, fn, again)
            except Exception as exc:
                if not self._retryable(exc, base):
                    raise
                error = exc

    async def _wait(self, wait: float, exact: bool) -> None:
        """Sleep ``wait`` seconds before the next attempt. ``exact``: the wait is a breaker's ``retry_after_s``, which
        admits the call only once it has passed on the clock, so a sleep ending just short of it on this Retry's clock
        (an early timer: see ``_clock.made_up``) is made up; the breaker rejected the retry again (on uvloop one wait
        in eight, and with the default ``attempts=3`` one call in twenty got a ``CircuitOpenError``). A clock reading
        that fails is left to the code that reads it next."""
        if not exact:
            await awaitable_from("sleep", self.sleep(wait), NotAwaitableError)
            return
        before = self._reading()
        await awaitable_from("sleep", self.sleep(wait), NotAwaitableError)
        if before is not None:
            await made_up(self._reading, self._sleep_for, before, before + wait)

    def _sleep_for(self, seconds: float) -> Awaitable[None]:
        return cast("Awaitable[None]", awaitable_from("sleep", self.sleep(seconds), NotAwaitableError))

    def _reading(self) -> float | None:
        try:
            now = self.clock()
            check_reading("clock", now)
        except Exception:
            return None
        return now

    def _schedule(
        self, error: Exception, attempt: int, previous: float, start: float, call: _Call | None,
    ) -> tuple[float, float, bool, RetryScheduled | None] | None:
        """The delay before the next attempt, the budget's start from now on (``start``, unless the clock went
        back), whether the delay is a breaker's ``retry_after_s`` (see :meth:`_wait`) and the event to tell once the
        wait is over (None: unobserved), or ``None`` to give up and re-raise ``error``."""
        testing = TESTING.on
        limit = self.attempts if not testing or TESTING.attempts is None else min(self.attempts, TESTING.attempts)
        if attempt >= limit:
            return None
        wait = None
        source = "next_delay must return"  # what said how long to wait, named when its value is refused
        if self.next_delay is not None:
            wait = sync_result("next_delay", self.next_delay(error, attempt), NotSyncError)
        exact = False
        if wait is None and self.wait_retry_after and isinstance(error, CircuitOpenError):
            wait = error.retry_after_s  # None (half-open, forced open): the backoff below
            exact = wait is not None
            source = "wait_retry_after needs the CircuitOpenError's retry_after_s in"
        if wait is None:
            wait = delay(self.jitter, attempt, previous, self.initial, self.maximum,  # type: ignore[arg-type]
                         self.multiplier, self._rand)
        else:
            # any real number (a numpy one, a Fraction), slept and reported as a float
            if isinstance(wait, bool) or not isinstance(wait, numbers.Real):
                raise TypeError(
                    f"{source} seconds (a real number) or None{other_number(wait)}, got {brief(wait)}",
                ) from error
            seconds = cast("float", wait)
            if not seconds >= 0:
                raise ValueError(f"{source} seconds >= 0 or None, got {brief(wait)}") from error
            # an inf/huge Retry-After (10**400 too: no float holds it) is capped, never slept forever; a float
            # either way (maximum=60, an int, was slept and reported as one: an OTLP int shannon.retry.delay);
            # + 0.0: a -0.0 (a Retry-After of "-0", max(-0.0, 0.0)) was reported and logged as "in -0.00 s"
            wait = float(self.maximum) if seconds > self.maximum else float(seconds) + 0.0
        if testing:
            wait, exact = 0.0, False
        if self.budget_s is not None:
            try:
                now = self.clock()
                check_reading("clock", now)
            except Exception as exc:
                # The operation has run: its error is what the caller gets, never the clock's (raised in its place).
                # A budget that cannot be checked is never overrun: no more attempts.
                _log.warning("the clock of retry %r failed between attempts: budget_s cannot be checked, so no more "
                             "attempts are made and the last attempt's error is raised", self._started.operation,
                             exc_info=exc)
                clock_logged(call, self.clock)  # the watched call's own warning is not logged again
                return None
            if now < start:  # the clock went back (an injected wall clock stepped): the budget counts from here,
                start = now  # not the step too (a day back retried for a day, a budget of 10 s)
            if now - start + wait > self.budget_s:
                return None
        event = None
        if call is not None and call.observers:
            # attempts=10**400 (unbounded) made every retry's log record a field OTLP cannot encode
            event = RetryScheduled(call.operation, attempt, wait, error, int64_or_none(limit), wall_ns())
        return wait, start, exact, event


retry = Retry
