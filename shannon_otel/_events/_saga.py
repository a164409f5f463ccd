"""Saga events: a saga starts, its steps and compensations run, it finishes; and its observer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._telemetry import Outcome


@dataclass(frozen=True, slots=True)
class SagaStarted:
    saga: str


@dataclass(frozen=True, slots=True)
class CompensationFinished:
    saga: str
    step: str
    outcome: Outcome
    duration_s: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SagaFinished:
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
        return None

    def step_finished(self, token: Any, step: str, outcome: Outcome, error: BaseException | None) -> None: ...

    def compensation_started(self, step: str) -> Any:
        return None

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None: ...

    def saga_finished(self, event: SagaFinished) -> None: ...
