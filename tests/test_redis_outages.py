"""The shared state when redis-server misbehaves: processes dying mid-probe, a paused or killed server, a
server that lost its state, more calls than the connection pool holds, many breakers polled at once, URL
typos and passwords never logged. Each test runs its own real redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
import signal
import time
from typing import Any

import _redis_procs as procs
import pytest
import redis
from _redis_server import HeldCall, RedisServer, free_port, wait_for

from shannon_otel import BreakerState, BreakerTransition, CircuitBreaker, CircuitOpenError, Hook
from shannon_otel.redis import RedisState, SharedPool, SharedRateLimit, SharedStateUnavailableError
from shannon_otel.testing import InMemoryTelemetry

pytestmark = [
    # Kept from the modules these tests came from (they shared them with Dask tests): no test's warning
    # filters change with the move.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:.*Restarting worker.*"),
]


SPAWN = multiprocessing.get_context("spawn")


async def _ok() -> int:
    return 1


async def _leases_left(server: RedisServer, prefix: str, pool: str) -> int:
    """The leases still held in Redis for ``pool`` once they stop going away (at most 10 s)."""
    raw = redis.Redis.from_url(server.url)
    try:
        key = f"{prefix}:{{pool:{pool}}}:holders"
        deadline = time.monotonic() + 10
        while (held := int(raw.zcard(key))) and time.monotonic() < deadline:  # noqa: ASYNC110 - Redis
            await asyncio.sleep(0.05)
        return held
    finally:
        raw.close()


def test_a_process_dying_during_its_half_open_probe_does_not_hold_the_breaker_half_open(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the shared half-open quota was taken by a probe whose process died; no outcome ever came,
    so every process was rejected (HALF_OPEN, no probe left) until the key expired a day later. Now a
    half-open period without an outcome for ``probe_lease_s`` starts a new one."""
    # its probe lease as short as the survivor's: a period lasts the longest lease of its probes
    dying = SPAWN.Process(target=procs.die_during_probe, args=(server.url, prefix, "api", 0.3, 0.5))
    dying.start()
    dying.join(60)
    assert dying.exitcode == 0
    raw = redis.Redis.from_url(server.url, decode_responses=True)
    state = raw.hgetall(f"{prefix}:{{breaker:api}}:state")
    raw.close()
    assert state["state"] == "half_open" and state["probes_left"] == "0"  # its probe died with it

    async def main() -> tuple[int, BreakerState]:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1, probe_lease_s=0.5) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.3,
                                     instrument=False)
            await wait_for(lambda: breaker.state is BreakerState.HALF_OPEN)  # the shared state, polled
            rejected = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    assert await breaker.call(_ok) == 1
                except CircuitOpenError:
                    rejected += 1
                    await asyncio.sleep(0.05)
                    continue
                await wait_for(lambda: breaker.state is BreakerState.CLOSED)  # the probe's success, shared
                return rejected, breaker.state
            raise AssertionError(f"still rejected after {rejected} tries: the dead process's probe holds the quota")

    _, final = asyncio.run(main())
    assert final is BreakerState.CLOSED


