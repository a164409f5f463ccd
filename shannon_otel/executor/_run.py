"""One run of a wave: workers pulling tasks from a shared iterator, with per-run state only.

Why workers instead of one asyncio task per input: a wave of N tasks with concurrency C creates
C tasks, not N, so the executor costs less than ``asyncio.gather`` itself. Each task still runs in
its own copy of the wave's context (``run_in``), as under ``gather``: context variables, the current
span and ``record()`` never leak from one task to the next task of the same worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from types import CoroutineType
from typing import TYPE_CHECKING, Any, NamedTuple

from .._deadline import errors_as_is, scope_timeout
from .._events import Hook, TaskResult, WaveObserver
from .._isolation import HOOK_ERRORS, UNRUN, call_void, callback_failed, held_failure, hook_failed, primed, unrun
from .._reraise import raise_as_is
from .._telemetry import Outcome
from .._validate import awaitable_from, brief, sync_result
from ._isolate import run_in
from ._limits import POOLS_HELD, RateLimiter, ResourcePool, check_not_held
from ._report import ReadOnlyDict, ReportBuilder
from ._semaphore import Credits
from ._task import CURRENT_TASK, TaskSlot, TaskSpec, end_measurements

if TYPE_CHECKING:
    from ._wave import Progress, Wave

Item = tuple[int, Any]
_log = logging.getLogger("shannon_otel")
_BROKEN = object()  # the token of an observer whose task_started raised
_FAILED = (Outcome.FAILURE, Outcome.TIMEOUT)


# Before 3.13 a TaskGroup took back its cancellation of the task awaiting it only when made before its
# exit began (CPython gh-116720, fixed in 3.13): see WaveRun.run_batch.
_GROUP_KEEPS_ITS_CANCEL = sys.version_info < (3, 13)

_TASK_CALLABLE = "a wave task's callable (the fn of Wave.map, or a factory given to Wave.run)"
# Before 3.13 Task.uncancel() leaves a cancellation still to be delivered pending once the count is back
# to 0 (gh-116720): a task ending at once after cancel() + uncancel() left it to the worker's next task.
_STALE_CANCEL = sys.version_info < (3, 13)
# A worker hands the event loop a turn after this many tasks: tasks that never suspend (a breaker rejecting every
# call while open, cache hits, a rate limit the wave lags behind) ran the whole input in one loop step, with no
# cancel, timer or other task run until the wave ended (30,000 rejections under instrumentation: 6 s frozen).
# Taken after the check of the worker's cancellation, never before: a task that cancelled its own task and
# returned at once (asyncio.current_task().cancel()) left that request pending, delivered to the turn's sleep(0),
# and the worker died there: the tasks left in a wave of max_concurrency=1 never ran, no error said so.
_TURN_EVERY = 64


class Interrupted(BaseException):
    """A task's ``KeyboardInterrupt`` / ``SystemExit`` carried out of a task of ours (a worker, a stream's runner).

    asyncio re-raises those two out of the event loop itself when a Task raises them: the loop stopped, and the
    caller's ``except KeyboardInterrupt`` around the wave, which got it too, could not finish (``asyncio.run``
    raised it although the caller handled it), where ``await fn()`` without the wave reached the handler alone.
    Carried in this (a plain ``BaseException``, which a Task keeps as its outcome), it is raised as itself, the
    very object, in the caller's task (:func:`carried`), as the Hedge and the Saga do with their tasks'."""

    def __init__(self, interrupt: BaseException) -> None:
        super().__init__()
        self.interrupt = interrupt


def carried(error: BaseException) -> BaseException | None:
    """The interrupt ``error`` carries (an :class:`Interrupted`, or a group of a TaskGroup holding one), or None."""
    if isinstance(error, Interrupted):
        return error.interrupt
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if isinstance(inner, Interrupted):
                return inner.interrupt
    return None


def _delivered_nowhere(result: TaskResult[Any]) -> None:
    """``deliver`` of a run that has ended (see ``WaveRun.release``): no result comes after the end."""


class WaveRun:
    """Mutable state of one execution of a :class:`Wave` policy. Event-loop only."""

    def __init__(
        self, wave: Wave[Any], observers: tuple[WaveObserver, ...], size: int | None,
        deliver: Callable[[TaskResult[Any]], None], gate: Credits | None = None, *,
        owners: tuple[Hook, ...],
    ) -> None:
        self.wave = wave
        self.observers = observers
        self.reversed_observers = observers[::-1]
        # owners[k] is the hook that made observers[k]: a failure is recorded against it (_isolation)
        self.owners = owners
        self.reversed_owners = self.owners[::-1]
        # The observers told of each task taken beyond the size announced in WaveStarted (see
        # WaveObserver.task_queued): every task of an input of unknown length, and those a list the consumer
        # extends while the wave streams it gives past its length at the start (not counted in any size, they
        # waited for a pool unseen). Only those that override it, so a wave nobody counts so pays nothing for it.
        self.queued: tuple[tuple[WaveObserver, Hook], ...] = tuple(
            (obs, owner) for obs, owner in zip(observers, owners, strict=True)
            if getattr(type(obs), "task_queued", WaveObserver.task_queued) is not WaveObserver.task_queued
        )
        self.announced = size or 0  # the tasks WaveStarted.size counts: indexes from it on are queued
        self.deliver = deliver
        self.gate = gate
        self.report = ReportBuilder()
        self.sized = size is not None
        self.pending = size or 0  # of a lazy input: minus the tasks taken so far (Progress shows None)
        self.active = 0
        self.done = 0
        self.failed = 0
        self.stopped = False
        # A stream's: the tasks its workers took, whether one found the input's end (not a batch's: the whole
        # input's), and, when its consumer left with neither a task in flight nor one left to take (see idle), the
        # tasks ended then (a task ended since, cancelled or drained, was cut short by that leaving)
        self.taken = 0
        self._first = 0  # the tasks taken before the batch running now
        self.ended = False
        self.left_idle: int | None = None
        # A lazy input's reader (a stream's input of unknown length): probed for its next item as its consumer
        # leaves with no task in flight and the input's end not yet found (see _stream's _leave)
        self.ahead: Pulled | None = None
        self.batch: int | None = None
        self.dispatch_time = 0.0
        self.workers: list[asyncio.Task[None]] = []
        # The task awaiting the batch, and its cancellation requests when the batch began: more of them
        # mean the wave itself is being cancelled (its TaskGroup cancels that task too when it aborts).
        self._parent: asyncio.Task[Any] | None = None
        self._parent_cancels = 0
        self._room = 0  # workers a stream may still start (run_batch), and where they start
        self._lazy: tuple[asyncio.TaskGroup, Iterator[Item], contextvars.Context] | None = None
        self._owed = -1  # workers asked for while one is being started (see _add_workers); -1: none starting
        limit = wave.rate_limit
        self.limiter: Any = (
            None if limit is None
            else limit if hasattr(limit, "acquire")  # a limiter shared across runs (and processes)
            else RateLimiter(limit, wave.burst, wave.clock, wave.sleep)
        )
        self._next_progress = 0.0
        self.clock_failed = False  # logged once per run (see unclocked)
        self._context: contextvars.Context | None = None  # the wave's: where on_progress runs (see _progress)
        self.progress_errors = 0  # on_progress's failures in this run: the first is logged (see tell_progress)

    def release(self) -> None:
        """The wave has ended: let go of what reaches its results and spans. A task error the user keeps holds
        its traceback, so the executor's frames, and from Python 3.12 their callers' frames too (``f_back``),
        whose locals hold this run: its ``deliver`` reached every result of the wave."""
        self.deliver = _delivered_nowhere
        self.observers = ()
        self.queued = ()
        self.workers = []
        self._lazy = None
        self._parent = None

    async def run_batch(
        self, items: Iterator[Item], workers: int, context: contextvars.Context, *, first: int | None = None,
    ) -> None:
        """Run ``items`` on ``workers`` workers; returns when all are done or the run stopped. A stream starts
        ``first`` of them at once (default: as many as its input's length at the start), the rest as needed."""
        self.dispatch_time = self.reading()
        self._first = self.taken
        self._context = context
        self._parent = parent = asyncio.current_task()
        self._parent_cancels = parent.cancelling() if parent is not None else 0
        group = asyncio.TaskGroup()
        flagged = True  # whether the group had cancelled the caller when its block ended (see below)
        interrupt: BaseException | None = None
        try:
            async with group:
                self.workers = []
                if self.gate is None:  # run()/map(): a list read first, `workers` no longer than it
                    for _ in range(workers):
                        self._spawn(group, items, context)
                        if self.stopped:  # a worker failed (or failed fast) in its eager first step: no more
                            break
                else:
                    # A stream: the workers its input is known to need (a sized one's length at the start, at
                    # least one), then one more each time a worker takes a task past that length (every task
                    # of a lazy input), up to `workers`. A huge max_concurrency then costs what the input
                    # needs, not that many idle tasks created up front (10**6 took ~24 s to stream three
                    # items), and the tasks a list the consumer extends as it streams gains run up to
                    # `workers` at once (capped at its length at the start, one task extended by nine ran one at
                    # a time; the first of them a worker takes starts the next worker).
                    self._room, self._lazy = workers, (group, items, context)
                    self._add_workers(min(workers, max(1, self.announced) if first is None else first))
                if _GROUP_KEEPS_ITS_CANCEL:
                    flagged = group._parent_cancel_requested  # type: ignore[attr-defined]
        except BaseException as exc:
            # A worker raised (a task's KeyboardInterrupt & co, a hook's, a clock's error) while the caller
            # waited in the group's exit: the group cancelled the caller to abort, and before Python 3.13
            # (CPython gh-116720) took that request back only if made before its exit began. Left, the
            # caller's cancelling() stayed 1 after the wave raised: its later timeouts (a Timeout policy
            # around a saga) were then told apart from cancellations wrongly. Ours to take back, once.
            if (_GROUP_KEEPS_ITS_CANCEL and not flagged and parent is not None
                    and group._parent_cancel_requested):  # type: ignore[attr-defined]
                parent.uncancel()
            interrupt = carried(exc)
            if interrupt is None:
                raise
        if interrupt is not None:
            # Resumed by the group's cancellation, this task runs on inside that throw() into its coroutines, and
            # CPython chains what leaves each of them to the exception it is handling: the caller's (a wave awaited
            # in an `except` block) replaced the interrupt's own __context__. One step later, resumed by send(), the
            # interrupt leaves them as it left the task. A cancellation meanwhile yields to it, as a TaskGroup's
            # KeyboardInterrupt does to the rest, and is asked again: the caller's next await gets it, as it did
            # when the interrupt was raised at once (swallowed here, it left cancelling() at 1 with no cancel coming).
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as cancel:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                    task.cancel(*cancel.args[:1])
            raise_as_is(interrupt)  # outside the handler, its own __context__ kept (see Interrupted)

    def idle(self, size: int | None) -> bool:
        """Whether a stream's wave has every task it took ended and none left to take: ``size`` is the input's length
        now (None: unknown, then one of its workers must have found its end). Its consumer leaving then cuts nothing
        short (see WaveStream's ``_leave``). A known length is the rule: an end found before a list grew is not its
        end (the task it gained, pulled by the wave and not yet taken by a worker, was cancelled as it started while
        the wave said success)."""
        return self.taken == self.done and (self.ended if size is None else size <= self.taken)

    def _add_workers(self, count: int = 1) -> None:
        """Start ``count`` more workers for a stream (see ``run_batch``). Under an eager task factory a new
        worker's first step, which takes an item and may ask for the next worker, runs inside ``create_task``:
        that request is counted and served by the loop here once ``create_task`` returns, not started from
        inside it, else each worker nested the next one's start in its own (max_concurrency=400 overflowed
        the stack)."""
        assert self._lazy is not None
        group, items, context = self._lazy
        self._room -= count
        if self._owed >= 0:  # asked from inside the eager first step of a worker being started below
            self._owed += count
            return
        self._owed = count
        try:
            while self._owed and not self.stopped:
                self._owed -= 1
                self._spawn(group, items, context)
        finally:
            self._owed = -1

    def _spawn(self, group: asyncio.TaskGroup, items: Iterator[Item], context: contextvars.Context) -> None:
        """Start a worker. Under an eager task factory (3.12+) it runs its first task inside ``create_task``,
        so it is listed at once after (a later worker's failure or fail-fast stop must find it), and it is
        cancelled if the run stopped meanwhile: its TaskGroup may have aborted before it joined, and would
        then never cancel it (the wave would wait for it forever)."""
        worker = group.create_task(self._worker(items, context), context=context.copy())
        self.workers.append(worker)
        if self.stopped and not worker.done():
            worker.cancel()

    async def _worker(self, items: Iterator[Item], context: contextvars.Context) -> None:
        """Run tasks one after another, each in a fresh copy of the wave's ``context``."""
        copy = context.copy
        gate = self.gate
        worker = asyncio.current_task()
        assert worker is not None
        # A cancellation still pending with none requested (see _STALE_CANCEL): delivered to the worker, as
        # one the task asked of itself, not to the next task. Checked on the attribute only where it exists.
        stale = _STALE_CANCEL and hasattr(worker, "_must_cancel")
        try:
            ran = 0
            if gate is None:
                for index, item in items:
                    await run_in(copy(), self._run_one(index, item))
                    if self.stopped:  # fail-fast: the inputs left are drained by the wave
                        return
                    if (worker.cancelling() or (stale and worker._must_cancel)) and await self._cancelled(worker):  # type: ignore[attr-defined]
                        raise asyncio.CancelledError  # the task swallowed our cancellation: stop all the same
                    ran += 1
                    if not ran % _TURN_EVERY:  # after the check: see _TURN_EVERY
                        await asyncio.sleep(0)
                return
            reading = self.reading
            while not self.stopped:
                await gate.acquire()  # room for one more result at the consumer
                entry = None if self.stopped else next(items, None)
                if entry is None:
                    # a batch's end is the input's when the batch came out short
                    batch = self.wave.batch_size
                    short = batch is None or self.taken - self._first < batch
                    self.ended = self.ended or (short and not self.stopped)
                    gate.release()
                    # its slot is free again: the tasks a list gains later start a worker in its place (kept, a list
                    # of 4 extended by 6 once 3 of its workers had found its end ran the 6 one at a time)
                    self._room += 1
                    return
                self.taken += 1
                if self._room > 0 and entry[0] >= self.announced:  # past the known length: a worker more
                    self._add_workers()
                # A streamed task is taken only when there is room: its queue wait starts now.
                await run_in(copy(), self._run_one(entry[0], entry[1], reading()))
                if (worker.cancelling() or (stale and worker._must_cancel)) and await self._cancelled(worker):  # type: ignore[attr-defined]
                    raise asyncio.CancelledError
                ran += 1
                if not ran % _TURN_EVERY:  # after the check: see _TURN_EVERY
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # A task's KeyboardInterrupt & co (or a hook's): the TaskGroup aborts and cancels the other
            # workers. Stopped first, so they see that cancellation as the wave's (see _ours), and no task
            # starts after it (under an eager task factory one could, in a worker started after this one).
            self.stopped = True
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise Interrupted(exc) from None  # raised in the caller's task (run_batch), not out of the loop
            raise

    async def _run_one(self, index: int, item: Any, ready: float | None = None) -> None:
        """One task, start to finish; runs inside the task's own context (see ``_worker``)."""
        wave = self.wave
        name, wanted, work = wave.name, None, item
        if type(item) is TaskSpec:
            work, wanted = item.work, item.pool
            name = item.name or name
        pool: ResourcePool | None = None
        outcome = Outcome.SUCCESS
        value: Any = None
        error: BaseException | None = None
        tokens: list[Any] | None = None
        call: Any = None
        start: float | None = None  # set when the task really starts
        queue_wait = 0.0
        slot = TaskSlot()
        CURRENT_TASK.set(slot)
        try:
            # inside the try: whatever ends the task now, _finish balances it (started or skipped)
            if self.queued and index >= self.announced:
                self._queued(index, name)
            if self.stopped:  # taken as the run stopped, by a worker an eager task factory ran meanwhile
                raise asyncio.CancelledError
            if wanted is not None:
                if isinstance(wanted, str):  # a deprecated pool name
                    named = wave.pool_map.get(wanted)
                    if named is None:
                        raise KeyError(f"task names pool {wanted!r}; the wave's pools are {sorted(wave.pool_map)}")
                    wanted = named
                check_not_held(wanted)
                await wanted.acquire()
                pool = wanted
                POOLS_HELD.set((*POOLS_HELD.get(), (pool, slot)))
            if self.limiter is not None:
                # Last, right before the start: admitted first, tasks then waiting for a pool held elsewhere all
                # started at once when it freed (a rate limit of 1/s let 10 starts through in 10 ms).
                # A shared limiter's acquire() that is sync (threading.Semaphore's returns True): named, not
                # Python's "object bool can't be used in 'await' expression"
                await awaitable_from("rate_limit.acquire", self.limiter.acquire())
            start = wave.clock()
            queue_wait = start - (self.dispatch_time if ready is None else ready)
            if queue_wait < 0.0:  # an injected clock that went back (see _wave)
                queue_wait = 0.0
            self.pending -= 1
            self.active += 1
            if self.observers:
                tokens = []  # filled in place: a BaseException from task_started still finishes the others
                self._started(tokens, index, name, queue_wait)
            if wave.task_policy is not None:
                if not callable(work):
                    raise TypeError(
                        "a Wave with a policy needs zero-argument callables, not coroutine objects or futures"
                    )
                call = wave.task_policy.call(work)
                if type(call) is not CoroutineType:  # a policy object of the user's with a sync call(): named
                    call = awaitable_from("policy.call", call)
            else:
                call = work() if callable(work) else work
                if type(call) is not CoroutineType:  # a sync fn given to map/run: named, not "can't be used in 'await'"
                    call = awaitable_from(_TASK_CALLABLE, call) if call is not work else _awaitable_task(work)
            if wave.task_timeout is not None:
                # the task's own error as it is, on 3.13 too (see errors_as_is)
                async with errors_as_is(asyncio.timeout(wave.task_timeout)) as scope:
                    slot.timeout = scope  # lets policies inside tell this timeout from a cancellation
                    value = await call
            else:
                value = await call
        except asyncio.CancelledError:
            outcome = Outcome.CANCELLATION
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                if self._ours():
                    self._finish(index, item, name, outcome, start, queue_wait, None, slot, tokens, pool, call)
                    raise
                # asyncio.current_task() in a task is its worker: `current_task().cancel()` asked the worker.
                # As under gather, that cancels this task alone, not the tasks the worker runs after it.
                while current.uncancel():
                    pass
            # The task cancelled itself (or awaited something cancelled): its own outcome, not ours.
        except TimeoutError as exc:
            outcome, error = Outcome.TIMEOUT, exc
            if scope_timeout(exc) and slot.timeout is not None and slot.timeout.expired():
                # The wave's own bare TimeoutError (one the task raised keeps its message): the result, the
                # user's traceback and the task span's exception event say which task timed out, after how long.
                limit = wave.task_timeout
                exc.args = (f"task {name!r} of wave {wave.name!r} timed out after {limit} s (task_timeout)",)
        except Exception as exc:
            outcome, error = Outcome.FAILURE, exc
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, a custom BaseException: never swallowed. The task is a
            # failure, its span ended and its result delivered first; then it propagates, the wave's
            # TaskGroup cancels the other tasks (each ends as a cancellation) and the wave fails.
            self._finish(index, item, name, Outcome.FAILURE, start, queue_wait, exc, slot, tokens, pool, call)
            raise
        self._finish(index, item, name, outcome, start, queue_wait, error, slot, tokens, pool, call, value)
        if error is not None:
            # The error's traceback holds this frame, and a returned frame keeps its locals: the run (through
            # `deliver`, every result of the wave) and the task's spans lived as long as the user kept the error
            # (a list of the errors seen held every one of their waves' results). concurrent.futures drops its
            # `self` for the same reason.
            del self, tokens

    def _ours(self) -> bool:
        """Whether a cancellation of the running worker is the wave's (stopped: fail-fast or a worker's
        failure; or the wave cancelled: its TaskGroup then cancels the task awaiting it too), not the task's."""
        parent = self._parent
        return self.stopped or parent is None or parent.cancelling() > self._parent_cancels

    async def _cancelled(self, worker: asyncio.Task[None]) -> bool:
        """After a task ended with ``worker``'s cancellation requested (or, before 3.13, one still pending
        that was taken back: see ``_STALE_CANCEL``): True when it is the wave's (the task swallowed it; the
        worker stops all the same). Else the task asked it of itself (``asyncio.current_task().cancel()``, or a
        TaskGroup inside it cancelled the worker and took it back) and ended: that request is taken off
        (delivered here if it is still pending, so it cannot cancel the next task) and the worker goes on;
        returns False."""
        if self._ours():
            return True
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass
        if self._ours():  # the wave was cancelled meanwhile: what was caught just above may be that
            return True
        while worker.uncancel():
            pass
        return False

    def queued_past(self, entry: Item) -> None:
        """``_queued`` for an item taken from the input that no worker ran (see ``Pulled.drop``): what its skip
        balances."""
        index, item = entry
        if self.queued and index >= self.announced:
            self._queued(index, (item.name or self.wave.name) if type(item) is TaskSpec else self.wave.name)

    def _queued(self, index: int, name: str) -> None:
        """Tell the observers that count them that a task past the announced size was taken (see ``queued``). Every
        one is told, even past another's BaseException (raised after), so each gets a start or skip for its queue."""
        self._tell(self.queued, "task_queued", index, name)

    def _tell(self, observers: Iterable[tuple[WaveObserver, Hook]], method: str, *args: Any) -> None:
        """``method`` of each observer, isolated (a hook's error logged and counted, see ``hook_failed``); an
        observer's BaseException (KeyboardInterrupt & co) is raised once every other one was told."""
        escaped: BaseException | None = None
        for obs, owner in observers:
            try:
                call_void(getattr(obs, method), method, *args)
            except HOOK_ERRORS as exc:
                escaped = escaped or held_failure(owner, method, exc, self.wave.resolved_hooks)
            except BaseException as exc:
                escaped = escaped or exc
        if escaped is not None:
            raise escaped

    def _started(self, tokens: list[Any], index: int, name: str, queue_wait: float) -> None:
        observers = self.observers
        try:
            if len(observers) == 1:  # the common case (the OTel hook alone), kept short: it runs per task
                try:
                    token = observers[0].task_started(index, name, queue_wait)
                    if isinstance(token, UNRUN) and not primed(token):  # a coroutine never awaited, a `yield`
                        raise unrun(token, "task_started")
                    tokens.append(token)
                except HOOK_ERRORS as exc:  # that hook misses this task
                    hook_failed(self.owners[0], "task_started", exc, self.wave.resolved_hooks)
                    tokens.append(_BROKEN)
                return
            for obs, owner in zip(observers, self.owners, strict=True):
                try:
                    token = obs.task_started(index, name, queue_wait)
                    if isinstance(token, UNRUN) and not primed(token):
                        raise unrun(token, "task_started")
                    tokens.append(token)
                except HOOK_ERRORS as exc:
                    hook_failed(owner, "task_started", exc, self.wave.resolved_hooks)
                    tokens.append(_BROKEN)
        except BaseException:  # not the hook's error to isolate: it propagates; the started ones are finished
            tokens.extend([_BROKEN] * (len(observers) - len(tokens)))
            raise

    def _finish(
        self, index: int, item: Any, name: str, outcome: Outcome, start: float | None, queue_wait: float,
        error: BaseException | None, slot: TaskSlot, tokens: list[Any] | None, pool: ResourcePool | None,
        call: Any, value: Any = None,
    ) -> None:
        if pool is not None:
            try:
                pool.release()
            except ValueError:  # the task gave its permit back itself (pool.release() in it): none left to give
                pass
        if call is None:
            close_unstarted(item)
        if start is not None:
            try:
                duration = self.wave.clock() - start
            except Exception as exc:
                # The task has run: its result is what the wave delivers, and a clock failing now (raises, NaN, an
                # infinity) never costs it nor the wave's other results (raised here, it failed the whole run)
                duration = 0.0
                self.unclocked(exc)
            if duration < 0.0:  # an injected clock that went back: never a negative duration (see _wave)
                duration = 0.0
            self.active -= 1
        else:
            duration = 0.0
            self.pending -= 1
        self.done += 1
        measurements = end_measurements(slot)
        if measurements is not None:  # handed to every hook, then to the user: read-only (see ReadOnlyDict)
            measurements = ReadOnlyDict(measurements)
        self.report.add(outcome, duration, queue_wait, error, measurements, start is not None)
        if outcome in _FAILED:
            self.failed += 1
        result = TaskResult(
            self.wave.name, index, name, outcome, value, error, duration, queue_wait, measurements, self.batch,
        )
        try:
            if tokens is not None:
                if len(tokens) == 1:
                    if tokens[0] is not _BROKEN:
                        try:
                            # reversed_observers, as _finished: `observers` is emptied when the wave ends (release),
                            # and a task it left running (an abandoned wave's, closed by the collector after it)
                            # still ends its span
                            call_void(self.reversed_observers[0].task_finished, "task_finished", tokens[0], result)
                        except HOOK_ERRORS as exc:
                            hook_failed(self.owners[0], "task_finished", exc, self.wave.resolved_hooks)
                else:
                    self._finished(tokens, result)
            elif self.observers:
                self.skipped(result)
        finally:  # a hook's BaseException propagates, but the result is the user's: delivered all the same
            self.deliver(result)
        if self.wave.on_progress is not None:
            self._progress()
        if outcome in _FAILED and self.wave.fail_fast and not self.stopped:
            self.stop()

    def reading(self) -> float:
        """The clock, read where a task's queue wait starts: ``inf`` when it fails (see :meth:`unclocked`), so that
        wait is reported as 0 s; the task itself is refused at its own start reading (``_run_one``), the tasks that
        ran keep their results (raised here, the clock's error failed the whole run)."""
        try:
            return self.wave.clock()
        except Exception as exc:
            self.unclocked(exc)
            return math.inf

    def unclocked(self, error: Exception) -> None:
        """The wave's clock failed (raised, read NaN or an infinity) once tasks had run: what it could not time is
        reported as 0 s, and its error is logged, once per run, never raised in place of the tasks' results."""
        if not self.clock_failed:
            self.clock_failed = True
            _log.warning("the clock of wave %r failed; durations it could not time are reported as 0",
                         self.wave.name, exc_info=error)

    def _finished(self, tokens: list[Any], result: TaskResult[Any]) -> None:
        escaped: BaseException | None = None  # an observer's KeyboardInterrupt & co: after the others
        for obs, owner, token in zip(self.reversed_observers, self.reversed_owners, reversed(tokens), strict=True):
            if token is not _BROKEN:
                try:
                    call_void(obs.task_finished, "task_finished", token, result)
                except HOOK_ERRORS as exc:
                    escaped = escaped or held_failure(owner, "task_finished", exc, self.wave.resolved_hooks)
                except BaseException as exc:
                    escaped = escaped or exc
        if escaped is not None:
            raise escaped

    def skipped(self, result: TaskResult[Any]) -> None:
        """Tell the observers about a task that ended without starting."""
        self._tell(zip(self.reversed_observers, self.reversed_owners, strict=True), "task_skipped", result)

    def skipped_many(self, first: TaskResult[Any], count: int) -> None:
        """Tell the observers about ``count`` tasks like ``first`` that never started: ``tasks_skipped`` once
        to an observer that overrides it, else ``task_skipped`` per task, each isolated as that method."""
        escaped: BaseException | None = None
        for obs, owner in zip(self.reversed_observers, self.reversed_owners, strict=True):
            # getattr: an observer of the user's that does not subclass WaveObserver may lack it (its AttributeError,
            # outside the guard below, was raised from the wave in place of the results)
            if getattr(type(obs), "tasks_skipped", WaveObserver.tasks_skipped) is WaveObserver.tasks_skipped:
                for k in range(count):
                    try:
                        call_void(obs.task_skipped, "task_skipped", first._replace(index=first.index + k))
                    except HOOK_ERRORS as exc:
                        escaped = escaped or held_failure(owner, "task_skipped", exc, self.wave.resolved_hooks)
                    except BaseException as exc:
                        escaped = escaped or exc
                continue
            try:
                call_void(obs.tasks_skipped, "tasks_skipped", first, count)
            except HOOK_ERRORS as exc:
                escaped = escaped or held_failure(owner, "tasks_skipped", exc, self.wave.resolved_hooks)
            except BaseException as exc:
                escaped = escaped or exc
        if escaped is not None:
            raise escaped

    def stop(self) -> None:
        """Start no more tasks and cancel the running ones (fail-fast)."""
        self.stopped = True
        current = asyncio.current_task()
        for worker in self.workers:
            if worker is not current:
                worker.cancel()

    def progress(self) -> Progress:
        from ._wave import Progress

        # negative: a sized input (a list the consumer extends as it streams) gave more tasks than its length
        # at the start, so how many are left is unknown, as a lazy input's
        pending = self.pending if self.sized and self.pending >= 0 else None
        return Progress(self.wave.name, pending, self.active, self.done, self.failed)

    def _progress(self) -> None:
        try:
            now = self.wave.clock()
        except Exception as exc:  # after a task ended: no report this time, never the task's results lost
            self.unclocked(exc)
            return
        interval = self.wave.progress_interval
        # or before the last report: the clock went back (an injected one), which stopped reports for the step
        if now >= self._next_progress or now + interval < self._next_progress:
            self._next_progress = now + interval
            # In the wave's context, not the task's that just ended (whose copy this runs in): called there, it saw
            # that task's context variables (a request id it bound, a structlog context) as if the wave were its.
            self.tell_progress(self._context)

    def tell_progress(self, context: contextvars.Context | None) -> None:
        """Call ``on_progress`` with the counters now, in a copy of ``context`` (what it sets, a structlog binding,
        must not reach the wave's next tasks). An ``Exception`` it raises is isolated as a hook's is
        (``callback_failed``): logged the first time in this run, each one reported to the wave's hooks; a broken
        display must not cost the wave its results. Its ``KeyboardInterrupt`` & co propagate."""
        callback = self.wave.on_progress
        assert callback is not None
        try:  # a lambda returning a coroutine: refused (and closed), never left unawaited
            made = callback(self.progress()) if context is None else context.copy().run(callback, self.progress())
            sync_result("on_progress", made)
        except HOOK_ERRORS as exc:
            self.progress_errors += 1
            callback_failed(callback, "on_progress", exc, self.wave.resolved_hooks, first=self.progress_errors == 1)


class Growing:
    """A list read by index, its length checked at every take: Python's list iterator, once it has found the end,
    ignores what is appended later, so the tasks a consumer appended to a streamed list after one worker had found
    its end (while others still ran tasks) were never run nor reported. Never ends for good: a later take sees them.

    The index is the rule, as for Python's list iterator: a list cut below it (``del``, ``pop``, ``remove``,
    ``clear``) moves the tasks after the cut, and those added since, below it, where they are never taken. Not
    silently: a take that finds the list shorter than the index, or the task before it not the one it took last,
    sets ``cut`` (the wave then logs a WARNING, see ``Wave._execute``); which tasks it skipped it cannot tell.
    ``bind`` makes each task of an item (``stream_map``'s ``partial(fn, item)``)."""

    __slots__ = ("_bind", "_items", "_last", "cut", "taken")

    def __init__(self, items: list[Any], bind: Callable[[Any], Any] | None = None) -> None:
        self._items = items
        self._bind = bind
        self._last: Any = None  # the item taken last (one reference: compared by identity)
        self.cut = False
        self.taken = 0

    def __iter__(self) -> Growing:
        return self

    def check(self) -> bool:
        """Whether the list was found cut below the index (``cut``), looking again now."""
        items, taken = self._items, self.taken
        if taken and not self.cut and (len(items) < taken or items[taken - 1] is not self._last):
            self.cut = True
        return self.cut

    def __next__(self) -> Any:
        self.check()
        items, taken = self._items, self.taken
        if taken >= len(items):  # its end, for now
            raise StopIteration
        self._last = item = items[taken]
        self.taken = taken + 1
        return item if self._bind is None else self._bind(item)


def live(items: Iterable[Any], bind: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """An iterator over ``items`` (each made a task by ``bind``, if given) that takes what a list gains as it is
    read (see Growing)."""
    if type(items) is list:
        return Growing(items, bind)
    return iter(items) if bind is None else map(bind, items)


class Pulled:
    """A stream's input as its workers take it, one item at a time (one more as its consumer leaves: see ``probe``). A
    ``CancelledError`` the input itself raises
    (a generator reading a cancelled future's ``result()``) comes out as a RuntimeError from it, as Python turns a
    generator's StopIteration into one (PEP 479): raised as itself out of a worker, asyncio took it for that
    worker's cancellation, which a TaskGroup ignores; the rest of the input was lost without a word and the wave
    reported success. (``next()`` is a sync call: no cancellation of the wave is ever delivered inside it.)
    Not a generator: one ends for good at its first StopIteration, and a list extended since must still be read."""

    __slots__ = ("_ahead", "_iterator")

    def __init__(self, tasks: Iterable[Any]) -> None:
        self._iterator = live(tasks)  # stream_map's (Mapped): its list's Growing, bound
        self._ahead: Ahead | None = None  # what probe() pulled that no take has had yet

    @property
    def cut(self) -> bool:
        """Whether the input is a list found cut below what was taken (see Growing), looking again now."""
        return type(self._iterator) is Growing and self._iterator.check()

    @property
    def taken(self) -> int:
        """The tasks taken from a list (its read index; see Growing); 0 for another input."""
        return self._iterator.taken if type(self._iterator) is Growing else 0

    def __iter__(self) -> Pulled:
        return self

    def __next__(self) -> Any:
        ahead = self._ahead
        if ahead is not None:
            self._ahead = None
            if ahead.error is not None:
                raise ahead.error  # as if the input raised it now: at a take, never while the tasks before it still ran
            return ahead.item
        try:
            return next(self._iterator)
        except asyncio.CancelledError as exc:
            raise RuntimeError(
                "the wave's input raised CancelledError (its own, not a cancellation of the wave) while the wave "
                "took its next task"
            ) from exc

    def probe(self) -> bool:
        """Pull the input's next item now, kept for the next take: False at the input's end. Called as the stream's
        consumer leaves with no task in flight and the input's end not yet found (see ``_stream._leave``), never by
        a worker as its task ends: an input the consumer feeds as it reads each result (a generator over a deque of
        links) was then found empty, and the wave ended, before the consumer could feed it. What the input raises
        is kept too (see ``drop``): an ``Exception`` is forgotten, as one the input would have raised had the
        consumer not left; a ``KeyboardInterrupt`` & co, raised in the consumer's leaving, left the wave running
        unreported, so it fails the wave instead. With an item (or error) already kept, pulls nothing."""
        if self._ahead is None:
            try:
                self._ahead = Ahead(next(self))
            except StopIteration:
                return False
            except BaseException as exc:
                self._ahead = Ahead(None, exc)
        return True

    def drop(self) -> Ahead | None:
        """What ``probe`` pulled that no worker took (the wave ended first): the item, or the ``KeyboardInterrupt`` &
        co the input raised then, never dropped; else None (an ``Exception`` it raised then is forgotten: the wave's
        end is the caller's to report)."""
        ahead, self._ahead = self._ahead, None
        return None if ahead is None or isinstance(ahead.error, Exception) else ahead


class Ahead(NamedTuple):
    """What :meth:`Pulled.probe` pulled: an ``item`` (any value, None too), or the ``error`` the input raised."""

    item: Any
    error: BaseException | None = None


pulled = Pulled


def _awaitable_task(work: Any) -> Any:
    """A task given as itself (not made by a callable): an awaitable (a future, an object with ``__await__``),
    or a TypeError saying what a task may be (not that a callable "returned" it: nothing was called)."""
    if inspect.isawaitable(work):
        return work
    raise TypeError(
        "a wave task must be a coroutine, a zero-argument async callable (a factory) or task(...), got "
        f"{type(work).__name__} {brief(work)}"
    )


def close_unstarted(item: Any) -> None:
    """Close a coroutine that will never run, so Python does not warn that it was never awaited; cancel a
    future (an ``asyncio.Task`` given as a task runs by itself): reported as cancelled, it must not go on
    running unawaited, its error never retrieved."""
    work = item.work if type(item) is TaskSpec else item
    close = getattr(work, "close", None)
    if close is not None and asyncio.iscoroutine(work):
        close()
    elif isinstance(work, asyncio.Future) and work.get_loop() is asyncio.get_running_loop():
        work.cancel()  # (one of another loop's is not ours to touch from this thread: awaiting it would fail)


def settled(item: Any) -> tuple[Outcome, Any, BaseException | None] | None:
    """The outcome of a future given as a task that ended by itself before the wave awaited it (fail-fast
    or cancellation stopped the wave first): its real result, not a cancellation. None for any other task."""
    work = item.work if type(item) is TaskSpec else item
    if not isinstance(work, asyncio.Future) or not work.done() or work.cancelled():
        return None
    error = work.exception()
    if error is None:
        return Outcome.SUCCESS, work.result(), None
    return (Outcome.TIMEOUT if isinstance(error, TimeoutError) else Outcome.FAILURE), None, error
