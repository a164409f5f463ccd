"""Breakers, rate limits and pools shared through a real redis-server, across real processes."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import multiprocessing
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _redis_procs as procs
import pytest
import redis
from _redis_server import RedisServer, running_server, wait_for
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context

from shannon_otel import (
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpenError,
    Hook,
    ResourcePool,
)
from shannon_otel import _telemetry as tel
from shannon_otel.redis import RedisState, SharedPool, SharedRateLimit, SharedStateUnavailableError
from shannon_otel.testing import InMemoryTelemetry

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_server(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, which the test may kill and restart."""
    with running_server(tmp_path) as srv:
        yield srv


async def _ok() -> int:
    return 1


async def _boom() -> None:
    raise ConnectionError("down")


def test_a_breaker_opened_by_another_process_is_open_here_by_notification(server: RedisServer, prefix: str) -> None:
    async def main() -> float:
        # poll every 60 s: only the published notification can open it here in time
        async with RedisState(server.url, prefix=prefix, poll_interval_s=60) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=3, reset_timeout=60, instrument=False)
            assert breaker.state is BreakerState.CLOSED
            with SPAWN.Pool(1) as pool:
                other = await asyncio.to_thread(pool.apply, procs.fail_calls_sync, (server.url, prefix, "api", 3, 3))
            assert other == "open"
            started = time.monotonic()
            await wait_for(lambda: breaker.state is BreakerState.OPEN)
            with pytest.raises(CircuitOpenError):
                await breaker.call(_ok)
            return time.monotonic() - started

    asyncio.run(main())


def test_failures_of_several_processes_add_up_in_the_shared_window(server: RedisServer, prefix: str) -> None:
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=60) as shared:
            breaker = CircuitBreaker("db", shared=shared, failure_threshold=5, reset_timeout=60, instrument=False)
            with SPAWN.Pool(2) as pool:  # 3 + 3 failures: neither process alone reaches 5
                states = await asyncio.to_thread(
                    pool.starmap, procs.fail_calls_sync, [(server.url, prefix, "db", 3, 5)] * 2,
                )
            assert "closed" in states  # at least the first to finish saw no trip of its own
            await wait_for(lambda: breaker.state is BreakerState.OPEN)

    asyncio.run(main())


def test_the_half_open_probe_quota_holds_across_processes(server: RedisServer, prefix: str) -> None:
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as shared:
            breaker = CircuitBreaker("probe", shared=shared, failure_threshold=1, reset_timeout=0.5,
                                     half_open_probes=2, success_threshold=2, instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await shared._flush_all()
        assert breaker.state is BreakerState.OPEN

    asyncio.run(main())
    queue = SPAWN.Queue()
    time.sleep(0.5)  # the reset timeout past
    ready, answered = SPAWN.Barrier(3), SPAWN.Barrier(3)
    workers = [SPAWN.Process(target=procs.probe_storm, args=(server.url, prefix, "probe", 50, ready, answered, queue))
               for _ in range(3)]
    for w in workers:
        w.start()
    admitted = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(30)
    assert sum(admitted) == 2, admitted  # 150 concurrent callers in 3 processes: exactly the quota


def test_the_closed_success_path_makes_no_redis_call_per_call(server: RedisServer, prefix: str) -> None:
    client = redis.Redis.from_url(server.url)

    def scripts_run() -> int:
        stats = client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

    async def main() -> int:
        async with RedisState(server.url, prefix=prefix, flush_interval_s=0.2, poll_interval_s=60) as shared:
            breaker = CircuitBreaker("hot", shared=shared, instrument=False)
            before = scripts_run()
            for _ in range(5000):
                await breaker.call(_ok)
            await shared._flush_all()
            return scripts_run() - before

    assert asyncio.run(main()) <= 3  # the counts went in one or two flushes, not 5,000 round trips
    client.close()


def test_a_malformed_message_on_the_channel_does_not_cost_the_next_notification(
    server: RedisServer, prefix: str,
) -> None:
    # Before: "garbage" raised in the subscriber, which dropped its subscription and slept before
    # resubscribing: the notification right behind it was lost (the poll, here an hour, was the only way back).
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600) as shared:
            breaker = CircuitBreaker("m", shared=shared, instrument=False)
            await wait_for(lambda: shared.available)
            client = redis.Redis.from_url(server.url)
            await asyncio.sleep(0.2)  # the subscriber is listening
            for garbage in ("garbage", "m|nonsense|9|0|0|x", "m|open|notanumber|0|0|x"):
                client.publish(shared.breaker_channel, garbage)
            client.publish(shared.breaker_channel, "m|open|99|0|0|shared")
            client.close()
            await wait_for(lambda: breaker.state is BreakerState.OPEN)  # lost for good before: sent while resubscribing

    asyncio.run(main())