def test_a_pool_acquire_that_timed_out_on_a_paused_redis_leaves_no_lease_behind(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: acquires sent to a paused (SIGSTOP) Redis timed out, the process went on with local slots,
    and Redis ran the acquires when it resumed: leases nobody held or released filled the pool for
    lease_s (300 s), so every later acquire in every process waited (a wave hung). Now such leases are
    released once Redis answers again."""
    assert server.proc is not None
    pid = server.proc.pid

    async def main() -> int:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2) as shared:
            pool = SharedPool(shared, "db", limit=2)

            async def hold() -> None:
                await pool.acquire()
                await asyncio.sleep(0.01)
                pool.release()

            await asyncio.gather(*(hold() for _ in range(4)))  # connections open, as in a running service
            await wait_for(lambda: not shared._pending)
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.gather(hold(), hold())  # time out: local slots (on_unavailable="local")
                assert not shared.available
            finally:
                os.kill(pid, signal.SIGCONT)
            await wait_for(lambda: shared.available)
            await asyncio.wait_for(hold(), 10)  # a later acquire is never held up by leases nobody holds
            return await _leases_left(server, prefix, "db")

    assert asyncio.run(main()) == 0


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/abc", "url's path must be /<database number>"),  # redis-py used db 0 silently
    ("redis://127.0.0.1:6379/db0", "url's path must be /<database number>"),
    ("redis://127.0.0.1:notaport/0", "url is not a valid Redis URL"),  # redis-py's bare ValueError named no parameter
    ("redis://:s3cret@127.0.0.1:6379/0?socket_timeout=abc", "url is not a valid Redis URL"),
    # redis-py connected to "": an outage, logged as "Error 22 connecting to . Invalid argument."
    ("unix://redis.sock?password=s3cret", "url's socket path must be absolute"),
    ("unix://", "url's socket path must be absolute"),
])
def test_url_typos_are_refused_naming_the_url_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(ValueError, match="url") as caught:
        RedisState(url)
    assert shown in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_password_given_in_the_url_query_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Bug: ``redis://host/0?password=...`` (redis-py reads it) was logged as is in the outage warning."""
    url = f"redis://127.0.0.1:{free_port()}/0?password=s3cret&db=0"

    async def main() -> None:
        async with RedisState(url, timeout_s=0.1, poll_interval_s=0.1) as shared:
            assert not shared.available

    with caplog.at_level(logging.DEBUG, logger="shannon_otel"):
        asyncio.run(main())
    assert "unavailable" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("made", ["before_start", "after_start"])
def test_a_breaker_made_while_others_have_it_open_knows_before_the_next_poll(
    server: RedisServer, prefix: str, made: str,
) -> None:
    """Bug: a breaker made in a process (a new replica, a Dask task) while the others had it open started
    CLOSED and let calls through until the first poll (``poll_interval_s``, 1 s by default; here an hour):
    the notification it missed was sent before it existed. Now its state is read when it is made."""
    assert procs.fail_calls_sync(server.url, prefix, "api", 1, 1) == "open"

    async def main() -> BreakerState:
        shared = RedisState(server.url, prefix=prefix, poll_interval_s=3600)
        breaker = None
        if made == "before_start":
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=60, instrument=False)
        async with shared:
            if breaker is None:
                breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=60,
                                         instrument=False)
            b = breaker
            await wait_for(lambda: b.state is not BreakerState.CLOSED)
            with pytest.raises(CircuitOpenError):
                await b.call(_ok)
            return b.state

    assert asyncio.run(main()) is BreakerState.OPEN


def test_closing_with_redis_paused_waits_for_one_timeout_not_one_per_breaker(server: RedisServer, prefix: str) -> None:
    """Bug: the flush sent each breaker's counts in turn, each waiting ``timeout_s`` on a paused Redis:
    closing a state with 40 breakers took 10 s (and the flusher stalled as long). Now the flush stops at
    the first failure: one timeout, whatever the number of breakers."""
    assert server.proc is not None
    pid = server.proc.pid
    otel = InMemoryTelemetry()

    async def main() -> None:
        shared = RedisState(server.url, prefix=prefix, timeout_s=0.1, flush_interval_s=60,
                            meter_provider=otel.meter_provider)
        async with shared:
            breakers = [CircuitBreaker(f"b{i}", shared=shared, instrument=False) for i in range(10)]
            await wait_for(lambda: not shared._pending)  # their initial reads done
            for breaker in breakers:
                assert await breaker.call(_ok) == 1  # counts waiting for the next flush
            os.kill(pid, signal.SIGSTOP)
        os.kill(pid, signal.SIGCONT)

    try:
        asyncio.run(main())
    finally:
        os.kill(pid, signal.SIGCONT)
    points: Any = otel.metrics()["shannon.shared.errors"].data.data_points
    flush_errors = sum(p.value for p in points if p.attributes["shannon.shared.operation"] == "flush")
    assert flush_errors == 1


