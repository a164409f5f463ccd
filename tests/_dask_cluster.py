"""The Dask tests' cluster: worker processes on 127.0.0.1, and a client of it for one async body."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import dask
import pytest
from distributed import Client, LocalCluster

T = TypeVar("T")

# Dask's own shutdown of worker processes may warn; it is not our code under test. (A test module's ``pytestmark``.)
DASK_WARNINGS = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:.*Restarting worker.*"),
]


@contextlib.contextmanager
def local_cluster(n_workers: int) -> Iterator[LocalCluster]:
    """Worker processes of two threads each; the scheduler never re-runs a task whose worker died (the
    tests' Retry decides), and every server of the cluster listens on 127.0.0.1 only."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=n_workers, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0",
        host="127.0.0.1", silence_logs=40,
    ) as lc:
        yield lc


def on_cluster(cluster: LocalCluster, body: Callable[[Client], Awaitable[T]]) -> T:
    """``body(client)`` with an asynchronous client of ``cluster``, bounded (a hang fails, after 120 s)."""
    async def main() -> T:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:  # type: ignore[no-untyped-call]
            return await asyncio.wait_for(body(client), 120)

    return asyncio.run(main())


def module_cluster(n_workers: int) -> Any:
    """A module-scoped ``cluster`` fixture of ``n_workers`` worker processes (``cluster = module_cluster(1)``)."""
    @pytest.fixture(scope="module")
    def cluster() -> Iterator[LocalCluster]:
        with local_cluster(n_workers) as lc:
            yield lc

    return cluster