def test_a_missed_notification_is_caught_by_the_poll(server: RedisServer, prefix: str) -> None:
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.2) as shared:
            breaker = CircuitBreaker("quiet", shared=shared, instrument=False)
            # Someone opened it without publishing (as if the message was lost).
            now_ms = int(time.time() * 1000)
            raw = redis.Redis.from_url(server.url)
            raw.hset(shared._key("breaker", "quiet", "state"),
                     mapping={"state": "open", "epoch": 7, "opened_at": now_ms, "reason": "failure_threshold"})
            raw.close()
            await wait_for(lambda: breaker.state is BreakerState.OPEN)

    asyncio.run(main())


REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


@pytest.mark.parametrize("learnt_by", ["notification", "poll"])
def test_a_state_change_from_redis_is_applied_outside_the_context_that_started_the_state(
    server: RedisServer, prefix: str, learnt_by: str,
) -> None:
    """The state's background tasks were created in the context of their caller (`start()`'s, a breaker's
    construction, which reads the shared state in the background): a breaker opened by another process (learnt by a
    notification, or by a poll) was applied there, later; its hooks saw that caller's context variables, baggage and
    current span, and the OTel hook added the transition as an event to that unrelated span."""
    otel = InMemoryTelemetry()
    seen: list[tuple[str, object, bool]] = []

    class Watcher(Hook):
        def breaker_transition(self, event: BreakerTransition) -> None:
            seen.append((REQUEST.get(), baggage.get_baggage("request"), trace.get_current_span().is_recording()))

    async def main() -> None:
        poll_s = 60 if learnt_by == "notification" else 0.2
        with otel.tracer_provider.get_tracer("app").start_as_current_span("startup"):
            REQUEST.set("startup")
            token = otel_context.attach(baggage.set_baggage("request", "startup"))
            try:
                async with RedisState(server.url, prefix=prefix, poll_interval_s=poll_s) as shared:
                    breaker = CircuitBreaker("api", shared=shared, hooks=[Watcher()], **otel.providers)
                    if learnt_by == "notification":
                        async with RedisState(server.url, prefix=prefix) as elsewhere:
                            remote = CircuitBreaker("api", shared=elsewhere, failure_threshold=1, instrument=False)
                            with pytest.raises(ConnectionError):
                                await remote.call(_boom)
                    else:  # opened without publishing: only the poll finds it
                        raw = redis.Redis.from_url(server.url)
                        raw.hset(shared._key("breaker", "api", "state"), mapping={
                            "state": "open", "epoch": 7, "opened_at": int(time.time() * 1000),
                            "reason": "failure_threshold"})
                        raw.close()
                    await wait_for(lambda: breaker.state is BreakerState.OPEN)
            finally:
                otel_context.detach(token)

    asyncio.run(main())
    assert seen == [("none", None, False)]
    assert otel.span("startup").events == ()


