"""Recovery events: one protected call, its attempts, retries, rejections, fallbacks, and its observer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._telemetry import BreakerState, CallOutcome, Outcome
from ._error import error_type


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A protected call starts: its operation name and the kind of policy that runs it (``retry``,
    ``breaker``, ``timeout``, ``fallback``, ``hedge``, ``degrade``, ``pipeline``).
    Handed to :meth:`Hook.call_started`."""

    operation: str
    policy: str  # "retry", "pipeline", "breaker", "hedge", "fallback", "timeout", ...


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """One attempt of a call ended: its number (1-based), outcome, duration and error (None on success)."""

    operation: str
    attempt: int  # 1-based
    outcome: Outcome
    duration_s: float
    error: BaseException | None = None

    @property
    def error_type(self) -> str | None:
        """``error``'s ``error.type`` (its class, qualified for non-builtins); None without one."""
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A ``Retry`` tries again: ``attempt`` failed (1-based; the next is ``attempt + 1``), after ``delay_s``
    seconds; ``max_attempts`` is its limit including the first try (None beyond int64). Told once the wait is over, as
    the retry starts: a retry whose wait was cancelled (a losing hedged attempt, the caller's cancellation, a
    ``Timeout`` around the retry) or whose ``sleep`` raised never ran and is never told. ``time_ns``: when it was
    scheduled (nanoseconds since the epoch, on the clock the OTel SDK stamps spans with; None: when told)."""

    operation: str
    attempt: int  # the attempt that failed (1-based); the next one is attempt + 1
    delay_s: float
    error: BaseException | None
    max_attempts: int | None = None  # the retry's limit (attempts including the first); None if unbounded
    time_ns: int | None = None  # when it was scheduled (the wait's start); None: when told


@dataclass(frozen=True, slots=True)
class CallRejected:
    """A breaker refused a try of the call without running it: the breaker, its state, the
    ``CircuitOpenError`` it raises."""

    operation: str
    breaker: str
    state: BreakerState
    error: BaseException | None = None  # the CircuitOpenError the breaker raises for it

    @property
    def error_type(self) -> str | None:
        """``error``'s ``error.type`` (its class, qualified for non-builtins); None without one."""
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A protected call ended: its outcome as a breaker counts it (success, failure, rejected, ignored,
    cancellation), the attempts it ran, its duration and the error that reached the caller (None on success)."""

    operation: str
    outcome: CallOutcome
    attempts: int
    duration_s: float
    error: BaseException | None = None

    @property
    def error_type(self) -> str | None:
        """``error``'s ``error.type`` (its class, qualified for non-builtins); None without one."""
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class Degraded:
    """A ``Degrade`` served a degraded result: ``mode`` (last_good, cheaper or static), ``reason`` (breaker_open,
    timeout, failure, or the reason given to ``Degrade.flag``) and the error it stood in for (None when flagged).
    ``time_ns``: when it was served (nanoseconds since the epoch, on the clock the OTel SDK stamps spans with), set when
    it is told later (a ``Degrade`` inside a ``Hedge``: told once the hedge returns that attempt's value); None: when
    told."""

    operation: str
    mode: str  # "static", "last_good", "cheaper", "fallback"
    reason: str  # "breaker_open", "timeout", "failure", "anomaly"
    error: BaseException | None = None
    time_ns: int | None = None  # when it was served, if told later; None: when told


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A ``Timeout`` policy cut the call's work off after ``timeout_s`` seconds."""

    operation: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class FallbackStarted:
    """A ``Fallback`` runs its fallback: why (failure, timeout, breaker_open) and the primary's error."""

    operation: str
    reason: str  # "failure", "timeout", "breaker_open"
    error: BaseException

    @property
    def error_type(self) -> str | None:
        """``error``'s ``error.type`` (its class, qualified for non-builtins); None without one."""
        return error_type(self.error)


class CallObserver:
    """Per-call observer of a protected operation. Every method is a no-op here.

    Called by the policies in the caller's task, except under a ``Hedge``: each of its attempts (and the
    retries of a ``Retry`` inside it) starts and finishes in that attempt's own task. A ``Degrade`` inside the
    hedge is the exception: its :meth:`degraded` is told only for the attempt whose value the hedge returns, once
    every attempt has ended, in the hedge's own task.
    """

    __slots__ = ()

    def attempt_started(self, attempt: int) -> Any:
        """Attempt ``attempt`` (1-based) runs now; what it returns comes back as ``token`` to
        :meth:`attempt_finished` (a context manager is entered around the attempt)."""
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

    def timed_out(self, event: TimedOut) -> None:
        """A ``Timeout`` policy of the call cut the work off after ``event.timeout_s`` seconds."""

    def fallback_started(self, event: FallbackStarted) -> Any:
        """The call's ``Fallback`` runs its fallback (``event.reason``: failure, timeout or breaker_open); the
        return value comes back as ``token`` to :meth:`fallback_finished` (a context manager is entered around it)."""
        return None

    def fallback_finished(self, token: Any, outcome: Outcome, error: BaseException | None) -> None:
        """The fallback :meth:`fallback_started` announced ended with ``outcome`` (``error`` unless it
        succeeded)."""

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None:
        """An attempt ended (``event.outcome``, ``event.duration_s``); ``token`` is what its start returned."""

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """A ``Retry`` waited ``event.delay_s`` seconds after attempt ``event.attempt`` failed and tries again now:
        told as the retry starts, ``event.time_ns`` the time it was scheduled (a retry whose wait was cut short never
        ran and is never told)."""

    def rejected(self, event: CallRejected) -> None:
        """A breaker refused a try without running it (it raises ``event.error``, a ``CircuitOpenError``)."""

    def degraded(self, event: Degraded) -> None:
        """A ``Degrade`` served a degraded result (``event.mode``, ``event.reason``); inside a ``Hedge``, told once the
        hedge returns it, ``event.time_ns`` the time it was served."""

    def call_finished(self, event: CallFinished) -> None:
        """The call ended: ``event.outcome`` as a breaker counts it, its attempts and duration."""
