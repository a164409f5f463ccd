"""The error a breaker raises instead of calling the operation."""

from __future__ import annotations


class CircuitOpenError(Exception):
    """Raised instead of calling the operation while a breaker rejects calls."""

    def __init__(self, breaker: str, state: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"circuit breaker {breaker!r} is {state}; call rejected")
        self.breaker = breaker
        self.state = state
        self.retry_after_s = retry_after_s
