"""Recovery events: one protected call, its attempts, retries, rejections, fallbacks, and its observer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._telemetry import BreakerState, CallOutcome, Outcome
from ._error import error_type


@dataclass(frozen=True, slots=True)
class CallStarted:
    operation: str
    policy: str  # "retry", "pipeline", "breaker", "hedge", "fallback", "timeout", ...


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    operation: str
    attempt: int  # 1-based
    outcome: Outcome
    duration_s: float
    error: BaseException | None = None

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    operation: str
    attempt: int  # the attempt that failed (1-based); the next one is attempt + 1
    delay_s: float
    error: BaseException | None
    max_attempts: int | None = None  # the retry's limit (attempts including the first); None if unbounded


@dataclass(frozen=True, slots=True)
class CallRejected:
    operation: str
    breaker: str
    state: BreakerState
    error: BaseException | None = None  # the CircuitOpenError the breaker raises for it

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class CallFinished:
    operation: str
    outcome: CallOutcome
    attempts: int
    duration_s: float
    error: BaseException | None = None

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class Degraded:
    operation: str
    mode: str  # "static", "last_good", "cheaper", "fallback"
    reason: str  # "breaker_open", "timeout", "failure", "anomaly"
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    operation: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class FallbackStarted:
    operation: str
    reason: str  # "failure", "timeout", "breaker_open"
    error: BaseException

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


class CallObserver:
    """Per-call observer of a protected operation. Every method is a no-op here.

    Called by the policies in the caller's task, except under a ``Hedge``: each of its attempts (and the
    retries of a ``Retry`` inside it) starts and finishes in that attempt's own task.
    """

    __slots__ = ()

    def attempt_started(self, attempt: int) -> Any:
        return None

    def hedge_started(self, attempt: int) -> Any:
        """An extra (hedged) attempt a ``Hedge`` launched starts (once per hedge it launches: its first try);
        finished through ``attempt_finished``."""
        return self.attempt_started(attempt)

    def hedge_retry_started(self, attempt: int, hedge: int) -> Any:
        """A later try of the hedged attempt that started as attempt ``hedge`` (a retry of a ``Retry`` inside
        the ``Hedge``): an attempt of that hedge, not another hedge; finished through ``attempt_finished``."""
        return self.attempt_started(attempt)

    def breaker_admitted(self, breaker: str, state: BreakerState) -> None:
        """A breaker let the next attempt through in ``state`` (closed, or half_open for a probe)."""

    def timed_out(self, event: TimedOut) -> None: ...

    def fallback_started(self, event: FallbackStarted) -> Any:
        return None

    def fallback_finished(self, token: Any, outcome: Outcome, error: BaseException | None) -> None: ...

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None: ...

    def retry_scheduled(self, event: RetryScheduled) -> None: ...

    def rejected(self, event: CallRejected) -> None: ...

    def degraded(self, event: Degraded) -> None: ...

    def call_finished(self, event: CallFinished) -> None: ...