def test_during_a_known_outage_rate_limits_and_pools_do_not_wait_on_redis_per_start(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: with Redis paused (or a host that drops packets), every start asked Redis again and waited
    ``timeout_s`` before the documented local fallback: a rate limit of 1000/s gave 4 starts/s per caller.
    Now, as the breaker already did, a known outage goes straight to ``on_unavailable`` until the store's
    ping finds Redis back."""
    assert server.proc is not None
    pid = server.proc.pid
    otel = InMemoryTelemetry()

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.1, poll_interval_s=3600,
                              meter_provider=otel.meter_provider) as shared:
            limit = SharedRateLimit(shared, "api", rate=1000, burst=100)
            pool = SharedPool(shared, "db", limit=5)
            await limit.acquire()
            os.kill(pid, signal.SIGSTOP)
            try:
                for _ in range(10):
                    await limit.acquire()
                    await pool.acquire()
                    pool.release()
                assert not shared.available
            finally:
                os.kill(pid, signal.SIGCONT)
            await wait_for(lambda: shared.available)  # the flusher's ping ends the outage
            await limit.acquire()

    try:
        asyncio.run(main())
    finally:
        os.kill(pid, signal.SIGCONT)
    points: Any = otel.metrics()["shannon.shared.errors"].data.data_points
    by_operation = {p.attributes["shannon.shared.operation"]: p.value for p in points}
    assert by_operation.get("rate", 0) <= 1, by_operation  # the start that found the outage, if any
    assert by_operation.get("pool_acquire", 0) <= 1, by_operation


def test_a_closed_state_entered_again_is_refused_instead_of_sharing_nothing(server: RedisServer, prefix: str) -> None:
    """Bug: a RedisState entered again after closing (one object, two ``asyncio.run``) started background
    tasks that ended at once: no counts sent, no notification received, and nothing said so."""
    shared = RedisState(server.url, prefix=prefix)

    async def use() -> None:
        async with shared:
            assert shared.available

    asyncio.run(use())
    with pytest.raises(RuntimeError, match="was closed; make a new RedisState"):
        asyncio.run(use())


def test_fail_open_a_breaker_half_open_by_the_shared_state_probes_on_its_own_when_redis_goes(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: a process that learnt HALF_OPEN from the others (its local copy admits no probe: Redis does)
    rejected every call for the whole outage when Redis went away, although ``on_unavailable="local"``
    promises its own state machine, with its own probes."""

    async def main() -> tuple[int, BreakerState]:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.1) as first, \
                RedisState(server.url, prefix=prefix, timeout_s=0.1) as second:
            mine = CircuitBreaker("api", shared=first, failure_threshold=1, reset_timeout=0.3, instrument=False)
            theirs = CircuitBreaker("api", shared=second, failure_threshold=1, reset_timeout=0.3, instrument=False)
            with pytest.raises(ConnectionError):
                await mine.call(procs._boom)
            await wait_for(lambda: theirs.state is BreakerState.OPEN)
            await asyncio.sleep(0.4)  # the reset timeout, on the server's clock
            release = asyncio.Event()

            async def held_probe() -> int:
                await release.wait()
                return 1

            probe = asyncio.ensure_future(mine.call(held_probe))  # the shared period's only probe
            await wait_for(lambda: theirs.state is BreakerState.HALF_OPEN)
            server.stop()
            admitted = 0
            deadline = time.monotonic() + 10
            while not admitted and time.monotonic() < deadline:
                try:
                    admitted += await theirs.call(_ok)
                except CircuitOpenError:
                    await asyncio.sleep(0.05)
            release.set()
            assert await probe == 1
            return admitted, theirs.state

    admitted, state = asyncio.run(main())
    assert admitted == 1
    assert state is BreakerState.CLOSED  # its own probe succeeded


