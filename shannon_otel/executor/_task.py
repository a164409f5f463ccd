"""Task specs and per-task measurements (token usage, cost) recorded from inside a running task."""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import FunctionType, MethodType
from typing import Any, Generic, TypeVar, cast

from .._deadline import CURRENT_SCOPE, TaskScope
from .._fork import release_held
from .._forwarding import forwarded
from .._telemetry import TASK_COST_ATTR as COST
from .._telemetry import TASK_INPUT_TOKENS as INPUT_TOKENS
from .._telemetry import TASK_OUTPUT_TOKENS as OUTPUT_TOKENS
from .._telemetry import TASK_SPAN_ATTRIBUTES
from .._validate import (
    check_arity,
    check_makes_awaitable,
    check_telemetry_name,
    empty_or_not_str,
    other_number,
    plain,
    shown,
)
from ._limits import ResourcePool

T = TypeVar("T")
_log = logging.getLogger("shannon_otel")



# no slots=True: with it, Python 3.11/3.12 raise TypeError on TaskSpec[X](...) (the frozen
# __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class TaskSpec(Generic[T]):
    """A task with options: a coroutine, a zero-argument factory (needed for retries), or any other
    awaitable a wave runs as a task (an ``asyncio.Task`` or future, an object with ``__await__``).

    A Python function or bound method that needs arguments is refused (TypeError naming ``work``): pass
    ``lambda: fetch(url)`` or ``functools.partial(fetch, url)``, not ``fetch``.

    ``pool`` is the :class:`ResourcePool` the task runs in; a pool's name (a string the wave
    looks up in its ``pools=``) is deprecated and warns.
    """

    work: Callable[[], Awaitable[T]] | Coroutine[Any, Any, T]
    name: str | None = None
    pool: ResourcePool | str | None = None

    def __post_init__(self) -> None:
        # what a wave runs given as itself: task() only names it (an asyncio.Task was refused, though the wave runs one)
        if not (callable(self.work) or inspect.isawaitable(self.work)):
            raise TypeError(
                f"work must be a coroutine, a zero-argument async callable or another awaitable (an asyncio.Task), "
                f"got {type(self.work)!r}"
            )
        if _needs_arguments(self.work):
            # a function taking arguments (task(fetch) for task(lambda: fetch(url))), or an async generator function,
            # failed each run instead
            what = "a zero-argument async callable (the wave calls it with no arguments)"
            check_makes_awaitable("work", self.work, what)
            check_arity("work", self.work, 0, what)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise empty_or_not_str(self.name)(f"name must be a non-empty str or None, got {self.name!r}")
        check_telemetry_name("name", self.name)
        if self.name is not None:
            object.__setattr__(self, "name", plain(self.name))
        if isinstance(self.pool, str):
            if not self.pool:  # no pool has it (ResourcePool refuses it): each run failed the task, naming it
                raise ValueError("pool must be a ResourcePool, a pool's non-empty name or None, got ''")
            check_telemetry_name("pool", self.pool)  # nor one a pool cannot have: it was repeated whole in a warning
            # and in each run's failure of the task (a 10 MB name, two 10 MB messages)
            # point at the user's line, whether they called task() or TaskSpec() (frame 1 is __init__)
            via_task = sys._getframe(2).f_code is task.__code__
            warnings.warn(
                f"pool={self.pool!r} (a pool's name) is deprecated; pass the ResourcePool itself",
                DeprecationWarning, stacklevel=4 if via_task else 3,
            )
        elif self.pool is not None and not isinstance(self.pool, ResourcePool):
            raise TypeError(f"pool must be a ResourcePool or None, got {type(self.pool).__name__}")


def _needs_arguments(work: object) -> bool:
    """Whether ``work``, a Python function or bound method, cannot be called without arguments, or is an async
    generator function: what :func:`check_arity` and :func:`check_makes_awaitable` then say. Read from its
    code, seeing through a policy's decorator (``_forwarding``): ``inspect.signature`` (~7 us, eight times a task()
    call) for each of a wave's lambdas, or for any other callable (a partial: ~18 us), would cost more than the
    check is worth; those are not checked."""
    bound = 0
    if type(work) is MethodType:
        work, bound = work.__func__, 1
    while type(work) is FunctionType and (inner := forwarded(work)) is not None:
        work = inner  # a decorated function: its wrapper takes any arguments, the function may not
        if type(work) is MethodType:  # @Retry() applied to a bound method
            work, bound = work.__func__, bound + 1
    if type(work) is not FunctionType:
        return False
    code = work.__code__
    if code.co_flags & inspect.CO_ASYNC_GENERATOR:
        return True
    if code.co_argcount - bound > len(work.__defaults__ or ()):
        return True
    kw_only = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    return bool(kw_only) and any(k not in (work.__kwdefaults__ or {}) for k in kw_only)


