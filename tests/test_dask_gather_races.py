"""The backend's result fetching (``shannon_otel.dask._gather``) when a task's caller stops waiting while a
fallback fetch of that task's result is in flight: driven by a fake client, step by step (no cluster, no timing)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from shannon_otel.dask._gather import Gatherer


class _Future:
    """What the gatherer uses of a Dask Future: finished once ``finished`` is set; awaiting it (the one-by-one
    fetch) waits for ``released``."""

    status = "finished"

    def __init__(self, value: Any, finished: asyncio.Event) -> None:
        self.value = value
        self.finished = finished
        self.released = asyncio.Event()
        self.awaited = asyncio.Event()

    async def exception(self) -> None:
        await self.finished.wait()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._fetch().__await__()

    async def _fetch(self) -> Any:
        self.awaited.set()
        await self.released.wait()
        return self.value


class _Client:
    """One thread: a result that finishes while another of our tasks still runs waits for the window."""

    def scheduler_info(self) -> dict[str, int]:
        return {"total_threads": 1}

    async def gather(self, futures: list[Any]) -> list[Any]:
        raise ValueError("one result of the batch could not be fetched")  # e.g. it failed to deserialize


def test_a_task_cancelled_while_its_result_is_fetched_on_its_own_leaves_the_rest_of_the_batch_its_results() -> None:
    """Bug: when a batch's gather failed, its results were fetched one by one, and a task cancelled (its
    per-task timeout, its wave cancelled, a hedge's losing attempt) while its own fetch was in flight made the
    fetch's ``waiter.set_result`` raise ``InvalidStateError``, which the fetch then set as the error of every
    task after it in the batch: their results lost, each failed with ``InvalidStateError`` (probed: a worker
    killed mid-wave under a Retry, the stalled-gather fetch delivering a result first, retried attempts)."""

    async def main() -> Any:
        gatherer = Gatherer(_Client(), window_s=1.0)  # type: ignore[arg-type]
        finished = asyncio.Event()
        first, second = _Future("first", finished), _Future("second", finished)
        a = asyncio.ensure_future(gatherer.result(first))  # type: ignore[arg-type]
        b = asyncio.ensure_future(gatherer.result(second))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # both wait for their futures
        # Both finish at once: first's result waits for the window (second still runs on the one thread),
        # then second's finds the thread free and starts one gather of both.
        finished.set()
        await first.awaited.wait()  # the gather failed; the batch [first, second] is fetched one by one
        a.cancel()  # first's caller stops waiting while first's fetch is in flight
        first.released.set()
        second.released.set()
        async with asyncio.timeout(10):  # a failure here must not be a hang
            return await asyncio.gather(a, b, return_exceptions=True)

    first_outcome, second_outcome = asyncio.run(main())
    assert isinstance(first_outcome, asyncio.CancelledError)
    assert second_outcome == "second"
