"""The anomaly hook fed by real waves at its edges: a wall clock stepped forward or back, and tasks, calls and
runs cancelled by their caller (cancellation is no signal: no faster, no busier, no retrying service)."""

from __future__ import annotations

import asyncio
import functools
import gc
import random
import warnings
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from shannon_otel import AnomalyHook, DetectorConfig, Hook, Wave, _clock
from shannon_otel._events import CallFinished, CallStarted, TaskFinished, WaveStarted
from shannon_otel._telemetry import ANOMALY_VALUE, EVENT_ANOMALY, CallOutcome, Outcome
from shannon_otel.anomaly import ERROR_RATE, LATENCY, RETRY_RATE, THROUGHPUT, Anomaly
from shannon_otel.testing import FakeClock, InMemoryTelemetry, run_virtual


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _feed(hook: AnomalyHook, ticks: int, *, step: float, clocks: tuple[_Clock, ...], jump: float) -> None:
    """One run of ``2 * ticks`` one-second ticks of 16 tasks of ~0.1 s (a steady 16 tasks/s), every clock
    advancing; after ``ticks`` ticks the first clock steps by ``jump`` seconds (mid-run: between runs the
    idle time is not part of a tick anyway)."""
    observer = hook.wave_started(WaveStarted("w", None, None, 0.0))
    assert observer is not None
    for i in range(16 * 2 * ticks):
        if i == 16 * ticks:
            clocks[0].now += jump
        for clock in clocks:
            clock.now += step
        observer.task_finished(None, TaskFinished(wave="w", index=i, name="t", outcome=Outcome.SUCCESS,
                                                  duration_s=0.1 + 0.01 * ((i * 7) % 5)))
    observer.wave_finished(None)  # type: ignore[arg-type]  # the hook reads no report


