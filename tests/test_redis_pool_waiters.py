"""Waiters of a full shared pool when the real redis-server behind it goes away."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Literal

import pytest
import redis
from _redis_server import RedisServer

from shannon_otel import CircuitBreaker
from shannon_otel.redis import RedisState, SharedPool, SharedStateUnavailableError


@pytest.mark.parametrize("on_unavailable", ["local", "reject"])
def test_a_waiter_of_a_full_pool_applies_on_unavailable_when_redis_goes(
    server: RedisServer, on_unavailable: Literal["local", "reject"],
) -> None:
    """Bug: a task waiting for a slot of a full shared pool waited for the whole Redis outage (a hang, up to
    the task's own timeout if it had one) instead of applying ``on_unavailable``: it is woken by a published
    release or by the poll, and the poll (which reads the breakers bound to the state) needs Redis. Now the
    outage's start wakes the waiters: ``"local"`` gives a local slot, ``"reject"`` raises."""
    prefix = f"w{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        def state() -> RedisState:
            return RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2,
                              on_unavailable=on_unavailable)

        async with state() as holder_state, state() as waiter_state:
            CircuitBreaker("api", shared=waiter_state, instrument=False)  # its poll needs Redis
            holder, pool = SharedPool(holder_state, "db", 1), SharedPool(waiter_state, "db", 1)
            await holder.acquire()
            waiting = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0.3)
            assert not waiting.done()  # full: it waits for the holder
            server.stop()
            async with asyncio.timeout(10):  # the outage is found at the next poll (0.2 s + timeout_s)
                if on_unavailable == "local":
                    await waiting  # a local slot: this process alone bounded by limit
                    pool.release()
                else:
                    with pytest.raises(SharedStateUnavailableError):
                        await waiting
            holder.release()

    asyncio.run(main())


def test_a_waiter_of_a_full_pool_whose_state_is_closed_gets_a_clear_error(server: RedisServer) -> None:
    """Bug: closing a RedisState (its ``async with`` left while a wave still ran in the background) left the
    waiters of its full pools waiting forever: only a release notification or the poll wakes them, and both
    stop with the state. Now closing wakes them and they raise RuntimeError, as a new acquire then does."""
    prefix = f"w{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as holder_state:
            waiter_state = RedisState(server.url, prefix=prefix)
            await waiter_state.start()
            holder, pool = SharedPool(holder_state, "db", 1), SharedPool(waiter_state, "db", 1)
            await holder.acquire()
            waiting = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await waiter_state.close()
            async with asyncio.timeout(10):
                with pytest.raises(RuntimeError, match="RedisState of shared pool 'db' is closed"):
                    await waiting
                with pytest.raises(RuntimeError, match="is closed"):
                    await pool.acquire()
            assert pool.in_use == 0  # the local slot taken for the waiter was given back
            holder.release()

    asyncio.run(main())


def test_a_full_pools_waiters_do_not_read_every_lease_at_each_retry(server: RedisServer) -> None:
    """Bug: each acquire read the pool's every lease (ZRANGE 0 -1, to clamp leases taken before the server's clock
    went back), so an acquire of a full pool of 2,000 leases cost ~4 ms of Redis, 30 ms at 20,000, and every
    release woke each waiter to pay it again (Redis busy, its calls timing out as an outage). The leases are now
    read only when the clock went back since the last acquire; a waiter's retries of a full pool read none."""
    prefix = f"w{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(server.url)

    def calls(*commands: str) -> int:
        stats = client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in commands)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.05) as holding, \
                RedisState(server.url, prefix=prefix, poll_interval_s=0.05) as waiting:
            full = SharedPool(holding, "db", limit=50)
            for _ in range(50):
                await full.acquire()
            reads, scripts = calls("zrange"), calls("evalsha", "eval")
            waiter = asyncio.ensure_future(SharedPool(waiting, "db", limit=50).acquire())
            async with asyncio.timeout(30):
                while calls("evalsha", "eval") < scripts + 10:  # noqa: ASYNC110 - the waiter's retries, in Redis
                    await asyncio.sleep(0.01)
            assert not waiter.done()
            assert calls("zrange") == reads  # before: one full read per retry
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            for _ in range(50):
                full.release()

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_a_waiter_whose_retry_was_under_way_at_a_release_is_not_left_waiting(server: RedisServer) -> None:
    """Bug: the waiters of a pool in one state shared one event, which each cleared before asking Redis again. A
    release woke them all; one that woke cleared the event while another's acquire, sent before the release, was
    still on its way: its answer (full) came back, it waited on the cleared event and missed the release it had
    not seen, a slot free, until the next poll (``poll_interval_s``, up to an hour). Here the other waiter is a pool
    of a lower limit on the name (for which the pool stays full); two releases close together do the same with
    waiters alike. Now each wait is on the event taken before asking, which a later release sets."""
    prefix = f"w{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as holding, \
                RedisState(server.url, prefix=prefix, poll_interval_s=3600) as waiting:
            holder = SharedPool(holding, "db", 2)
            for _ in range(2):
                await holder.acquire()
            script = waiting._script
            answered = {1: asyncio.Event(), 2: asyncio.Event()}  # by the limit asked for
            retried = asyncio.Event()
            may_return = asyncio.Event()
            asked = {1: 0, 2: 0}

            async def held_back(name: str, keys: list[str], args: list[Any], owned: int | None = None) -> Any:
                answer = await script(name, keys, args, owned)
                if name == "POOL_ACQUIRE":
                    limit = int(args[0])
                    asked[limit] += 1
                    answered[limit].set()
                    if limit == 1 and asked[1] == 2:
                        retried.set()
                    if limit == 2 and asked[2] == 1:
                        await may_return.wait()  # its answer (full) on its way while the release is dispatched
                return answer

            waiting._script = held_back  # type: ignore[method-assign]
            first = asyncio.ensure_future(SharedPool(waiting, "db", 2).acquire())
            await answered[2].wait()
            other = asyncio.ensure_future(SharedPool(waiting, "db", 1).acquire())
            await answered[1].wait()
            holder.release()  # a slot for the first waiter (the other one's limit of 1 is still taken)
            async with asyncio.timeout(10):
                await retried.wait()  # the other waiter woke, asked again, and waits again
            may_return.set()
            try:
                async with asyncio.timeout(10):
                    await first  # before: waited for the next poll, an hour on
            finally:
                first.cancel()
                other.cancel()
                await asyncio.gather(first, other, return_exceptions=True)
            holder.release()

    asyncio.run(main())