@pytest.mark.parametrize("opened_by", ["this process", "another process"])
def test_a_poll_that_read_no_state_before_the_breaker_opened_does_not_close_it(
    server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch, opened_by: str,
) -> None:
    """Bug (CI, under load: test_redis_key_ttl's probe admitted as CLOSED, waiting forever): a new breaker's poll
    read "no state" in Redis, the breaker opened (tripped here and answered, or by another process's notification),
    then the poll's answer arrived and closed it again (``shared_state_expired``), Redis holding it open, until the
    next poll. The poll's answer is held here between its read and its delivery, so the order is forced."""
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600) as here, \
                RedisState(server.url, prefix=prefix, poll_interval_s=3600) as there:
            read, deliver = asyncio.Event(), asyncio.Event()
            run = here._run

            async def held_poll(operation: str, command: Any, keys: list[str] | None = None, **kw: Any) -> Any:
                result = await run(operation, command, keys, **kw)
                if operation == "poll":
                    read.set()
                    await deliver.wait()
                return result

            monkeypatch.setattr(here, "_run", held_poll)
            breaker = CircuitBreaker("api", shared=here, failure_threshold=1, reset_timeout=60, instrument=False)
            await read.wait()  # its registration's poll has read Redis: no state yet
            opener = breaker if opened_by == "this process" else CircuitBreaker(
                "api", shared=there, failure_threshold=1, reset_timeout=60, instrument=False)
            with pytest.raises(ConnectionError):
                await opener.call(_boom)
            link = breaker._link
            assert link is not None
            await wait_for(lambda: link.epoch != 0 and breaker.state is BreakerState.OPEN)  # Redis's state, taken
            pending = list(here._pending)  # the poll, held
            deliver.set()
            await asyncio.wait(pending)
            assert breaker.state is BreakerState.OPEN
            with pytest.raises(CircuitOpenError):
                await breaker.call(_ok)

    asyncio.run(main())


def test_two_breakers_of_different_names_never_share_keys(server: RedisServer, prefix: str) -> None:
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.2) as shared:
            a = CircuitBreaker("a", shared=shared, failure_threshold=1, reset_timeout=60, instrument=False)
            b = CircuitBreaker("ab", shared=shared, failure_threshold=1, reset_timeout=60, instrument=False)
            with pytest.raises(ConnectionError):
                await a.call(_boom)
            await shared._flush_all()
            await asyncio.sleep(0.5)
            assert (a.state, b.state) == (BreakerState.OPEN, BreakerState.CLOSED)
            keys = {k.decode() for k in redis.Redis.from_url(server.url).keys(f"{prefix}:*")}  # type: ignore[union-attr]
            assert keys and all("{breaker:a}" in k for k in keys), keys
            with pytest.raises(ValueError, match="already bound"):
                CircuitBreaker("a", shared=shared, instrument=False)

    asyncio.run(main())


