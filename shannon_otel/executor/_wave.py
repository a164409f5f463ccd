"""The wave executor policy: run many coroutines as one named, instrumented wave."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import sys
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from .. import _clock
from .._events import Hook, TaskResult, WaveObserver, WaveStarted
from .._hooks import check_hooks, in_scope, rebuilt, resolve_hooks
from .._isolation import HOOK_ERRORS, Unentered, call_void, enter, held_failure, hook_failed, leave, refused
from .._otel._providers import drops_for
from .._reraise import raise_as_is
from .._telemetry import INPUT_CUT_INDEX, LOG_EVENT_INPUT_CUT, LOG_EVENT_NAME, WAVE_NAME, Outcome
from .._validate import (
    builtin_numbers,
    check_arity,
    check_bool,
    check_iterable,
    check_makes_awaitable,
    check_number,
    check_reading,
    check_sync_callable,
    check_telemetry_name,
    int64_or_none,
    not_callable,
    other_number,
    plain,
    shown,
)
from ._limits import ResourcePool, pools_by_name
from ._report import WaveReport
from ._result import WaveResult
from ._run import Item, Pulled, WaveRun, close_unstarted, pulled, settled
from ._semaphore import Credits
from ._stream import Mapped, WaveStream, known_size
from ._task import TaskSpec

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

if TYPE_CHECKING:  # a default (PEP 696) lets `Wave("w")` need no annotation: typing's TypeVar takes one from 3.13
    from typing_extensions import TypeVar as _DefaultedTypeVar

    T = _DefaultedTypeVar("T", default=Any)
else:
    T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")

_log = logging.getLogger("shannon_otel")
# Unstarted tasks a drain settles between two yields to the loop (~4 ms of work each; see Wave._drain).
_DRAIN_CHUNK = 1024
# Tasks that are factories: a drain has nothing to close or settle in them (checked by exact type, O(1)).
_PLAIN: frozenset[type] = frozenset(
    {functools.partial, types.FunctionType, types.MethodType, types.BuiltinFunctionType},
)

TaskLike = Callable[[], Awaitable[R]] | Coroutine[Any, Any, R] | TaskSpec[R]


class SharedLimit(Protocol):
    """A rate limit shared beyond one run (``shannon_otel.redis.SharedRateLimit``): awaited before each start."""

    def acquire(self) -> Awaitable[None]: ...


class TaskPolicy(Protocol):
    """What the executor needs of a per-task recovery policy (retry, pipeline, ...)."""

    def call(self, fn: Callable[[], Awaitable[Any]], /) -> Awaitable[Any]:
        """Run one task: ``fn`` makes its awaitable, once per try (see :meth:`Policy.call`)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Live counters of a wave, handed to ``on_progress``: ``done`` counts the tasks that ended, whatever their
    outcome (succeeded, failed, timed out, or cancelled, started or not), ``failed`` those of them that failed or timed
    out."""

    wave: str
    pending: int | None  # None for an input of unknown length (lazy, or a list grown past its length as it streams)
    active: int
    done: int
    failed: int


# no slots=True: with it, Python 3.11/3.12 raise TypeError on Wave[X](...) (the frozen
# __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class Wave(Generic[T]):
    """An immutable wave policy; each :meth:`run` / :meth:`stream` creates fresh per-run state.

    Each task runs in its own copy of the caller's context (context variables, baggage, the current span:
    what one task sets never reaches another), on one of ``max_concurrency`` worker asyncio tasks that run
    tasks one after another: ``asyncio.current_task()`` in a task is its worker, so what is keyed by it or
    hung on it (``add_done_callback``, a session scoped by ``current_task``) outlives the task, into the
    next tasks of that worker. Its ``cancel()`` cancels the task calling it alone.

    Each run's result type comes from its tasks (``await Wave("w").map(fetch, urls)`` is a
    ``WaveResult[str]`` when ``fetch`` returns ``str``); the class's type parameter is optional and
    constrains nothing (``Wave[str]`` is still accepted, in annotations and when called).

    Args:
        name: the wave's name (span name ``wave <name>``, the ``shannon.wave.name`` attribute).
        max_concurrency: tasks running at once (> 0); ``None`` runs every task at once (``run``/``map`` read
            their whole input first; ``stream``/``stream_map`` then need a sized input: ValueError). A task waits
            for a free slot before it starts, so tasks that await what only a later task of the same wave does
            never end once they hold every slot (as behind any ``asyncio.Semaphore``).
        task_timeout: per-task timeout in seconds (> 0), or ``None``: a cancel scope around each task
            (retries included), not a retry's budget (``Retry(budget_s=)``) nor the ``Timeout`` policy.
            Cooperative like it: blocking sync code in a task (``time.sleep``, CPU work) is not cut.
            ``timeout=`` is its deprecated alias (DeprecationWarning; removed in the next release).
        rate_limit: task starts per second (> 0), or ``None``; ``burst`` starts may happen at once. It is the
            last wait before a start (a task naming a pool waits for it holding its pool permit), so at most
            ``burst + rate_limit * t`` tasks start in any ``t`` seconds, however long they waited for a pool or
            the event loop was blocked (sync code in a task): the schedule counts the starts as they happen.
            Or an object with ``async acquire()`` held across runs and processes (e.g.
            ``shannon_otel.redis.SharedRateLimit``), awaited before each task starts and never released: an
            object with a ``release()`` too (a semaphore, a ``ResourcePool``) is a concurrency limit and is
            refused (TypeError; it would hang the wave once its permits ran out).
            A number holds per run: two concurrent runs of one Wave may each start ``rate_limit``/s
            (share a ``ResourcePool`` to bound concurrency across runs).
        batch_size: run the input as consecutive batches of this size (1 to ``sys.maxsize``; each waits
            for the previous).
        fail_fast: on the first failure or timeout, cancel the running tasks and start no more.
        policy: a per-task recovery policy (``Retry``, ``Pipeline``...); tasks must then be factories.
            The policy is shared by every task: a ``CircuitBreaker`` in it sees all of them.
            A policy given no ``tracer_provider`` / ``meter_provider`` of its own reports its calls
            (operation and attempt spans, retry metrics) to this wave's providers; one given its own
            keeps them. The same object is run, never a copy: a breaker shared with other waves or
            direct calls keeps one state (its transitions and state gauge stay on its own providers). A
            ``Degrade(last_good=True)`` in it is refused (TypeError) unless it has ``key=``, as it
            would serve one task's last good value to another.
        pools: resource pools that tasks name by string (deprecated: pass the pool itself,
            ``task(fn, pool=api_pool)``; such a pool need not be listed here).
        on_progress: called with a :class:`Progress` at most every ``progress_interval`` seconds
            and once at the end, in a copy of the wave's context (never a task's: what a task sets is not
            seen, and what it sets reaches neither the wave's tasks nor the caller); an
            ``Exception`` (or a ``CancelledError``: nothing is cancelled in a sync call) it raises is isolated
            as a hook's is: never propagated, logged with its traceback the first time in a run, and each one
            handed to the wave's hooks as a ``HookFailed`` (method ``on_progress``, named after the callable;
            the OTel hook counts it in ``shannon.hook.errors``). A ``BaseException`` such as
            ``KeyboardInterrupt`` is not caught: it stops the wave, as a hook's does.
        hooks: extra hooks (callbacks, the anomaly detector); the OTel hook is added unless
            ``instrument=False``. ``tracer_provider`` / ``meter_provider`` default to the globals.
        clock, sleep: injectable time sources (tests use a fake clock). The clock is read as float seconds
            (a ``numpy.float32`` or ``Fraction`` reading converted, one of no real number type refused naming
            ``clock``), as every policy, saga and logging hook reads its own. A reading that fails (raises, NaN,
            an infinity) as the wave starts is refused, naming ``clock``; as a task starts, it fails that task
            (which never runs). Once tasks have run it never costs their results: the durations and queue waits
            it could not time are 0 s, a progress report is skipped, and its error is logged once per run
            (``shannon_otel`` logger, warning). The rate limit counts on this clock: stepped back, its schedule
            moves back with it (no start waits the step); stepped ahead, the jump is time that passed, so at most
            ``burst`` tasks start at once, then ``rate_limit``/s again. ``sleep(seconds)`` waits for a rate-limit
            slot, once per start (what it returns is ignored; one returning early lets the task start early, as a
            clock no sleep moves does); an error it raises fails that task, which never runs (a sync ``sleep``: a
            TypeError naming ``sleep``); a wave cancelled while it waits ends at once.
    """

    name: str
    max_concurrency: int | None = 100
    task_timeout: float | None = None
    rate_limit: float | SharedLimit | None = None
    burst: int = 1
    batch_size: int | None = None
    fail_fast: bool = False
    policy: TaskPolicy | None = None
    pools: Iterable[ResourcePool] = ()
    on_progress: Callable[[Progress], None] | None = None
    progress_interval: float = 0.25
    hooks: Iterable[Hook] | None = ()
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    instrument: bool = True
    clock: Callable[[], float] = _clock.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    timeout: float | None = field(default=None, kw_only=True, repr=False, compare=False)  # deprecated alias
    pool_map: Mapping[str, ResourcePool] = field(init=False, repr=False, compare=False)
    resolved_hooks: tuple[Hook, ...] = field(init=False, repr=False, compare=False)
    # What each task calls: ``policy``, or that same object reporting to this wave's providers
    task_policy: TaskPolicy | None = field(init=False, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied from its arguments (see rebuilt)
        return rebuilt(self)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:  # a wrong type is a TypeError, as everywhere else
            raise (ValueError if isinstance(self.name, str) else TypeError)(
                f"name must be a non-empty string, got {self.name!r}")
        check_telemetry_name("name", self.name)
        object.__setattr__(self, "name", plain(self.name))
        check_number("max_concurrency", self.max_concurrency, low=0, low_open=True, integer=True, allow_none=True)
        if self.timeout is not None:
            warnings.warn(
                "Wave(timeout=) is deprecated; use task_timeout= (the per-task timeout; a retry's budget is "
                "Retry(budget_s=), a per-call deadline the Timeout policy)", DeprecationWarning, stacklevel=3,
            )
            if self.task_timeout is not None:
                raise ValueError("pass task_timeout= only; timeout= is its deprecated alias")
            # checked under the name the caller used: Wave(timeout=0) said "task_timeout must be ..."
            check_number("timeout", self.timeout, low=0, low_open=True)
            # moved, not kept: dataclasses.replace() on this wave must not warn or conflict again
            object.__setattr__(self, "task_timeout", self.timeout)
            object.__setattr__(self, "timeout", None)
        check_number("task_timeout", self.task_timeout, low=0, low_open=True, allow_none=True)
        if not callable(getattr(self.rate_limit, "acquire", None)):  # else a shared limiter object
            if self.rate_limit is not None and (isinstance(self.rate_limit, bool)
                                                or not isinstance(self.rate_limit, int | float)):
                # The limiter object too: "must be a number in (0, inf] or None" refused it by omission
                raise TypeError(
                    "rate_limit must be starts per second in (0, inf], None, or a rate limiter with an async "
                    f"acquire() (e.g. shannon_otel.redis.SharedRateLimit){other_number(self.rate_limit)}, "
                    f"got {shown(self.rate_limit)}"
                )
            check_number("rate_limit", self.rate_limit, low=0, low_open=True, allow_none=True)
        elif callable(getattr(self.rate_limit, "release", None)):
            # A semaphore or a pool: the wave acquires before each start and never releases (a rate limiter's
            # acquire admits a start for good), so the wave would hang once its permits ran out.
            raise TypeError(
                f"rate_limit must be starts per second or a rate limiter whose acquire() alone admits a start "
                f"(e.g. shannon_otel.redis.SharedRateLimit), got {type(self.rate_limit).__name__}, which has "
                "release(): a concurrency limit, whose permits the wave would never give back (it would hang "
                "once they ran out). Bound concurrency with max_concurrency= or task(fn, pool=ResourcePool(...))"
            )
        else:  # called with no argument before each start: one that needs one failed every task, at run time
            limiter: Any = self.rate_limit
            check_arity("rate_limit.acquire", limiter.acquire, 0, "an async method taking no arguments")
        # <= sys.maxsize: batches are cut with itertools.islice, which refuses a larger size at run time
        check_number("batch_size", self.batch_size, low=1, high=sys.maxsize, integer=True, allow_none=True)
        check_number("burst", self.burst, low=1, integer=True)
        check_number("progress_interval", self.progress_interval, low=0, low_open=True)
        builtin_numbers(self, "max_concurrency", "task_timeout", "batch_size", "burst", "progress_interval",
                        *(() if callable(getattr(self.rate_limit, "acquire", None)) else ("rate_limit",)))
        if self.policy is not None and not callable(getattr(self.policy, "call", None)):
            raise TypeError(f"policy must have a call(fn) method, got {type(self.policy).__name__}")
        if isinstance(self.policy, type):  # its call is a function too: each task failed on a missing argument
            raise TypeError(
                f"policy must be a policy object, got the class {self.policy.__name__}: create one, "
                f"policy={self.policy.__name__}(...)"
            )
        for inner in getattr(self.policy, "policies", (self.policy,)):
            # Every task is a zero-argument factory: one unkeyed last good value would be served across tasks.
            if getattr(inner, "last_good", False) is True and getattr(inner, "key", None) is None:
                raise TypeError(
                    "policy: Degrade(last_good=True) in a Wave needs key= (every task would otherwise be "
                    "served another task's last good value); pass key=lambda args, kwargs: ... and give "
                    "the tasks their arguments as functools.partial(fn, *args) factories (or Wave.map)"
                )
        check_bool("fail_fast", self.fail_fast)
        check_sync_callable("on_progress", self.on_progress, "a callable taking a Progress", allow_none=True,
                            takes=1)
        check_sync_callable("clock", self.clock, "a callable returning seconds", takes=0)
        object.__setattr__(self, "clock", _clock.seconds(self.clock))
        if not callable(self.sleep):
            raise not_callable("sleep", self.sleep, "an async callable taking seconds")
        check_makes_awaitable("sleep", self.sleep, "an async callable taking seconds")
        check_arity("sleep", self.sleep, 1, "an async callable taking seconds")
        check_iterable("pools", self.pools, "an iterable of ResourcePool")
        object.__setattr__(self, "pools", tuple(self.pools))
        for p in self.pools:
            if not isinstance(p, ResourcePool):
                raise TypeError(f"pools must hold ResourcePool objects, got {p!r}")
        object.__setattr__(self, "hooks", check_hooks(self.hooks))
        object.__setattr__(self, "pool_map", pools_by_name(self.pools))
        object.__setattr__(
            self, "resolved_hooks",
            resolve_hooks(self.hooks, self.tracer_provider, self.meter_provider, instrument=self.instrument),
        )
        # the policy's calls join this wave's trace and metrics unless it was given providers of its own
        object.__setattr__(self, "task_policy", in_scope(self.policy, self.tracer_provider, self.meter_provider))

    # The result type comes from the tasks; a list mixing coroutines, factories and task() specs, whose element
    # type mypy cannot solve for R, falls back to the wave's own parameter (Any unless given).
    @overload
    async def run(self, tasks: Iterable[TaskLike[R]], *, raise_errors: bool = False) -> WaveResult[R]: ...
    @overload
    async def run(self, tasks: Iterable[TaskLike[T]], *, raise_errors: bool = False) -> WaveResult[T]: ...
    async def run(self, tasks: Iterable[TaskLike[Any]], *, raise_errors: bool = False) -> WaveResult[Any]:
        """Run every task; return results in input order with the report.

        Task failures never raise here unless ``raise_errors`` (then :class:`WaveError`, which keeps
        the full result). Cancelling the caller cancels every task and re-raises CancelledError.
        """
        check_bool("raise_errors", raise_errors)
        _check_iterable("tasks", tasks)
        check_reading("clock", self.clock())  # before the tasks are taken: a bad clock costs no results
        items: list[TaskLike[Any]] = []
        try:
            items.extend(tasks)  # appends as it iterates: what an input that raises had yielded is kept
        except BaseException:
            for item in items:  # never run: closed, so Python does not warn that they were never awaited
                close_unstarted(item)
            raise
        results: list[TaskResult[Any] | None] = [None] * len(items)

        def deliver(result: TaskResult[Any]) -> None:
            results[result.index] = result

        report = await self._execute(items, len(items), deliver)
        assert all(r is not None for r in results), "every input gets a result"
        result = WaveResult(results, report)  # type: ignore[arg-type]
        if raise_errors:
            result.raise_for_errors()
        return result

    async def map(
        self, fn: Callable[[A], Awaitable[R]], items: Iterable[A], *, raise_errors: bool = False,
    ) -> WaveResult[R]:
        """``await wave.map(fetch, urls)``: run ``fn(item)`` for every item, as :meth:`run` does.

        Each task is a factory (``functools.partial(fn, item)``), so a ``policy`` can retry it. ``items`` is read
        whole before the first task starts (as ``list(items)``): for an endless or very long input, use
        :meth:`stream_map`.
        """
        _check_fn(fn)
        _check_iterable("items", items)
        check_bool("raise_errors", raise_errors)
        return await self.run([functools.partial(fn, item) for item in items], raise_errors=raise_errors)

    def stream_map(
        self, fn: Callable[[A], Awaitable[R]], items: Iterable[A], *, buffer: int | None = None,
    ) -> WaveStream[R]:
        """``async with wave.stream_map(fetch, urls) as results``: :meth:`stream` over ``fn(item)``.

        A lazy ``items`` stays lazy (each item is taken when a worker has room for it), as does one too long
        for ``len()`` (``range(10**20)``).
        """
        _check_fn(fn)
        _check_iterable("items", items)
        tasks: Iterable[Callable[[], Awaitable[R]]] = (
            Mapped(fn, items) if isinstance(items, Sized) else (functools.partial(fn, item) for item in items)
        )
        return self._stream(tasks, buffer, "wave.stream_map(fn, items)")

    @overload
    def stream(self, tasks: Iterable[TaskLike[R]], *, buffer: int | None = None) -> WaveStream[R]: ...
    @overload
    def stream(self, tasks: Iterable[TaskLike[T]], *, buffer: int | None = None) -> WaveStream[T]: ...
    def stream(self, tasks: Iterable[TaskLike[Any]], *, buffer: int | None = None) -> WaveStream[Any]:
        """Results in completion order, holding O(concurrency) of them: ``async with wave.stream(it) as s``.

        ``tasks`` may be a lazy (even endless) iterator; ``max_concurrency`` must then be set. An error it raises
        as it is pulled fails the wave; a ``CancelledError`` of its own comes out as a RuntimeError (its cause), as
        a generator's StopIteration does: asyncio would take it for a cancellation of the wave's worker.
        A list the consumer extends as it streams (a crawler appending the links of each page it reads) runs every
        task it holds when the consumer has read every result, as a ``for`` loop over it would: once every task
        taken has ended, the wave waits until the consumer has read every result and asks for the next, then runs
        what the list gained; it ends when the list gained nothing (the wave span's duration includes the consumer's
        time on the last results), or when the consumer leaves the block (what the list gained then is cancelled).
        So over a list, the stream's ``report`` is there once the block is left: a block that waits for the wave to
        end without reading (polling ``report``, awaiting a hook's ``wave_finished``) waits for itself.
        A task appended once the wave has ended (from another task) never runs: a WARNING
        ``shannon.wave.tasks_not_run`` counts them when the consumer has read every result. What the list gains
        while every slot is busy waits for one to free: a task awaiting something that only a task appended later
        resolves never ends once all ``max_concurrency`` slots are held by such tasks (inherent to any bounded
        concurrency: tasks behind an ``asyncio.Semaphore`` wait so too); run those in another wave. The wave reads a
        list by index, as Python's list iterator does: a list cut (``del``, ``pop``, ``remove``, ``clear``) below
        what the wave has taken moves the tasks after the cut, and those added since, below its index, where they
        never run; one WARNING ``shannon.wave.input_cut`` says so as the wave ends (which tasks, it cannot tell).
        Leaving the block once every task taken has ended and the input holds no more is no cancellation: the
        wave is a success. An input of unknown length needs its end found for that: leaving with no task in flight
        and its end not yet found pulls its next item then (one item, closed and counted a cancelled task if there
        is one). Its workers pull it only once the consumer has made room, never ahead: a generator the consumer
        feeds as it reads each result (a crawler yielding from a deque of links) runs all it is fed.
        """
        _check_iterable("tasks", tasks)
        return self._stream(tasks, buffer, "wave.stream(tasks)")

    def _stream(self, tasks: Iterable[Any], buffer: int | None, call: str) -> WaveStream[Any]:
        """:meth:`stream`, its errors naming ``call`` (what the user called)."""
        size = known_size(tasks) if self.max_concurrency is None else None
        if self.max_concurrency is None and size is None:
            raise ValueError("max_concurrency=None needs a sized input; set max_concurrency to stream")
        if buffer is not None:
            check_number("buffer", buffer, low=1, integer=True)
        concurrency = self.max_concurrency or max(1, size or 0)
        return WaveStream(self, tasks, buffer or 2 * concurrency, call)

    # ------------------------------------------------------------------ the engine
    async def _execute(
        self, tasks: Iterable[Any], size: int | None, deliver: Callable[[TaskResult[Any]], None],
        gate: Credits | None = None, on_report: Callable[[WaveReport], None] | None = None,
        wanted: Callable[[], bool] | None = None, settle: Callable[[], Awaitable[None]] | None = None,
        on_run: Callable[[WaveRun], None] | None = None,
    ) -> WaveReport:
        """Run ``tasks``, handing each result to ``deliver``; ``wanted`` says whether the results of tasks
        never started are still read (a stream's consumer left: no; None: always). ``settle``, for a list the
        consumer extends as it reads (a stream's), waits until it has read every result or left: once the list
        runs out, the wave runs what it gained meanwhile, and ends only when it gained nothing. ``on_run`` is handed
        the run's state as it begins (a stream's, to tell whether its consumer leaving cuts anything short)."""
        clock = self.clock
        context = contextvars.copy_context()
        concurrency = self.max_concurrency or size or 1
        if size is not None and gate is None:  # run()/map(): their input, read first, is a list of `size`
            concurrency = max(1, min(concurrency, size))
        # A stream's list is not capped at its length at the start: its consumer may extend it as it streams
        # (the tasks it added ran one at a time after a one-task start); its workers start as needed (run_batch).
        if self.batch_size is not None:  # no more than a batch ever runs at once: the slots really available
            concurrency = min(concurrency, self.batch_size)
        # A stream's buffer also caps the slots (no more tasks run than results it may hold), and so the workers:
        # one more would only wait for a credit (max_concurrency=None over range(200_000) with buffer=4 started
        # 200_000 workers, and cancelling them all took minutes when the consumer left).
        buffer = None if gate is None else gate.free
        if buffer is not None:
            concurrency = min(concurrency, buffer)
        started = clock()
        check_reading("clock", started)  # a stream's (run() checked before taking its tasks)
        # once per wave, never per task: the spans configure()'s guards count as dropped meanwhile
        drops = drops_for(self.tracer_provider)
        dropped_before = drops.total("traces") if drops is not None else 0
        hooks = self.resolved_hooks
        observers: list[WaveObserver] = []
        owners: list[Hook] = []
        entered: list[Any] = []
        interrupted: BaseException | None = None  # a hook's KeyboardInterrupt & co: the wave ends at once
        if hooks:
            # max_concurrency=10**400 (unbounded) made a wave span attribute OTLP cannot encode
            event = WaveStarted(self.name, size, int64_or_none(self.max_concurrency), started)
            for hook in hooks:  # isolated: a hook that raises misses this wave, the wave goes on
                try:
                    try:
                        observer = context.run(hook.wave_started, event)
                    except HOOK_ERRORS as exc:
                        hook_failed(hook, "wave_started", exc, hooks)
                        continue
                    if observer is None or refused(observer, hook, "wave_started", hooks):
                        continue
                except BaseException as exc:  # the hook's, or another's in its hook_failed (told of this one's error)
                    interrupted = exc
                    break
                observers.append(observer)
                owners.append(hook)
                # A scope observer (the OTel one) is entered at once in the context the workers
                # inherit, so the next hooks see its span current. That context is the wave's own
                # copy: nothing entered here can leak to the caller, and it is exited in `finally`.
                try:
                    entered.append(context.run(enter, observer, hook, "wave_started", hooks))
                except BaseException as exc:  # from its __enter__: not entered, so never exited
                    entered.append(Unentered(observer))
                    interrupted = exc
                    break
        run = WaveRun(self, tuple(observers), size, deliver, gate, owners=tuple(owners))
        if on_run is not None:
            on_run(run)
        # a stream's input is pulled inside its workers (and its runner): its own CancelledError must not pass as
        # theirs (see pulled); run() took its whole input in the caller first, as a list
        reader = None if gate is None else pulled(tasks)
        items: Iterator[Item] = enumerate(tasks if reader is None else reader)
        if size is None:
            run.ahead = reader
        chunk: Iterator[Item] = iter(())
        cancelled = errored = False
        error: BaseException | None = None  # what the wave itself raised (see WaveReport.error)

        async def regrown() -> Item | None:
            """Once the input ran out: the first task a list the consumer extends gained by the time the consumer
            read every result (see ``settle``); None when it gained none (or is no such list, or the wave stopped)."""
            if settle is None or run.stopped:
                return None
            await settle()
            return next(items, None)

        try:
            if interrupted is not None:  # raised here, so that the hooks already asked see the wave end
                raise_as_is(interrupted)
            if self.batch_size is None:
                await run.run_batch(items, concurrency, context)
                while not run.stopped and (first := await regrown()) is not None:
                    if wanted is not None and not wanted():  # the consumer left meanwhile: its rest, as a left stream's
                        chunk, cancelled = iter((first,)), True
                        break
                    await run.run_batch(itertools.chain((first,), items), concurrency, context, first=1)
            elif size is not None:
                batch_size = self.batch_size
                for batch in itertools.count():
                    block = tuple(itertools.islice(items, batch_size))
                    if not block:
                        first = await regrown()
                        if first is None:
                            break
                        if wanted is not None and not wanted():
                            chunk, cancelled = iter((first,)), True
                            break
                        block = (first, *itertools.islice(items, batch_size - 1))
                    run.batch = batch
                    chunk = iter(block)
                    await run.run_batch(chunk, min(concurrency, len(block)), context)
                    if run.stopped:
                        break
            else:  # a lazy input (a stream's): each batch is pulled as it runs, never materialised (it may be huge)
                # Every item is pulled by a worker, the first of a batch too: pulled here, an error the input raised
                # at a batch's start came out bare, and one raised within a batch in the workers' ExceptionGroup.
                # An item pulled as the consumer left between two batches (see WaveRun.ahead) is the next one's first.
                for batch in itertools.count():
                    run.batch = batch
                    await run.run_batch(itertools.islice(items, self.batch_size), concurrency, context)
                    if run.stopped or run.ended:  # ended: a worker found the batch short, or the input's end
                        break
        except asyncio.CancelledError:
            cancelled = True
            raise
        except BaseException as exc:  # e.g. a lazy input that raises: the wave failed, whatever its tasks did
            errored, error = True, exc
            raise
        finally:
            # A hook's (or on_progress's) BaseException propagates, once the wave has ended for every hook.
            escaped: BaseException | None = None
            # A stream whose wave was cancelled from outside its block (asyncio.run's shutdown, a "cancel every
            # task" handler) leaves no result of a task never started to read: its consumer, if any is left,
            # gets the cancellation itself. Waiting for room at that consumer hung the shutdown for ever.
            unread = wanted is not None and (cancelled or not wanted())
            if size is not None:  # never drain a lazy input: it may be endless
                if type(tasks) is Mapped and unread:
                    # stream_map's rest is all plain factories whose results nobody reads: counted, not made.
                    # Counted at the input's length now, not at the start: a list the consumer extended or cut
                    # as it streamed yields what it holds now (the length at the start counted the rest of a
                    # grown list short, even negative, and a cut list's vanished items as cancelled tasks).
                    taken = size - run.pending  # every task taken has ended (started or not): none pending
                    try:
                        now = len(tasks)
                    except Exception:  # an input whose length can no longer be read: the one it had at the start
                        now = size
                    escaped = self._skip(run, taken, max(0, now - taken))
                elif gate is not None and not (cancelled or errored or run.stopped):
                    # the stream's input ran to its end: what a list gained since is late (WaveStream logs it), never
                    # passed off as cancelled tasks of a wave that was not cancelled
                    pass
                else:
                    rest = _Rest(itertools.chain(chunk, items))
                    escaped = await self._drain(run, rest, not unread)
                    broke = rest.error
                    ended = cancelled or errored or escaped is not None
                    if broke is not None and (not ended or not isinstance(broke, Exception)):
                        # The input broke as its rest was taken (fail-fast): the wave failed with that error, raised
                        # once the wave has ended (it escaped this block: no report, the wave span never ended).
                        # A wave already failing or cancelled (a stream left early) keeps its own end; a
                        # KeyboardInterrupt & co is never dropped.
                        escaped, errored = broke, True
                run.pending = 0  # every task of the input has ended (run, drained or counted): none is left
            elif reader is not None and (ahead := reader.drop()) is not None:
                if ahead.error is not None:
                    # What the input raised as its consumer left, looking for its end: a KeyboardInterrupt & co is
                    # never dropped. The wave fails with it (raised once it has ended), as when a worker's take raised
                    # it: the input's end, not the consumer's leaving, ended the wave.
                    escaped, cancelled = ahead.error, False
                else:
                    # The item pulled as its consumer left, looking for the input's end, never ran: a task taken (its
                    # index the next one), so queued, then skipped as a drained one (closed, cancelled)
                    held = (run.taken, ahead.item)
                    try:
                        run.queued_past(held)
                    except BaseException as exc:
                        escaped = exc
                    escaped = await self._drain(run, iter((held,)), not unread) or escaped
            if cancelled and run.left_idle == run.done and escaped is None and not errored:
                # Its consumer left once every task had ended and the input held none more (see WaveRun.idle), and no
                # task ended since (none cancelled, none drained): the wave was cut short of nothing. Left in the few
                # steps before the wave found that out itself, it said "cancellation" (a `break` right after the last
                # result).
                cancelled = False
            if isinstance(escaped, asyncio.CancelledError):  # cancelled while draining: so is the wave
                cancelled = True
                if error is not None and not isinstance(error, Exception):
                    # yet a KeyboardInterrupt & co the block raised (a task's) is never dropped for it: raised, as
                    # asyncio's TaskGroup raises one over its own cancellation (the caller got the CancelledError)
                    escaped = error
            elif escaped is not None:  # raised in place of what the block raised, if anything (below)
                errored, error = True, escaped
            if reader is not None and reader.cut:
                _input_cut(self.name, reader)
            dropped = drops.total("traces") - dropped_before if drops is not None else 0
            try:
                # max: a clock that went back (an injected one; the default is monotonic) made negative durations,
                # in the report and to the hooks, which the SDK's histograms dropped (only the wave's with a warning)
                duration = max(0.0, clock() - started)
            except Exception as exc:  # the tasks have run: their results are the wave's, never the clock's error
                duration = 0.0
                run.unclocked(exc)
            report = run.report.build(
                self.name, duration, concurrency, cancelled, dropped, errored, self.batch_size, buffer, error,
            )
            if on_report is not None:
                on_report(report)
            for k in range(len(observers) - 1, -1, -1):
                try:
                    call_void(context.run, "wave_finished", observers[k].wave_finished, report)
                except HOOK_ERRORS as exc:
                    escaped = escaped or held_failure(owners[k], "wave_finished", exc, hooks)
                except BaseException as exc:
                    escaped = escaped or exc
                if k < len(entered) and type(entered[k]) is not Unentered:
                    try:
                        context.run(leave, observers[k], owners[k], "wave_finished", hooks)
                    except BaseException as exc:
                        escaped = escaped or exc
            try:
                if self.on_progress is not None:  # in the wave's context, as the reports after each task
                    run.tell_progress(context)
            finally:  # its KeyboardInterrupt & co propagates: the run is let go of all the same (see release)
                run.release()
            if escaped is not None:
                raise_as_is(escaped)
        return report

    async def _drain(self, run: WaveRun, items: Iterator[Item], wanted: bool) -> BaseException | None:
        """Tasks never started (fail-fast or cancellation): closed, and recorded as cancelled.

        Every ``_DRAIN_CHUNK`` tasks it yields to the loop: a sized input's rest may hold millions (a stream
        left after a few results), and counting them all in one step froze every other task on the loop
        for seconds. A cancellation meanwhile ends the yielding, never the drain (its tasks must still
        be closed and counted): it is returned, as is the first ``BaseException`` an observer raised.
        Consecutive plain factories (nothing to close or settle) are counted in runs (``_skip``), each run
        told to the observers at once; their results are made only when ``wanted``. A stream's results are
        queued as its consumer makes room for them, as its started tasks' are: all queued at once, the rest of
        a fail-fast stream was held whole (a million results) by a consumer that awaited anything between two.
        """
        escaped: BaseException | None = None
        interrupted: asyncio.CancelledError | None = None
        gate = run.gate if wanted else None
        budget = _DRAIN_CHUNK
        first = plain = 0  # a run of plain factories not counted yet: its first index, its length

        async def room() -> bool:
            """Wait for room for one more result at the stream's consumer; False once it has left (the runner
            is cancelled as its block ends: then no result is read any more)."""
            nonlocal interrupted
            if gate is not None and interrupted is None:
                try:
                    await gate.acquire()
                except asyncio.CancelledError as exc:
                    interrupted = exc
            return gate is None or interrupted is None

        async def flush() -> None:
            nonlocal escaped, plain
            escaped = self._skip(run, first, plain) or escaped
            if wanted:
                deliver, name, cancelled = run.deliver, self.name, Outcome.CANCELLATION
                for index in range(first, first + plain):
                    if gate is not None and not await room():
                        break
                    deliver(TaskResult(name, index, name, cancelled))
            plain = 0

        for index, item in items:
            if not budget:
                budget = _DRAIN_CHUNK
                if plain:
                    await flush()
                if interrupted is None:
                    try:
                        await asyncio.sleep(0)
                    except asyncio.CancelledError as exc:
                        interrupted = exc
            budget -= 1
            if type(item) in _PLAIN:  # a function or partial (what map() makes): nothing to close or settle
                if not plain:
                    first = index
                plain += 1
                continue
            if plain:
                await flush()
            outcome, value, error = settled(item) or (Outcome.CANCELLATION, None, None)
            if error is not None and not isinstance(error, Exception):
                # a custom BaseException the future ended with: never swallowed, as a started task's (see _run_one).
                # Kept as a failure, it made values() fail on an assert (an ExceptionGroup cannot hold it).
                escaped = escaped or error
            close_unstarted(item)
            name = (item.name or self.name) if type(item) is TaskSpec else self.name
            run.report.add(outcome, 0.0, 0.0, error, None, False)
            run.pending -= 1
            run.done += 1
            if outcome is not Outcome.SUCCESS and outcome is not Outcome.CANCELLATION:
                run.failed += 1
            result: TaskResult[Any] = TaskResult(self.name, index, name, outcome, value, error)
            if run.observers:
                try:
                    run.skipped(result)
                except BaseException as exc:
                    escaped = escaped or exc
            if gate is None or await room():
                run.deliver(result)
        if plain:
            await flush()
        return escaped or interrupted

    def _skip(self, run: WaveRun, first: int, count: int) -> BaseException | None:
        """``count`` plain tasks from index ``first`` never started: counted as cancelled in O(1), told to the
        observers in one ``tasks_skipped`` (one ``task_skipped`` per task cost ~3 us each: seconds for a stream
        left early over a million items); their results are the caller's to make, if wanted. Returns the first
        ``BaseException`` an observer raised."""
        run.report.add_unstarted(Outcome.CANCELLATION, count)
        run.pending -= count
        run.done += count
        escaped: BaseException | None = None
        if run.observers:
            try:
                run.skipped_many(TaskResult(self.name, first, self.name, Outcome.CANCELLATION), count)
            except BaseException as exc:
                escaped = exc
        return escaped


def _input_cut(wave: str, reader: Pulled) -> None:
    """Said once per wave, as it ends: its list changed below what it had taken (see Growing): cut, so tasks moved or
    added below that index were never taken, or an item taken replaced in place (``tasks[i] = None`` to free it),
    which skips nothing. Which of the two, and how many tasks, it cannot tell (it holds one task, the last it took,
    not them all), so the message says both."""
    taken = reader.taken
    _log.warning(
        "wave %r: its streamed list changed below the %d task(s) the wave had taken from it (cut by del, pop, "
        "remove or clear, or an item it had taken replaced): the wave reads a list by index, so if it was cut, the "
        "tasks moved or added below that index never ran; only extend a list while it streams", wave, taken,
        extra={LOG_EVENT_NAME: LOG_EVENT_INPUT_CUT, WAVE_NAME: wave, INPUT_CUT_INDEX: taken},
    )


class _Rest:
    """The rest of an input as a drain takes it: an error its iterator raises ends it, kept in ``error``."""

    __slots__ = ("_items", "error")

    def __init__(self, items: Iterator[Item]) -> None:
        self._items = items
        self.error: BaseException | None = None

    def __iter__(self) -> _Rest:
        return self

    def __next__(self) -> Item:
        try:
            return next(self._items)
        except StopIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise StopIteration from None


def _check_iterable(name: str, value: object) -> None:
    if hasattr(value, "__aiter__") and not hasattr(value, "__iter__"):
        # an async generator "is an iterable" to its author: say why it is not one here, and what to do
        raise TypeError(
            f"{name} must be an iterable, got an async iterable ({type(value).__name__}): a wave pulls its "
            "input with next(); collect it first ([x async for x in ...]) or pass a sync iterator"
        )
    check_iterable(name, value)


def _check_fn(fn: object) -> None:
    # Its arity too, once per map: fn() of no parameter failed every task with Python's bare TypeError, which a
    # policy then took for the operation's failure (retried it, a shared breaker counted it and opened).
    if not callable(fn):
        raise not_callable("fn", fn, "an async callable taking one item")
    if inspect.isasyncgenfunction(fn):
        # Else every task failed at run time ("returned async_generator"), one error per item, and a policy
        # retried each (the policies' decorator refuses one at once, as here).
        raise TypeError(f"fn must be an async callable taking one item, got the async generator function {fn!r}: "
                        "a task is awaited once for its result; collect what it yields in an async def")
    check_arity("fn", fn, 1, "an async callable taking one item")
