"""Breaker events: a breaker is built, a breaker changes state (told to hooks, not to a call)."""

from __future__ import annotations

from dataclasses import dataclass

from .._telemetry import BreakerState


@dataclass(frozen=True, slots=True)
class BreakerRegistered:
    """A breaker was built: its name and initial state (hooks learn breakers before any call)."""

    breaker: str
    state: BreakerState
    time: float


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A breaker changed state (always a real change), why (``failure_threshold``, ``failure_rate``,
    ``slow_calls``, ``reset_timeout``, ``probe_success``, ...) and when, on the breaker's clock."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str  # "failure_threshold", "failure_rate", "slow_calls", "reset_timeout", "probe_success", ...
    time: float
