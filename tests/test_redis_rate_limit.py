"""The shared rate limit's GCRA step, run by a real redis-server: its bucket at every allowed rate."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _redis_server import RedisServer, running_server, wait_for

from shannon_otel.redis import RedisState, SharedRateLimit, _scripts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_server(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


@pytest.mark.parametrize("rate", [1_000, 25_000, 100_000])
def test_every_admission_reserves_its_interval_at_high_rates(server: RedisServer, rate: int, tmp_path: Path) -> None:
    """Bug: the bucket's theoretical arrival time (ms since 1970) was stored with Lua's ``tostring``, which keeps
    14 significant digits (0.1 ms): an interval under 0.05 ms (rates over 20,000/s, allowed up to 1e6) was
    rounded away at each admission, so the bucket never filled and a shared limit of 25,000/s let 2,000 starts
    through in 19 ms without a wait. GCRA reserves ``1/rate`` per admission whatever the clock does, so after
    ``n`` admissions the bucket is at least ``n`` intervals past the server's time before the first: checked
    with the limiter's own key and arguments, ``n`` admissions in one transaction (faster than the interval)."""
    limit = SharedRateLimit(RedisState(server.url, prefix=f"q{uuid.uuid4().hex[:10]}"), "api", rate=rate)
    key, args = limit._key, limit._args
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        script = client.register_script(_scripts.RATE)
        n = 2_000
        with client.pipeline(transaction=True) as pipe:
            pipe.time()
            for _ in range(n):
                script(keys=key, args=args, client=pipe)
            (seconds, micros), *waits = pipe.execute()
        before_ms = seconds * 1000 + micros / 1000
        interval_ms = 1000 / rate
        reserved_ms = float(str(client.get(key[0]))) - before_ms
        assert reserved_ms >= n * interval_ms * (1 - 1e-9), (reserved_ms, n * interval_ms)
        assert all(float(w) >= 0 for w in waits) and float(waits[0]) == 0.0  # the first starts at once
    finally:
        client.close()


def test_a_slow_rate_with_a_large_burst_keeps_its_bucket_and_redis_available(server: RedisServer) -> None:
    """Bug: the bucket's TTL (its window, ``burst / rate``, in ms) went to ``SET ... PX`` as a Lua number, which
    Redis writes in exponent form when large: at ``rate=1e-9, burst=1_000_000`` (both accepted) it was sent as
    ``1.000001000000001e+18``, which Redis refused as no integer, and that refusal was taken for an outage of all
    of Redis (every breaker, limit and pool of the state on ``on_unavailable``, at every admission of this
    limit). Now the TTL is sent as an integer, and a rate so slow that no TTL could hold its bucket is refused."""
    prefix = f"q{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as shared:
            limit = SharedRateLimit(shared, "slow", rate=1e-9, burst=1_000_000)
            for _ in range(3):
                await limit.acquire()  # within the burst: no wait
                assert shared.available
        assert limit._local is None  # never fell back to a local limiter

    asyncio.run(main())
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        assert int(client.pttl(f"{prefix}:{{rate:slow}}:tat")) > 10**17
    finally:
        client.close()
    with pytest.raises(ValueError, match=r"rate must be a number of starts per second in \[1e-09, 1e6\], got 1e-10"):
        SharedRateLimit(RedisState(server.url), "x", rate=1e-10)


def test_a_server_clock_that_went_back_does_not_hold_every_admission_for_the_step(server: RedisServer) -> None:
    """Bug: the bucket's theoretical arrival time is on the server's clock; when that clock went back (an operator
    or NTP stepping it, a failover to a replica whose clock is behind) the bucket stayed where the earlier clock
    had left it, and every admission of every process waited out the whole step (an hour back: an hour per start,
    fail-open or not). The local RateLimiter moves its schedule back with the clock; the script now does the same,
    from the server's time of the bucket's last admission. Simulated as such a server leaves the keys: its last
    admission a day ahead of the server's time now, one interval (100 s) reserved past it."""
    prefix = f"q{uuid.uuid4().hex[:10]}"
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as shared:
            limit = SharedRateLimit(shared, "api", rate=0.01, burst=2, sleep=sleep)
            client = redis.Redis(port=server.port, decode_responses=True)
            try:
                seconds, micros = client.time()
                ahead_ms = seconds * 1000 + micros / 1000 + 86_400_000
                client.set(f"{prefix}:{{rate:api}}:tat", repr(ahead_ms + 100_000), px=90_000_000)
                client.set(f"{prefix}:{{rate:api}}:last", repr(ahead_ms), px=90_000_000)
            finally:
                client.close()
            for _ in range(5):
                await limit.acquire()
            assert shared.available and limit._local is None  # Redis decided every admission
        # The schedule of before the step, moved back with the clock: 100 s apart, the burst's one at once (before:
        # each wait a day longer).
        assert len(waits) == 4 and all(0 < w <= 400 for w in waits), waits
        assert waits == sorted(waits)

    asyncio.run(main())


