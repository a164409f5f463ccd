"""Functions run in other processes (multiprocessing spawn, Dask workers) against the shared Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
from shannon_otel.redis import RedisState, SharedPool, SharedRateLimit


async def _boom() -> None:
    raise ConnectionError("down")


async def fail_calls(url: str, prefix: str, name: str, failures: int, threshold: int) -> str:
    """Make ``failures`` failing calls through a shared breaker; return its state afterwards."""
    async with RedisState(url, prefix=prefix) as shared:
        breaker = CircuitBreaker(name, shared=shared, failure_threshold=threshold, reset_timeout=60,
                                 instrument=False)
        for _ in range(failures):
            try:
                await breaker.call(_boom)
            except (ConnectionError, CircuitOpenError):
                pass
        return breaker.state.value


def fail_calls_sync(url: str, prefix: str, name: str, failures: int, threshold: int) -> str:
    return asyncio.run(fail_calls(url, prefix, name, failures, threshold))


def probe_storm(url: str, prefix: str, name: str, callers: int, ready: Any, answered: Any, queue: Any) -> None:
    """``callers`` concurrent calls, once every process passed the ``ready`` barrier, through a breaker whose reset
    timeout has passed; puts the number of calls admitted (probes) on ``queue``. The probes are held until every
    call of every process was answered (the ``answered`` barrier): held for a fixed time (1 s, and a start time
    fixed in advance), a loaded machine started a process after the others' probes had closed the breaker, and
    its calls were admitted as CLOSED ([5, 43, 49] admitted, with both cores busy)."""

    async def main() -> int:
        admitted = rejected = 0
        release = asyncio.Event()
        # timeout_s: a loaded machine (the 150 calls at once) must not time out into local probes
        async with RedisState(url, prefix=prefix, poll_interval_s=0.2, timeout_s=2) as shared:
            breaker = CircuitBreaker(name, shared=shared, failure_threshold=1, reset_timeout=0.5,
                                     half_open_probes=2, success_threshold=2, instrument=False)
            # The shared state (OPEN) is read in the background when the breaker is made: calls made before that
            # answer see it CLOSED.
            deadline = time.monotonic() + 10
            while breaker.state is BreakerState.CLOSED and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await asyncio.to_thread(ready.wait, 60)

            async def probe() -> None:
                nonlocal admitted
                admitted += 1
                await release.wait()  # held: nobody may be admitted meanwhile

            async def one() -> None:
                nonlocal rejected
                try:
                    await breaker.call(probe)
                except CircuitOpenError:
                    rejected += 1

            async def release_when_answered() -> None:
                while admitted + rejected < callers:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(answered.wait, 60)
                release.set()

            await asyncio.gather(release_when_answered(), *(one() for _ in range(callers)))
        return admitted

    queue.put(asyncio.run(main()))


def rate_limited_starts(url: str, prefix: str, name: str, rate: float, seconds: float, ready: Any,
                        queue: Any) -> None:
    """Acquire a shared rate limit in a loop for ``seconds``, from when every process passed the
    ``ready`` barrier (a start time fixed in advance passed before a loaded machine started them all);
    put how many starts this process got."""

    async def main() -> int:
        async with RedisState(url, prefix=prefix) as shared:
            limit = SharedRateLimit(shared, name, rate=rate)
            await asyncio.to_thread(ready.wait, 60)
            end = time.time() + seconds
            starts = 0
            while True:
                await limit.acquire()
                if time.time() >= end:
                    return starts
                starts += 1

    queue.put(asyncio.run(main()))


def pool_users(url: str, prefix: str, name: str, limit: int, tasks: int, queue: Any) -> None:
    """Run ``tasks`` holders of a shared pool; each bumps a Redis counter while it holds a slot and
    records the highest value it saw. Puts that maximum on ``queue``."""

    async def main() -> int:
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        peak = 0
        async with RedisState(url, prefix=prefix) as shared:
            pool = SharedPool(shared, name, limit)

            async def hold() -> None:
                nonlocal peak
                await pool.acquire()
                try:
                    now = int(await client.incr(f"{prefix}:test:holding"))
                    peak = max(peak, now)
                    await asyncio.sleep(0.05)
                    await client.decr(f"{prefix}:test:holding")
                finally:
                    pool.release()

            await asyncio.gather(*(hold() for _ in range(tasks)))
        await client.aclose()
        return peak

    queue.put(asyncio.run(main()))


def die_during_probe(url: str, prefix: str, name: str, reset_timeout: float, probe_lease_s: float = 60.0) -> None:
    """Open the shared breaker, wait out its reset timeout, take the half-open probe and die during it
    (a process killed mid-call: its probe's outcome never reaches Redis)."""
    import os

    async def main() -> None:
        async with RedisState(url, prefix=prefix, probe_lease_s=probe_lease_s) as shared:
            breaker = CircuitBreaker(name, shared=shared, failure_threshold=1, reset_timeout=reset_timeout,
                                     instrument=False)
            try:
                await breaker.call(_boom)
            except ConnectionError:
                pass
            await asyncio.sleep(reset_timeout + 0.1)

            async def die() -> None:
                os._exit(0)

            await breaker.call(die)

    asyncio.run(main())