def test_available_turns_false_when_redis_dies_under_a_state_with_no_breaker(server: RedisServer, prefix: str) -> None:
    """Bug: a RedisState used only by rate limits or pools sent nothing while they were idle, so
    ``available`` and the ``shannon.shared.available`` gauge said 1 for as long as Redis stayed dead.
    Now the poll pings when no breaker state is read."""
    otel = InMemoryTelemetry()

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.1, poll_interval_s=0.1,
                              meter_provider=otel.meter_provider) as shared:
            await SharedRateLimit(shared, "api", rate=10).acquire()
            assert shared.available
            server.stop()
            await wait_for(lambda: not shared.available)
            points: Any = otel.metrics()["shannon.shared.available"].data.data_points
            assert [p.value for p in points] == [0]

    asyncio.run(main())


def test_the_available_gauge_of_a_prefix_is_0_while_any_of_its_open_states_cannot_reach_redis(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: several open ``RedisState`` of one prefix in a process (one per event loop, as documented) each made
    an observation of the same ``shannon.shared.available`` series, and the SDK kept whichever came last (the
    order of a set): a state that could not reach Redis was shown as 1, or not, by chance; a state made and
    not started yet (0) could hide its started siblings too. Now each prefix is one observation, 0 while any of
    its open states cannot reach Redis, and only open states count."""
    otel = InMemoryTelemetry()

    def shown() -> list[int]:
        points: Any = otel.metrics()["shannon.shared.available"].data.data_points
        return [p.value for p in points]

    async def main() -> None:
        def state(url: str) -> RedisState:
            return RedisState(url, prefix=prefix, timeout_s=0.5, meter_provider=otel.meter_provider)

        made_only = state(server.url)  # not started: not on the gauge
        async with state(server.url) as up:
            assert shown() == [1]
            async with state(f"redis://127.0.0.1:{free_port()}/0") as down, state(server.url):
                assert up.available and not down.available
                observations = list(up._telemetry._observe(None))  # type: ignore[arg-type]
                assert [(o.value, dict(o.attributes or {})) for o in observations] == [
                    (0, {"shannon.shared.prefix": prefix})]
                assert shown() == [0]
            assert shown() == [1]
        del made_only

    asyncio.run(main())


def test_a_pool_acquire_cancelled_mid_call_is_cancelled_and_leaves_no_lease(server: RedisServer, prefix: str) -> None:
    """Bug: redis-py now and then returns the answer of a call whose task was cancelled meanwhile (the
    CancelledError is lost inside it). A cancelled pool acquire then went on (granted: a lease nobody
    releases; full: waiting for a slot forever, a hang), and a granted lease of a cancelled acquire stayed
    for lease_s. Now a cancelled call always raises CancelledError and its lease, if any, is released."""
    rng = random.Random(4)

    async def main() -> tuple[int, int]:
        returned_after_cancel = 0
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1) as shared:
            pool = SharedPool(shared, "db", limit=3)
            for _ in range(300):
                acquiring = asyncio.ensure_future(pool.acquire())
                await asyncio.sleep(rng.random() * 0.002)  # lands before, during or after the script
                requested = acquiring.cancel()
                try:
                    await asyncio.wait_for(asyncio.shield(acquiring), 5)  # never waits for a slot forever
                except asyncio.CancelledError:
                    continue
                pool.release()
                returned_after_cancel += requested
            held = await _leases_left(server, prefix, "db")
        return returned_after_cancel, held

    returned_after_cancel, held = asyncio.run(main())
    assert returned_after_cancel == 0  # a cancelled acquire raised CancelledError, every time
    assert held == 0


async def _trip(breaker: CircuitBreaker) -> None:
    with pytest.raises(ConnectionError):
        await breaker.call(procs._boom)


@pytest.mark.parametrize("lost_by", ["flushall", "restart"])
def test_a_breaker_opened_after_redis_lost_its_state_is_open_in_every_process(
    server: RedisServer, prefix: str, lost_by: str,
) -> None:
    """Bug: epochs started again from 0 once Redis lost the state (FLUSHALL, a restart of a Redis without
    persistence, keys expired), and a process applies only newer epochs: one that had seen epoch 4 ignored
    the breaker opened anew at epoch 1 (notification and poll alike) and kept calling the failing
    dependency until the new epochs passed the old ones. Now a state created afresh starts its epochs
    from the server's clock (ms), past every epoch of the lost one."""

    async def main() -> BreakerState:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2) as first, \
                RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2) as second:
            mine = CircuitBreaker("api", shared=first, failure_threshold=1, reset_timeout=60, instrument=False)
            theirs = CircuitBreaker("api", shared=second, failure_threshold=1, reset_timeout=60, instrument=False)
            for _ in range(2):  # a few transitions: epoch 4, seen by both
                await _trip(theirs)
                await wait_for(lambda: mine.state is BreakerState.OPEN)
                theirs.reset()
                await wait_for(lambda: mine.state is BreakerState.CLOSED)
            if lost_by == "flushall":
                raw = redis.Redis.from_url(server.url)
                raw.flushall()
                raw.close()
            else:
                server.stop()
                await wait_for(lambda: not first.available and not second.available)
                server.start()
                await wait_for(lambda: first.available and second.available)
            await asyncio.sleep(0.5)  # a few polls of the empty state
            await _trip(theirs)  # opened again, in the new state
            await wait_for(lambda: mine.state is BreakerState.OPEN)
            return mine.state

    assert asyncio.run(main()) is BreakerState.OPEN


