"""Processes that share one name with different configurations (a real redis-server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import pytest
import redis
import redis.asyncio
from _redis_server import HeldCall, RedisServer, admitted_during, tripped_for_one_probe, wait_for

from shannon_otel import BreakerState, CircuitBreaker, Wave, task
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
            leases: Any = client.zrange(key, 0, -1, withscores=True)
            ((_, expiry),) = leases
            seconds, micros = client.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
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


async def _fail_each_and_await_its_flush(
    server: RedisServer, prefix: str, breakers: Sequence[CircuitBreaker],
) -> list[list[str]]:
    """One failed call through each of ``breakers`` (breaker "api"), in turn, each followed by its flush to Redis (the
    shared window changed: counts added, or the breaker opened): the window's fields after each flush."""

    async def boom() -> None:
        raise ConnectionError("down")

    window = f"{prefix}:{{breaker:api}}:window"
    client = redis.asyncio.Redis(port=server.port, decode_responses=True)
    seen = []
    try:
        for breaker in breakers:
            # read before the call: a flush landing between the call and a later read was waited for in vain
            before = await client.hgetall(window)
            with pytest.raises(ConnectionError):
                await breaker.call(boom)
            async with asyncio.timeout(10):
                while await client.hgetall(window) == before:  # noqa: ASYNC110 - another process's write
                    await asyncio.sleep(0.01)
            seen.append([str(field) for field in await client.hkeys(window)])
    finally:
        await client.aclose()
    return seen


