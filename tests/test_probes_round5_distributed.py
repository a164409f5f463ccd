"""Round-5 adversarial probes of the distributed parts, used as a user would: callables and arguments
shipped to a real Dask LocalCluster of worker processes, and the shared state in a real redis-server.
Each test is the regression test of a bug found by the probes."""

from __future__ import annotations

import asyncio
import functools
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _dask_tasks as tasks
import _redis_procs as procs
import numpy as np
import pytest
import redis
from _dask_cluster import local_cluster, on_cluster
from _redis_server import RedisServer, running_server
from distributed import Client, LocalCluster

from shannon_otel import BreakerState, CircuitBreaker, Outcome, Wave, WaveResult
from shannon_otel.dask import DaskBackend
from shannon_otel.redis import RedisState, SharedPool, SharedRateLimit
from shannon_otel.testing import InMemoryTelemetry

pytestmark = [
    # Dask's own shutdown of worker processes may warn; it is not our code under test.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:.*Restarting worker.*"),
]


# ---------------------------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(1) as lc:
        yield lc



class AsyncAdder:
    """A callable object whose ``__call__`` is ``async def`` (``inspect.iscoroutinefunction`` says False)."""

    def __init__(self, k: int) -> None:
        self.k = k

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + self.k


def sync_wrapper_of_async(x: int) -> Any:
    """What a careless decorator makes: a plain function returning a coroutine."""
    return tasks.async_double(x)


def describe(a: Any, *, b: Any = None) -> tuple[str, Any, str, Any]:
    return type(a).__name__, a, type(b).__name__, b


@pytest.mark.parametrize("make", [lambda: AsyncAdder(5), lambda: functools.partial(AsyncAdder(5))])
def test_a_callable_object_with_an_async_call_is_awaited_on_the_worker(
    cluster: LocalCluster, make: Callable[[], Any],
) -> None:
    """Bug: an object whose ``__call__`` is ``async def`` went to the worker's plain-function entry: the
    worker called it in a thread and failed to send back the coroutine it got (``Could not serialize
    object of type coroutine``; Python warned that it was never awaited). Now it is awaited, as an async def."""

    async def body(client: Client) -> list[Any]:
        result: WaveResult[Any] = await Wave("w", max_concurrency=2).run(DaskBackend(client).map(make(), [1, 2]))
        return result.values()

    assert on_cluster(cluster, body) == [6, 7]


def test_a_plain_function_returning_a_coroutine_fails_its_task_with_a_clear_error(cluster: LocalCluster) -> None:
    """Bug: the coroutine returned by a sync wrapper was left un-awaited on the worker and the task failed
    with Dask's 'Could not serialize object of type coroutine'. Now the task fails with a TypeError saying
    what to ship instead (and the coroutine is closed)."""

    async def body(client: Client) -> BaseException | None:
        result: WaveResult[Any] = await Wave("w").run(DaskBackend(client).map(sync_wrapper_of_async, [1]))
        assert result.results[0].outcome is Outcome.FAILURE
        return result.results[0].error

    error = on_cluster(cluster, body)
    assert type(error) is TypeError
    assert "returned a coroutine from a plain call" in str(error)


def test_a_dask_future_given_as_an_argument_arrives_as_its_value(cluster: LocalCluster) -> None:
    """Bug: a Future given as an argument (the pattern Dask's own 'large graph' warning recommends:
    scatter the data, pass the future) reached the function as the Future object, not its value as with
    ``client.submit(fn, future)``: the payload hid it from Dask. Now positional and keyword futures are
    replaced by their values on the worker, for map, task and remote alike."""

    async def body(client: Client) -> list[Any]:
        backend = DaskBackend(client)
        [data] = await client.scatter([[1, 2, 3]])  # type: ignore[no-untyped-call]
        computed = client.submit(tasks.square, 7, pure=False)
        work = [
            *backend.map(describe, [data, 4]),
            backend.task(describe, 5, b=computed),
            backend.task(describe, None, b=None),
        ]
        result: WaveResult[Any] = await Wave("w", max_concurrency=4).run(work)
        direct = await backend.remote(describe)(computed, b=data)
        return [*result.values(), direct]

    assert on_cluster(cluster, body) == [
        ("list", [1, 2, 3], "NoneType", None),
        ("int", 4, "NoneType", None),
        ("int", 5, "int", 49),
        ("NoneType", None, "NoneType", None),  # a None argument stays None
        ("int", 49, "list", [1, 2, 3]),
    ]


def test_checking_that_a_large_array_pickles_does_not_copy_it(cluster: LocalCluster) -> None:
    """Bug: the client-side check pickled every argument to bytes: a 64 MB array argument made a 64 MB copy
    (peak memory doubled before Dask even sent it). Now large buffers are checked out of band, uncopied."""
    array = np.ones(8_000_000)  # 64 MB

    async def body(client: Client) -> int:
        backend = DaskBackend(client)
        tracemalloc.start()
        try:
            backend.map(tasks.square, [array])
            backend.task(tasks.square, x=array)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak = on_cluster(cluster, body)
    assert peak < array.nbytes // 4, f"checking arguments allocated {peak / 1e6:.0f} MB for a 64 MB array"


# ---------------------------------------------------------------------------------------------- Redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def prefix() -> str:
    return f"r5{uuid.uuid4().hex[:10]}"


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


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
