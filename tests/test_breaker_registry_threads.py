"""A ``BreakerRegistry`` shared by threads (each running its own event loop): one name, one breaker.

``registry.get(name)`` is "always the same breaker". Two threads asking for a new name at once both
found it missing, each created a breaker and kept its own: the failures were split between them, so the
breaker opened late or never.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from shannon_otel import BreakerRegistered, BreakerRegistry, CircuitBreaker, CircuitOpenError, Hook


class RacingThread(Hook):
    """While the first breaker is being created (its hooks are told inside its constructor), another thread
    asks the registry for the same name; it is given half a second to finish (it finishes at once when
    nothing makes it wait for the first one)."""

    def __init__(self) -> None:
        self.registry: BreakerRegistry | None = None
        self.other: list[CircuitBreaker] = []
        self.thread: threading.Thread | None = None

    def breaker_registered(self, event: BreakerRegistered) -> None:
        if self.thread is not None:
            return
        registry = self.registry
        assert registry is not None
        self.thread = threading.Thread(target=lambda: self.other.append(registry.get(event.breaker)))
        self.thread.start()
        self.thread.join(timeout=0.5)  # bounded: with the registry's lock the other thread waits for this one


def test_two_threads_asking_for_one_new_name_get_one_breaker_that_counts_both_threads_failures() -> None:
    racing = RacingThread()
    registry = BreakerRegistry(hooks=[racing], instrument=False)
    racing.registry = registry
    mine = registry.get("payments", failure_threshold=2)
    assert racing.thread is not None
    racing.thread.join()
    assert racing.other == [mine]
    assert len(registry) == 1 and registry["payments"] is mine

    async def fail() -> None:
        raise ValueError("down")

    def call_once(breaker: CircuitBreaker) -> None:
        with pytest.raises(ValueError, match="down"):
            asyncio.run(breaker.call(fail))

    worker = threading.Thread(target=call_once, args=(racing.other[0],))
    worker.start()
    worker.join()
    call_once(mine)  # the second failure of one breaker: it opens
    with pytest.raises(CircuitOpenError):
        asyncio.run(mine.call(fail))
