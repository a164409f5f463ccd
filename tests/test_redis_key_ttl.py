"""How long a shared breaker's keys live in a real redis-server, against its own timings."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator

import pytest
import redis
from _redis_server import RedisServer, running_server, wait_for

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
from shannon_otel.redis import RedisState


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_server(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


async def _boom() -> None:
    raise ConnectionError("down")


def test_an_open_breakers_state_outlives_a_shorter_key_ttl_until_its_reset_timeout(server: RedisServer) -> None:
    """Bug: with ``key_ttl_s`` shorter than a breaker's ``reset_timeout``, its OPEN state (written once, then
    rejected locally with no write until the reset timeout) expired in Redis, and the next poll closed the
    breaker in every process (``shared_state_expired``) long before its reset timeout: 1 s into a 30 s one.
    The keys of a breaker now live at least its reset timeout (+1 s); ``key_ttl_s`` still bounds the rest."""
    prefix = f"k{uuid.uuid4().hex[:10]}"
    raw = redis.Redis(port=server.port, decode_responses=True)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, key_ttl_s=1, poll_interval_s=0.1) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=30, instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            state_key = f"{prefix}:{{breaker:api}}:state"
            for _ in range(500):  # the trip is sent in the background
                if raw.hget(state_key, "state") == "open":
                    break
                await asyncio.sleep(0.01)
            assert raw.hget(state_key, "state") == "open"
            await asyncio.sleep(1.5)  # past key_ttl_s: the poll (every 0.1 s) still finds it open
            assert 28 < raw.ttl(state_key) <= 31  # not 1 s: the state must last its reset timeout
            ttl_of_others = await asyncio.to_thread(_ttl_after_a_flush, shared, raw, prefix)
            assert ttl_of_others == 1  # a breaker whose reset timeout fits in key_ttl_s keeps key_ttl_s
            assert breaker.state is BreakerState.OPEN

    try:
        asyncio.run(main())
    finally:
        raw.close()


def _ttl_after_a_flush(shared: RedisState, raw: redis.Redis, prefix: str) -> int:
    async def other() -> int:
        async with RedisState(shared.url, prefix=prefix, key_ttl_s=1) as own:
            quick = CircuitBreaker("quick", shared=own, failure_threshold=1, reset_timeout=0.0, instrument=False)
            with pytest.raises(ConnectionError):
                await quick.call(_boom)
        return int(raw.ttl(f"{prefix}:{{breaker:quick}}:state"))

    return asyncio.run(other())


@pytest.mark.parametrize("huge", [1e306, math.inf])
def test_a_breaker_whose_timings_exceed_what_redis_holds_in_ms_never_resets_by_time_and_never_raises(
    server: RedisServer, huge: float,
) -> None:
    """Bug: ``reset_timeout`` and ``window_s`` (accepted up to inf, as locally: a breaker that never resets by time,
    a window that never drops a call) went to the scripts as ``int(seconds * 1000)``: from ~1.8e305 s an
    ``int(inf)``. A ``window_s`` that large raised OverflowError from ``CircuitBreaker(...)``, and a breaker with such
    a ``reset_timeout``, half-open by another process's probe, raised OverflowError out of the user's call instead
    of being rejected (the probe quota taken). Both now go to Redis as the longest time it holds (~285,000 years)."""
    prefix = f"k{uuid.uuid4().hex[:10]}"
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "probed"

    async def ok() -> str:
        return "ok"

    async def main() -> None:
        # timeout_s: a slow answer on a loaded machine is no outage here (fail-open would admit the calls below)
        async with RedisState(server.url, prefix=prefix, timeout_s=5) as here, \
                RedisState(server.url, prefix=prefix, timeout_s=5) as there:
            fast = CircuitBreaker("api", shared=there, failure_threshold=1, reset_timeout=0.05, instrument=False)
            never = CircuitBreaker("api", shared=here, failure_threshold=1, reset_timeout=huge, window_s=huge,
                                   instrument=False)
            with pytest.raises(ConnectionError):
                await fast.call(_boom)
            await wait_for(lambda: never.state is BreakerState.OPEN)
            with pytest.raises(CircuitOpenError):
                await never.call(ok)  # inside its reset timeout, locally
            while True:  # until the server's clock is past fast's 50 ms: fast's probe holds the period's one slot
                await asyncio.sleep(0.06)
                probing = asyncio.create_task(fast.call(probe))

                def settled(task: asyncio.Task[str] = probing) -> bool:
                    return task.done() or fast.state is BreakerState.HALF_OPEN

                await wait_for(settled)
                if not probing.done():
                    break
                assert isinstance(probing.exception(), CircuitOpenError)
            await wait_for(lambda: never.state is BreakerState.HALF_OPEN)
            with pytest.raises(CircuitOpenError):
                await never.call(ok)  # asks Redis: the period's one probe is taken
            release.set()
            assert await probing == "probed"
            await wait_for(lambda: never.state is BreakerState.CLOSED)
            assert await never.call(ok) == "ok"

    asyncio.run(main())