def test_a_wall_clock_stepped_forward_raises_no_false_throughput_anomaly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default (wall) clock, an NTP step or a resumed VM stretched the open tick over the step:
    16 tasks "in" an hour read as a throughput fall, a critical anomaly on a healthy wave."""
    wall, mono = _Clock(1_700_000_000.0), _Clock(100.0)
    monkeypatch.setattr(_clock, "wall", wall)
    monkeypatch.setattr(_clock, "monotonic", mono)
    seen: list[Anomaly] = []
    hook = AnomalyHook(on_anomaly=seen.append, tick_s=1.0, clock=_clock.wall, signals=[THROUGHPUT])
    _feed(hook, 50, step=1 / 16, clocks=(wall, mono), jump=3600.0)  # the system clock steps; not the monotonic
    assert seen == []
    assert hook.detector.last_score(f"{THROUGHPUT}\x00w") is not None  # the ticks were scored
    assert hook.detector.stats.series == 1


def test_a_clock_stepped_back_keeps_the_hook_scoring() -> None:
    """Stepped back an hour mid-run, the open tick waited for its old end: the hook scored nothing for an hour."""
    clock, seen, scored = _Clock(1_000_000.0), list[Anomaly](), list[float]()
    hook = AnomalyHook(on_anomaly=seen.append, tick_s=1.0, clock=clock, signals=[LATENCY, THROUGHPUT])
    update = hook.detector.update

    def spy(series: str, value: float, time: float) -> float | None:
        scored.append(time)
        return update(series, value, time)

    hook.detector.update = spy  # type: ignore[method-assign]
    _feed(hook, 50, step=1 / 16, clocks=(clock,), jump=-3600.0)
    after_step = [t for t in scored if t < 1_000_000.0]
    assert len(after_step) >= 2 * 48  # about one sample per signal and second after the step too
    assert seen == []  # and the tick restarted at the step reads the same 16 tasks/s, not one task more


# ---------------------------------------------------------------------- bug: cancelled tasks and calls in the hook
EVERY_TICK = DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9)  # each scored tick is an event


def test_a_cancelled_task_counts_in_no_signal_of_its_tick() -> None:
    """A cancelled task's duration (cut short by the cancellation) went into the tick's mean latency, the task
    into its throughput and the denominator of its error rate."""
    clock, seen = FakeClock(1_000_000.0), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0, clock=clock, min_tick_tasks=8)
    obs = hook.wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    for i in range(16):  # one tick: 8 tasks of 0.1 s (one failed) and 8 cancelled after 1 ms
        clock.advance(1 / 16)
        cancelled = i % 2 == 0
        outcome = Outcome.CANCELLATION if cancelled else Outcome.FAILURE if i == 1 else Outcome.SUCCESS
        obs.task_finished(None, TaskFinished(wave="w", index=i, name="t", outcome=outcome,
                                             duration_s=0.001 if cancelled else 0.1))
    assert {a.signal: a.value for a in seen} == {LATENCY: pytest.approx(0.1), ERROR_RATE: 1 / 8, THROUGHPUT: 8.0}


def test_a_cancelled_call_counts_in_no_retry_rate() -> None:
    clock, seen = FakeClock(1_000_000.0), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0, clock=clock, min_tick_tasks=8)
    for i in range(16):
        obs = hook.call_started(CallStarted("fetch", "retry"))
        assert obs is not None
        clock.advance(1 / 16)
        cancelled = i % 2 == 0  # the last call (a finished one) closes the tick
        obs.call_finished(CallFinished("fetch", CallOutcome.CANCELLATION if cancelled else CallOutcome.SUCCESS,
                                       1 if cancelled else 3, 0.01))
    assert [(a.signal, a.value) for a in seen] == [(RETRY_RATE, 2.0)]  # 2 retries per finished call, not 1


class _Listener(Hook):
    def __init__(self) -> None:
        self.events: list[Anomaly] = []

    def anomaly(self, event: Anomaly) -> None:
        self.events.append(event)


def test_runs_cancelled_by_their_caller_read_as_no_faster_and_no_busier_service() -> None:
    """A wave whose caller cancels it 50 ms in, 30 runs in a row: with the cancelled tasks counted, those ticks
    read as latency halved (0.055 s) and throughput doubled (70.8 tasks/s, a critical anomaly) of a service that
    did not change. Now they are no samples: latency is of finished tasks only. (The tick holding the time those
    runs were active finished few tasks in it, and reads a critical fall of throughput: that one is true.)"""
    listener, rng = _Listener(), random.Random(5)

    async def work(i: int, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return i

    async def main() -> None:
        loop = asyncio.get_running_loop()
        hook = AnomalyHook(tick_s=1.0, clock=loop.time)
        for run in range(200):
            wave: Wave[int] = Wave("w", max_concurrency=4, hooks=[hook, listener], clock=loop.time, instrument=False)
            started = asyncio.ensure_future(wave.run([functools.partial(work, i, rng.lognormvariate(-2.3, 0.3))
                                                      for i in range(16)]))
            cancelled = 150 <= run < 180
            if cancelled:  # the caller gives up 50 ms in: the four running tasks are cancelled
                await asyncio.sleep(0.05)
                started.cancel()
            try:
                await started
            except asyncio.CancelledError:
                assert cancelled

    run_virtual(main())
    latency = [e for e in listener.events if e.signal == LATENCY]
    assert len(latency) > 40  # scored well past the warm-up
    assert [e for e in latency if e.severity is not None] == []
    assert min(e.value for e in latency) > 0.08  # the finished tasks' mean (~0.1 s), never ~0.05
    healthy_max = max(e.value for e in listener.events if e.signal == THROUGHPUT and e.time < 60.0)
    assert [e for e in listener.events if e.signal == THROUGHPUT and e.severity and e.value > healthy_max] == []


# ---------------------------------------------------------------------- bug: a clock of other real numbers
@pytest.mark.parametrize("reading", [Fraction, np.float32], ids=["Fraction", "float32"])
def test_a_clock_of_other_real_numbers_gives_float_anomalies_and_attributes(reading: Callable[[float], Any]) -> None:
    """A hook clock returning Fractions (or numpy float32) made the throughput and ``Anomaly.time`` Fractions:
    the ``shannon.anomaly`` span event's value was an invalid OTel attribute, exported as the string "8"."""
    otel, clock, seen = InMemoryTelemetry(), FakeClock(), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0, min_tick_tasks=2, signals=[THROUGHPUT],
                       clock=lambda: reading(clock()))

    async def work() -> None:
        clock.advance(0.125)
        await asyncio.sleep(0)

    async def main() -> None:
        wave: Wave[None] = Wave("w", max_concurrency=1, hooks=(hook,), clock=clock, **otel.providers)
        await wave.run([work] * 16)

    asyncio.run(main())
    assert [(type(a.value), type(a.time)) for a in seen] == [(float, float)] * 2
    values = [(event.attributes or {})[ANOMALY_VALUE] for span in otel.spans() for event in span.events
              if event.name == EVENT_ANOMALY]
    assert values == [8.0, 8.0] and all(type(value) is float for value in values)


@pytest.mark.parametrize(("reading", "message"), [
    (Decimal("1000.0"), "clock must return seconds (a real number)"),
    # an int no float holds compared as finite, then failed on float(): "int too large to convert to float"
    (10**400, "clock must return finite seconds within the float range"),
], ids=["Decimal", "int beyond float"])
def test_a_clock_of_no_real_number_fails_the_hook_naming_the_clock(caplog: pytest.LogCaptureFixture, reading: object,
                                                                   message: str) -> None:
    """A Decimal clock failed the hook on "unsupported operand type(s) for +: 'decimal.Decimal' and 'float'"."""
    hook = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=lambda: reading)  # type: ignore[arg-type,return-value]

    async def work() -> None:
        await asyncio.sleep(0)

    wave: Wave[None] = Wave("w", hooks=(hook,), instrument=False)
    result = asyncio.run(wave.run([work] * 2))
    assert result.values() == [None, None]  # the hook's failure costs the wave nothing
    assert message in caplog.text


