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

from shannon_otel import Anomaly, Hook, Wave
from shannon_otel.anomaly import LATENCY, AnomalyDetector, AnomalyHook, DetectorConfig
from shannon_otel.recovery import Retry
from shannon_otel.testing import FakeClock

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


# -------------------------------------------------------------------- bug: a series reported evicted before it was fed
class _TurnsLock:
    """The hook's lock, setting ``contended`` whenever a thread has to wait for it."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock, self._contended = threading.Lock(), contended

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._contended.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class Listener(Hook):
    def __init__(self) -> None:
        self.events: list[Anomaly] = []

    def anomaly(self, event: Anomaly) -> None:
        self.events.append(event)


class PausingDetector(AnomalyDetector):
    """The real detector; the first sample of ``series`` waits (``entered`` set) until ``go`` is set."""

    def __init__(self, config: DetectorConfig, series: str) -> None:
        super().__init__(config)
        self.series_to_pause, self.entered, self.go = series, threading.Event(), threading.Event()

    def update(self, series: str, value: float, time: float) -> float | None:
        if series == self.series_to_pause and not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(60)
        return super().update(series, value, time)


def test_a_series_about_to_be_fed_is_not_reported_evicted() -> None:
    """Before: the hook registered a sample's series, then fed the detector without holding its lock; an eviction
    by another thread in between scanned the registered series, found the detector not tracking it yet and
    reported it evicted (``Anomaly.evicted``) although it was about to be tracked: its gauge was dropped, and,
    its key forgotten, its real eviction later was never reported (the gauge kept its stale score). Now the
    registration, the sample and the eviction scan take one turn on the hook's lock."""
    clock = FakeClock()
    hook = AnomalyHook(DetectorConfig(buckets=1, min_history=1, max_series=2), tick_s=1.0, min_tick_tasks=1,
                       signals=[LATENCY], clock=clock)
    detector = PausingDetector(hook.detector.config, f"{LATENCY}\x00x")
    hook._detector = detector
    hook._lock = _TurnsLock(detector.go)  # type: ignore[assignment]
    listener = Listener()

    async def work() -> None:
        clock.advance(2.0)
        await asyncio.sleep(0)

    def run(name: str) -> None:
        async def main() -> None:
            await Wave(name, max_concurrency=1, hooks=(hook, listener), instrument=False, clock=clock).run([work])
        asyncio.run(main())

    for name in ("a", "b"):  # tracked: a, b; x (the first thread) and y (the second) evict them
        run(name)

    def second() -> None:
        try:
            assert detector.entered.wait(60)
            run("y")
        finally:
            detector.go.set()  # done (before the fix: it never had to wait for the first thread)

    threads = [threading.Thread(target=run, args=("x",)), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(detector.series()) == [f"{LATENCY}\x00{name}" for name in ("x", "y")]
    assert sorted(gone for event in listener.events for gone in event.evicted) == [("a", LATENCY), ("b", LATENCY)]
