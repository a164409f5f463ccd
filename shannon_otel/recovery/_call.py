"""The observed call: per-call observer state, each attempt, and the call as one observed operation.

A :class:`_Call` exists only when some hook observes the call; policies pass ``None`` otherwise
(the hot path: it allocates nothing and builds no event).

Every call into an observer is isolated (``shannon_otel._isolation``): a hook that raises is
recorded and skipped, never raised into the call; observers and attempt tokens that are context
managers are entered around the call / the attempt and always exited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .._clock import wall_ns
from .._deadline import timed_out
from .._events import AttemptFinished, CallFinished, CallObserver, CallStarted, Degraded, cut_off
from .._isolation import (
    HOOK_ERRORS,
    Unentered,
    call_void,
    enter,
    finish,
    held_failure,
    hook_failed,
    leave,
    refused,
    start,
)
from .._isolation import notify as _notify
from .._reraise import raise_as_is
from .._telemetry import CallOutcome, Outcome
from .._validate import check_reading
from ._circuit_open import CircuitOpenError
from ._decorated import not_a_factory, not_awaitable, raise_wrong_call, spent

if TYPE_CHECKING:
    from .._events import Hook
    from ._policy import Policy
    from ._types import Chain, Clock, Factory

T = TypeVar("T")
_log = logging.getLogger("shannon_otel")


class _Branch:
    """An extra attempt a Hedge launched for ``call``, set in that attempt's task (``_HEDGED``). Its first try
    reports itself as the hedge (``hedge_started``: counted once in ``shannon.hedges``); a later one, a retry
    of a ``Retry`` inside the hedge, as a try of that hedge (``hedge_retry_started`` with ``first``, the
    hedge's attempt number). Before, every try in the task was a hedge: ``Hedge(Retry(attempts=3))``
    counted three hedges for the one it launched. The call, not a flag: another observed call made
    inside that attempt (the operation calling a policy of its own) inherits the context, and its
    attempts are plain attempts."""

    __slots__ = ("call", "first")

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.first = 0  # the attempt number of the branch's first try, once it started


_HEDGED: ContextVar[_Branch | None] = ContextVar("shannon_otel_hedged", default=None)


class _Held:
    """The degraded results a ``Degrade`` served inside one attempt of a Hedge of ``call`` (set in that attempt's
    task, ``_HELD``): told to the observers by :meth:`release` only when the hedge returns that attempt's value.
    Told at once, a losing attempt's degradation (served to nobody: two attempts ending in one step, or a loser
    whose ``cheaper`` held on to its cancellation) was counted in ``shannon.degradations``, put on the operation
    span (``shannon.degrade.mode`` on a call that returned the winner's own value) and in the RunReport. The call,
    not a flag: a Degrade of another observed call inside the attempt (the operation's own) served its caller."""

    __slots__ = ("call", "events")

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.events: list[Degraded] = []

    def release(self) -> None:
        """Tell the held degradations: the hedge returns this attempt's value (to an enclosing hedge's attempt of the
        same call, which holds them in turn)."""
        for event in self.events:
            degraded(self.call, event)


_HELD: ContextVar[_Held | None] = ContextVar("shannon_otel_held", default=None)


def degraded(call: _Call, event: Degraded) -> None:
    """A ``Degrade`` of ``call`` served a degraded result: told to its observers, or held until the hedge whose
    attempt this is returns it (see :class:`_Held`)."""
    held = _HELD.get()
    if held is not None and held.call is call:
        # stamped now: told once every attempt has ended, later than it happened when a loser held its cancellation
        held.events.append(event if event.time_ns is not None else replace(event, time_ns=wall_ns()))
    else:
        notify(call, "degraded", event)


class _Call:
    """Per-call state of an observed call: its observers (``owners[k]`` made ``observers[k]``; ``hooks``
    are all the hooks of the entry point, told when one fails) and attempt counter."""

    __slots__ = ("attempts", "broken", "clock", "hooks", "ignored", "logged", "observers", "operation", "owners")

    def __init__(
        self, observers: list[CallObserver], owners: list[Hook], hooks: tuple[Hook, ...], operation: str,
        clock: Clock,
    ) -> None:
        self.observers: list[CallObserver] = observers
        self.owners: list[Hook] = owners
        self.hooks: tuple[Hook, ...] = hooks
        self.operation: str = operation
        self.clock: Clock = clock
        self.attempts: int = 0
        self.ignored: BaseException | None = None  # the last error a breaker chose not to count
        self.broken: Exception | None = None  # the clock's first error while the call ran (see _elapsed)
        self.logged = False  # a policy logged its failure of this call's clock (see clock_logged)


def start_call(
    hooks: tuple[Hook, ...], event: CallStarted, clock: Clock, first: CallObserver | None,
) -> _Call | None:
    """Ask the other hooks for an observer of one call; ``None`` when none of them watches it.

    The callers ask ``hooks[0]`` themselves (the hot paths inline, saving a call frame) and pass its
    answer as ``first`` (see :func:`first_failed`): it is never asked twice, even when it answered
    ``None``. A hook that raises here is recorded and does not watch the call.
    """
    if first is not None and refused(first, hooks[0], "call_started", hooks):
        first = None
    observers: list[CallObserver] = [first] if first is not None else []
    owners: list[Hook] = [hooks[0]] if first is not None else []
    for hook in hooks[1:]:
        try:
            try:
                observer = hook.call_started(event)
            except HOOK_ERRORS as exc:
                hook_failed(hook, "call_started", exc, hooks)
                continue
            if observer is None or refused(observer, hook, "call_started", hooks):
                continue
        except BaseException as exc:  # the hook's, or another's in its hook_failed: it propagates, the call never
            ended = CallFinished(event.operation, CallOutcome.FAILURE, 0, 0.0, exc)  # runs: the observers made end it
            _notify(observers[::-1], owners[::-1], hooks, "call_finished", ended)
            raise
        observers.append(observer)
        owners.append(hook)
    return _Call(observers, owners, hooks, event.operation, clock) if observers else None


def rerun(call: _Call | None, operation: str) -> _Call:
    """What the re-runs of a call (a retry's next attempts, a hedge's later ones) pass down the chain: ``call``, or for
    an unobserved call a call state observed by nobody (no observer, no clock read), made once per retried call.

    So each re-run takes :func:`_attempt`, which refuses ``fn`` returning the coroutine an earlier attempt ran (or
    still runs): the check reads ``cr_frame``, which makes a frame object (~0.08 us), too dear for the first
    attempt of the unobserved path, which returns ``fn()`` as it is. Every policy treats a call observed by nobody
    as the unobserved one: its events reach no observer.
    """
    if call is not None:
        return call
    again = _Call([], [], (), operation, _no_clock)
    again.attempts = 1  # the first attempt ran unobserved
    return again


def _no_clock() -> float:
    return 0.0


def _now(call: _Call) -> float | None:
    """``call.clock()``, or None when it raises: the clock only times the call's attempts, so its error is kept in
    ``call.broken`` and logged when the call has ended (:func:`observed`), never in place of the outcome.
    Raised at once, it left the attempt's span open, and the attempt (run, its result lost) counted as failed
    with the clock's error: a ``Retry`` ran the operation again, a breaker counted a failure."""
    try:
        return call.clock()
    except Exception as exc:
        call.broken = call.broken or exc
        return None


def clock_logged(call: _Call | None, clock: Clock) -> None:
    """A policy has logged that ``clock`` failed during ``call`` (its own warning, saying what it did about it): when it
    is the call's clock, the call's own warning (:func:`observed`) is not logged again, so a watched call whose clock
    fails logs one warning, as an unwatched one does. Both were logged: two warnings for one failure of one clock."""
    if call is not None and call.clock == clock:
        call.logged = True


def _elapsed(call: _Call, begin: float | None) -> float:
    """Seconds since ``begin`` (a :func:`_now` reading) on ``call.clock``: 0.0 when a reading failed, or when the
    clock went back (an injected one: never a negative duration)."""
    end = None if begin is None else _now(call)
    return 0.0 if end is None or begin is None else max(0.0, end - begin)


def first_failed(hooks: tuple[Hook, ...], error: Exception) -> CallObserver | None:
    """Record that ``hooks[0].call_started`` raised ``error`` in a policy's inline prologue; returns None.

    The prologue keeps the call inline inside ``try`` (free in 3.11 when nothing raises) rather than
    calling a guarded helper: one more call frame would cost a fifth of the breaker's per-call budget.
    """
    hook_failed(hooks[0], "call_started", error, hooks)
    return None


def notify(call: _Call, method: str, *args: Any) -> None:
    """``method(*args)`` on every observer of ``call``, in start order; one that raises is recorded and skipped."""
    _notify(call.observers, call.owners, call.hooks, method, *args)


async def _attempt(fn: Factory[T], call: _Call, window: tuple[asyncio.Timeout, float] | None = None) -> T:
    """One observed attempt of ``call``; ``window``: the scope of a ``Timeout`` around this attempt alone and its
    seconds, armed once the start hooks have run (their time is not the operation's)."""
    call.attempts += 1
    n = call.attempts
    tokens: list[Any] = []
    outcome = Outcome.SUCCESS
    error: BaseException | None = None
    begin: float | None = None
    try:
        branch = _HEDGED.get()
        if branch is None or branch.call is not call:
            start(call.observers, call.owners, call.hooks, tokens, "attempt_started", n)
        elif branch.first:
            start(call.observers, call.owners, call.hooks, tokens, "hedge_retry_started", n, branch.first)
        else:
            branch.first = n
            start(call.observers, call.owners, call.hooks, tokens, "hedge_started", n)
        if window is not None:
            window[0].reschedule(asyncio.get_running_loop().time() + window[1])
        begin = _now(call)
        try:
            made = fn()
        except TypeError as exc:
            raise_wrong_call(exc)
            raise
        if not inspect.isawaitable(made):
            raise not_awaitable(made)
        if n > 1 and inspect.iscoroutine(made) and (made.cr_frame is None or made.cr_await is not None):
            raise spent(made)  # fn called again returned the coroutine an earlier attempt ran (or still runs)
        return await made
    except asyncio.CancelledError:
        # Delivered by an expiring Timeout policy (of this call or around it), or by the per-task timeout
        # of the wave running it, it is that timeout. Only the recorded outcome says so: it is re-raised.
        outcome = Outcome.TIMEOUT if timed_out() else Outcome.CANCELLATION
        raise
    except BaseException as exc:
        outcome, error = Outcome.FAILURE, exc
        raise
    finally:
        event = AttemptFinished(call.operation, n, outcome, _elapsed(call, begin), error)
        finish(call.observers, call.owners, call.hooks, tokens, "attempt_finished", event)


async def observed(policy: Policy, chain: Chain, i: int, fn: Factory[T], call: _Call) -> T:
    """Run ``policy`` (at ``chain[i-1]``, or alone) as one observed operation.

    Observers that are context managers are entered around it (the OTel one makes the operation span
    current) and exited after ``call_finished``, whatever any observer raises.
    """
    observers, owners, hooks = call.observers, call.owners, call.hooks
    entered: list[Any] = []
    outcome = CallOutcome.SUCCESS
    error: BaseException | None = None
    try:
        begin = call.clock()
        # before anything starts (only where hooks watch: the plain path reads no clock): a datetime or NaN
        # reading failed each attempt's and the call's duration, in place of the user's result or error
        check_reading("clock", begin)
    except Exception as exc:  # call_started made the operation span: ended (never entered), as start_call ends it
        _notify(observers[::-1], owners[::-1], hooks, "call_finished", CallFinished(
            call.operation, CallOutcome.FAILURE, 0, 0.0, exc))
        raise
    try:
        for observer, owner in zip(observers, owners, strict=True):
            entered.append(enter(observer, owner, "call_started", hooks))
        if not callable(fn):  # refused before a policy retries it, falls back or counts it
            raise not_a_factory(fn)
        return await policy.run(chain, i, fn, call)
    except asyncio.CancelledError as exc:
        if timed_out():
            # The wave's per-task timeout, or a Timeout policy around this call, cut it off: recorded
            # like the expiry of one of its own Timeout policies (failure, error.type TimeoutError), yet
            # the cancellation goes on unchanged, uncounted by breakers and never retried.
            outcome, error = CallOutcome.FAILURE, cut_off(exc)
        else:
            outcome = CallOutcome.CANCELLATION
        raise
    except CircuitOpenError as exc:
        outcome, error = CallOutcome.REJECTED, exc
        raise
    except BaseException as exc:
        outcome = CallOutcome.IGNORED if exc is call.ignored else CallOutcome.FAILURE
        error = exc
        raise
    finally:
        duration = _elapsed(call, begin)
        event = CallFinished(call.operation, outcome, call.attempts, duration, error)
        escaped: BaseException | None = None  # an observer's KeyboardInterrupt & co: after the others end
        for k in range(len(observers) - 1, -1, -1):
            try:
                call_void(observers[k].call_finished, "call_finished", event)
            except HOOK_ERRORS as exc:
                escaped = escaped or held_failure(owners[k], "call_finished", exc, hooks)
            except BaseException as exc:
                escaped = escaped or exc
            if k < len(entered) and type(entered[k]) is not Unentered:
                try:
                    leave(observers[k], owners[k], "call_finished", hooks)
                except BaseException as exc:
                    escaped = escaped or exc
        if call.broken is not None and not call.logged:
            # Logged, never raised: the operation has run, and its outcome is what the caller gets. Raised once the
            # call had ended, the clock's error replaced a success (its result lost) or the operation's own error.
            _log.warning("the clock of %r failed while the call ran; durations it could not time are reported as 0",
                         call.operation, exc_info=call.broken)
        if escaped is not None:
            raise_as_is(escaped)
