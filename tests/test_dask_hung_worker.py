"""A worker that hangs (SIGSTOP) while it holds a finished result, on a real LocalCluster of worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import _dask_tasks as tasks
from _dask_cluster import DASK_WARNINGS, local_cluster, on_cluster
from distributed import Client

from shannon_otel import Outcome, Wave, WaveResult
from shannon_otel.dask import DaskBackend

pytestmark = DASK_WARNINGS


def test_a_hung_worker_holds_back_only_its_own_results(tmp_path: Path) -> None:
    """Bug: the backend fetches results one gather at a time, and a gather that includes a result held by a
    hung worker waits for it until the scheduler drops that worker (minutes): every later result of the
    backend queued behind it, so tasks that had finished on the healthy worker all timed out (13 of 13 in the
    probe, as plain Dask delivered 9). Now a gather in flight for ``STALL_S`` no longer holds the others back,
    and its own results are fetched one by one. The hung worker's result waits (task timeout); the healthy
    worker's results come back."""
    marker = tmp_path / "frozen.pid"

    async def body(client: Client) -> list[Any]:
        # A window of 1 s while the cluster is busy (more of our tasks than threads): the frozen task's result
        # waits for a gather that starts after its worker froze.
        backend = DaskBackend(client, gather_window_s=1.0)
        work = [backend.task(tasks.freeze_soon, str(marker))] + [backend.task(tasks.pid_after, 0.2) for _ in range(12)]
        try:
            result: WaveResult[Any] = await Wave("hung", max_concurrency=8, task_timeout=8).run(work)
        finally:
            _resume(marker)
        return list(result.results)

    with local_cluster(2) as lc:
        try:
            results = on_cluster(lc, body)
        finally:
            _resume(marker)  # a frozen worker would hang the cluster's shutdown
    frozen = int(marker.read_text())
    done = [r.value for r in results[1:] if r.outcome is Outcome.SUCCESS]
    assert len(done) >= 4, [r.outcome for r in results]  # the healthy worker's tasks (those on the hung one wait)
    assert frozen not in done
    assert {r.outcome for r in results} <= {Outcome.SUCCESS, Outcome.TIMEOUT}


def _resume(marker: Path) -> None:
    if marker.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(marker.read_text()), signal.SIGCONT)