# Bug: ``hook.enabled = False`` only stopped runs started afterwards; a run under way (a stream that never ends, a
# long wave) went on scoring and reporting anomalies until it ended. Now its tasks and calls count in no tick
# while the hook is off, and the tick open when it went off is dropped (counted on, it read the time off as a fall
# of throughput).
def test_a_hook_switched_off_mid_run_reports_nothing_until_switched_on_again() -> None:
    clock, seen = FakeClock(1_000.0), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0, clock=clock, min_tick_tasks=8)

    async def work(i: int) -> None:
        clock.advance(0.25)  # 4 tasks a second, 0.25 s each
        await asyncio.sleep(0)
        if i == 40:
            hook.enabled = False  # at t = 10 s (1000 + 41 x 0.25 = 1010.25)
        elif i == 119:
            hook.enabled = True  # at t = 30 s

    async def main() -> None:
        wave: Wave[None] = Wave("w", max_concurrency=1, hooks=(hook,), instrument=False, clock=clock)
        await wave.run([functools.partial(work, i) for i in range(200)])

    asyncio.run(main())
    times = sorted({a.time for a in seen})
    assert times and not [t for t in times if 1_010.25 < t <= 1_030.0]
    assert [t for t in times if t > 1_030.0]  # on again: scored again
    assert {(a.signal, a.value) for a in seen} == {(LATENCY, 0.25), (ERROR_RATE, 0.0), (THROUGHPUT, 4.0)}


def test_a_hook_switched_off_mid_call_sequence_scores_no_retry_rate_meanwhile() -> None:
    clock, seen = FakeClock(1_000.0), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0, clock=clock, min_tick_tasks=8)
    observers = []
    for _ in range(48):  # calls started while the hook is on, finishing while it is off (and after)
        obs = hook.call_started(CallStarted("fetch", "retry"))
        assert obs is not None
        observers.append(obs)
    for i, obs in enumerate(observers):
        hook.enabled = not 16 <= i < 32
        clock.advance(1 / 16)
        obs.call_finished(CallFinished("fetch", CallOutcome.SUCCESS, 2 if i >= 16 else 1, 0.01))
    assert [(a.signal, a.value, a.time) for a in seen] == [(RETRY_RATE, 0.0, 1_001.0), (RETRY_RATE, 1.0, 1_003.0)]


# ---------------------------------------------------------------------- bug: an on_anomaly returning a coroutine
def test_an_on_anomaly_returning_a_coroutine_fails_logged_and_one_returning_a_task_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    """``on_anomaly=lambda a: notify(a)`` of an async ``notify`` passes the constructor's check (a plain lambda);
    its coroutine was dropped unawaited: the alert was never sent, nothing counted or logged, only Python's
    "never awaited" RuntimeWarning at collection. Now it is the callback's failure, logged and counted, the
    coroutine closed; a callback scheduling the coroutine (returning its Task) is no error, and it runs."""
    sent: list[str] = []

    async def notify(anomaly: Anomaly) -> None:
        sent.append(anomaly.signal)

    async def work() -> None:
        clock.advance(0.25)
        await asyncio.sleep(0)

    async def main(hook: AnomalyHook) -> None:
        wave: Wave[None] = Wave("w", max_concurrency=1, hooks=(hook,), instrument=False, clock=clock)
        await wave.run([work] * 16)  # 4 s: 4 ticks of 4 tasks, each scored
        await asyncio.sleep(0)  # the scheduled notifications run

    clock = FakeClock(1_000.0)
    dropped = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, min_tick_tasks=4, signals=[LATENCY],
                          on_anomaly=lambda a: notify(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unawaited coroutine's warning, raised where the collector ignores it
        asyncio.run(main(dropped))
        gc.collect()
    assert sent == []
    assert dropped.hook_errors == {"on_anomaly": 4}
    assert "on_anomaly must be a plain (sync) callable; it returned a coroutine" in caplog.text

    tasks: list[asyncio.Task[None]] = []

    def kept(task: asyncio.Task[None]) -> asyncio.Task[None]:
        tasks.append(task)  # a task nobody references may be collected before it ends
        return task

    scheduled = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, min_tick_tasks=4, signals=[LATENCY],
                            on_anomaly=lambda a: kept(asyncio.get_running_loop().create_task(notify(a))))
    asyncio.run(main(scheduled))
    assert sent == [LATENCY] * 4
    assert scheduled.hook_errors == {}