def test_the_local_limiter_of_an_outage_and_the_bucket_after_it_keep_the_starts_the_other_gave(tmp_path: Path) -> None:
    """Bug: the local limiter of an outage (``on_unavailable="local"``) began empty, beside the starts the shared
    bucket had given this process and that still slept for their slots; and Redis back (restarted, its bucket lost)
    began empty beside the local limiter's. One process at ``rate=50`` with 20 tasks starting in turn started 69 in
    one second across a Redis restart (probed; after: 51). Each now takes the other's reservations: here a start
    every 100 s, three given by Redis (waits 0, 100, 200 s), two by the local limiter, one by the restarted Redis.
    The sleep only records (the schedule is all this test reads; a few real seconds pass, far under 50 s)."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def main(srv: RedisServer) -> None:
        async with RedisState(srv.url, prefix=f"q{uuid.uuid4().hex[:10]}") as shared:
            limit = SharedRateLimit(shared, "api", rate=0.01, sleep=sleep)
            for _ in range(3):
                await limit.acquire()
            srv.stop()
            await limit.acquire()  # the outage begins: the local limiter
            await limit.acquire()
            srv.start()  # its bucket lost (no persistence)
            await wait_for(lambda: shared.available)
            await limit.acquire()
            assert shared.available  # this one was Redis's

    with running_server(tmp_path) as srv:
        asyncio.run(main(srv))
    # The first start waits nothing (no sleep). The local limiter counts each wait from the start before it (the sleep
    # only recorded: its clock did not move), the restarted Redis from now. Before: [100, 200, 100]: the local
    # limiter's first start at once and its second 100 s on (beside Redis's at 100 and 200 s), then Redis's at once
    assert [round(w, -2) for w in waits] == [100, 200, 300, 100, 500], waits


def test_a_bucket_redis_lost_keeps_the_starts_it_had_given(server: RedisServer) -> None:
    """Bug: a bucket lost with no outage seen (``FLUSHALL``, a restart between two admissions) began empty beside
    the starts it had given this process, still sleeping for their slots: one process at ``rate=50`` with 20 tasks
    starting in turn started 70 in the second after a ``FLUSHALL`` (probed). The process sends how far ahead those
    are, which the script applies to a bucket it finds missing (only: one it finds holds them). A start every 100 s:
    two given (waits 0, 100 s), the bucket flushed, the next waits 200 s (before: none)."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def main() -> None:
        async with RedisState(server.url, prefix=f"q{uuid.uuid4().hex[:10]}") as shared:
            limit = SharedRateLimit(shared, "api", rate=0.01, sleep=sleep)
            await limit.acquire()
            await limit.acquire()
            client = redis.Redis(port=server.port)
            try:
                assert client.delete(*limit._key) == 2  # the bucket lost, as a FLUSHALL loses it
            finally:
                client.close()
            await limit.acquire()
            await limit.acquire()  # and the bucket holds them again: no more than its interval each

    asyncio.run(main())
    assert [round(w, -2) for w in waits] == [100, 200, 300], waits


def test_a_burst_left_unused_is_kept_across_an_outage_and_a_lost_bucket(tmp_path: Path) -> None:
    """Bug: each admission took the bucket to be full (``burst`` starts reserved) from this process's start on, its
    wait 0 or not. With ``burst=3`` (a start every 100 s, three at once) and one start given, the local limiter of
    an outage waited 100 s for its first start and 200 s for its second, and so did a bucket Redis lost, moved that
    far; and Redis back was moved past that too, the burst taken from every process. The starts this process was
    given count as GCRA counts them: two more may start at once, the third waits 100 s, as with no fault."""
    waits: dict[str, list[float]] = {"outage": [], "lost": []}

    async def main(srv: RedisServer) -> None:
        for case, record in waits.items():
            async def sleep(seconds: float, record: list[float] = record) -> None:
                record.append(seconds)

            async with RedisState(srv.url, prefix=f"q{uuid.uuid4().hex[:10]}") as shared:
                limit = SharedRateLimit(shared, "api", rate=0.01, burst=3, sleep=sleep)
                await limit.acquire()  # at once: the bucket was empty
                if case == "outage":
                    srv.stop()
                else:
                    client = redis.Redis(port=srv.port)
                    try:
                        assert client.delete(*limit._key) == 2  # the bucket lost, as a FLUSHALL loses it
                    finally:
                        client.close()
                for _ in range(3):
                    await limit.acquire()
                if case == "outage":
                    srv.start()
                    await wait_for(lambda: shared.available)
                    await limit.acquire()  # Redis's again: moved past the local starts, no further
                    assert shared.available

    with running_server(tmp_path) as srv:
        asyncio.run(main(srv))
    # Before (each wait recorded from the start before it): outage [100, 100, 100, 400], lost [100, 200, 300]
    assert {case: [round(w, -2) for w in record] for case, record in waits.items()} == {
        "outage": [100, 200], "lost": [100]}, waits
