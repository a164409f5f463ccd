"""A cancellation one wave task leaves pending never reaches the next task its worker runs.

A worker runs its tasks one after another, and ``asyncio.current_task()`` in a task is that worker. Before
Python 3.13 ``Task.uncancel()`` brings the count of cancellation requests back to 0 but leaves the
cancellation itself pending until the task next suspends (gh-116720): a task that ends right after a
``cancel()`` of its worker was taken back (the wave's own take-back of a task's self-cancellation, or a
``TaskGroup`` inside the task whose child failed inside an eager ``create_task``) left it to the worker's
next task, which ended cancelled without having done anything; or, streamed, to the worker's own wait for
room, which ended the worker: the rest of a lazy input was never run and its results were missing. Under
``gather`` only the task that caused it is touched. The worker now delivers it to itself before going on.

Runs on the virtual-time loop; the checks fail without the fix on 3.11 and 3.12 (3.13's asyncio clears the
pending cancellation in ``uncancel()`` itself); the eager one is skipped on 3.11.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from _open_spans import OpenSpans
from _virtual_time import watched

from shannon_otel import Wave
from shannon_otel.testing import InMemoryTelemetry


def run_wave(work: Callable[[int], Coroutine[Any, Any, int]], *, eager: bool = False) -> list[tuple[str, Any]]:
    """Three tasks on one worker; each (outcome, value), the spans checked all ended."""
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)

    async def main() -> Any:
        return await Wave[int]("pending", max_concurrency=1, **otel.providers).map(work, range(3))

    result = watched(main, eager=eager)
    assert spans.open == {}
    outcomes = [(r.outcome.value, r.value) for r in result.results]
    assert [s.attributes and s.attributes["shannon.task.outcome"] for s in otel.spans("task pending")] == [
        outcome for outcome, _ in outcomes
    ]
    otel.shutdown()
    return outcomes


async def _first_cancels_itself(i: int) -> int:
    """Task 0 cancels its worker (``current_task()``) and raises CancelledError before any await; the others
    await once and return their index."""
    if i == 0:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        raise asyncio.CancelledError
    await asyncio.sleep(0)
    return i


def test_a_task_cancelling_itself_and_ending_before_any_await_leaves_the_next_task_alone() -> None:
    """Task 0 cancels its worker and raises CancelledError at once: its own cancellation. Task 1 ran
    ``await asyncio.sleep(0)`` and got the cancellation left pending (before 3.13)."""

    assert run_wave(_first_cancels_itself) == [("cancellation", None), ("success", 1), ("success", 2)]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is Python 3.12+")
def test_a_task_group_failing_eagerly_inside_a_task_leaves_the_next_task_alone() -> None:
    """Task 0's TaskGroup child fails inside its eager ``create_task``: the group cancels its parent (the
    worker) and takes that back as it raises the ExceptionGroup, with no suspension in between. Task 0
    fails with the group's error, as under gather; task 1 was cancelled (3.12)."""

    async def child() -> None:
        raise ValueError("child")

    async def work(i: int) -> int:
        if i == 0:
            async with asyncio.TaskGroup() as group:
                group.create_task(child())
        await asyncio.sleep(0)
        return i

    assert run_wave(work, eager=True) == [("failure", None), ("success", 1), ("success", 2)]


def test_a_streamed_task_cancelling_itself_before_any_await_leaves_the_next_inputs_to_run() -> None:
    """Streamed with no room for a second result, the pending cancellation hit the worker itself as it waited
    for the consumer to take task 0's: the worker ended, the lazy input's next items were never taken, and
    the stream ended without their results (no error, nothing reported cancelled: they were just missing)."""

    async def main() -> list[tuple[int, str, Any]]:
        wave = Wave[int]("pending", max_concurrency=1, instrument=False)
        async with wave.stream_map(_first_cancels_itself, iter(range(3)), buffer=1) as results:
            return [(r.index, r.outcome.value, r.value) async for r in results]

    assert sorted(watched(main)) == [(0, "cancellation", None), (1, "success", 1), (2, "success", 2)]
