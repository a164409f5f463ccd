"""A module-level ResourcePool whose event loop was closed while its tasks held and waited for permits (a script's
loop ended by Ctrl-C, closed without cancelling its tasks), used again by the next loop.

The pool says so (RuntimeError: the permits come back as those tasks are collected). Before, they never came back:
the pool's queue of waiters held the waiting tasks, and through their wave the task holding the permit, so the
collector never freed them; and a holder collected while a waiter of the closed loop was queued handed its permit
to that waiter ("Event loop is closed" raised into the collector), which kept it for good."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest
from _abandoned import abandoned_with_its_loop
from _open_spans import OpenSpans

from shannon_otel import ResourcePool, Wave, task
from shannon_otel.testing import InMemoryTelemetry


async def _forever() -> None:
    await asyncio.sleep(3600)


async def _ok() -> str:
    return "ok"


def test_a_wave_holding_and_waiting_for_a_pool_when_its_loop_closed_gives_the_permit_back_once_collected() -> None:
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    pool = ResourcePool("db", 1)
    wave = Wave("w", max_concurrency=2, pools=[pool], **tel.providers)
    found = abandoned_with_its_loop(wave.run([task(_forever, pool=pool), task(_forever, pool=pool)]), steps=3)
    assert pool.in_use == 1  # the first task holds it, the second waits
    with pytest.raises(RuntimeError, match=r"'db': 1 permit\(s\) held in an event loop closed while its tasks"):
        asyncio.run(pool.acquire())
    found += abandoned_with_its_loop(asyncio.sleep(0))  # collects (as abandoned_with_its_loop does) what is free now
    gc.collect()
    assert found == []
    assert pool.in_use == 0  # before: 1 for good, the waiters queue holding the whole wave
    assert spans.open == {}, spans.open
    result = asyncio.run(wave.run([task(_ok, pool=pool)]))
    assert [r.value for r in result.results] == ["ok"]


def test_a_permit_released_as_its_closed_loops_holder_is_collected_skips_that_loops_waiters() -> None:
    """The holder's release (in its ``finally``, run by the collector) no longer hands the permit to a waiter of the
    closed loop, which would never run to give it back."""
    pool = ResourcePool("db", 1)

    async def holds() -> None:
        await pool.acquire()
        try:
            await _forever()
        finally:
            pool.release()

    loop = asyncio.new_event_loop()
    holder = loop.create_task(holds())
    loop.run_until_complete(asyncio.sleep(0))
    waiter = loop.create_task(pool.acquire())  # kept: only the holder is collected
    loop.run_until_complete(asyncio.sleep(0))
    assert pool.in_use == 1
    loop.close()
    found: list[str] = []
    del holder
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: found.append(repr(unraisable.exc_value))
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert found == []  # before: RuntimeError('Event loop is closed'), raised into the collector
    assert pool.in_use == 0  # before: 1 for good, the permit handed to the closed loop's waiter
    assert asyncio.run(pool.acquire()) is None
    assert not waiter.done()
