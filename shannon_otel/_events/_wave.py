"""Executor events: a wave starts, each task finishes, and the per-wave observer that sees them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from .._telemetry import Outcome
from ._error import error_type

if TYPE_CHECKING:
    from ..executor._report import WaveReport

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WaveStarted:
    """A wave run starts: its name, task count (None for an unsized, streamed input), concurrency limit
    (None: unbounded) and start time on the wave's clock. Handed to :meth:`Hook.wave_started`."""

    wave: str
    size: int | None  # None for an unsized (streamed) input
    concurrency: int | None  # None: unbounded
    start_time: float  # executor clock, seconds


class TaskResult(NamedTuple, Generic[T]):
    """One finished task: what a wave returns per input, and the event hooks receive.

    A NamedTuple rather than a frozen dataclass because one is built per task on the hot path and
    it constructs three times faster; it is just as immutable. ``value`` is set only on success,
    ``error`` only on failure or timeout (cancellation is an outcome, never an error).
    """

    wave: str
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the input position
    name: str
    outcome: Outcome
    value: T | None = None
    error: BaseException | None = None
    duration_s: float = 0.0
    queue_wait_s: float = 0.0
    measurements: Mapping[str, float] | None = None
    batch: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.outcome is Outcome.SUCCESS

    @property
    def error_type(self) -> str | None:
        """The failure's ``error.type`` (the exception's class, qualified for non-builtins); None without one."""
        return error_type(self.error)


TaskFinished = TaskResult  # the hook-side name of the same event


class WaveObserver:
    """Per-wave observer. Override what you need; every method is a no-op here."""

    __slots__ = ()

    def task_queued(self, index: int, name: str) -> None:
        """A task of an input of unknown length (``WaveStarted.size`` None: a lazy stream) was taken from it and
        now waits for its resource pool or rate limit. Exactly one :meth:`task_started` or :meth:`task_skipped`
        of the same index follows (also to an observer whose ``task_queued`` raised), so an observer counts it
        pending until then. Not called for the tasks a sized input's size counts (it counts every task not started);
        called for a task it gives past that size (a list the consumer extends while the wave streams it) as it is
        taken. The rest of such a list that the wave never takes (the wave stopped early) is skipped without it, as
        every rest of a sized input is settled: a count of size + queued - started - skipped stops at 0 there."""

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        """Called in the task's context just before it runs; the return value comes back as ``token``."""
        return None

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        """Called in the task's context after its outcome is known (for every task that started)."""

    def task_skipped(self, event: TaskResult[Any]) -> None:
        """A task that ended without starting: cancelled or failed while waiting (pool, rate limit),
        or never run (fail-fast, cancelled wave). No ``task_started`` came before it."""

    def tasks_skipped(self, first: TaskResult[Any], count: int) -> None:
        """``count`` tasks that never started, of consecutive indexes from ``first.index``, each like ``first``
        (same outcome and name, no value or error): the rest of a wave that stopped early, settled in bulk
        (a stream left early over a million items). Here: :meth:`task_skipped` once per task; an observer that
        only counts overrides it with O(1) work."""
        for k in range(count):
            self.task_skipped(first._replace(index=first.index + k))

    def wave_finished(self, report: WaveReport) -> None:
        """Called once when the wave ends, whatever its outcome."""
