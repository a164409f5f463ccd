"""A Dask client created without ``await`` (``Client(address, asynchronous=True)`` connects in the background):
the backend waits for its start, and when it cannot connect every task fails with that cause, never hangs."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import _dask_tasks as tasks
import pytest
from _dask_cluster import DASK_WARNINGS, module_cluster
from _open_spans import OpenSpans
from distributed import Client, LocalCluster

from shannon_otel import Outcome, Wave
from shannon_otel.dask import DaskBackend
from shannon_otel.testing import InMemoryTelemetry

pytestmark = DASK_WARNINGS


cluster = module_cluster(1)


def _closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then closed: connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("address", "cause"), [
    (f"tcp://127.0.0.1:{_closed_port()}", "OSError: Timed out trying to connect"),  # nothing listens there
    ("tcp://no-such-host::", "ValueError: invalid address"),  # an address Dask refuses
], ids=["refused", "bad-address"])
def test_a_client_that_cannot_connect_fails_every_task_with_the_cause(address: str, cause: str) -> None:
    """Bug: a client created without await was used at once. Its scheduler unreachable, every task failed with
    ``FutureCancelledError`` "cancelled for reason: unknown" (``error.type`` said cancelled; the cause was left in
    Dask's start task, "Task exception was never retrieved"); with an address Dask refuses, the client stayed
    "connecting" and the wave waited for ever. Now the backend waits for the client's start: each task fails with
    a RuntimeError naming the cause, as do the tasks of a later wave, and every span ends."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def main() -> list[Any]:
        client = Client(address, asynchronous=True, timeout=1)  # type: ignore[no-untyped-call]
        try:
            backend = DaskBackend(client)
            results = []
            for name in ("first", "second"):
                wave: Wave[Any] = Wave(name, **otel.providers)
                async with asyncio.timeout(30):  # the hang this fixes fails the test, not the run
                    results += (await wave.run(backend.map(tasks.square, range(3)))).results
            return results
        finally:
            await client.close()  # type: ignore[no-untyped-call]

    results = asyncio.run(main())
    assert [r.outcome for r in results] == [Outcome.FAILURE] * 6
    first = [r.error for r in results[:3]]
    assert all(type(e) is RuntimeError and "could not connect to its scheduler" in str(e) for e in first), first
    assert all(cause in str(e) for e in first), first
    # the second wave: the client closed after its failed start (refused), or still "connecting" (bad address)
    assert all(type(r.error) is RuntimeError for r in results[3:]), results[3:]
    task_spans = otel.spans("task square")
    assert len(task_spans) == 6 and all((s.attributes or {}).get("error.type") == "RuntimeError" for s in task_spans)
    assert spans.open == {}


def test_a_client_not_awaited_of_a_reachable_scheduler_runs_the_wave(cluster: LocalCluster) -> None:
    """What the fix keeps: a client created without await, its scheduler up, runs the wave once it has connected."""
    async def main() -> list[Any]:
        client = Client(cluster.scheduler_address, asynchronous=True)  # type: ignore[no-untyped-call]
        try:
            backend = DaskBackend(client)
            async with asyncio.timeout(60):
                return (await Wave("unawaited").run(backend.map(tasks.square, range(5)))).values()
        finally:
            await client.close()  # type: ignore[no-untyped-call]

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
