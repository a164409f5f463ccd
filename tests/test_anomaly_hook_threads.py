"""One AnomalyHook shared by waves and policies running in several threads, each its own event loop.

The tick state is shared by every run of a wave name (and every call of an operation): without taking
turns, a tick closed by one thread while another counted into it was scored with zero tasks
(ZeroDivisionError in the hook, isolated: the results survived, the tick's samples were lost), and
the counts of concurrent runs lost updates.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _forked import fork_while_locked

from shannon_otel import Wave
from shannon_otel.anomaly import AnomalyDetector, AnomalyHook, DetectorConfig
from shannon_otel.recovery import Retry

THREADS, RUNS, TASKS = 8, 25, 150


@pytest.fixture
def fast_switches() -> Iterator[None]:
    """Threads switch every microsecond: a race in a few lines of Python shows up at once."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(saved)


class CountingDetector(AnomalyDetector):
    """The real detector, counting the samples it is fed per series."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.fed: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def update(self, series: str, value: float, time: float) -> float | None:
        with self._count_lock:
            self.fed[series] = self.fed.get(series, 0) + 1
        return super().update(series, value, time)


def _threaded(target: object) -> None:
    threads = [threading.Thread(target=target) for _ in range(THREADS)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)


def test_waves_in_several_threads_share_one_hook_without_losing_a_tick(fast_switches: None) -> None:
    ticks = itertools.count()  # every task sees a later time; tick_s=1 with 1 task a tick: each closes one
    hook = AnomalyHook(DetectorConfig(min_history=30), tick_s=1.0, min_tick_tasks=1,
                       clock=lambda: float(next(ticks)))
    detector = CountingDetector(hook.detector.config)
    hook._detector = detector
    results: list[list[int | None]] = []

    async def work(i: int) -> int:
        return i

    def run() -> None:
        wave: Wave[int] = Wave("shared", max_concurrency=8, hooks=[hook], instrument=False)
        results.extend(asyncio.run(wave.map(work, range(TASKS))).values() for _ in range(RUNS))

    _threaded(run)
    assert results == [list(range(TASKS))] * (THREADS * RUNS)  # the user's results, always
    assert hook.hook_errors == {}  # was {'task_finished': n}: ZeroDivisionError scoring an emptied tick
    tick = hook._waves["shared"]
    assert tick.active == 0  # every run that started has finished (no lost update of the run count)
    # every task closed a tick of its own (its clock reading is past the last end) or was counted in
    # the one still open: none scored twice, none lost
    latency = detector.fed.get("latency\x00shared", 0)
    assert latency + tick.finished == THREADS * RUNS * TASKS
    assert detector.fed.get("error_rate\x00shared", 0) == latency


def test_policies_in_several_threads_share_one_hook_without_losing_a_call(fast_switches: None) -> None:
    ticks = itertools.count()
    hook = AnomalyHook(DetectorConfig(min_history=30), tick_s=1.0, min_tick_tasks=1,
                       clock=lambda: float(next(ticks)), signals=["retry_rate"])
    detector = CountingDetector(hook.detector.config)
    hook._detector = detector
    policy = Retry(name="op", attempts=1, hooks=[hook], instrument=False)
    got: list[int] = []

    async def one(i: int) -> int:
        return i

    def run() -> None:
        async def calls() -> list[int]:
            return [await policy.call(one, i) for i in range(RUNS * TASKS)]

        got.extend(asyncio.run(calls()))

    _threaded(run)
    assert sorted(got) == sorted(list(range(RUNS * TASKS)) * THREADS)
    assert hook.hook_errors == {}
    op = hook._ops["op"]
    assert detector.fed.get("retry_rate\x00op", 0) + op.calls == THREADS * RUNS * TASKS


_FORKED = '''
import asyncio, json, os, sys, time
from shannon_otel import Wave
from shannon_otel.anomaly import AnomalyHook

hook = AnomalyHook(tick_s=1e-9, min_tick_tasks=1)

async def task():
    return 1

wave = Wave(name="w", hooks=[hook], instrument=False)
asyncio.run(wave.run([task] * 3))
lock = hook._lock if sys.argv[1] == "hook" else hook.detector._lock
'''

_FORKED_CHILD = '''
assert asyncio.run(wave.run([task] * 3)).values() == [1, 1, 1]
os._exit(0 if hook.hook_errors == {} else 3)
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("which", ["hook", "detector"])
def test_a_child_forked_while_another_thread_feeds_the_hook_does_not_hang(tmp_path: Path, which: str) -> None:
    assert fork_while_locked(tmp_path, _FORKED, _FORKED_CHILD, which) == {"hung": False, "status": 0}


def test_on_anomaly_failures_in_several_threads_are_all_counted(fast_switches: None) -> None:
    """``hook_errors`` counted a failure by reading the count, then writing it plus one: an ``on_anomaly`` failing in
    several threads at once lost counts (from a few to most of 48,000 here, without the lock), and its first failure
    could be logged twice. Every failure is counted now."""
    from shannon_otel._events import TaskFinished, WaveStarted
    from shannon_otel._telemetry import Outcome

    calls = itertools.count()

    def failing(anomaly: object) -> None:
        next(calls)  # atomic under the GIL
        raise RuntimeError("the pager is down")

    every = DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9)
    hook = AnomalyHook(every, on_anomaly=failing, tick_s=1e-9, min_tick_tasks=1, clock=itertools.count().__next__)
    names = itertools.count()

    def feed() -> None:
        wave = f"w{next(names)}"
        observer = hook.wave_started(WaveStarted(wave, None, None, 0.0))
        assert observer is not None
        for i in range(2_000):  # each task closes a tick: 3 anomalies, 3 failures of the callback
            observer.task_finished(None, TaskFinished(wave=wave, index=i, name="t", outcome=Outcome.SUCCESS,
                                                      duration_s=0.01))

    _threaded(feed)
    assert hook.hook_errors == {"on_anomaly": next(calls)}
