"""Recovery policies around remote calls, on a real LocalCluster with worker processes: the policy runs
on the client and sees the same factories (and arguments) as for an in-process wave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _dask_tasks as tasks
import pytest
from _dask_cluster import local_cluster, on_cluster
from distributed import Client, LocalCluster

from shannon_otel import Degrade, Served, Wave, WaveResult
from shannon_otel.dask import DaskBackend

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:.*Restarting worker.*"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(1) as lc:
        yield lc


def test_degrade_serves_the_last_good_value_per_argument_across_waves_of_backend_tasks(
    cluster: LocalCluster, tmp_path: Path,
) -> None:
    """Bug: a backend's task factory was a lambda, which Degrade(last_good=True, key=...) cannot key by
    the call's arguments: every task of ``backend.map``/``backend.task`` under it failed with TypeError
    (and without key= the wave refuses last_good). The factory is now a partial holding the arguments, as
    ``Wave.map``'s, and its function is equal across ``backend.map`` calls of one backend and function, so
    the last good values of one wave serve the next (as ``Wave.map(fetch, ...)`` does in-process)."""
    flag = str(tmp_path / "down")

    async def body(client: Client) -> None:
        backend = DaskBackend(client)
        degrade = Degrade(last_good=True, key=lambda args, kwargs: args[0], on=ValueError)
        wave: Wave[Any] = Wave("degraded", policy=degrade)
        good = await wave.run([backend.task(tasks.square_unless_flagged, x, flag) for x in (2, 3)])
        assert [r.error for r in good.results] == [None, None]
        assert [r.value for r in good.results] == [Served(4), Served(9)]
        await asyncio.to_thread(Path(flag).write_text, "1")
        served = await wave.run([backend.task(tasks.square_unless_flagged, x, flag) for x in (3, 2, 5)])
        three, two, five = served.results
        assert _degraded(three.value) == (9, "last_good", "down for 3")  # its own last good value, not 2's
        assert _degraded(two.value) == (4, "last_good", "down for 2")
        assert type(five.error) is ValueError and str(five.error) == "down for 5"  # nothing good yet for 5
        mapped: WaveResult[Any] = await Wave("mapped", policy=degrade).run(backend.map(tasks.square, [7]))
        assert mapped.results[0].value == Served(49)  # backend.map's tasks are keyed too

    on_cluster(cluster, body)


def _degraded(served: Served[Any] | None) -> tuple[Any, str | None, str]:
    assert served is not None and served.degraded, served
    return served.value, served.mode, str(served.error)
