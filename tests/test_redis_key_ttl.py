"""How long a shared breaker's keys live in a real redis-server, against its own timings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
from _redis_server import RedisServer, running_server

from shannon_otel import BreakerState, CircuitBreaker
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
