"""Task specs and per-task measurements (token usage, cost) recorded from inside a running task."""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._telemetry import GEN_AI_INPUT_TOKENS as INPUT_TOKENS
from .._telemetry import GEN_AI_OUTPUT_TOKENS as OUTPUT_TOKENS
from .._telemetry import TASK_COST_ATTR as COST
from ._limits import ResourcePool

T = TypeVar("T")
_log = logging.getLogger("shannon_otel")



# no slots=True: with it, Python 3.11/3.12 raise TypeError on TaskSpec[X](...) (the frozen
# __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class TaskSpec(Generic[T]):
    """A task with options: a coroutine, or a zero-argument factory (needed for retries).

    ``pool`` is the :class:`ResourcePool` the task runs in; a pool's name (a string the wave
    looks up in its ``pools=``) is deprecated and warns.
    """

    work: Callable[[], Awaitable[T]] | Coroutine[Any, Any, T]
    name: str | None = None
    pool: ResourcePool | str | None = None

    def __post_init__(self) -> None:
        if not (inspect.iscoroutine(self.work) or callable(self.work)):
            raise TypeError(f"work must be a coroutine or a zero-argument callable, got {type(self.work)!r}")
        if isinstance(self.pool, str):
            # point at the user's line, whether they called task() or TaskSpec() (frame 1 is __init__)
            via_task = sys._getframe(2).f_code is task.__code__
            warnings.warn(
                f"pool={self.pool!r} (a pool's name) is deprecated; pass the ResourcePool itself",
                DeprecationWarning, stacklevel=4 if via_task else 3,
            )
        elif self.pool is not None and not isinstance(self.pool, ResourcePool):
            raise TypeError(f"pool must be a ResourcePool or None, got {type(self.pool).__name__}")


def task(
    work: Callable[[], Awaitable[T]] | Coroutine[Any, Any, T], *, name: str | None = None,
    pool: ResourcePool | str | None = None,
) -> TaskSpec[T]:
    """Name a task or bind it to a resource pool: ``task(lambda: fetch(url), pool=api_pool)``."""
    return TaskSpec(work, name, pool)


class TaskSlot:
    """One running wave task (one slot per task, current in the task's own context): its
    measurements, and the wave's per-task timeout scope, so a policy inside can tell that timeout
    from a cancellation. ``ended`` once the task's result is delivered: work it left running in the
    background may still see the slot, but can no longer change the delivered result."""

    __slots__ = ("ended", "measurements", "timeout")

    def __init__(self) -> None:
        self.measurements: dict[str, float] | None = None
        self.timeout: asyncio.Timeout | None = None
        self.ended = False


def task_timed_out() -> bool:
    """Whether the running wave task's own timeout has fired (its CancelledError is that timeout)."""
    slot = CURRENT_TASK.get()
    return slot is not None and slot.timeout is not None and slot.timeout.expired()


CURRENT_TASK: ContextVar[TaskSlot | None] = ContextVar("shannon_otel_current_task", default=None)


def _measurements(caller: str) -> dict[str, float]:
    slot = CURRENT_TASK.get()
    if slot is None:
        raise RuntimeError(f"{caller}() must be called from inside a task run by a Wave")
    if slot.ended:  # background work that outlived its task: its result is already delivered
        _log.warning("%s() called after its wave task ended (by work the task left running); dropped", caller)
        return {}
    if slot.measurements is None:
        slot.measurements = {}
    return slot.measurements


def record(name: str, value: float) -> None:
    """Add ``value`` to the running task's measurement ``name`` (shown on its span and in the report).

    Raises RuntimeError outside a wave task. Work the task spawns (``asyncio.create_task``) records
    on that task; once the task has ended, its records are dropped (logged), never moved to
    another task.
    """
    measurements = _measurements("record")
    measurements[name] = measurements.get(name, 0.0) + value


def record_tokens(input: int = 0, output: int = 0) -> None:
    """Record GenAI token usage of the running task (``gen_ai.client.token.usage`` metrics)."""
    if input < 0 or output < 0:
        raise ValueError(f"token counts must be >= 0, got input={input}, output={output}")
    measurements = _measurements("record_tokens")
    measurements[INPUT_TOKENS] = measurements.get(INPUT_TOKENS, 0.0) + input
    measurements[OUTPUT_TOKENS] = measurements.get(OUTPUT_TOKENS, 0.0) + output


def record_cost(amount: float) -> None:
    """Record the running task's cost (e.g. USD) -- summed into ``shannon.task.cost``."""
    if amount < 0:
        raise ValueError(f"amount must be >= 0, got {amount}")
    record(COST, amount)