def task(
    work: Callable[[], Awaitable[T]] | Coroutine[Any, Any, T], *, name: str | None = None,
    pool: ResourcePool | str | None = None,
) -> TaskSpec[T]:
    """Name a task or bind it to a resource pool: ``task(lambda: fetch(url), pool=api_pool)``."""
    return TaskSpec(work, name, pool)


class TaskSlot(TaskScope):
    """One running wave task (one slot per task, current in the task's own context): its
    measurements, and (from :class:`TaskScope`) the wave's per-task timeout scope, which the recovery
    policies read through the neutral ``shannon_otel._deadline`` module. ``ended`` once the task's
    result is delivered: work it left running in the background may still see the slot, but can no
    longer change the delivered result."""

    __slots__ = ("measurements",)

    def __init__(self) -> None:
        # TaskScope's fields set here, not by super().__init__(): one slot per task, and the call
        # through super() cost ~0.2 us of a task's ~4 us.
        self.timeout = None
        self.measurements: dict[str, float] | None = None
        self.ended = False


# Names record() must not write: the task span's own attributes (a measurement would overwrite them),
# and the token and cost measurements, which have their own checked functions.
_RESERVED: dict[str, str] = {
    **dict.fromkeys(TASK_SPAN_ATTRIBUTES, " on the task span"),
    INPUT_TOKENS: ": use record_tokens(input=...)", OUTPUT_TOKENS: ": use record_tokens(output=...)",
    COST: ": use record_cost()",
}
_DROPPED: dict[str, float] = {}  # the sink of records made after their task ended (never written)
# The same variable as the policies' deadline scope, seen with the executor's richer slot type: the
# executor only ever stores TaskSlots in it, so one write per worker serves both.
CURRENT_TASK = cast("ContextVar[TaskSlot | None]", CURRENT_SCOPE)


# Threads of one task record at once (``asyncio.to_thread`` calls gathered, each recording its tokens): a sum
# read and written by two of them lost one's amount (30,199 of 40,000 tokens counted under an 8-thread stress).
# Records and the task's end take turns on it, so nothing is added to measurements already delivered.
_RECORDING = threading.Lock()
if hasattr(os, "register_at_fork"):  # a child forked while another thread held it would wait on it for good
    os.register_at_fork(after_in_child=lambda: release_held(_RECORDING))


def end_measurements(slot: TaskSlot) -> dict[str, float] | None:
    """Mark the task ended (records from now on are dropped) and return its measurements; called once, by its
    wave, when the task ends."""
    with _RECORDING:
        slot.ended = True
        return slot.measurements


def in_task() -> bool:
    """Whether the caller runs inside a wave task (``record()`` would not raise: it records, or drops once the
    task has ended)."""
    return CURRENT_TASK.get() is not None


def measuring() -> tuple[TaskSlot, Token[TaskSlot | None]]:
    """A fresh slot made current, for ``record()`` calls of work that runs for a wave task elsewhere (a Dask
    worker): end it with :func:`end_measurements`, then ``CURRENT_TASK.reset(token)``."""
    slot = TaskSlot()
    return slot, CURRENT_TASK.set(slot)


def add_measurements(measurements: Mapping[str, float]) -> None:
    """Add what work done elsewhere for the running task recorded (sent back by a Dask worker) to its
    measurements, as if recorded here; dropped (logged) outside a task or once the task has ended."""
    with _RECORDING:
        slot = CURRENT_TASK.get()
        if slot is None or slot.ended:
            _log.warning("measurements %s arrived after their wave task ended; dropped", sorted(measurements))
            return
        if slot.measurements is None:
            slot.measurements = {}
        for name, value in measurements.items():
            try:
                _add(slot.measurements, "record", name, value)
            except ValueError:  # the total would overflow: the task's outcome must not change for it
                _log.warning("measurement %r of a remote call dropped: its total would overflow", name)


def _measurements(caller: str) -> dict[str, float]:
    """The running task's measurements (call under ``_RECORDING``)."""
    slot = CURRENT_TASK.get()
    if slot is None:
        raise RuntimeError(f"{caller}() must be called from inside a task run by a Wave{_from_a_thread()}")
    if slot.ended:  # background work that outlived its task: its result is already delivered
        # Either cause: a hook's task_finished (run once the result was made) or work the task left running.
        _log.warning("%s() called after its wave task ended (its result already made: from a hook's task_finished, "
                     "or by work the task left running); dropped", caller)
        return _DROPPED
    if slot.measurements is None:
        slot.measurements = {}
    return slot.measurements


