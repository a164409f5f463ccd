"""Task specs and per-task measurements (token usage, cost) recorded from inside a running task."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._telemetry import TASK_COST_ATTR as COST
from .._telemetry import TASK_INPUT_TOKENS as INPUT_TOKENS
from .._telemetry import TASK_OUTPUT_TOKENS as OUTPUT_TOKENS

T = TypeVar("T")



# no slots=True: with it, Python 3.11/3.12 raise TypeError on TaskSpec[X](...) (the frozen
# __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class TaskSpec(Generic[T]):
    """A task with options: a coroutine, or a zero-argument factory (needed for retries)."""

    work: Callable[[], Awaitable[T]] | Coroutine[Any, Any, T]
    name: str | None = None
    pool: str | None = None

    def __post_init__(self) -> None:
        if not (inspect.iscoroutine(self.work) or callable(self.work)):
            raise TypeError(f"work must be a coroutine or a zero-argument callable, got {type(self.work)!r}")


def task(
    work: Callable[[], Awaitable[T]] | Coroutine[Any, Any, T], *, name: str | None = None, pool: str | None = None,
) -> TaskSpec[T]:
    """Name a task or bind it to a resource pool: ``task(lambda: fetch(url), pool="api")``."""
    return TaskSpec(work, name, pool)


class TaskSlot:
    """The task a worker is running now (one slot per worker, reused): its measurements, and the
    wave's per-task timeout scope, so a policy inside can tell that timeout from a cancellation."""

    __slots__ = ("measurements", "timeout")

    def __init__(self) -> None:
        self.measurements: dict[str, float] | None = None
        self.timeout: asyncio.Timeout | None = None


def task_timed_out() -> bool:
    """Whether the running wave task's own timeout has fired (its CancelledError is that timeout)."""
    slot = CURRENT_TASK.get()
    return slot is not None and slot.timeout is not None and slot.timeout.expired()


CURRENT_TASK: ContextVar[TaskSlot | None] = ContextVar("shannon_otel_current_task", default=None)


def _measurements(caller: str) -> dict[str, float]:
    slot = CURRENT_TASK.get()
    if slot is None:
        raise RuntimeError(f"{caller}() must be called from inside a task run by a Wave")
    if slot.measurements is None:
        slot.measurements = {}
    return slot.measurements


def record(name: str, value: float) -> None:
    """Add ``value`` to the running task's measurement ``name`` (shown on its span and in the report).

    Raises RuntimeError outside a wave task. Measurements of tasks the user spawns themselves
    land on the wave task that is current in the worker.
    """
    measurements = _measurements("record")
    measurements[name] = measurements.get(name, 0.0) + value


def record_tokens(input: int = 0, output: int = 0) -> None:
    """Record token usage of the running task (``shannon.task.tokens`` metrics, summed per task)."""
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