def test_more_concurrent_calls_than_the_connection_pool_holds_are_not_an_outage(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: redis-py's asyncio pool holds 100 connections and raises MaxConnectionsError at once for the
    101st concurrent command: a wave of 300 concurrent tasks on a SharedRateLimit or SharedPool (or 300
    breakers made in a loop) made RedisState declare Redis down, log an outage and apply
    ``on_unavailable`` (with "reject": every task failed, every breaker opened). Now a command waits for
    a free connection, within ``timeout_s``."""
    otel = InMemoryTelemetry()

    async def main() -> bool:
        async with RedisState(server.url, prefix=prefix, timeout_s=5, on_unavailable="reject",
                              meter_provider=otel.meter_provider) as shared:
            limit = SharedRateLimit(shared, "api", rate=1e6, burst=1_000_000)
            pool = SharedPool(shared, "db", limit=1000)

            async def one() -> None:
                await limit.acquire()
                await pool.acquire()
                pool.release()

            await asyncio.gather(*(one() for _ in range(300)))
            breakers = [CircuitBreaker(f"b{i}", shared=shared, instrument=False) for i in range(300)]
            await wait_for(lambda: not shared._pending)  # their first reads of the shared state
            assert all(b.state is BreakerState.CLOSED for b in breakers)
            return shared.available

    assert asyncio.run(main())
    assert "shannon.shared.errors" not in otel.metrics()


def test_one_poll_of_many_breakers_is_one_round_trip_and_still_sees_each_state(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the poll read each breaker's state in a round trip of its own: 2,000 breakers (one per host
    or tenant) took ~0.7 s per poll, once a second by default, and the flusher (which sends the counts
    every ``flush_interval_s``) stalled meanwhile. Now the poll reads up to 500 breakers per round trip
    (counted by ``shannon.shared.duration`` for operation ``poll``)."""
    otel = InMemoryTelemetry()

    def polls() -> int:
        points: Any = otel.metrics()["shannon.shared.duration"].data.data_points
        return sum(p.count for p in points if p.attributes["shannon.shared.operation"] == "poll")

    async def main() -> tuple[int, list[BreakerState]]:
        async with RedisState(server.url, prefix=prefix, timeout_s=5, poll_interval_s=3600,
                              meter_provider=otel.meter_provider) as shared:
            breakers = [CircuitBreaker(f"b{i}", shared=shared, failure_threshold=1, reset_timeout=60,
                                       instrument=False) for i in range(600)]
            await wait_for(lambda: not shared._pending)  # their first reads
            raw = redis.Redis.from_url(server.url)
            now_ms = int(raw.time()[0]) * 1000
            for i in (7, 599):  # opened elsewhere, the message lost: only the poll can tell
                raw.hset(shared._key("breaker", f"b{i}", "state"),
                         mapping={"state": "open", "epoch": now_ms, "opened_at": now_ms, "reason": "failure_threshold"})
            raw.close()
            before = polls()
            await shared._poll()
            return polls() - before, [breakers[i].state for i in (0, 7, 599)]

    round_trips, states = asyncio.run(main())
    assert states == [BreakerState.CLOSED, BreakerState.OPEN, BreakerState.OPEN]
    assert round_trips == 2  # 600 breakers: two batches of at most 500


@pytest.mark.parametrize(("credentials", "said"), [
    ("", "AuthenticationError"),
    (":wrong@", "AuthenticationError: 'invalid username-password pair"),
])
def test_fail_closed_calls_during_an_outage_say_what_the_outage_is(
    server: RedisServer, prefix: str, credentials: str, said: str,
) -> None:
    """Bug: with a missing or wrong password (any outage), every rate limit and pool acquire of a fail-closed
    state raised "Redis unavailable (outage under way) at 'prefix'": the caller could not tell a wrong password
    from a server down (only a warning logged once said). Now the error names the outage's cause and the URL
    (without its password)."""
    raw = redis.Redis.from_url(server.url)
    raw.config_set("requirepass", "s3cret")  # this connection stays authenticated
    url = server.url.replace("redis://", f"redis://{credentials}")

    async def main() -> list[str]:
        async with RedisState(url, prefix=prefix, on_unavailable="reject") as shared:
            errors = []
            for limiter in (SharedRateLimit(shared, "api", rate=10), SharedPool(shared, "db", limit=2)):
                with pytest.raises(SharedStateUnavailableError) as caught:
                    await limiter.acquire()
                errors.append(str(caught.value))
            return errors

    try:
        errors = asyncio.run(main())
    finally:
        raw.config_set("requirepass", "")
        raw.close()
    for error in errors:
        assert said in error and "127.0.0.1" in error
        assert "wrong" not in error  # the password is never shown


def test_a_server_clock_that_went_back_holds_an_open_breaker_its_reset_timeout_not_the_step(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the shared reset timeout is judged on the server's clock, from the time the breaker opened; when that
    clock went back (an operator or NTP step, a failover to a replica whose clock is behind) the breaker stayed
    open in every process for the step too (an hour back: rejected for an hour, ``retry_after_s`` ~3600), where
    a local breaker waits its reset timeout from the step. The admission script now does the same. Simulated as
    such a server leaves the state: opened an hour ahead of the server's time now."""
    client = redis.Redis(port=server.port, decode_responses=True)

    async def boom() -> None:
        raise ConnectionError("down")

    async def ok() -> str:
        return "ok"

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, timeout_s=5) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.2, instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(boom)
            key = f"{prefix}:{{breaker:api}}:state"
            await wait_for(lambda: client.hget(key, "state") == "open")  # the trip reached Redis
            seconds, micros = client.time()
            client.hset(key, "opened_at", seconds * 1000 + micros // 1000 + 3_600_000)
            waits: list[float | None] = []
            while True:
                try:
                    result = await breaker.call(ok)  # the probe, within the reset timeout of the step
                    break
                except CircuitOpenError as exc:
                    waits.append(exc.retry_after_s)
                    await asyncio.sleep(min(exc.retry_after_s or 0.05, 0.25))
                assert all(w is not None and w <= 0.2 for w in waits), waits  # before: ~3600 s
            assert result == "ok"
            await wait_for(lambda: breaker.state is BreakerState.CLOSED)  # the probe's success, taken by Redis

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_a_server_clock_that_went_back_drops_window_slices_counted_before_the_step(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the shared window's slices are indexed by the server's time; slices counted before that clock went
    back a whole window or more (a step, a failover to a replica whose clock is behind) stayed in the window for
    the whole step (dropped only once they fell behind it), so a day back, a day of old failures counted, and one
    more failure opened the breaker in every process. A local breaker's window drops them; the flush script now
    does too. Simulated as such a server leaves the window: 4 failures counted a day ahead of its time now."""
    client = redis.Redis(port=server.port, decode_responses=True)

    async def boom() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, timeout_s=5) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=5, window_s=10, instrument=False)
            window, state = f"{prefix}:{{breaker:api}}:window", f"{prefix}:{{breaker:api}}:state"
            seconds, micros = client.time()
            ahead = (seconds * 1000 + micros // 1000 + 86_400_000) // 1000  # slices of window_s / 10 = 1000 ms
            client.hset(window, mapping={f"c:{ahead}": 4, f"f:{ahead}": 4})
            with pytest.raises(ConnectionError):
                await breaker.call(boom)
            await wait_for(lambda: not client.hexists(window, f"f:{ahead}"))  # the flush ran (dropped, or opened)
            assert client.hget(state, "state") != "open"
            # the slices now counted, named by their width (1000 ms) and number
            newest = max(int(str(k).rsplit(":", 1)[1]) for k in client.hkeys(window))
            assert client.hget(window, f"f:1000:{newest}") == "1"

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_a_server_clock_that_went_back_frees_a_dead_holders_pool_slot_after_its_lease_not_the_step(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: a pool lease ends at a time on the server's clock; when that clock went back (a step, a failover to a
    replica whose clock is behind), the slot of a holder that died before the step stayed taken for the step
    too (a day back: a day, every process waiting for it). A lease now ends at most ``lease_s`` from the
    server's time (a live holder keeps its slot for a full lease). Simulated as such a server leaves the pool: a
    dead holder's lease ending a day ahead of the server's time now."""
    client = redis.Redis(port=server.port, decode_responses=True)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, timeout_s=5, poll_interval_s=0.1) as shared:
            pool = SharedPool(shared, "db", limit=1, lease_s=1)
            seconds, micros = client.time()
            ahead = seconds * 1000 + micros // 1000 + 86_400_000
            client.zadd(f"{prefix}:{{pool:db}}:holders", {"dead": ahead})
            client.set(f"{prefix}:{{pool:db}}:clock", ahead - 1000)  # its last acquire's time, as the server left it
            async with asyncio.timeout(15):  # before: a day
                await pool.acquire()
            pool.release()
            assert shared.available

    try:
        asyncio.run(main())
    finally:
        client.close()


class _Transitions(Hook):
    """Each transition a breaker hands its hooks: (from, to, reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str]] = []

    def breaker_transition(self, event: BreakerTransition) -> None:
        self.seen.append((event.from_state.value, event.to_state.value, event.reason))


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shannon_otel.breaker"]


def test_a_probe_outcome_that_finds_the_shared_state_lost_closes_the_breaker_as_expired(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: a half-open probe's outcome sent after Redis lost the state (FLUSHALL, a restart without persistence)
    was answered with no state and no reason, and the breaker closed with the reason ``shared``, which no doc
    names (hook event, log line and span event alike). The state was lost: it closes as ``shared_state_expired``,
    as the poll that finds no state closes it."""
    seen = _Transitions()

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.2, hooks=[seen])
            with caplog.at_level(logging.INFO, logger="shannon_otel.breaker"):
                await _trip(breaker)
                await asyncio.sleep(0.3)  # past the reset timeout: the next call is the probe
                held = HeldCall()
                probe = await held.start(breaker)
                assert breaker.state is BreakerState.HALF_OPEN
                raw = redis.Redis.from_url(server.url)
                raw.flushall()
                raw.close()
                held.finish.set()
                assert await probe == "ok"
                await wait_for(lambda: breaker.state is BreakerState.CLOSED)  # the outcome's answer: no state

    asyncio.run(main())
    assert seen.seen[-1] == ("half_open", "closed", "shared_state_expired"), seen.seen
    assert _logged(caplog)[-1] == "circuit breaker 'api' is closed (was half_open): shared_state_expired"


@pytest.mark.parametrize("before", ["never_opened", "reset"])
def test_a_fail_closed_breaker_opened_for_an_outage_closes_as_available_when_redis_answers_again(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture, before: str,
) -> None:
    """Bug: with ``on_unavailable="reject"``, a CLOSED breaker opened for an outage (``shared_state_unavailable``)
    closed, once Redis answered again with its state intact (paused, not restarted), as ``shared_state_expired``
    when it had never opened (nothing expired), or with the reason of the shared state from before the outage (a
    ``reset`` nobody made then). It closes because Redis is reachable again: ``shared_state_available``."""
    assert server.proc is not None
    pid = server.proc.pid
    seen = _Transitions()

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, on_unavailable="reject", timeout_s=0.2,
                              poll_interval_s=0.2) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=60, hooks=[seen])
            if before == "reset":  # a shared state written, CLOSED with the reason `reset`
                for change in (breaker.force_open, breaker.reset):
                    change()
                    await wait_for(lambda: not breaker._link.pushes)  # type: ignore[union-attr]  # sent
            assert await breaker.call(_ok) == 1
            with caplog.at_level(logging.INFO, logger="shannon_otel.breaker"):
                os.kill(pid, signal.SIGSTOP)
                try:
                    await wait_for(lambda: not shared.available)  # the poll timed out
                    assert breaker.state is BreakerState.OPEN
                finally:
                    os.kill(pid, signal.SIGCONT)
                await wait_for(lambda: shared.available and breaker.state is BreakerState.CLOSED)
            assert await breaker.call(_ok) == 1

    asyncio.run(main())
    assert seen.seen[-2:] == [("closed", "open", "shared_state_unavailable"),
                              ("open", "closed", "shared_state_available")], seen.seen
    assert _logged(caplog)[-2:] == ["circuit breaker 'api' is open (was closed): shared_state_unavailable",
                               "circuit breaker 'api' is closed (was open): shared_state_available"], _logged(caplog)


