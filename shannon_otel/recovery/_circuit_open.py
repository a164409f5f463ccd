"""The error a breaker raises instead of calling the operation."""

from __future__ import annotations

from typing import Any


class CircuitOpenError(Exception):
    """Raised instead of calling the operation while a breaker rejects calls."""

    def __init__(self, breaker: str, state: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"circuit breaker {breaker!r} is {state}; call rejected")
        self.breaker = breaker
        self.state = state
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its own arguments, not the message (what BaseException's reduce passes): a pickled
        # error (Dask ships a worker's back to the client) or a copy of it raised TypeError instead.
        return (type(self), (self.breaker, self.state, self.retry_after_s), self.__dict__)