def test_breakers_with_different_windows_on_one_name_count_each_others_failures(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the shared window's slices were numbered by each process's own slice width (``window_s`` / 10): a
    process with ``window_s=60`` read the slices of one with ``window_s=10`` as a clock step ahead of the
    server's (and that one read its as slices long gone) and each deleted the other's counts at its flush, so
    failures in both never added up and the breaker opened nowhere. Slices now carry their width: each process
    counts every slice that starts within its own window, and deletes only its own old ones (another width's
    once they are older than the key's TTL)."""

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as one, \
                RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as other:
            short = CircuitBreaker("api", shared=one, failure_threshold=4, window_s=10, reset_timeout=60,
                                   instrument=False)
            long = CircuitBreaker("api", shared=other, failure_threshold=4, window_s=60, reset_timeout=60,
                                  instrument=False)
            await _fail_each_and_await_its_flush(server, prefix, (short, long, short, long))  # 4 in every window
            await wait_for(lambda: short.state is BreakerState.OPEN and long.state is BreakerState.OPEN)

    asyncio.run(main())


def test_a_short_probe_lease_in_one_process_never_starts_a_new_period_under_a_longer_ones_probe(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: a half-open period whose probes were all taken started again once the admitting process's own
    ``probe_lease_s`` had passed: a process with ``probe_lease_s=0.5`` took a second probe half a second into the
    probe of a process given ``probe_lease_s=60``, still running, so two probes ran at once with
    ``half_open_probes=1``. The period now lasts the longest lease of the probes taken in it."""

    async def main() -> None:
        async with tripped_for_one_probe(server, prefix, probe_leases_s=(60, 0.5)) as (slow, quick):
            held = HeldCall()
            probe = await held.start(slow)  # the period's only probe
            assert await admitted_during(quick, 2) == 0  # 4 of the short one's leases: before, admitted after the first
            held.finish.set()
            assert await probe == "ok"
            await wait_for(lambda: quick.state is BreakerState.CLOSED)

    asyncio.run(main())


def test_a_process_with_a_shorter_key_ttl_never_cuts_the_ttl_another_needs(server: RedisServer, prefix: str) -> None:
    """Bug: every write set the breaker's key TTL to the writing process's own (``key_ttl_s``, at least its
    ``reset_timeout`` + 1 s): a process with ``key_ttl_s=1`` and ``reset_timeout=0.5`` that re-opened the breaker
    (its probe failed) cut to 2 s the TTL another process with ``reset_timeout=600`` needed; the OPEN state
    expired, and every process closed the breaker (``shared_state_expired``), admitting every call ~2 s into that
    600 s reset timeout. A key's TTL is now only ever lengthened."""
    client = redis.Redis(port=server.port, decode_responses=True)
    state_key = f"{prefix}:{{breaker:api}}:state"

    async def boom() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as patient_state, \
                RedisState(server.url, prefix=prefix, key_ttl_s=1, poll_interval_s=0.1) as hasty_state:
            patient = CircuitBreaker("api", shared=patient_state, failure_threshold=1, reset_timeout=600,
                                     instrument=False)
            hasty = CircuitBreaker("api", shared=hasty_state, failure_threshold=1, reset_timeout=0.5,
                                   instrument=False)
            with pytest.raises(ConnectionError):
                await patient.call(boom)
            await wait_for(lambda: hasty.state is BreakerState.OPEN)
            opened = client.hget(state_key, "epoch")
            await asyncio.sleep(0.6)  # past the hasty one's reset timeout: its next call is a probe
            with pytest.raises(ConnectionError):
                await hasty.call(boom)  # which fails: OPEN again, written by the hasty process
            await wait_for(lambda: client.hget(state_key, "epoch") not in (opened, None)
                           and client.hget(state_key, "state") == "open")
            assert client.ttl(state_key) > 600  # still what the patient process set
            await asyncio.sleep(2.5)  # past the hasty process's TTL: before, the state expired
            assert patient.state is BreakerState.OPEN

    try:
        asyncio.run(main())
    finally:
        client.close()


@pytest.mark.parametrize("huge", [1e12, math.inf])
def test_a_breaker_of_a_huge_window_shares_its_counts_with_the_others_on_its_name(
    server: RedisServer, prefix: str, huge: float,
) -> None:
    """Bug: a slice's field was named ``'c:' .. slice_ms .. ':' .. n``, and Lua writes a number of 15 digits or more
    in exponent form: a breaker with ``window_s`` >= 1e12 s (inf is accepted: a window that never drops a call)
    wrote ``c:9.007199254741e+15:0``, which every process's flush then refused as a field no script wrote. The
    breaker's shared state was given up in every process on the name (local state only, a warning at each
    flush), and failures counted in both never opened it. The width and number are now written as integers."""

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as one, \
                RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as other:
            never = CircuitBreaker("api", shared=one, failure_threshold=3, window_s=huge, reset_timeout=60,
                                   instrument=False)
            short = CircuitBreaker("api", shared=other, failure_threshold=3, window_s=10, reset_timeout=60,
                                   instrument=False)
            # 3 failures in every window, 2 of them in `never`'s
            for fields in await _fail_each_and_await_its_flush(server, prefix, (never, never, short)):
                assert all(re.fullmatch(r"[cfs]:\d+:-?\d+", str(field)) for field in fields), fields
            await wait_for(lambda: never.state is BreakerState.OPEN and short.state is BreakerState.OPEN)
            assert one.available and other.available

    asyncio.run(main())


def test_a_task_that_ends_first_gives_back_the_oldest_lease_not_a_later_tasks(server: RedisServer, prefix: str) -> None:
    """Bug: a release ended the newest lease this process held (a stack), whichever task ended: a task started
    second, still running when the first one ended, was left on the first one's older lease, which ran out (its
    slot taken by another process) before the second task's own ``lease_s`` had passed. A release now ends the
    oldest lease, so each task still running holds one taken no earlier than its own start."""
    client = redis.Redis(port=server.port, decode_responses=True)
    key = f"{prefix}:{{pool:db}}:holders"

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as state:
            pool = SharedPool(state, "db", 2)
            started = [asyncio.Event(), asyncio.Event()]
            may_end = [asyncio.Event(), asyncio.Event()]

            async def work(i: int) -> None:
                started[i].set()
                await may_end[i].wait()

            first = asyncio.ensure_future(Wave("first").run([task(work(0), pool=pool)]))
            await started[0].wait()
            (first_lease,) = client.zrange(key, 0, -1)
            second = asyncio.ensure_future(Wave("second").run([task(work(1), pool=pool)]))
            await started[1].wait()
            (second_lease,) = set(client.zrange(key, 0, -1)) - {first_lease}
            may_end[0].set()
            await first
            await wait_for(lambda: client.zcard(key) == 1)  # the first task's release reached Redis
            assert client.zrange(key, 0, -1) == [second_lease]  # before: the second task's own lease was ended
            may_end[1].set()
            await second

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_processes_sharing_a_breaker_with_other_settings_are_each_warned_once(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: two processes giving one shared breaker different settings were told nothing (each judged the shared window
    by its own thresholds: the one with ``failure_threshold=3`` opened the breaker for the one configured with 5,
    unexplained). Each flush now sends the process's settings and gets back the last flusher's: each process is
    warned once, naming the settings that differ; processes of one configuration (30 and 30.0 alike) are not."""
    client = redis.Redis(port=server.port, decode_responses=True)

    async def ok() -> str:
        return "ok"

    async def main() -> list[str]:
        # flush_interval_s: the flusher never runs in the test; each flush is the test's
        async with RedisState(server.url, prefix=prefix, flush_interval_s=60) as one, \
                RedisState(server.url, prefix=prefix, flush_interval_s=60) as other, \
                RedisState(server.url, prefix=prefix, flush_interval_s=60) as same:
            first = CircuitBreaker("api", shared=one, failure_threshold=5, reset_timeout=30, instrument=False)
            second = CircuitBreaker("api", shared=other, failure_threshold=3, reset_timeout=30.0, instrument=False)
            third = CircuitBreaker("ok", shared=one, reset_timeout=30, instrument=False)
            fourth = CircuitBreaker("ok", shared=same, reset_timeout=30.0, instrument=False)
            results = []
            for _ in range(3):
                for breaker in (first, second, third, fourth):
                    results.append(await breaker.call(ok))
                    assert breaker._link is not None
                    await breaker._link.flush()
            return results

    with caplog.at_level(logging.WARNING, logger="shannon_otel.redis"):
        try:
            results = asyncio.run(main())
            ttl = client.ttl(f"{prefix}:{{breaker:api}}:settings")
        finally:
            client.close()
    assert results == ["ok"] * 12
    assert isinstance(ttl, int) and ttl > 0  # the key cleans up by itself, as the breaker's others
    told = sorted(r.getMessage() for r in caplog.records if "other settings" in r.getMessage())
    assert len(told) == 2, told
    assert all("'api'" in message for message in told)
    assert "(failure_threshold: ours 3, theirs 5)" in told[0] + told[1]
    assert "(failure_threshold: ours 5, theirs 3)" in told[0] + told[1]
