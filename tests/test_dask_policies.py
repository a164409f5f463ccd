"""Recovery policies around remote calls, on a real LocalCluster with worker processes: the policy runs
on the client and sees the same factories (and arguments) as for an in-process wave."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import _dask_tasks as tasks
import pytest
from _dask_cluster import DASK_WARNINGS, module_cluster, on_cluster
from distributed import Client, LocalCluster

from shannon_otel import Degrade, Fallback, Hedge, Saga, SagaError, Served, Step, Timeout, Wave, WaveResult
from shannon_otel.dask import DaskBackend
from shannon_otel.testing import InMemoryTelemetry

pytestmark = DASK_WARNINGS


cluster = module_cluster(1)


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
        # the Degrade policy serves Served values, not the tasks' int (their type is what the wave's run infers)
        first = [backend.task(tasks.square_unless_flagged, x, flag) for x in (2, 3)]
        good: WaveResult[Any] = await wave.run(first)
        assert [r.error for r in good.results] == [None, None]
        assert [r.value for r in good.results] == [Served(4), Served(9)]
        await asyncio.to_thread(Path(flag).write_text, "1")
        second = [backend.task(tasks.square_unless_flagged, x, flag) for x in (3, 2, 5)]
        served: WaveResult[Any] = await wave.run(second)
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


async def _scheduler_tasks(client: Client) -> int:
    n: int = await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))  # type: ignore[no-untyped-call]
    return n


async def _emptied_within(client: Client, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while await _scheduler_tasks(client):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# What the probes found correct, kept as tests.


def test_a_hedge_returns_the_winner_and_cancels_the_losing_future_on_the_cluster(
    cluster: LocalCluster, tmp_path: Path,
) -> None:
    async def body(client: Client) -> None:
        otel = InMemoryTelemetry()
        remote = DaskBackend(client).remote(tasks.slow_the_first_time)
        assert await Hedge(delay=0.3, attempts=2, **otel.providers).call(remote, str(tmp_path / "m")) == "fast"
        assert await _emptied_within(client, 3)  # the loser sleeps 5 s on the worker: its key went at once
        assert len(otel.spans("hedge")) == 1

    on_cluster(cluster, body)


def test_a_timeout_shorter_than_the_remote_call_cancels_its_future(cluster: LocalCluster) -> None:
    async def body(client: Client) -> None:
        remote = DaskBackend(client).remote(tasks.nap)
        with pytest.raises(TimeoutError):
            await Timeout(0.3).call(remote, 5.0)
        assert await _emptied_within(client, 3)

    on_cluster(cluster, body)


def test_a_saga_of_remote_steps_runs_remote_compensations_newest_first(cluster: LocalCluster, tmp_path: Path) -> None:
    journal = str(tmp_path / "journal")

    async def body(client: Client) -> None:
        backend = DaskBackend(client)
        write, undo = backend.remote(tasks.append_line), backend.remote(tasks.undo_line)

        async def refused() -> None:
            raise RuntimeError("payment refused")

        steps = [Step(name, functools.partial(write, journal, name), functools.partial(undo, journal))
                 for name in ("reserve", "charge")]
        with pytest.raises(SagaError) as caught:
            await Saga("order").run(*steps, Step("ship", refused))
        assert caught.value.result.compensated == ("charge", "reserve")

    on_cluster(cluster, body)
    # each compensation receives its step's result (the line it wrote): both ran on the worker, newest first
    assert Path(journal).read_text().splitlines() == ["reserve", "charge", "undo charge", "undo reserve"]


def test_a_fallback_to_a_local_function_serves_a_failed_remote_call(cluster: LocalCluster) -> None:
    async def body(client: Client) -> None:
        remote = DaskBackend(client).remote(tasks.fails)

        async def local(error: Exception) -> str:  # the remote error, rebuilt on the client
            return f"local after {type(error).__name__}: {error}"

        assert await Fallback(local, on=ValueError).call(remote, 3) == "local after ValueError: bad 3"

    on_cluster(cluster, body)
