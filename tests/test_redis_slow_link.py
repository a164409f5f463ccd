"""A Redis some round trips away: each command well within ``timeout_s``, a new connection's set-up not. Each test
runs its own real redis-server on 127.0.0.1, reached through a proxy that delays every request."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from _redis_server import RedisServer, free_port, wait_for

from shannon_otel import BreakerState, CircuitBreaker
from shannon_otel.redis import RedisState

DELAY_S = 0.12  # per request, so a round trip; timeout_s below is 4 of them


@contextlib.asynccontextmanager
async def _delaying_proxy(upstream: int, port: int) -> AsyncIterator[None]:
    """Forward 127.0.0.1:``port`` to the server, each chunk of a request DELAY_S late (answers are not delayed);
    every connection closed and its pipes ended when the block ends."""
    writers: set[asyncio.StreamWriter] = set()
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        writers.add(server_w)
        for task in (asyncio.ensure_future(pipe(client_r, server_w, DELAY_S)),
                     asyncio.ensure_future(pipe(server_r, client_w, 0.0))):
            pipes.add(task)

    proxy = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        proxy.close()
        for writer in writers:
            writer.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        for writer in writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await proxy.wait_closed()


def test_a_redis_several_round_trips_away_is_found_available_again_after_a_restart(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the outage check made its connection inside its own ``timeout_s``, with the script load a restart
    requires: connect, HELLO, CLIENT SETINFO twice, EVALSHA (refused), SCRIPT LOAD, EVALSHA, ~7 round trips. A check
    that timed out dropped its connection, so every check started over: with 0.12 s round trips and
    ``timeout_s=0.5`` (four of them; a command takes one) Redis restarted was never found available again, and a
    fail-closed breaker rejected every call for good. Now the check's connection is made first, on a bound of its
    own, and the check finds Redis back (before the fix this test failed at its wait_for, 30 s)."""

    async def main() -> tuple[bool, BreakerState, BreakerState]:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        async with (_delaying_proxy(server.port, port),
                    RedisState(url, prefix=prefix, on_unavailable="reject", timeout_s=4 * DELAY_S) as shared):
            breaker = CircuitBreaker("api", shared=shared, instrument=False)
            await wait_for(lambda: shared.available, 30)
            server.stop()
            await wait_for(lambda: not shared.available, 30)  # the flusher's next poll finds it down
            down = breaker.state
            server.start()  # no persistence: no keys, no scripts
            await wait_for(lambda: shared.available, 30)
            await wait_for(lambda: breaker.state is BreakerState.CLOSED, 30)
            return shared.available, down, breaker.state

    assert asyncio.run(main()) == (True, BreakerState.OPEN, BreakerState.CLOSED)



def test_closing_during_the_outage_checks_connection_leaves_no_command_behind() -> None:
    """Bug: ``close()`` cancelled the background task while it waited for the outage check's connection
    (``_connect``, bounded by ``max(1, 4 * timeout_s)``), and the PING it waited for was left running, known to no
    one: ``close()`` closed the client under it, and its ConnectionError was logged by asyncio as "Task exception was
    never retrieved". Now it is stopped as every abandoned command is, and ``close()`` waits for it. Redis here
    accepts connections and never answers, so the PING cannot end by itself."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        unhandled: list[str] = []
        loop.set_exception_handler(lambda _, context: unhandled.append(str(context.get("message"))))
        port = free_port()
        shared = RedisState(f"redis://127.0.0.1:{port}/0", timeout_s=5.0, poll_interval_s=0.05)
        await shared.start()  # nothing listens yet: refused at once, so Redis is unavailable from the start
        assert not shared.available
        writers: list[asyncio.StreamWriter] = []

        async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)

        mute = await asyncio.start_server(silent, "127.0.0.1", port)
        try:
            # The first connection since is the outage check's own (the check waits for it, 20 s, before any other)
            await wait_for(lambda: bool(writers), 30)
            await shared.close()
            await wait_for(lambda: all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task()), 30)
            gc.collect()  # a task ended with an error nobody retrieved is reported as it is collected
            return unhandled
        finally:
            mute.close()
            for writer in writers:
                writer.close()
            await mute.wait_closed()

    assert asyncio.run(main()) == []


def test_commands_waiting_for_a_connection_are_not_an_outage(server: RedisServer, prefix: str) -> None:
    """Bug: a command's ``timeout_s`` ran while it waited for one of the pool's connections: more commands at once
    than connections (a big wave on a shared rate limit) timed out waiting for each other, the Redis no slower than
    ever, and that was an outage: fail-closed, every task past the first few failed with
    SharedStateUnavailableError. Here 2 connections for commands (``max_connections=4``: the subscriber holds one)
    and 60 acquires at once, each a round trip of DELAY_S or more: the last waits 30, far past ``timeout_s`` (16: a
    new connection's set-up and the script's load take up to 7). Now a command is timed from when it has a
    connection's slot, and every acquire is admitted, no error counted."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from shannon_otel.redis import SharedRateLimit

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    async def main() -> list[BaseException | None]:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0?max_connections=4"
        async with (_delaying_proxy(server.port, port),
                    RedisState(url, prefix=prefix, on_unavailable="reject", timeout_s=16 * DELAY_S,
                               meter_provider=provider) as shared):
            await wait_for(lambda: shared.available, 30)
            limit = SharedRateLimit(shared, "api", rate=1e6, burst=1000)
            return await asyncio.gather(*(limit.acquire() for _ in range(60)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes == [None] * 60
    errors = [
        point.attributes for metrics in (reader.get_metrics_data() or _no_metrics()).resource_metrics
        for scope in metrics.scope_metrics for metric in scope.metrics if metric.name == "shannon.shared.errors"
        for point in metric.data.data_points
        if getattr(point, "value", 0)
    ]
    assert errors == []


def _no_metrics() -> Any:
    from opentelemetry.sdk.metrics.export import MetricsData

    return MetricsData(resource_metrics=[])
