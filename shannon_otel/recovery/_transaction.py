"""One run of a :class:`~._saga.Saga`: its steps, the rollback of the completed ones newest first,
each compensation shielded from cancellation and bounded by ``compensation_timeout_s``, and the
observers of the run (see ``_saga`` for the contract)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from .._deadline import POLICY_TIMEOUTS, errors_as_is, scope_timeout, timed_out
from .._events import CompensationFinished, SagaFinished, SagaObserver, SagaStarted
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
from .._reraise import graver, outranks, raise_as_is
from .._telemetry import Outcome
from .._validate import brief, check_reading, plain
from ._decorated import MisuseError, MisuseValueError
from ._saga_types import SagaError, SagaResult, _awaited, _check_step, is_reused, not_async, reused

if TYPE_CHECKING:
    from .._events import Hook
    from ._saga import Saga

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
_log = logging.getLogger("shannon_otel")


def _misuse_on_bad_arguments(method: Callable[P, R]) -> Callable[P, R]:
    """``method`` with a call its signature cannot bind (too many positional arguments, one missing, an unknown
    keyword) refused as a ``MisuseError``: Python's own TypeError, raised in the block, became a SagaError, which a
    ``Retry`` around the saga retried, running every step before it again (``tx.step("ship", ship, refund)``, whose
    ``compensate`` is keyword-only as ``Step``'s is not). Checked on the error path only: a good call costs nothing."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except TypeError as exc:
            try:
                signature.bind(*args, **kwargs)
            except TypeError:
                raise MisuseError(
                    f"tx.step() takes (name, action, *, compensate=None): {exc}; pass the compensation by keyword, "
                    "tx.step(name, action, compensate=undo)"
                ) from None
            raise
    return checked


def _kept(
    first: asyncio.CancelledError | None, then: asyncio.CancelledError | None,
) -> asyncio.CancelledError | None:
    """Of two cancellations caught while the steps settle and the rollback runs, the one raised after it:
    the first, unless only the later one carries a message. A timeout's is bare; the caller's
    ``cancel(msg)`` that came before or after it must reach the caller with its message (the latest
    caught was raised: a Timeout firing during the rollback replaced the caller's cancellation)."""
    if first is None or (then is not None and not first.args and then.args):
        return then
    return first


def _off_its_loop(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether the code runs outside ``loop`` (the one the saga was entered on): no loop running, or another."""
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True


def _cut_off(names: list[str], unawaited: MisuseError | None) -> MisuseError:
    """The ``MisuseError`` of a block that ended normally while the steps ``names`` still ran in other tasks (a
    ``create_task(tx.step(...))`` never awaited): they were cancelled, and the saga fails as for a step never awaited
    (``unawaited``, whose message comes first if there is one). Reported as a success, the saga hid a step cut off
    midway, its side effects perhaps half made, and kept the completed steps in effect."""
    count = len(names)
    listed = ", ".join(brief(name) for name in names)
    message = (
        f"{'step' if count == 1 else 'steps'} {listed} {'was' if count == 1 else 'were'} still running when the "
        f"saga's block ended: await every step inside the block (`await tx.step(...)`, a gather or a TaskGroup "
        f"awaiting it); {'it was' if count == 1 else 'they were'} cancelled, and the saga failed"
    )
    return MisuseError(message if unawaited is None else f"{unawaited}; {message}")


def _outside() -> RuntimeError:
    return RuntimeError(
        "tx.step() runs only inside `async with saga.begin() as tx:` (outside it the step could never be compensated)"
    )


class Transaction:
    """One run of a :class:`Saga`; use it as ``async with``.

    Steps may run concurrently inside the block (``asyncio.gather``, a ``TaskGroup``). A step still
    running in another task when the block ends (a gathered step whose sibling failed, one in a task never
    awaited) is cancelled and waited for first: the rollback sees every step that completed, and no step
    completes after the saga has ended. If the block ended normally, that is a misuse, as a step never
    started is: the completed steps are rolled back and a ``MisuseError`` naming the step cut off is raised.

    Observers are isolated: one that raises is recorded and skipped;
    an observer that is a context manager is entered in ``__aenter__`` and exited in ``__aexit__``.
    """

    __slots__ = (
        "_done", "_entered", "_latest", "_loop", "_made", "_observers", "_open", "_owners", "_running", "_saga",
        "_unstarted", "result",
    )

    def __init__(self, saga: Saga) -> None:
        self._saga = saga
        self._done: list[tuple[str, Any, Callable[[Any], Awaitable[Any]] | None]] = []
        self._observers: list[SagaObserver] = []
        self._owners: list[Hook] = []
        self._entered: list[Any] = []
        # steps in flight: their task and name
        self._running: dict[asyncio.Future[None], tuple[asyncio.Task[Any] | None, str]] = {}
        # The coroutines tx.step() made that have not started yet (keyed by their number in the order made, which each
        # pops as it starts): one left when the block ends was never awaited (see _unawaited).
        self._unstarted: dict[int, tuple[object, Coroutine[Any, Any, Any]]] = {}
        self._made = 0  # steps tx.step() made so far: the next one's number
        self._latest = -1  # the number of the latest-made step that started (-1: none)
        self._open: bool | None = None  # None: not entered yet; True: inside `async with`; False: exited
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it was entered on
        self.result: SagaResult | None = None

    async def __aenter__(self) -> Transaction:
        if self._open is not None:
            raise RuntimeError("a Transaction is entered once: call saga.begin() for a new one")
        # Before any step runs: a clock not reading seconds (``clock=datetime.now``) raised only in the rollback.
        check_reading("clock", self._saga.clock())
        self._loop = asyncio.get_running_loop()
        self._open = True
        hooks = self._saga._hooks
        if hooks:
            event = SagaStarted(self._saga.name)
            for hook in hooks:
                try:
                    try:
                        observer = hook.saga_started(event)
                    except HOOK_ERRORS as exc:
                        hook_failed(hook, "saga_started", exc, hooks)
                        continue
                    if observer is None or refused(observer, hook, "saga_started", hooks):
                        continue
                except BaseException:  # the hook's, or another's in its hook_failed: it propagates, the saga never
                    self._abandon()    # runs: the observers made end it
                    raise
                self._observers.append(observer)
                self._owners.append(hook)
                try:
                    self._entered.append(enter(observer, hook, "saga_started", hooks))
                except BaseException:  # from its __enter__: not entered, so never exited
                    self._entered.append(Unentered(observer))
                    self._abandon()
                    raise
        return self

    def _abandon(self) -> None:
        """A hook raised a BaseException while the saga started: it never runs; the observers already
        made see it end (a failure with no step) and are exited."""
        self._open = False
        try:
            self._finish(SagaResult(self._saga.name, Outcome.FAILURE, ()))
        finally:
            self._leave()

    @_misuse_on_bad_arguments
    def step(
        self, name: str, action: Callable[[], Awaitable[T]], *,
        compensate: Callable[[T], Awaitable[Any]] | None = None,
    ) -> Coroutine[Any, Any, T]:
        """Run one step (``await tx.step(...)``); on success its compensation (given the result) is registered for a
        rollback.

        Only inside ``async with`` (RuntimeError otherwise: the step could never be compensated). Arguments of the
        wrong kind raise a TypeError naming them, and so do the wrong number of them (``compensate`` is keyword-only),
        an empty name, one too long or not UTF-8 a ValueError (a ``MisuseError`` either way: the saga raises it as it
        is after the rollback).

        The step runs when the coroutine returned is awaited (directly, gathered, or in a task). One made inside the
        block and not started when the block ends (the ``await`` forgotten, or a task not yet run) never runs: the
        block fails with a ``MisuseError`` naming it, after the rollback of the steps that ran (the saga ends as a
        failure). A forgotten ``await`` otherwise let the saga end as a success with the step silently skipped.
        When the block failed anyway, only a step skipped over (one made after it started) is that misuse: steps made
        ahead that the failure stopped before their turn are closed, and the block's error goes on (its SagaError).
        """
        if self._open is False:  # raised at the call: with the await forgotten, it was a silent skip too
            raise _outside()
        number = self._made
        self._made = number + 1
        made = self._step(number, name, action, compensate)
        self._unstarted[number] = (name, made)
        return made

    async def _step(
        self, number: int, name: str, action: Callable[[], Awaitable[T]],
        compensate: Callable[[T], Awaitable[Any]] | None,
    ) -> T:
        self._unstarted.pop(number, None)
        if number > self._latest:
            self._latest = number
        if not self._open:
            raise _outside()
        try:
            _check_step(name, action, compensate)
        except (TypeError, ValueError) as exc:
            # A programming error: a MisuseError, raised as it is after the rollback (as through every policy). A
            # plain TypeError (or a name's ValueError) became a SagaError, which a Retry around the saga retried,
            # running every step again.
            raise (MisuseError if isinstance(exc, TypeError) else MisuseValueError)(*exc.args) from None
        name = plain(name)
        observers, owners, hooks = self._observers, self._owners, self._saga._hooks
        tokens: list[Any] = []
        outcome, error = Outcome.SUCCESS, None
        left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[left] = (asyncio.current_task(), name)
        try:
            if observers:
                start(observers, owners, hooks, tokens, "step_started", name)
            made = action()
            if not inspect.isawaitable(made):
                # A sync action has run all the same: it is a completed step (compensated in the rollback its
                # error starts), not one the result leaves out while its effect stays.
                self._done.append((name, made, compensate))
                raise not_async("action", made)
            if is_reused(made):
                raise reused("action", made)  # what `await` refuses (RuntimeError), named
            value: T = await made
            # Done before its observers are told: one raising a BaseException must not keep it from the rollback.
            self._done.append((name, value, compensate))
        except asyncio.CancelledError:
            outcome = Outcome.TIMEOUT if timed_out() else Outcome.CANCELLATION
            raise
        except BaseException as exc:
            outcome, error = Outcome.FAILURE, exc
            raise
        finally:
            del self._running[left]
            left.set_result(None)
            if tokens:
                finish(observers, owners, hooks, tokens, "step_finished", name, outcome, error)
        return value

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> Literal[False]:  # never swallows the exception (bool made checkers think it might)
        self._open = False
        try:
            try:
                return await self._exit(exc)
            finally:
                self._leave()
        except BaseException as late:
            # The block's KeyboardInterrupt / SystemExit (a step's) is not replaced by a lesser BaseException raised
            # in the rollback (a compensation's, an observer's) or by a cancellation meanwhile: it propagates, as a
            # TaskGroup raises one over the rest and a Hedge does (the compensation's error stays in tx.result and
            # its span). Raised in its place, the user's Ctrl-C was lost.
            if exc is not None and outranks(exc, late):
                return False
            raise

    async def _exit(self, exc: BaseException | None) -> Literal[False]:
        # Off the loop it was entered on: the saga was abandoned pending with its loop closed, and the garbage
        # collector closes it (GeneratorExit) where nothing async can run: no loop, or another one running in this
        # thread (the next asyncio.run), where the compensations ran on a loop not theirs and the await then raised
        # "coroutine ignored GeneratorExit", the saga span left open. Its rollback cannot run; it still ends,
        # saying so (see _compensate). (On its own loop, an async generator's aclose() may await: the rollback
        # runs as ever.)
        closing = _off_its_loop(self._loop)
        # before any await here, which would let a task not yet run start
        unawaited = self._unawaited(closing, exc is not None)
        # The steps still running in other tasks as the block ended normally (off its loop, none can run).
        normally = exc is None and not closing
        current = asyncio.current_task() if normally else None
        cut = [name for task, name in self._running.values() if task is not current] if normally else []
        interrupted = await self._settle() if self._running and not closing else None
        completed = tuple(name for name, _, _ in self._done)
        values = tuple(value for _, value, _ in self._done)
        if cut:  # cut off by the block's end, as a forgotten await's step is skipped: the same misuse
            unawaited = _cut_off(cut, unawaited)
        if exc is None:
            exc = unawaited  # the block failed by it: the steps that ran are rolled back, the saga a failure
        if exc is None:
            self._finish(SagaResult(self._saga.name, Outcome.SUCCESS, completed, values=values))
            if interrupted is not None:
                raise_as_is(interrupted)
            return False
        compensated, failed, cancelled, escaped, broken = await self._compensate(closing)
        broken = unawaited or broken  # raised in place of the body's error (the mistake that made it, likely)
        cancelled = _kept(interrupted, cancelled)
        if isinstance(exc, asyncio.CancelledError):  # a timeout (the wave's, a Timeout's) or a cancellation
            outcome = Outcome.TIMEOUT if timed_out() else Outcome.CANCELLATION
        else:
            outcome = Outcome.FAILURE
        result = SagaResult(
            self._saga.name, outcome, completed, compensated, MappingProxyType(failed), exc, values,
        )
        self._finish(result)
        if escaped is not None:  # an observer's KeyboardInterrupt & co, held back until the saga ended
            raise_as_is(escaped)
        # A cancellation during the rollback does not replace a BaseException that is not an Exception (a step's
        # KeyboardInterrupt), as it does not a TaskGroup's: it was raised in its place, the interrupt lost (its request
        # stays counted in cancelling()); under a Timeout that expired meanwhile, the caller got a TimeoutError.
        if cancelled is not None and isinstance(exc, (Exception, asyncio.CancelledError)) and _kept(
            exc if isinstance(exc, asyncio.CancelledError) else None, cancelled,
        ) is cancelled:
            raise cancelled  # the block ended otherwise, or by a timeout's bare cancellation
        if broken is not None and isinstance(exc, Exception):  # a misuse, after the rollback
            raise broken
        if isinstance(exc, MisuseError):  # a programming error: raised as it is, as through every policy,
            return False  # so no Retry around the saga runs a sync action again (tx.result tells the rollback)
        if isinstance(exc, Exception):
            raise SagaError(result) from exc
        return False  # cancellation (and other BaseExceptions) propagate unchanged

    def _unawaited(self, closing: bool, failed: bool) -> MisuseError | None:
        """The ``MisuseError`` naming the steps made by ``tx.step()`` in this transaction and never started, or None.

        Each is closed, so Python does not also warn that it was never awaited (the warning, at garbage collection,
        was all a forgotten ``await`` left); one a task holds (``asyncio.create_task(tx.step(...))`` not yet run)
        has its task cancelled, so that it never runs the step after the saga ended (where it could not be
        compensated) nor fails there. ``closing``: off the saga's loop, no task is looked for.

        ``failed``: the block raised. Then a step never started is a misuse only when a step made after it started
        (its ``await`` skipped over); one the failure stopped before its turn (made ahead, as the arguments of a
        gather whose awaits a semaphore spaces out, or a list of steps awaited in turn) is closed all the same, and the
        block's own error goes on: it was raised in place of the error of a step, a correct program's SagaError."""
        # One a task held and cancelled before it ran has ended, unstarted (a cancelled gather): not a misuse.
        unstarted = {k: v for k, v in self._unstarted.items() if inspect.getcoroutinestate(v[1]) == "CORO_CREATED"}
        self._unstarted = {}
        if not unstarted:
            return None
        coroutines = {id(made): made for _, made in unstarted.values()}
        if not closing:
            for task in asyncio.all_tasks():
                if coroutines.pop(id(task.get_coro()), None) is not None:
                    task.cancel()  # it then throws the cancellation into the coroutine, ending it unstarted
        for made in coroutines.values():
            made.close()
        misused = [name for number, (name, _) in unstarted.items() if not failed or number < self._latest]
        if not misused:
            return None
        names = ", ".join(brief(name) for name in misused)
        count = len(misused)
        return MisuseError(
            f"tx.step() made {'a step' if count == 1 else f'{count} steps'} never awaited ({names}): a step runs "
            f"only when `await tx.step(...)` (or a gather or task awaiting it) starts it inside the `async with "
            f"saga.begin() as tx:` block; {'it' if count == 1 else 'they'} did not run, and the saga failed "
            f"(await each step)"
        )

    async def _settle(self) -> asyncio.CancelledError | None:
        """Cancel the steps still running in other tasks and wait until each has ended (completed, or not).

        Returns the caller's cancellation if one arrived meanwhile (re-raised after the rollback, as
        during a compensation): the rollback must not start while a step may still complete.
        """
        current = asyncio.current_task()
        for task in {task for task, _ in self._running.values()}:
            if task is not None and task is not current:
                task.cancel()
        cancelled: asyncio.CancelledError | None = None
        while pending := [left for left, (task, _) in self._running.items() if task is not current]:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:
                cancelled = _kept(cancelled, exc)
        return cancelled

    async def _compensate(
        self, closing: bool = False,
    ) -> tuple[
        tuple[str, ...], dict[str, BaseException], asyncio.CancelledError | None, BaseException | None,
        Exception | None,
    ]:
        """Run the rollback; returns what was compensated, what failed, the caller's cancellation that
        arrived meanwhile, the first ``BaseException`` (not a cancellation) an observer or a
        compensation raised, and the first error to raise in place of the ``SagaError``:
        a compensation's ``MisuseError`` (a sync ``compensate``: raised as it is, as through every policy,
        so no ``Retry`` around the saga runs the mistake again; its step stays listed as left in effect, as
        nothing tells what a sync function undid). The clock only times the compensations: its error is logged,
        the durations it could not time 0 (raised, it replaced the SagaError). Read unguarded, its error stopped the
        rollback, the remaining steps left in effect unreported and the saga span never
        ended. ``closing``: the saga's coroutine is being closed off its loop, so no compensation can run
        (ensure_future() put it on a new event loop that never ran, or on another loop running, and the await
        raised out of the collector, leaving the saga's spans open): each fails with a RuntimeError saying so,
        and is recorded as any failure."""
        compensated: list[str] = []
        failed: dict[str, BaseException] = {}
        cancelled: asyncio.CancelledError | None = None
        saga, clock, observers = self._saga.name, self._saga.clock, self._observers
        owners, hooks = self._owners, self._saga._hooks
        escaped: BaseException | None = None
        broken: Exception | None = None
        unclocked: Exception | None = None  # the clock's first error: logged, never raised (see the end)
        # A name repeated (a step run in a loop) keys its failed compensations apart: the n-th completed
        # step of that name as "name#n" (n >= 2), so failed_compensations and uncompensated count them all.
        # A key already taken (a step named "a#2" besides two named "a") takes the next free n: one failure
        # overwrote the other's, and a step left in effect was missing from uncompensated.
        seen: dict[str, int] = {}
        keys: list[str] = []
        taken: set[str] = set()
        for name, _, _ in self._done:
            n = seen.get(name, 0) + 1
            key = name if n == 1 else f"{name}#{n}"
            while key in taken:
                n += 1
                key = f"{name}#{n}"
            seen[name] = n
            taken.add(key)
            keys.append(key)
        for key, (name, value, compensate) in zip(reversed(keys), reversed(self._done), strict=True):
            if compensate is None:
                continue
            tokens: list[Any] = []
            outcome: Outcome = Outcome.SUCCESS
            error: BaseException | None = None
            try:
                start(observers, owners, hooks, tokens, "compensation_started", name)
            except BaseException as exc:
                escaped = graver(escaped, exc)
            try:
                begin: float | None = clock()
            except Exception as exc:
                unclocked, begin = unclocked or exc, None
            if closing:
                error, interrupted, expired = RuntimeError(
                    "compensation not run: the saga was closed off its event loop (abandoned pending, its "
                    "loop closed)"), None, False
            else:
                error, interrupted, expired = await self._shielded(compensate, value)
            cancelled = _kept(cancelled, interrupted)
            if error is None:
                compensated.append(name)
            else:
                failed[key] = error
                # timeout: compensation_timeout_s ran out. A TimeoutError of the compensation's own (socket.timeout,
                # a wait_for inside it) is a failure, as through every policy: it read "timeout" in the
                # metric, the log and the span, whose status hid its message, as if the saga's limit were too short.
                outcome = (Outcome.CANCELLATION if isinstance(error, asyncio.CancelledError)
                           else Outcome.TIMEOUT if expired else Outcome.FAILURE)
                if not isinstance(error, Exception | asyncio.CancelledError):  # KeyboardInterrupt & co:
                    escaped = graver(escaped, error)  # this compensation failed; propagated after the rollback
                elif isinstance(error, MisuseError):
                    broken = broken or error
            try:
                duration = 0.0 if begin is None else max(0.0, clock() - begin)
            except Exception as exc:
                unclocked, duration = unclocked or exc, 0.0
            event = CompensationFinished(saga, name, outcome, duration, error)
            try:
                finish(observers, owners, hooks, tokens, "compensation_finished", event)
            except BaseException as exc:
                escaped = graver(escaped, exc)
        if unclocked is not None:
            # The steps ran and the rollback did: the SagaError (its result: what was compensated) is what the caller
            # gets. Raised in its place, the clock's error cost the caller that result.
            _log.warning("the clock of saga %r failed during its rollback; durations it could not time are reported "
                         "as 0", saga, exc_info=unclocked)
        return tuple(compensated), failed, cancelled, escaped, broken

    async def _shielded(
        self, compensate: Callable[[Any], Awaitable[Any]], value: Any,
    ) -> tuple[BaseException | None, asyncio.CancelledError | None, bool]:
        """Run one compensation to its end, whatever cancels the caller meanwhile.

        Returns the compensation's error (``None``: it succeeded; ``CancelledError``: it was cancelled itself;
        any other exception, ``BaseException`` included, it raised), the caller's cancellation that arrived
        while it ran (re-raised by the caller after the rollback), and whether the error is the
        ``TimeoutError`` of ``compensation_timeout_s`` running out.
        """
        limit = self._saga.compensation_timeout_s
        expired: list[bool] = []

        async def bounded() -> BaseException | None:
            try:
                if limit is None:
                    await _awaited("compensate", compensate(value))
                    return None
                scope = asyncio.timeout(limit)
                # Known as a timeout to what runs inside, as a Timeout policy's scope is (see POLICY_TIMEOUTS): a
                # policy in the compensation recorded its cut as a cancellation, and a Hedge threw away a late value.
                # Set in this task's own context (ensure_future copied it): nothing to reset after.
                box = [scope]
                POLICY_TIMEOUTS.set((*POLICY_TIMEOUTS.get(), box))
                try:
                    async with errors_as_is(scope):  # the compensation's own error as it is, on 3.13 too
                        await _awaited("compensate", compensate(value))
                except TimeoutError as exc:
                    if scope.expired():  # the scope's
                        expired.append(True)
                        if scope_timeout(exc):  # its own, bare: say what timed out, and the limit
                            exc.args = (f"compensation timed out after {limit} s (Saga compensation_timeout_s)",)
                    raise
                finally:
                    box.clear()  # for the tasks started inside that outlive it
            except (KeyboardInterrupt, SystemExit) as exc:
                # Raised by a task, asyncio re-raises these out of the event loop itself (the loop stopped
                # mid-rollback, the caller's handlers never ran): handed back, they are this compensation's
                # failure, raised after the rollback in the caller's task, as the other BaseExceptions are.
                return exc
            return None

        task = asyncio.ensure_future(bounded())
        cancelled: asyncio.CancelledError | None = None
        while not task.done():
            try:
                # wait(), not shield(): it never cancels the task, and it does not raise the task's error
                # through this await (a GeneratorExit raised through an await of a future ends the
                # awaiting coroutines too, even when caught: the rollback would stop here).
                await asyncio.wait((task,))
            except asyncio.CancelledError as exc:
                cancelled = _kept(cancelled, exc)  # the caller was: let the compensation finish, re-raise after
        if not task.cancelled() and (error := task.exception()) is not None:
            # It failed (a custom BaseException is re-raised after the rollback): taken, not raised by result() here,
            # where the raise set its __context__ to the step's error being handled, replacing its own.
            return error, cancelled, bool(expired)
        try:
            interrupted = task.result()
        except asyncio.CancelledError as exc:  # it was cancelled itself
            return exc, cancelled, bool(expired)
        return interrupted, cancelled, False

    def _finish(self, result: SagaResult) -> None:
        self.result = result
        if self._observers:
            event = SagaFinished(
                result.saga, result.outcome, result.completed, result.compensated,
                tuple(result.failed_compensations), result.error,
            )
            observers, owners, hooks = self._observers, self._owners, self._saga._hooks
            escaped: BaseException | None = None  # an observer's KeyboardInterrupt & co: after the others
            for k in range(len(observers) - 1, -1, -1):
                try:
                    call_void(observers[k].saga_finished, "saga_finished", event)
                except HOOK_ERRORS as exc:
                    if (other := held_failure(owners[k], "saga_finished", exc, hooks)) is not None:
                        escaped = graver(escaped, other)
                except BaseException as exc:
                    escaped = graver(escaped, exc)
            if escaped is not None:
                raise_as_is(escaped)

    def _leave(self) -> None:
        """Exit the observers entered in ``__aenter__``, newest first (after ``saga_finished``)."""
        observers, owners, entered, hooks = self._observers, self._owners, self._entered, self._saga._hooks
        escaped: BaseException | None = None
        for k in range(len(entered) - 1, -1, -1):
            if type(entered[k]) is not Unentered:
                try:
                    leave(observers[k], owners[k], "saga_finished", hooks)
                except BaseException as exc:
                    escaped = graver(escaped, exc)
        entered.clear()
        if escaped is not None:
            raise_as_is(escaped)
