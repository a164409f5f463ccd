"""Round-4 adversarial probes of the distributed parts: the shared state in a real redis-server, and the
Dask backend on a real LocalCluster. Each test is the regression test of a bug found by the probes."""

from __future__ import annotations

import asyncio
import http.server
import inspect
import logging
import multiprocessing
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import _dask_tasks as tasks
import _redis_procs as procs
import pytest
import redis
from _dask_cluster import local_cluster, on_cluster
from _redis_server import RedisServer, free_port, running_server
from distributed import Client, LocalCluster

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError, Wave, WaveResult
from shannon_otel.dask import DaskBackend, UnshippableTaskError, WorkerTelemetry
from shannon_otel.redis import RedisState, SharedPool, SharedRateLimit
from shannon_otel.testing import InMemoryTelemetry

SPAWN = multiprocessing.get_context("spawn")

pytestmark = [
    # Dask's own shutdown of worker processes may warn; it is not our code under test.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:.*Restarting worker.*"),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def prefix() -> str:
    return f"r4{uuid.uuid4().hex[:10]}"


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


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_a_process_dying_during_its_half_open_probe_does_not_hold_the_breaker_half_open(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the shared half-open quota was taken by a probe whose process died; no outcome ever came,
    so every process was rejected (HALF_OPEN, no probe left) until the key expired a day later. Now a
    half-open period without an outcome for ``probe_lease_s`` starts a new one."""
    dying = SPAWN.Process(target=procs.die_during_probe, args=(server.url, prefix, "api", 0.3))
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


# ---------------------------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(2) as lc:
        yield lc



@pytest.mark.parametrize("where", ["positional", "keyword"])
def test_a_coroutine_given_as_an_argument_is_refused_by_name_and_closed(cluster: LocalCluster, where: str) -> None:
    """Bug: a coroutine argument was refused but left unclosed (Python warned 'never awaited' later, an
    error under -W error); as a keyword argument it was reported as merely unpicklable."""

    async def body(client: Client) -> tuple[str, str]:
        backend = DaskBackend(client)
        coro = tasks.async_double(1)
        args: tuple[Any, ...] = (coro,) if where == "positional" else (1,)
        kwargs: dict[str, Any] = {} if where == "positional" else {"extra": coro}
        with pytest.raises(UnshippableTaskError) as caught:
            backend.task(tasks.square, *args, **kwargs)
        return str(caught.value), inspect.getcoroutinestate(coro)

    message, state = on_cluster(cluster, body)
    assert "is a coroutine object" in message
    assert ("argument 0" if where == "positional" else "keyword argument 'extra'") in message
    assert state == inspect.CORO_CLOSED


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


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps every request body (span names are plain UTF-8 in protobuf)."""

    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/traces":
            self.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_worker_telemetry_registered_again_keeps_the_workers_exporting() -> None:
    """Bug: registering WorkerTelemetry again (each run of the app does, as documented) tore down the
    previous plugin, which shut the worker's providers down, and the new one could not configure
    (OTel sets global providers once per process): every later span of that worker was lost, silently."""
    _Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    async def one_run(address: str, label: str) -> list[Any]:
        async with Client(address, asynchronous=True) as client:  # type: ignore[no-untyped-call]
            await client.register_plugin(WorkerTelemetry("probe-worker", exporter="otlp_http", endpoint=endpoint))
            work = DaskBackend(client).map(tasks.square, [1, 2], name=label)
            result: WaveResult[Any] = await Wave("w", max_concurrency=2).run(work)
            await client.unregister_worker_plugin(WorkerTelemetry.name)  # flushes the worker
            return result.values()

    try:
        with LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", host="127.0.0.1",
            silence_logs=40,
        ) as lc:
            assert asyncio.run(asyncio.wait_for(one_run(lc.scheduler_address, "firstrun"), 60)) == [1, 4]
            assert asyncio.run(asyncio.wait_for(one_run(lc.scheduler_address, "secondrun"), 60)) == [1, 4]
    finally:
        server.shutdown()
        server.server_close()
    exported = b"".join(_Receiver.bodies)
    assert b"remote firstrun" in exported
    assert b"remote secondrun" in exported


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