def test_a_shared_rate_limit_falling_back_to_a_local_one_works_in_a_later_event_loop_too() -> None:
    """Bug: the local limit a SharedRateLimit falls back to while Redis is unavailable queues its waiting starts
    behind a lock, bound to the event loop of the first wait: the same limit used again by a later ``asyncio.run()``
    raised RuntimeError ("bound to a different event loop") at its first contended start."""
    shared = RedisState(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.1)
    limit = SharedRateLimit(shared, "api", rate=1000, burst=1)

    async def starts() -> None:
        await asyncio.gather(*(limit.acquire() for _ in range(4)))  # the later three wait their turn

    asyncio.run(starts())
    asyncio.run(starts())


def test_a_shared_rate_limits_local_fallback_keeps_one_schedule_for_every_event_loop() -> None:
    """Bug: made per event loop (so that its queue of waiting starts is the loop's), the fallback began an empty
    schedule each time another loop used the limit: two threads each running their own loop over one limit swapped
    it back and forth, and 10 starts at 10/s took 0.3 s. One schedule, with a queue per loop: a start in a second
    loop right after one in the first waits for its slot."""
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)

    shared = RedisState(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.1)
    limit = SharedRateLimit(shared, "api", rate=10, burst=1, sleep=recorded)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(limit.acquire())
        second.run_until_complete(limit.acquire())
    finally:
        first.close()
        second.close()
    assert len(waits) == 1 and 0.05 < waits[0] <= 0.1, waits  # the second start waited for the next slot