def test_keys_expire_when_unused(server: RedisServer, prefix: str) -> None:
    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, key_ttl_s=1) as shared:
            # an open breaker's keys live its reset timeout (+1 s) at least: tests/test_redis_key_ttl.py
            breaker = CircuitBreaker("ttl", shared=shared, failure_threshold=1, reset_timeout=1, instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await shared._flush_all()
            await asyncio.sleep(0.2)

    asyncio.run(main())
    raw = redis.Redis.from_url(server.url)
    assert raw.keys(f"{prefix}:*")
    time.sleep(2.5)
    assert raw.keys(f"{prefix}:*") == []
    raw.close()


def test_redis_killed_and_restarted_fail_open(own_server: RedisServer, prefix: str) -> None:
    otel = InMemoryTelemetry()

    async def main() -> None:
        async with RedisState(own_server.url, prefix=prefix, timeout_s=0.2, flush_interval_s=0.05,
                              poll_interval_s=0.2, meter_provider=otel.meter_provider) as shared:
            breaker = CircuitBreaker("fo", shared=shared, failure_threshold=2, reset_timeout=0.3, instrument=False)
            assert await breaker.call(_ok) == 1
            own_server.stop()
            await wait_for(lambda: not shared.available)
            # local state takes over: calls succeed, and the local window still trips
            started = time.monotonic()
            assert await breaker.call(_ok) == 1
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await breaker.call(_boom)
            assert breaker.state is BreakerState.OPEN
            await asyncio.sleep(0.4)
            assert await breaker.call(_ok) == 1  # local half-open probe
            assert time.monotonic() - started < 5  # nothing waited on the dead server beyond its timeouts
            own_server.start()
            await wait_for(lambda: shared.available)
            for _ in range(3):
                await breaker.call(_ok)

    asyncio.run(main())
    points: Any = otel.metrics()["shannon.shared.errors"].data.data_points
    assert sum(p.value for p in points) >= 1


def test_redis_killed_fail_closed_rejects_until_it_is_back(own_server: RedisServer, prefix: str) -> None:
    async def main() -> None:
        async with RedisState(own_server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2,
                              on_unavailable="reject") as shared:
            breaker = CircuitBreaker("fc", shared=shared, instrument=False)
            limit = SharedRateLimit(shared, "fc", rate=1000)
            assert await breaker.call(_ok) == 1
            own_server.stop()
            await wait_for(lambda: not shared.available)
            with pytest.raises(CircuitOpenError):
                await breaker.call(_ok)
            with pytest.raises(SharedStateUnavailableError):
                await limit.acquire()
            own_server.start()
            await wait_for(lambda: shared.available)
            await wait_for(lambda: breaker.state is BreakerState.CLOSED)
            assert await breaker.call(_ok) == 1
            await limit.acquire()

    asyncio.run(main())


@pytest.mark.parametrize("made", ["before_start", "after_start"])
def test_fail_closed_holds_for_a_breaker_made_while_redis_is_down(prefix: str, made: str) -> None:
    # Before: a breaker made during an outage (here: Redis down from the start) let every call
    # through with on_unavailable="reject": only breakers bound when the outage began were opened.
    from _redis_server import free_port

    async def main() -> None:
        shared = RedisState(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, timeout_s=0.2,
                            on_unavailable="reject")
        early = CircuitBreaker("early", shared=shared, instrument=False) if made == "before_start" else None
        async with shared:
            breaker = early or CircuitBreaker("late", shared=shared, instrument=False)
            assert not shared.available
            assert breaker.state is BreakerState.OPEN
            with pytest.raises(CircuitOpenError):
                await breaker.call(_ok)

    asyncio.run(main())


def test_a_breaker_made_during_an_outage_closes_when_redis_is_back(own_server: RedisServer, prefix: str) -> None:
    own_server.stop()

    async def main() -> None:
        async with RedisState(own_server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2,
                              on_unavailable="reject") as shared:
            breaker = CircuitBreaker("late", shared=shared, instrument=False)
            with pytest.raises(CircuitOpenError):
                await breaker.call(_ok)
            own_server.start()
            await wait_for(lambda: shared.available)
            await wait_for(lambda: breaker.state is BreakerState.CLOSED)
            assert await breaker.call(_ok) == 1

    asyncio.run(main())


def test_a_breaker_made_during_an_outage_reports_its_open_state_after_registering(prefix: str) -> None:
    from _redis_server import free_port

    async def main() -> None:
        telemetry = InMemoryTelemetry()
        async with RedisState(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, timeout_s=0.2,
                              on_unavailable="reject", meter_provider=telemetry.meter_provider) as shared:
            CircuitBreaker("late", shared=shared, **telemetry.providers)
        points = telemetry.points("shannon.breaker.state")
        states = {p.attributes["shannon.breaker.state"]: p.value for p in points
                  if p.attributes["shannon.breaker.name"] == "late"}
        assert states["open"] == 1 and states["closed"] == 0  # registered closed, then opened: not the reverse

    asyncio.run(main())


def test_redis_down_at_start_and_a_silent_redis_never_hang(prefix: str) -> None:
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)  # accepts connections (the kernel does) and never answers
    down_port = RedisServer.__new__(RedisServer)  # only for free_port
    from _redis_server import free_port

    async def main(url: str) -> float:
        started = time.monotonic()
        async with RedisState(url, prefix=prefix, timeout_s=0.2) as shared:
            breaker = CircuitBreaker("x", shared=shared, instrument=False)
            assert not shared.available
            assert await breaker.call(_ok) == 1
            limit = SharedRateLimit(shared, "x", rate=100)
            await limit.acquire()  # local fallback
        return time.monotonic() - started

    assert asyncio.run(main(f"redis://127.0.0.1:{free_port()}/0")) < 5
    assert asyncio.run(main(f"redis://127.0.0.1:{black_hole.getsockname()[1]}/0")) < 5
    black_hole.close()
    del down_port


