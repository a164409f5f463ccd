"""An ``async def`` task cancelled on the client (the wave cancelled, a task timeout) stops on the worker, on a real
LocalCluster of one worker process with two task slots."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import _dask_tasks as tasks
import pytest
from _dask_cluster import DASK_WARNINGS, local_cluster, on_cluster
from distributed import Client

from shannon_otel import Outcome, Wave, WaveResult
from shannon_otel.dask import DaskBackend

pytestmark = DASK_WARNINGS


@pytest.mark.parametrize("how", ["wave cancelled", "task timeout"])
def test_a_cancelled_async_task_stops_on_the_worker_and_frees_its_slot(tmp_path: Path, how: str) -> None:
    """Bug: Dask drops the result of a running task it cancels but lets it run, so an ``async def`` that never ends
    held its slot of the worker (and its ``remote`` span open) for ever: with both slots so held, every later task
    on that worker waited, and the next wave's tasks all timed out (4 of 4 in the probe). Now the worker cancels
    the coroutine once Dask cancels its key: it sees ``CancelledError``, and the next wave runs."""
    markers = [tmp_path / f"stuck-{i}" for i in range(2)]

    async def body(client: Client) -> tuple[list[Outcome], WaveResult[Any]]:
        backend = DaskBackend(client)
        stuck = backend.map(tasks.wait_for_ever, [str(m) for m in markers])
        if how == "task timeout":
            first = await Wave("stuck", task_timeout=2).run(stuck)
            outcomes = [r.outcome for r in first.results]
        else:
            run = asyncio.ensure_future(Wave("stuck").run(stuck))
            while not all(m.exists() for m in markers):  # noqa: ASYNC110 - files written by the worker process
                await asyncio.sleep(0.02)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            outcomes = []
        return outcomes, await Wave("next", task_timeout=10).run(backend.map(tasks.square, range(4)))

    with local_cluster(1) as lc:
        outcomes, result = on_cluster(lc, body)
    assert outcomes == ([Outcome.TIMEOUT] * 2 if how == "task timeout" else [])
    assert [r.outcome for r in result.results] == [Outcome.SUCCESS] * 4
    assert result.values() == [0, 1, 4, 9]
    assert [m.read_text() for m in markers] == ["cancelled", "cancelled"]  # both ran, and were stopped
