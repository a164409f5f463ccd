"""One RunRecorder fed from several threads (event loops in several threads sharing a breaker, a policy
or the recorder) loses no count: every update of what calls and waves share takes its lock."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from shannon_otel import RunRecorder, Wave
from shannon_otel._events import CallFinished, CallStarted, RetryScheduled
from shannon_otel._telemetry import CallOutcome
from shannon_otel.reporting._run import OUTSIDE_WAVES

THREADS = 4


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Threads switch as often as the interpreter allows: a read-modify-write without a lock loses counts."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def together(work: Callable[[], None]) -> None:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("round_", range(3))  # each round loses counts without the lock with ~80% odds
def test_calls_of_new_operations_from_several_threads_are_all_counted(switch_often: None, round_: int) -> None:
    recorder = RunRecorder()
    ops = 5000

    def calls() -> None:
        for k in range(ops):
            observer = recorder.call_started(CallStarted(f"op{k}", "retry"))
            assert observer is not None
            observer.retry_scheduled(RetryScheduled(f"op{k}", 1, 0.0, ConnectionError()))
            observer.call_finished(CallFinished(f"op{k}", CallOutcome.SUCCESS, 2, 0.001))

    together(calls)
    operations = recorder.report().operations
    assert len(operations) == ops
    assert sorted({(s.calls, s.attempts, s.retries) for s in operations.values()}) == [
        (THREADS, 2 * THREADS, THREADS)]
    assert {s.latency_by_wave[OUTSIDE_WAVES][0] for s in operations.values()} == {THREADS}
    assert recorder.retries == ops * THREADS


def test_waves_run_by_event_loops_in_several_threads_are_all_counted(switch_often: None) -> None:
    recorder = RunRecorder(max_waves=10)
    waves, size = 150, 2

    async def task() -> int:
        return 1

    async def run() -> None:
        wave = Wave[int](name="w", hooks=[recorder], instrument=False)
        for _ in range(waves):
            await wave.run([task] * size)

    together(lambda: asyncio.run(run()))
    assert recorder.totals["waves"] == THREADS * waves
    assert recorder.totals["success"] == THREADS * waves * size
    assert recorder.latency.count == THREADS * waves * size
    labels = [w.label for w in recorder.waves]
    assert len(labels) == len(set(labels)) == 10  # every run of "w" got a label of its own