def _from_a_thread() -> str:
    """What to add to the outside-a-task error in a thread other than the main one: a ``threading.Thread`` (or
    ``loop.run_in_executor``) a task starts does not carry its context, so the task that started it is not seen;
    the bare error read as a contradiction there."""
    if threading.current_thread() is threading.main_thread():
        return ""
    return (" (called in a thread: one a task starts with threading.Thread or loop.run_in_executor does not see the "
            "task; run the function with asyncio.to_thread, which carries the task's context, or in "
            "contextvars.copy_context() taken in the task)")


def _check_amount(caller: str, parameter: str, value: object, *, integer: bool, non_negative: bool) -> float:
    """``value`` as a float, or a TypeError/ValueError naming ``parameter`` and what it accepts.

    Checked before the task's measurements change: one bad value must not poison a sum that
    histograms, the report and the cost metric aggregate for the whole process.
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = ("an int" if integer else "a finite number") + (" >= 0" if non_negative else "")  # the range too
        raise TypeError(f"{caller}(): {parameter} must be {kind}{other_number(value, integer=integer)}, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]  # an int or float, checked just above
    except OverflowError:  # an int beyond any float (10**400)
        number = math.inf
    if not math.isfinite(number):
        # shown(): repr() of an int over 4,300 digits raises its own ValueError, naming nothing
        raise ValueError(f"{caller}(): {parameter} must be finite{' and >= 0' if non_negative else ''}, "
                         f"got {shown(value)}")
    if non_negative and number < 0:
        raise ValueError(f"{caller}(): {parameter} must be >= 0, got {value!r}")
    return number


def _add(measurements: dict[str, float], caller: str, name: str, value: float) -> None:
    total = measurements.get(name, 0.0) + value
    if not math.isfinite(total):  # two finite values whose sum overflows (1e308 + 1e308)
        raise ValueError(f"{caller}(): the total of {name!r} would overflow to {total!r}")
    measurements[name] = total



def record(name: str, value: float) -> None:
    """Add ``value`` to the running task's measurement ``name`` (shown on its span and in the report).

    ``name`` is a non-empty string, ``value`` a finite int or float (TypeError/ValueError otherwise,
    raised before anything is recorded); a name the library sets itself (the task span's
    ``shannon.task.*`` attributes, ``shannon.wave.name``, ``error.type``, the token and cost names) is refused with
    ValueError. Raises RuntimeError outside a wave task. Work the task spawns
    (``asyncio.create_task``, or threads: ``asyncio.to_thread``, several at once) records on that task;
    once the task has ended, its records are dropped (logged), never moved to another task.
    """
    if not isinstance(name, str) or not name:
        raise empty_or_not_str(name)(f"record(): name must be a non-empty string, got {name!r}")
    check_telemetry_name("record(): name", name)
    name = plain(name)
    if name in _RESERVED:
        raise ValueError(f"record(): name {name!r} is set by shannon-otel itself{_RESERVED[name]}; pick another name")
    number = _check_amount("record", "value", value, integer=False, non_negative=False)
    with _RECORDING:
        measurements = _measurements("record")
        if measurements is not _DROPPED:
            _add(measurements, "record", name, number)


def record_tokens(input: int = 0, output: int = 0) -> None:
    """Record GenAI token usage of the running task (``shannon.task.tokens`` metrics, summed per task).

    ``input`` and ``output`` are ints >= 0 (TypeError/ValueError otherwise, before anything is recorded).
    """
    tokens_in = _check_amount("record_tokens", "input", input, integer=True, non_negative=True)
    tokens_out = _check_amount("record_tokens", "output", output, integer=True, non_negative=True)
    with _RECORDING:
        measurements = _measurements("record_tokens")
        if measurements is not _DROPPED:
            _add(measurements, "record_tokens", INPUT_TOKENS, tokens_in)
            _add(measurements, "record_tokens", OUTPUT_TOKENS, tokens_out)


def record_cost(amount: float) -> None:
    """Record the running task's cost in US dollars -- summed into ``shannon.task.cost`` (unit ``{USD}``; the
    dashboards show it as $).

    ``amount`` is a finite number >= 0 (TypeError/ValueError otherwise, before anything is recorded).
    """
    number = _check_amount("record_cost", "amount", amount, integer=False, non_negative=True)
    with _RECORDING:
        measurements = _measurements("record_cost")
        if measurements is not _DROPPED:
            _add(measurements, "record_cost", COST, number)
