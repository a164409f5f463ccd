"""Saga events: a saga starts, its steps and compensations run, it finishes; and its observer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._telemetry import Outcome


@dataclass(frozen=True, slots=True)
class SagaStarted:
    """A saga starts. Handed to :meth:`Hook.saga_started`."""

    saga: str


@dataclass(frozen=True, slots=True)
class CompensationFinished:
    """A compensation (the rollback of a completed step) ended: its outcome, duration and error; one that
    did not succeed left its step in effect."""

    saga: str
    step: str
    outcome: Outcome
    duration_s: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SagaFinished:
    """A saga ended: its outcome, the steps completed, those compensated, those whose compensation failed
    (left in effect), and what failed it (None on success)."""

    saga: str
    outcome: Outcome
    completed_steps: tuple[str, ...]
    compensated_steps: tuple[str, ...]
    failed_compensations: tuple[str, ...] = field(default_factory=tuple)
    # What failed the transaction (a step's error or the block's own, a CancelledError when it was cut off or
    # cancelled): the cause of the SagaError it raises; None on success.
    error: BaseException | None = None


class SagaObserver:
    """Per-saga observer. Override what you need; every method is a no-op here."""

    __slots__ = ()

    def step_started(self, step: str) -> Any:
        """Step ``step``'s action runs now; the return value comes back as ``token`` to :meth:`step_finished`
        (a context manager is entered around the action)."""
        return None

    def step_finished(self, token: Any, step: str, outcome: Outcome, error: BaseException | None) -> None:
        """Step ``step``'s action ended with ``outcome`` (``error`` when it did not succeed)."""

    def compensation_started(self, step: str) -> Any:
        """Step ``step`` is being compensated (rolled back); the return value comes back as ``token`` to
        :meth:`compensation_finished` (a context manager is entered around the compensation)."""
        return None

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        """A compensation ended (``event.outcome``: one that did not succeed left its step in effect)."""

    def saga_finished(self, event: SagaFinished) -> None:
        """The saga ended: its outcome, the steps completed and compensated, the compensations that failed."""
