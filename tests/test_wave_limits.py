"""``Wave(rate_limit=)`` given a concurrency limit: refused when the wave is built, not a wave that hangs.

The wave awaits ``rate_limit.acquire()`` before each task starts and never releases (a rate limiter's
acquire admits one start for good). A semaphore or a ``ResourcePool`` has an ``acquire`` too, so it was
accepted: once its permits ran out, every task after them waited forever, and so did the wave.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from shannon_otel import ResourcePool, Wave
from shannon_otel.testing import run_virtual

LIMITS: dict[str, Callable[[], Any]] = {
    "asyncio.Semaphore": lambda: asyncio.Semaphore(2),
    "asyncio.BoundedSemaphore": lambda: asyncio.BoundedSemaphore(2),
    "asyncio.Lock": asyncio.Lock,
    "threading.Semaphore": lambda: threading.Semaphore(2),
    "ResourcePool": lambda: ResourcePool("api", 2),
}


@pytest.mark.parametrize("make", LIMITS.values(), ids=LIMITS.keys())
def test_a_concurrency_limit_given_as_rate_limit_is_refused_naming_it_and_the_way_to_bound_concurrency(
    make: Callable[[], Any],
) -> None:
    with pytest.raises(TypeError, match=r"rate_limit .*release\(\).*max_concurrency=.*pool=ResourcePool"):
        Wave("limited", rate_limit=make(), instrument=False)


def test_a_rate_limiter_with_acquire_alone_still_limits_the_starts() -> None:
    acquired: list[int] = []

    class Limiter:
        async def acquire(self) -> None:
            acquired.append(1)

    async def work() -> int:
        return 1

    result = run_virtual(Wave[int]("limited", rate_limit=Limiter(), instrument=False).run([work] * 5))
    assert result.values() == [1] * 5
    assert len(acquired) == 5


def test_a_rate_limiter_whose_acquire_needs_an_argument_is_refused_when_the_wave_is_built() -> None:
    """The wave calls ``acquire()`` with no argument before each start: one needing an argument (a token count)
    was accepted, and every task then failed with Python's bare "missing 1 required positional argument"."""

    class TokenLimiter:
        async def acquire(self, tokens: int) -> None:
            pass

    with pytest.raises(TypeError, match=r"rate_limit\.acquire must be an async method taking no arguments.*tokens"):
        Wave("limited", rate_limit=TokenLimiter(), instrument=False)  # type: ignore[arg-type]

    class Defaulted:
        async def acquire(self, tokens: int = 1) -> None:
            pass

    Wave("limited", rate_limit=Defaulted(), instrument=False)  # callable with no argument: accepted