def test_a_shared_rate_limit_holds_across_processes(server: RedisServer, prefix: str) -> None:
    queue = SPAWN.Queue()
    rate, seconds = 40.0, 2.0
    ready = SPAWN.Barrier(4)
    workers = [SPAWN.Process(target=procs.rate_limited_starts,
                             args=(server.url, prefix, "api", rate, seconds, ready, queue)) for _ in range(4)]
    for w in workers:
        w.start()
    starts = sum(queue.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(30)
    # 4 processes share 40/s: about 80 starts in 2 s, never more (the 320 four local limiters would allow).
    # The upper bound is the property; the lower one only shows the limit lets work through: on a loaded
    # machine the processes get less of the 2 s (36 starts seen at load ~7), so it is not a timing check.
    assert rate * seconds * 0.25 <= starts <= rate * seconds + 4, starts


def test_a_shared_pool_bounds_holders_across_processes(server: RedisServer, prefix: str) -> None:
    queue = SPAWN.Queue()
    workers = [SPAWN.Process(target=procs.pool_users, args=(server.url, prefix, "db", 2, 6, queue)) for _ in range(3)]
    for w in workers:
        w.start()
    peaks = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(30)
    assert max(peaks) <= 2, peaks


def test_a_breaker_opened_on_dask_workers_is_open_on_the_client(server: RedisServer, prefix: str) -> None:
    from distributed import Client, LocalCluster

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=60) as shared:
            breaker = CircuitBreaker("dask-api", shared=shared, failure_threshold=4, reset_timeout=60,
                                     instrument=False)
            async with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, asynchronous=True,
                                    dashboard_address="127.0.0.1:0", host="127.0.0.1", silence_logs=40) as cluster, \
                    Client(cluster, asynchronous=True) as client:
                futures = client.map(procs.fail_calls, [server.url] * 2, [prefix] * 2, ["dask-api"] * 2, [2, 2],
                                     [4, 4], pure=False)
                await client.gather(futures)
            await wait_for(lambda: breaker.state is BreakerState.OPEN)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "http://localhost"}, "url must be a redis://"),
        ({"key_ttl_s": -5}, "key_ttl_s must be an int"),
        ({"timeout_s": 0}, "timeout_s must be"),
        ({"timeout_s": float("inf")}, "timeout_s must be"),
        ({"flush_interval_s": float("nan")}, "flush_interval_s must be"),
        ({"on_unavailable": "maybe"}, "on_unavailable must be"),
        ({"prefix": "a b"}, "prefix must be"),
        # Bug: accepted, and the subscriber held the one connection: every command timed out, Redis an outage
        ({"url": "redis://127.0.0.1:6379/0?max_connections=1"}, "url's max_connections must be at least 2"),
        # Bug: accepted, and every connection failed (an unknown keyword argument): Redis an outage for good
        ({"url": "redis://127.0.0.1:6379/0?sockettimeout=1"}, "url has an option redis-py does not take"),
        ({"url": "redis://127.0.0.1:6379/0?protocol=4"}, "url has an option redis-py does not take"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RedisState(**kwargs)


def test_bad_limits_are_refused(server: RedisServer) -> None:
    shared = RedisState(server.url)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"rate": 0}, "rate must be"), ({"rate": 1, "burst": 0}, "burst must be"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            SharedRateLimit(shared, "x", **kwargs)
    with pytest.raises(ValueError, match="lease_s must be"):
        SharedPool(shared, "p", 2, lease_s=0)
    with pytest.raises(TypeError, match=r"shared must be a shannon_otel\.redis\.RedisState"):
        CircuitBreaker("y", shared="redis://x")  # type: ignore[call-overload]


def test_a_shared_pools_bad_arguments_are_named_as_a_shared_pools() -> None:
    """Bug: ``SharedPool(shared, "db", limit=0)`` raised "ResourcePool limit must be an int >= 1" (its base's name,
    a class the user never built), and ``lease_s="60"`` a ValueError where every other wrong type is a TypeError.
    No server: the arguments are checked before anything is sent."""
    shared = RedisState("redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match=r"^SharedPool limit must be an int >= 1, got 0$"):
        SharedPool(shared, "db", limit=0)
    with pytest.raises(TypeError, match=r"^SharedPool limit must be an int >= 1"):
        SharedPool(shared, "db", limit=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^SharedPool name must be a non-empty string"):
        SharedPool(shared, "", limit=2)
    with pytest.raises(TypeError, match=r"^lease_s must be a number of seconds in \[1, 86400\], got '60'$"):
        SharedPool(shared, "db", limit=2, lease_s="60")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^lease_s must be a number of seconds in \[1, 86400\], got nan$"):
        SharedPool(shared, "db", limit=2, lease_s=float("nan"))
    with pytest.raises(ValueError, match=r"^ResourcePool limit must be an int >= 1, got 0$"):
        ResourcePool("db", 0)  # the base keeps its own name


def test_a_closed_state_is_refused_where_it_is_given(server: RedisServer, prefix: str) -> None:
    """Bug: a breaker or rate limit made on a closed ``RedisState`` was accepted: its flusher and subscriber were
    gone, so the breaker sent its own trips (over fresh connections) but never saw another process's, silently,
    and a pool made on one failed only at its first acquire. Now all three refuse it, naming ``shared``."""
    shared = RedisState(server.url, prefix=prefix)

    async def open_and_close() -> None:
        async with shared:
            pass

    asyncio.run(open_and_close())
    for make in (lambda: CircuitBreaker("api", shared=shared), lambda: SharedRateLimit(shared, "api", rate=1),
                 lambda: SharedPool(shared, "db", 2)):
        with pytest.raises(ValueError, match="shared is a closed RedisState; make a new RedisState"):
            make()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_redis_state_of_a_provider_reports_its_availability_and_a_closed_one_stops() -> None:
    """Each RedisState made its own ``shannon.shared.available`` gauge; the SDK keeps the first gauge of a
    name on a meter, so a second state (another prefix, another event loop) was never reported, and the
    first was reported (and kept alive) after its close. ``error.type`` of a failed call was the bare class
    name (``ConnectionError`` for redis' own), not the qualified one every other metric uses."""
    from shannon_otel.redis import RedisState, SharedRateLimit
    from shannon_otel.testing import InMemoryTelemetry

    otel = InMemoryTelemetry()
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nobody listens: down from the start (not an error)

    def available() -> dict[str, float]:
        points: Any = otel.metrics()[tel.SHARED_AVAILABLE.name].data.data_points
        return {p.attributes[tel.SHARED_PREFIX]: p.value for p in points}

    async def main() -> None:
        first = RedisState(url, prefix="first", timeout_s=0.2, meter_provider=otel.meter_provider)
        async with RedisState(url, prefix="second", timeout_s=0.2, meter_provider=otel.meter_provider) as second:
            async with first:
                await SharedRateLimit(first, "r", rate=100).acquire()  # a failed call (local fallback)
                assert available() == {"first": 0, "second": 0}
            assert available() == {"second": 0}
            assert second.available is False

    asyncio.run(main())
    errors: Any = otel.metrics()[tel.SHARED_ERRORS.name].data.data_points
    assert {p.attributes[tel.ERROR_TYPE] for p in errors} <= {"redis.exceptions.ConnectionError", "TimeoutError"}
    assert errors
    otel.shutdown()


def test_a_shared_open_breaker_whose_clock_steps_back_waits_its_reset_timeout_not_the_step(
    server: RedisServer, prefix: str,
) -> None:
    """Stepped back by 3 days after opening, the shared breaker's local check said retry after 3 days and 30 s
    (the local breaker was fixed for this; its shared link computed the wait the old way)."""
    now = [1000.0]

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as shared:
            breaker = CircuitBreaker(
                "stepped", shared=shared, failure_threshold=1, reset_timeout=30, clock=lambda: now[0], instrument=False,
            )
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await wait_for(lambda: breaker.state is BreakerState.OPEN)
            now[0] -= 3 * 86_400.0
            with pytest.raises(CircuitOpenError) as rejected:
                await breaker.call(_ok)
            assert rejected.value.retry_after_s == 30.0

    asyncio.run(main())


def test_a_failure_rate_reached_exactly_in_the_shared_window_opens_the_breaker(
    server: RedisServer, prefix: str,
) -> None:
    """7 failures in 100 calls at ``failure_rate=0.07`` opens it, as a local breaker does: the script compared
    ``f >= rate * c``, and 0.07 * 100 is 7.000000000000001 in Lua's doubles too, so it stayed closed. Two
    processes' worth of calls (50 each, below ``min_calls`` alone), each flushed when its state is left."""
    async def calls(failures: int) -> BreakerState:
        async with RedisState(server.url, prefix=prefix, flush_interval_s=60, poll_interval_s=60) as shared:
            breaker = CircuitBreaker("rate", shared=shared, failure_threshold=None, failure_rate=0.07, window=100,
                                     min_calls=100, reset_timeout=60, instrument=False)
            for _ in range(50 - failures):
                await breaker.call(_ok)
            for _ in range(failures):
                with pytest.raises(ConnectionError):
                    await breaker.call(_boom)
        return breaker.state  # after the flush of leaving, which answers with the shared state

    assert asyncio.run(calls(3)) is BreakerState.CLOSED  # 3 of 50
    assert asyncio.run(calls(4)) is BreakerState.OPEN  # 7 of 100


def test_a_breaker_that_learns_its_shared_state_from_an_answer_says_why_it_changed(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: a process that learned a shared transition from a script's answer, not from the notification (still on
    its way, or refused: an ACL user without SUBSCRIBE), gave its own transition a reason nobody made: ``shared`` (no
    breaker reason at all) when its flush's answer said another process had opened the breaker, ``reset`` when its
    admission found it closed by another process's probe. Every answer now brings the state's own reason."""
    client = redis.Redis(port=server.port)
    client.execute_command("ACL", "SETUSER", "nosub", "on", ">pw", "~*", "&*", "+@all", "-subscribe")

    async def ok() -> int:
        return 1

    async def admitted(breaker: CircuitBreaker) -> None:
        """One successful call, once the breaker's reset timeout has run out."""
        async with asyncio.timeout(30):
            while True:
                try:
                    await breaker.call(ok)
                    return
                except CircuitOpenError:
                    await asyncio.sleep(0.05)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix) as there, \
                RedisState(f"redis://nosub:pw@127.0.0.1:{server.port}/0", prefix=prefix, poll_interval_s=3600) as here:
            theirs = CircuitBreaker("api", shared=there, failure_threshold=1, reset_timeout=0.2, instrument=False)
            mine = CircuitBreaker("api", shared=here, failure_threshold=1, reset_timeout=0.2)
            with caplog.at_level(logging.INFO, logger="shannon_otel.breaker"):
                with pytest.raises(ConnectionError):
                    await theirs.call(_boom)  # opened there
                await wait_for(lambda: there.available and theirs.state is BreakerState.OPEN)
                await mine.call(ok)  # closed here, nothing told: counted, and the flush's answer says open
                await wait_for(lambda: mine.state is BreakerState.OPEN)
                await admitted(theirs)  # their probe closes the shared breaker
                await wait_for(lambda: theirs.state is BreakerState.CLOSED)  # its outcome's send answered
                assert mine.state is BreakerState.OPEN  # nothing told here
                await admitted(mine)  # Redis answers: closed
        transitions = [r.getMessage() for r in caplog.records if r.name == "shannon_otel.breaker"]
        assert transitions == ["circuit breaker 'api' is open (was closed): failure_threshold",
                               "circuit breaker 'api' is closed (was open): probe_success"], transitions

    try:
        asyncio.run(main())
    finally:
        client.close()
