"""Waves under an eager task factory (Python 3.12+, ``loop.set_task_factory(asyncio.eager_task_factory)``):
a task's first step runs inside ``create_task``, so whatever a worker does before its first suspension
happens inside the call that started it.

Everything runs on the virtual-time loop (no wall time); skipped on 3.11, run by the 3.12/3.13 CI runs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from _open_spans import OpenSpans
from _virtual_time import watched

from shannon_otel import Wave
from shannon_otel.testing import InMemoryTelemetry

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is Python 3.12+")




def test_a_lazy_input_streamed_at_a_concurrency_beyond_the_recursion_limit_runs_every_task() -> None:
    """A lazy input (an iterator: its length unknown) starts one worker, and each worker starts the next as
    it takes an item. Eagerly, the next worker ran inside the call starting it, and started the one after
    inside its own first step: the starts nested one in another, so max_concurrency=400 overflowed the
    stack (RecursionError from the wave's TaskGroup, every task cancelled). Here the concurrency is the
    recursion limit itself: any nesting of the starts, however shallow each level, overflows it."""
    concurrency = sys.getrecursionlimit()
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    running = 0
    most = 0

    async def work(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(1)
        running -= 1
        return i

    async def main() -> list[Any]:
        wave = Wave[int]("lazy", max_concurrency=concurrency, **otel.providers)
        async with wave.stream_map(work, iter(range(2 * concurrency))) as results:
            return [result async for result in results]

    results = watched(main, eager=True)
    assert sorted(r.value for r in results) == list(range(2 * concurrency))
    assert {r.outcome.value for r in results} == {"success"}
    assert most == concurrency  # every worker started: the starts were deferred, never dropped
    assert spans.open == {}
    assert len(otel.spans("task lazy")) == 2 * concurrency
    otel.shutdown()
