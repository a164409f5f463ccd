"""Hedging: start another attempt if the first is slow; the first success wins, the rest are cancelled."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from .._deadline import timed_out
from .._reraise import INTERRUPTS, raise_as_is
from .._validate import (
    awaitable_from,
    builtin_numbers,
    check_arity,
    check_makes_awaitable,
    check_not_decorated,
    check_number,
    not_callable,
)
from ._call import _HEDGED, _HELD, _Branch, _Call, _Held, rerun
from ._decorated import MisuseError, NotAwaitableError
from ._policy import Instrumented, next_step
from ._types import Chain, Factory, Sleep

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hedge(Instrumented):
    """Run up to ``attempts`` concurrent attempts, starting the next one ``delay`` seconds after the
    previous (or at once when an attempt fails; ``attempts`` >= 1, ``delay`` >= 0; an error of ``sleep(delay)`` is
    raised, the attempts in flight cancelled, as a ``Retry`` raises its sleep's: the errors of attempts that failed
    before it are its ``__context__``). Returns the first
    successful result (of attempts that end in the same step of the event loop, the first launched; of failures
    ending together, the last launched is the one that "failed last") and cancels the others (waiting for them
    to finish: cooperatively, as a ``TaskGroup`` does, so a loser that catches its ``CancelledError`` and goes on
    holds the result until it ends; its
    span records how it really ended). When every attempt fails,
    raises the error of the attempt that failed last, as Polly's hedging returns the last outcome: an
    outer ``Retry(on=...)``, breaker ``on=`` or ``Fallback(on=...)`` matches it as if there were no
    hedge. The earlier attempts' errors stay reachable: that error's ``__context__`` is an
    ``ExceptionGroup`` of them (shown in its traceback; its own previous ``__context__`` moves to the
    group's or, when it has none, the exception the caller is handling when it awaits the hedge in an ``except``
    block does). A single error (one attempt, or one exception object every attempt raised) and an attempt's
    ``BaseException`` keep the ``__context__`` they were raised with, as without the hedge. Each attempt runs in
    its own task (even with ``attempts=1``), in a copy of the caller's
    context: a context variable it sets stays in that task, where the other policies, running ``fn`` in the
    caller's task, leave it set for the caller; ``fn`` must be safe to call concurrently. A ``Retry``
    inside the hedge retries each attempt: the retries of a hedged attempt are attempts of that hedge (spans
    ``attempt N`` naming it in ``shannon.hedge.attempt``), not hedges (``shannon.hedges`` counts the hedged
    attempts launched). A ``Degrade`` inside the hedge counts a degradation (its observers' ``degraded``) only for
    the attempt whose value the hedge returns, told in the caller's task once every attempt has ended (its span event
    stamped when it was served). An
    attempt's ``KeyboardInterrupt`` or ``SystemExit`` cancels the others and is raised in the caller's task,
    itself, as without the hedge (not out of the event loop, as asyncio does for a task's). A
    ``BaseException`` that is not an ``Exception`` is never swallowed, even when a loser raises it while
    being cancelled after another attempt won: it is raised in the caller's task once every attempt has
    ended, in place of the result (a ``KeyboardInterrupt`` / ``SystemExit`` first; several others as a
    ``BaseExceptionGroup``, as a ``TaskGroup`` raises them). Cut off by an expiring :class:`Timeout` around it (or a
    wave's ``task_timeout``), the hedge cancels its attempts, waits for them, and gives what they then give, as the
    Timeout gives what an operation catching its ``CancelledError`` returns or raises: the value of the first launched
    that returned one (late, a success); else, when each raised, the error of the one that failed last; else (an
    attempt ended cancelled) the Timeout's ``TimeoutError``. So does a hedge whose winner's result a loser holds
    past that deadline: the result is returned, late. A cancellation of the caller is raised as it is, even when
    an attempt returned its value in the same loop step (or a loser holds the winner's value), as awaiting a task, a
    ``TaskGroup``, ``staggered_race`` and, from Python 3.12, ``wait_for`` raise it: returning the value would swallow
    the cancellation (3.11's ``wait_for`` did, CPython gh-86296); the attempts are cancelled and waited for. An attempt
    that cancels the task it runs in (``asyncio.current_task().cancel()``, in ``fn`` or a hook's ``attempt_started``)
    ends alone, as under asyncio's ``staggered_race``: the next attempt starts at once; when every attempt ended so,
    the hedge raises that ``CancelledError`` (as ``gather`` does), and when some failed, the last error.
    """

    delay: float
    attempts: int = 2
    sleep: Sleep = asyncio.sleep

    def __post_init__(self) -> None:
        check_not_decorated("Hedge", "delay", self.delay, "a number in [0, inf]", "@Hedge(delay), e.g. @Hedge(0.5)")
        check_number("delay", self.delay, low=0)
        check_number("attempts", self.attempts, low=1, integer=True)
        builtin_numbers(self, "delay", "attempts")
        if not callable(self.sleep):
            raise not_callable("sleep", self.sleep, "an async callable taking seconds")
        check_makes_awaitable("sleep", self.sleep, "an async callable taking seconds")
        check_arity("sleep", self.sleep, 1, "an async callable taking seconds")
        self._setup("hedge")

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        value, held = await self._race(chain, i, fn, call)
        if held is not None:  # only now, every attempt ended: the winner's degradations were served (see _Held)
            held.release()
        return value

    async def _race(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> tuple[T, _Held | None]:
        """The value the hedge returns, and what the attempt that returned it holds (see :class:`_Held`)."""
        # In launch order: of attempts that end in one step, the first launched wins and the last launched's error
        # is raised. Read from asyncio.wait's `done` set, the order was the tasks' hashes (memory addresses), so
        # the same program on the same (virtual-time) loop returned one attempt's value in one run, another's next.
        pending: dict[asyncio.Task[Any], _Held | None] = {}  # each attempt, and the degradations it holds
        errors: list[Exception] = []
        timer: asyncio.Task[Any] | None = None
        stopped: asyncio.Task[Any] | None = None  # the last attempt that ended cancelled by itself

        again: _Call | None = None  # what the later attempts pass down (see rerun)

        def launch() -> None:
            nonlocal again
            context = contextvars.copy_context()
            attempt_call = call
            if pending or errors:
                attempt_call = again = again or rerun(call, self._started.operation)
                if call is not None:
                    context.run(_HEDGED.set, _Branch(call))
            held = None
            if call is not None:
                held = _Held(call)
                context.run(_HELD.set, held)
            # The attempt is started inside the task: one cancelled before it runs leaves no coroutine unawaited.
            pending[asyncio.create_task(_attempt(chain, i, fn, attempt_call), context=context)] = held

        interrupt: BaseException | None = None  # an attempt's KeyboardInterrupt / SystemExit being raised
        raising: BaseException | None = None  # a BaseException that is not an Exception being raised (that one too)
        launched = 1
        launch()
        try:
            while pending:
                if timer is None and launched < self.attempts:
                    timer = asyncio.create_task(_delay(self.sleep, self.delay))
                waiting = [*pending] if timer is None else [*pending, timer]
                try:
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    if not timed_out():
                        raise
                    # Cut off by an expiring Timeout around it (or the wave's task timeout), the hedge gives what its
                    # attempts then give, as that Timeout gives what an operation catching its CancelledError returns or
                    # raises: it raised the cancellation (a TimeoutError), throwing away a late value or error.
                    late = await _late(pending, timer)
                    if late is None:
                        raise
                    if not late[0]:
                        _raise_last([*errors, *late[1]])
                    winner = late[1]
                    return winner.result()[1], pending[winner]
                failed = False
                for task in [task for task in pending if task in done]:
                    held = pending.pop(task)
                    if task.cancelled():
                        # Cancelled by itself (``current_task().cancel()`` in fn or in a hook's attempt_started): the
                        # hedge cancels its attempts only once it is leaving, and its caller's cancellation arrives at
                        # the wait above. That attempt ends alone, as asyncio's staggered_race takes it: the next one
                        # starts at once. Raised here, it cancelled the others and reached a caller nobody cancelled.
                        stopped = task
                        failed = True
                        continue
                    if (error := task.exception()) is not None:
                        raise_as_is(error)  # a BaseException that is not an Exception, as task.result() raised it
                    ok, value = task.result()
                    if ok is None:  # the attempt's KeyboardInterrupt / SystemExit: raised here, as without a hedge
                        interrupt = value
                        raise_as_is(value)
                    if ok:
                        return value, held
                    errors.append(value)
                    failed = True
                fired = False
                if timer is not None and timer in done:  # after the attempts: one that won meanwhile is returned
                    # the sleep's error (a sync sleep's TypeError, naming sleep), as a Retry raises it
                    if (slept := timer.exception()) is not None:
                        _failed_before(slept, errors)
                        raise_as_is(slept)
                    ok, value = timer.result()
                    if ok is None:  # its KeyboardInterrupt / SystemExit: raised here, as an attempt's is
                        interrupt = value
                        raise_as_is(value)
                    fired, timer = True, None
                if launched < self.attempts and (fired or failed):
                    if timer is not None:
                        timer.cancel()
                        timer = None
                    launched += 1
                    launch()
            if not errors and stopped is not None:
                stopped.result()  # every attempt ended cancelled, by itself: its CancelledError, as gather raises it
            _raise_last(errors)
        except BaseException as exc:
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raising = exc
            raise
        finally:
            leftovers = [*pending, *([timer] if timer is not None else [])]
            # Their loop closed: the hedge was abandoned pending with it and the collector is closing it; nothing
            # runs there to cancel or wait for (cancel() raised "Event loop is closed" out of the collector)
            if leftovers and not leftovers[0].get_loop().is_closed():
                for task in leftovers:
                    task.cancel()
                await _ended(leftovers, interrupt, raising)


async def _late(
    pending: dict[asyncio.Task[Any], _Held | None], timer: asyncio.Task[Any] | None,
) -> tuple[bool, Any] | None:
    """Cancel the attempts in flight (and the timer) and wait until they have ended (as :func:`_ended`, which raises
    a cancellation of the caller meanwhile). Then ``(True, task)``, the first launched that returned a value
    anyway; else, when none ended cancelled (each caught its cancellation and raised), ``(False, errors)`` in launch
    order; else ``None``: the cancellation stands. The tasks stay in ``pending``: the hedge's ``finally`` finds
    them ended."""
    tasks = [*pending, *([timer] if timer is not None else [])]
    for task in tasks:
        task.cancel()
    await _ended(tasks, None, None)
    ended = [task for task in pending if not task.cancelled() and task.exception() is None]
    for task in ended:
        if task.result()[0]:
            return True, task
    if ended and len(ended) == len(pending):
        return False, [task.result()[1] for task in ended]
    return None


async def _ended(
    tasks: list[asyncio.Task[Any]], interrupt: BaseException | None, raising: BaseException | None,
) -> None:
    """Wait until every (cancelled) task has ended. A cancellation of the caller meanwhile cancels them
    again and is raised after, itself: awaited by ``gather``, the caller got the attempt's own
    CancelledError instead, without the message of its ``cancel(msg)``. An expiring ``Timeout`` around the hedge
    (or the wave's task timeout) meanwhile cancels them again too, and is not raised: the hedge then returns (or
    raises) what it had, late, as the Timeout returns what an operation holding on to its cancellation returns (a
    winner's value, got before the deadline, was thrown away for a ``TimeoutError`` while a loser held on).

    A ``BaseException`` that is not an ``Exception`` which a task ended with (a loser raising it while being
    cancelled, once another attempt won) is raised, as a ``TaskGroup`` does: it was discarded here and the
    winner's result returned, swallowing it (docs/reliability.md, BaseException). It replaces what the hedge
    was returning or raising, except ``interrupt``, an attempt's ``KeyboardInterrupt`` / ``SystemExit`` the hedge
    is raising: that one goes on, as a ``TaskGroup`` raises a ``KeyboardInterrupt`` / ``SystemExit`` over the rest.

    ``raising`` is the ``BaseException`` that is not an ``Exception`` the hedge is raising (``interrupt``, or a
    BaseException of the user's own an attempt raised): a cancellation arriving meanwhile does not replace it, as it
    does not a ``TaskGroup``'s (its request stays counted in ``cancelling()``). It replaced it: a hedge inside
    another ``Hedge``, cancelled as a loser while it waited here, ended cancelled, and the outer hedge returned its
    winner's value, the attempt's KeyboardInterrupt swallowed.
    """
    cancelled: asyncio.CancelledError | None = None
    while pending := [task for task in tasks if not task.done()]:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            if not timed_out():  # an expiring Timeout around the hedge waits too, and gets what the hedge gives
                cancelled = exc
            for task in pending:
                task.cancel()
    escaped: list[BaseException] = []
    for task in tasks:  # retrieved, as gather(return_exceptions=True) did: no "never retrieved" warning
        if task.cancelled():
            continue
        error = task.exception()
        if error is None:
            ok, error = task.result()
            if ok is not None:  # (None, KeyboardInterrupt / SystemExit): see _attempt
                continue
        if not isinstance(error, Exception):
            escaped.append(error)
    if escaped and interrupt is None:
        interrupts = [error for error in escaped if isinstance(error, INTERRUPTS)]
        if interrupts or len(escaped) == 1:
            raise_as_is((interrupts or escaped)[0])
        raise BaseExceptionGroup("hedged attempts raised while cancelled", escaped)
    if cancelled is not None and raising is None:
        raise cancelled


def _failed_before(error: BaseException, errors: list[Exception]) -> None:
    """The sleep's ``error``, about to be raised: the attempts that failed before it stay reachable as its
    ``__context__`` (the one error, or an ``ExceptionGroup`` of them). Raised outside the ``except`` that took
    them, it had none: their errors were lost without a trace."""
    if not errors or not isinstance(error, Exception) or error.__context__ is not None:
        return
    if any(e is error for e in errors):  # the very object (a sleep re-raising it), never one merely equal (==)
        return
    earlier = errors[0] if len(errors) == 1 else ExceptionGroup("earlier hedged attempts failed", errors)
    object.__setattr__(error, "__context__", earlier)  # past a frozen exception's __setattr__


def _raise_last(errors: list[Exception]) -> NoReturn:
    """Raise the last attempt's error, with the earlier ones as an ``ExceptionGroup`` in its ``__context__``.

    Raised while the group is being handled: a ``raise`` sets ``__context__`` to the exception the caller
    is handling, so a hedge awaited inside an ``except`` block replaced the group (set beforehand) with the
    caller's exception and the earlier errors were lost. The last error's own ``__context__`` becomes the
    group's; when it has none, the caller's exception does (see :func:`raise_as_is`).
    """
    last = errors[-1]
    earlier = [e for e in errors[:-1] if e is not last]
    if not earlier:
        raise_as_is(last)
    group = ExceptionGroup("earlier hedged attempts failed", earlier)
    group.__context__ = last.__context__
    try:
        raise_as_is(group)
    except ExceptionGroup:
        raise last  # noqa: B904 (its own __cause__ stays: only its __context__ becomes the group)


async def _attempt(chain: Chain, i: int, fn: Factory[Any], call: _Call | None) -> tuple[bool | None, Any]:
    """``(True, value)``, ``(False, error)``, or ``(None, KeyboardInterrupt / SystemExit)``: asyncio re-raises
    those two out of the event loop itself when a task raises them (the loop stopped, the hedge's caller got a
    CancelledError at shutdown instead of the user's exception), so the attempt hands them to the hedge, which
    raises them in its caller's task, as an ``await fn()`` without the hedge would."""
    try:
        return True, await next_step(chain, i, fn, call)
    except Exception as exc:
        if isinstance(exc, MisuseError):  # raised through the hedge: another attempt would run it again
            raise
        return False, exc
    except (KeyboardInterrupt, SystemExit) as exc:
        return None, exc


async def _delay(sleep: Sleep, delay: float) -> tuple[bool | None, BaseException | None]:
    """The wait before the next attempt, its ``sleep(delay)`` made inside the task, as an attempt's call is: a
    timer cancelled before it ran (the hedge done first) left that coroutine never awaited (a RuntimeWarning).

    The sleep's error is the task's, raised by the hedge (as a ``Retry`` raises its sleep's): turned into a value, it
    was dropped and taken for the delay having passed, so the next attempt started at once, the error seen nowhere.
    Its ``KeyboardInterrupt`` / ``SystemExit`` is handed to the hedge as ``(None, error)``, as an attempt's is (see
    :func:`_attempt`): raised by the task, asyncio raised it out of the event loop too, so ``asyncio.run`` raised it
    after the caller had handled it."""
    try:
        await awaitable_from("sleep", sleep(delay), NotAwaitableError)
    except (KeyboardInterrupt, SystemExit) as exc:
        return None, exc
    return True, None  # what _ended reads of a task that ended