# ---------------------------------------------------------------------- bug: the gauge kept evicted series
@pytest.mark.parametrize("min_history", [1, 3], ids=["scored", "warming"])
def test_the_score_gauge_forgets_a_series_the_detector_evicted(min_history: int) -> None:
    """The ``shannon.anomaly.score`` gauge kept reporting a series the detector had evicted past
    ``max_series`` until 1,000 newer series pushed it out: a dashboard's "Highest score" could show an old
    critical score of a series nobody watched any more. The hook's next event names what was evicted (a
    series still warming up publishes no event when it evicts: the next scored one carries it)."""
    otel, clock = InMemoryTelemetry(), FakeClock()
    hook = AnomalyHook(DetectorConfig(buckets=1, min_history=min_history, max_series=2), tick_s=1, min_tick_tasks=1,
                       signals=[LATENCY], clock=clock)

    async def work() -> None:
        clock.advance(0.5)
        await asyncio.sleep(0)

    async def main() -> None:
        for name in ("a", "b", "c"):
            wave: Wave[None] = Wave(name, max_concurrency=1, hooks=(hook,), clock=clock, **otel.providers)
            await wave.run([work] * 12)

    asyncio.run(main())
    assert hook.detector.series() == ["latency\x00b", "latency\x00c"] and hook.detector.stats.evicted == 1
    points = otel.points("shannon.anomaly.score")
    assert sorted(dict(p.attributes)["shannon.anomaly.series"] for p in points) == ["b", "c"]


# ---------------------------------------------------------------------- bug: each eviction scanned every key
def test_a_hook_whose_series_churn_finds_each_eviction_without_scanning_every_series() -> None:
    """Every sample that evicted a series (a new wave name past ``max_series``) scanned all the hook's keys against
    all the detector's series: O(max_series) a sample, 1.4 ms at 10^4 series where a sample costs ~30 us. The
    series the sample evicts is known before it is fed (the least recently updated one): that one is reported,
    and the full scan is left for evictions the hook did not cause. What the gauge reports stays true."""
    otel, clock = InMemoryTelemetry(), FakeClock()
    hook = AnomalyHook(DetectorConfig(buckets=1, min_history=1, max_series=4), tick_s=1, min_tick_tasks=1,
                       signals=[LATENCY], clock=clock)
    detector = hook.detector
    scans = 0
    listed = detector.series

    def series() -> list[str]:
        nonlocal scans
        scans += 1
        return listed()

    detector.series = series  # type: ignore[method-assign]

    async def work() -> None:
        clock.advance(1.0)
        await asyncio.sleep(0)

    async def main() -> None:
        for i in range(40):
            wave: Wave[None] = Wave(f"w{i}", max_concurrency=1, hooks=(hook,), clock=clock, **otel.providers)
            await wave.run([work] * 2)

    asyncio.run(main())
    assert detector.stats.evicted == 36
    assert scans <= 40 // 4  # the tick states' cleanup, every max_series new names (44 scans before)
    points = otel.points("shannon.anomaly.score")
    assert sorted(dict(p.attributes)["shannon.anomaly.series"] for p in points) == ["w36", "w37", "w38", "w39"]


def test_series_the_user_evicts_through_hook_detector_are_still_reported_gone() -> None:
    """The eviction the hook's own sample causes is found without a scan; one the user causes by feeding
    ``hook.detector`` directly is found by the scan, so the gauge forgets that series too; a series of the user's
    the hook evicts is no pair of the hook's."""
    otel, clock = InMemoryTelemetry(), FakeClock()
    hook = AnomalyHook(DetectorConfig(buckets=1, min_history=1, max_series=2), tick_s=1, min_tick_tasks=1,
                       signals=[LATENCY], clock=clock)

    async def work() -> None:
        clock.advance(1.0)
        await asyncio.sleep(0)

    def run(name: str) -> list[str]:
        wave: Wave[None] = Wave(name, max_concurrency=1, hooks=(hook,), clock=clock, **otel.providers)
        asyncio.run(wave.run([work] * 2))
        return sorted(dict(p.attributes)["shannon.anomaly.series"] for p in otel.points("shannon.anomaly.score"))

    assert run("a") == ["a"]
    hook.detector.update("mine", 1.0, 0.0)
    assert run("b") == ["b"]  # its sample evicted "a"
    assert run("c") == ["b", "c"]  # its sample evicted "mine", the user's
    hook.detector.update("mine2", 1.0, 0.0)  # evicts "b": the user did
    assert run("c") == ["c"]
    assert hook.detector.series() == ["mine2", "latency\x00c"]
