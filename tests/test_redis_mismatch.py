"""Processes that share one name with different configurations (a real redis-server on 127.0.0.1)."""

from __future__ import annotations

import asyncio

import redis
from _redis_server import RedisServer

from shannon_otel.redis import RedisState, SharedPool


def test_a_short_lease_in_one_process_never_ends_a_longer_lease_of_another(server: RedisServer, prefix: str) -> None:
    """Bug: each acquire held every lease of the pool to its own ``lease_s`` (and set the key to expire 2 x its
    own ``lease_s`` later): a process with ``lease_s=1`` ended, a second on, the slot of a task of another process
    given ``lease_s=3600`` while that task still ran, and both ran at once in a pool of ``limit=1``. Each lease
    now keeps its own length, and the key lives until the latest lease ends."""
    client = redis.Redis(port=server.port, decode_responses=True)
    key = f"{prefix}:{{pool:db}}:holders"

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as long_state, \
                RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as short_state:
            long_pool = SharedPool(long_state, "db", 1, lease_s=3600)
            short_pool = SharedPool(short_state, "db", 1, lease_s=1)
            await long_pool.acquire()  # a long task holds the only slot
            waiting = asyncio.ensure_future(short_pool.acquire())
            # Retried on every poll (0.1 s): before, admitted ~1 s on, the long task still holding its slot
            await asyncio.sleep(2.5)
            assert not waiting.done()
            (member, expiry), = client.zrange(key, 0, -1, withscores=True)
            seconds, micros = client.time()
            now_ms = seconds * 1000 + micros // 1000
            assert expiry - now_ms > 3_500_000, expiry - now_ms  # still the long task's hour
            assert client.pttl(key) > 3_500_000  # the key (and so the lease) is not dropped early
            long_pool.release()
            async with asyncio.timeout(10):
                await waiting  # the slot, once the long task gave it back
            short_pool.release()

    try:
        asyncio.run(main())
    finally:
        client.close()
