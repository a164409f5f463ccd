"""Injected clocks that go back, stand still or jump: what the policies and the executor report stays true.

The default clocks are monotonic; a user's own (a wall clock, a test's) may step back. A duration, a queue
wait or an age is then never negative (the SDK's histograms dropped negative values: task durations
silently, the wave's with a warning), and a breaker opened before the step waits its ``reset_timeout``,
not the step as well."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace

import shannon_otel as so
from shannon_otel.testing import FakeClock, InMemoryTelemetry, VirtualTimeLoop, run_virtual


class _Backwards:
    """A clock that goes back ``step`` seconds at every read."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now -= self.step
        return self.now


async def _one() -> int:
    return 1


async def _fail() -> None:
    raise ValueError("down")


def _good_once() -> Callable[[], Awaitable[int]]:
    """An operation that returns 1 on its first call and raises ``ValueError("down")`` on every later one."""
    calls: list[int] = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("down")
        return 1

    return flaky


def test_a_wave_on_a_clock_going_back_reports_no_negative_time_and_keeps_its_histogram_points() -> None:
    tel = InMemoryTelemetry()
    wave: so.Wave[int] = so.Wave("w", clock=_Backwards(), **tel.providers)
    result = run_virtual(wave.run([_one] * 3))
    assert [r.value for r in result.results] == [1, 1, 1]
    assert all(r.duration_s == 0.0 and r.queue_wait_s == 0.0 for r in result.results)
    assert result.report.duration_s == 0.0 and result.report.latency.total == 0.0
    for metric, count in (("shannon.task.duration", 3), ("shannon.task.queue_wait.duration", 3),
                          ("shannon.wave.duration", 1)):
        (point,) = tel.points(metric)
        assert (point.count, point.sum) == (count, 0.0), metric


def test_a_wave_on_a_clock_standing_still_reports_zero_durations() -> None:
    tel = InMemoryTelemetry()
    wave: so.Wave[int] = so.Wave("w", clock=lambda: 5.0, **tel.providers)
    result = run_virtual(wave.run([_one] * 2))
    assert [r.duration_s for r in result.results] == [0.0, 0.0]
    (point,) = tel.points("shannon.task.duration")
    assert point.count == 2


@pytest.mark.parametrize("back_s", [60.0, 3 * 86_400.0])
def test_an_open_breaker_whose_clock_steps_back_waits_its_reset_timeout_not_the_step(back_s: float) -> None:
    """Stepped back by 3 days after opening, the breaker stayed open for 3 days and 30 s (its
    ``retry_after_s`` said 259,230 s for a 30 s ``reset_timeout``)."""
    clock = FakeClock(1000.0)
    breaker = so.CircuitBreaker("stepped", failure_threshold=1, reset_timeout=30.0, clock=clock, instrument=False)

    async def main() -> None:
        with contextlib.suppress(ValueError):
            await breaker.call(_fail)
        clock.now -= back_s
        with pytest.raises(so.CircuitOpenError) as rejected:
            await breaker.call(_one)
        assert rejected.value.retry_after_s == 30.0
        clock.advance(30.0)
        assert await breaker.call(_one) == 1
        assert breaker.state is so.BreakerState.CLOSED

    run_virtual(main())


def test_an_open_breaker_after_a_long_idle_gap_half_opens_at_its_first_call() -> None:
    clock = FakeClock(1000.0)
    breaker = so.CircuitBreaker("idle", failure_threshold=1, reset_timeout=30.0, clock=clock, instrument=False)

    async def main() -> None:
        with contextlib.suppress(ValueError):
            await breaker.call(_fail)
        clock.advance(3600.0)
        assert await breaker.call(_one) == 1
        assert breaker.state is so.BreakerState.CLOSED

    run_virtual(main())


class _Events(so.Hook):
    """Collects the events of calls and sagas."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        hook = self

        class Calls(so.CallObserver):
            def attempt_finished(self, token: Any, event: so.AttemptFinished) -> None:
                hook.events.append(event)

            def call_finished(self, event: so.CallFinished) -> None:
                hook.events.append(event)

            def degraded(self, event: so.Degraded) -> None:
                hook.events.append(event)

        class Sagas(so.SagaObserver):
            def compensation_finished(self, token: Any, event: so.CompensationFinished) -> None:
                hook.events.append(event)

        self._calls, self._sagas = Calls(), Sagas()

    def call_started(self, event: so.CallStarted) -> so.CallObserver:
        return self._calls

    def saga_started(self, event: so.SagaStarted) -> so.SagaObserver:
        return self._sagas


def test_policy_events_on_a_clock_going_back_carry_no_negative_duration() -> None:
    """AttemptFinished, CallFinished and CompensationFinished had durations of -1 s and less."""
    hook = _Events()
    retry = so.Retry(attempts=2, initial=0.0, clock=_Backwards(), hooks=[hook], instrument=False)
    with pytest.raises(ValueError, match="down"):
        run_virtual(retry.call(_fail))

    async def undo(value: int) -> None:
        return None

    saga = so.Saga("s", clock=_Backwards(), hooks=[hook], instrument=False)
    with pytest.raises(so.SagaError):
        run_virtual(saga.run(so.Step("a", _one, compensate=undo), so.Step("b", _fail)))
    durations = {type(e).__name__: e.duration_s for e in hook.events}
    assert set(durations) == {"AttemptFinished", "CallFinished", "CompensationFinished"}
    assert all(d == 0.0 for d in durations.values()), durations


def test_a_last_good_value_on_a_clock_going_back_is_served_with_no_negative_age() -> None:
    clock = _Backwards(step=10.0)
    degrade = so.Degrade(last_good=True, max_age=5.0, on=ValueError, clock=clock, instrument=False)
    flaky = _good_once()

    async def main() -> None:
        assert (await degrade.call(flaky)).value == 1
        served = await degrade.call(flaky)
        assert served.degraded and served.mode == "last_good" and served.age_s == 0.0

    run_virtual(main())


def test_a_rate_limited_wave_whose_clock_steps_back_keeps_its_pace() -> None:
    """Stepped back by a day after the first start, the next task waited a day and a second: the
    limiter's schedule stayed on the old time."""
    started: list[float] = []
    offset = [0.0]

    def stepped() -> float:
        return asyncio.get_running_loop().time() - offset[0]

    async def work() -> None:
        started.append(asyncio.get_running_loop().time())
        offset[0] = 86_400.0  # the clock goes back a day, once

    async def main() -> None:
        wave: so.Wave[None] = so.Wave("w", rate_limit=1.0, max_concurrency=1, clock=stepped, instrument=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3600.0):
                await wave.run([work] * 3)

    run_virtual(main())
    assert started == [0.0, 1.0, 2.0]


def test_a_rate_limited_wave_whose_clock_jumps_hours_ahead_starts_one_burst_then_keeps_its_pace() -> None:
    """Pinned (it held): stepped 5 hours ahead, the limiter sees 5 hours of no starts: the bucket is full, so
    ``burst`` tasks start at once (never more, however long the jump), then one per second again."""
    started: list[float] = []
    offset = [0.0]

    def stepped() -> float:
        return asyncio.get_running_loop().time() + offset[0]

    async def work() -> None:
        started.append(asyncio.get_running_loop().time())
        if len(started) == 4:
            offset[0] = 5 * 3600.0  # the clock jumps ahead, once

    wave: so.Wave[None] = so.Wave("w", rate_limit=1.0, burst=3, max_concurrency=1, clock=stepped,
                                  instrument=False)
    run_virtual(wave.run([work] * 9))
    # 3 at once, 1/s; the jump after the 4th (t=1): 3 more at once (its slot's, then the full bucket), then 1/s
    assert started == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0], started


def test_progress_goes_on_being_reported_after_the_clock_steps_back() -> None:
    """Stepped back by a day, on_progress was not called again until the clock had caught up (a day),
    only once at the end."""
    reported: list[int] = []
    offset = [0.0]

    def stepped() -> float:
        return asyncio.get_running_loop().time() - offset[0]

    async def work() -> None:
        await asyncio.sleep(2.0)
        offset[0] = 86_400.0

    wave: so.Wave[None] = so.Wave("w", max_concurrency=1, clock=stepped, progress_interval=1.0,
                                  on_progress=lambda p: reported.append(p.done), instrument=False)
    run_virtual(wave.run([work] * 4))
    assert reported[:3] == [1, 2, 3] and reported[-1] == 4, reported


_BAD_READINGS = [
    (datetime.datetime.now, TypeError, r"^clock must return seconds \(a real number\), got datetime\.datetime\("),
    (lambda: "1.0", TypeError, r"^clock must return seconds \(a real number\), got '1\.0'"),
    (lambda: math.nan, ValueError, r"^clock must return finite seconds, got nan"),
]
_IDS = ["datetime.now", "str", "nan"]


@pytest.mark.parametrize(("clock", "error", "message"), _BAD_READINGS, ids=_IDS)
def test_a_wave_refuses_a_clock_not_reading_seconds_before_any_task_runs(
    clock: Any, error: type[Exception], message: str,
) -> None:
    """``clock=datetime.now`` (a slip for ``time.time``) ran the first task, then raised "'>' not supported
    between instances of 'datetime.timedelta' and 'int'" from the wave: its result was lost. A NaN clock
    reported NaN durations."""
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    wave: so.Wave[None] = so.Wave("w", clock=clock, instrument=False)
    with pytest.raises(error, match=message):
        run_virtual(wave.run([work]))
    with pytest.raises(error, match=message):
        run_virtual(wave.map(lambda x: work(), [1]))
    assert ran == []


@pytest.mark.parametrize(("clock", "error", "message"), _BAD_READINGS, ids=_IDS)
def test_a_policy_refuses_a_clock_not_reading_seconds_naming_it(
    clock: Any, error: type[Exception], message: str,
) -> None:
    """A watched call (hooks listening) failed with Python's operator TypeError when an attempt ended,
    in place of the user's result; a retry with a budget when it scheduled the next attempt; a breaker
    with a time window (a NaN clock: "cannot convert float NaN to integer") at its first call."""
    tel = InMemoryTelemetry()
    with pytest.raises(error, match=message):
        run_virtual(so.Retry(clock=clock, **tel.providers).call(_one))
    with pytest.raises(error, match=message) as raised:
        run_virtual(so.Retry(clock=clock, budget_s=5.0, initial=0.0, instrument=False).call(_fail))
    # refused at the call's first reading, before any attempt ran (a NaN float, used as it was, when the first
    # retry was scheduled)
    assert raised.value.__cause__ is None
    with pytest.raises(error, match=message):
        so.CircuitBreaker("clocked", clock=clock, window_s=10.0, **tel.providers)
    # the watched call's span, ended (it was left open): the call failed with the clock's error, before any attempt
    (span,) = tel.spans()
    assert (span.name, dict(span.attributes or {})["error.type"]) == ("retry", error.__name__)


@pytest.mark.parametrize(("back_s", "state"), [(0.0, so.BreakerState.CLOSED), (5.0, so.BreakerState.OPEN),
                                               (86_400.0, so.BreakerState.CLOSED)])
def test_a_time_window_drops_its_calls_when_the_clock_steps_back_a_whole_window(
    back_s: float, state: so.BreakerState,
) -> None:
    """Stepped back a day, the 10 s window kept its three failures "from the future" for that day: one more
    failure a minute later (on the new time) opened the breaker at 4 failures of 4 calls, which on a clock
    going on forward had left the window long before. A step back shorter than the window keeps its calls."""
    clock = FakeClock(1000.0)
    breaker = so.CircuitBreaker("stepped-window", failure_threshold=None, failure_rate=0.5, min_calls=4,
                                window_s=10.0, clock=clock, instrument=False)

    async def main() -> None:
        for _ in range(3):
            with contextlib.suppress(ValueError):
                await breaker.call(_fail)
        clock.now -= back_s
        if back_s != 5.0:
            clock.advance(60.0)
        with contextlib.suppress(ValueError):
            await breaker.call(_fail)

    run_virtual(main())
    assert breaker.state is state


# Pairs where ``reset_timeout - (now - opened_at)`` after sleeping exactly ``reset_timeout`` came out a few 1e-11 s
# above 0, under one step of the clock: the breaker was still open, and sleeping its retry_after_s moved no clock.
_EDGES = [(762280.082457942, 0.21060533511106927), (445387.1940548014, 72.15400323407826),
          (228762.22127045266, 94.52706955539223), (25445.8609934608, 54.141247279349656)]


@pytest.mark.parametrize(("opened", "reset"), _EDGES)
def test_an_open_breaker_admits_its_probe_exactly_reset_timeout_later(opened: float, reset: float) -> None:
    """Rejected exactly ``reset_timeout`` after it opened (on a FakeClock, on virtual time), and again after
    waiting its own ``retry_after_s`` (about 4e-11 s): a ``Retry(wait_retry_after=True)`` around it used up
    every attempt at the one instant, rejected each time."""
    clock = FakeClock(opened)
    breaker = so.CircuitBreaker("edge", failure_threshold=1, reset_timeout=reset, clock=clock, instrument=False)

    async def on_fake_clock() -> None:
        with contextlib.suppress(ValueError):
            await breaker.call(_fail)
        clock.advance(reset)
        assert await breaker.call(_one) == 1

    run_virtual(on_fake_clock())

    async def on_virtual_time() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.advance(opened)
        virtual = so.CircuitBreaker("edge", failure_threshold=1, reset_timeout=reset, clock=loop.time,
                                    instrument=False)
        with contextlib.suppress(ValueError):
            await virtual.call(_fail)
        retry = so.Retry(attempts=2, wait_retry_after=True, maximum=1e6, instrument=False)
        return await retry.call(lambda: virtual.call(_one)), loop.time()

    assert run_virtual(on_virtual_time()) == (1, opened + reset)


class _Breaking:
    """A clock reading 1000.0, that raises at the reads numbered in ``breaks`` (1-based)."""

    def __init__(self, *breaks: int) -> None:
        self.reads = 0
        self.breaks = breaks

    def __call__(self) -> float:
        self.reads += 1
        if self.reads in self.breaks:
            raise RuntimeError("clock source unavailable")
        return 1000.0


@pytest.mark.parametrize("read", [2, 3], ids=["as-the-attempt-starts", "as-the-attempt-ends"])
def test_a_policy_clock_raising_during_a_watched_call_ends_every_span_and_runs_the_operation_once(read: int) -> None:
    """Read 1 starts the call, 2 the attempt, 3 ends it. The clock's error raised at read 3 left the attempt's span
    open (never exported) and counted as the attempt's failure: the Retry ran the operation again (its result
    lost), and a breaker would have counted a failure of the service. Then it was raised once the call had ended,
    still in place of the result. Now it is logged; the call returns its result, every span ended."""
    tel = InMemoryTelemetry()
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        return 1

    retry = so.Retry(attempts=3, initial=0.0, clock=_Breaking(read), **tel.providers)
    assert run_virtual(retry.call(operation)) == 1  # the operation ran: its result, never the clock's error
    assert runs == [1]
    assert sorted(s.name for s in tel.spans()) == ["attempt 1", "retry"]
    assert dict(tel.span("attempt 1").attributes or {})["shannon.attempt.outcome"] == "success"
    call = dict(tel.span("retry").attributes or {})
    assert (call["shannon.call.outcome"], call.get("error.type")) == ("success", None)
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_policy_clock_not_reading_seconds_as_a_call_starts_leaves_no_span_open() -> None:
    """The call's span, started for the call (its hooks asked first), was never ended when the clock's first
    reading was refused: the call was in no trace."""
    tel = InMemoryTelemetry()
    with pytest.raises(ValueError, match=r"^clock must return finite seconds, got nan"):
        run_virtual(so.Retry(clock=lambda: math.nan, **tel.providers).call(_one))
    with pytest.raises(RuntimeError, match=r"^clock source unavailable$"):
        run_virtual(so.Retry(clock=_Breaking(1), **tel.providers).call(_one))
    spans = tel.spans()
    assert [s.name for s in spans] == ["retry", "retry"]
    assert [dict(s.attributes or {})["error.type"] for s in spans] == ["ValueError", "RuntimeError"]


class _Settable:
    """A clock reading ``now``; once ``left`` is set, it raises at the reading after ``left`` more (once)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.left: int | None = None

    def __call__(self) -> float:
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                self.left = None
                raise RuntimeError("clock source unavailable")
        return self.now


# Readings of the probe's call: admission, its move to HALF_OPEN, then (timed) the call's start, its end; the
# untimed breaker's third is its move to CLOSED.
@pytest.mark.parametrize(("slow_call_s", "left"), [(None, 2), (5.0, 2), (5.0, 3)],
                         ids=["untimed-closing", "timed-starting", "timed-ending"])
def test_a_breaker_clock_raising_during_its_probe_leaves_it_admitting_the_next_probe(
    slow_call_s: float | None, left: int,
) -> None:
    """The probe's slot was never given back when the clock raised as the probe started or its result was recorded:
    HALF_OPEN for good, every later call rejected."""
    clock = _Settable()
    breaker = so.CircuitBreaker("probe-clock", failure_threshold=1, reset_timeout=10.0, slow_call_s=slow_call_s,
                                clock=clock, instrument=False)

    async def main() -> None:
        with contextlib.suppress(ValueError):
            await breaker.call(_fail)
        clock.now += 10.0
        clock.left = left
        if left == 2 and slow_call_s is not None:  # as the probe starts, before it runs: refused
            with pytest.raises(RuntimeError, match=r"^clock source unavailable$"):
                await breaker.call(_one)
        else:  # the probe has run: its result, uncounted (the clock cannot time it), never the clock's error
            assert await breaker.call(_one) == 1
        assert breaker.state is so.BreakerState.HALF_OPEN
        assert await breaker.call(_one) == 1
        assert breaker.state is so.BreakerState.CLOSED  # type: ignore[comparison-overlap]

    run_virtual(main())


@pytest.mark.parametrize("window_s", [None, 10.0], ids=["count-window", "time-window"])
def test_a_breaker_clock_reading_nan_mid_run_is_refused_naming_it(window_s: float | None) -> None:
    """A float reading was used as it was: a NaN one opened the breaker at NaN, after which every call was
    admitted (its reset timeout never counted); a time window raised "cannot convert float NaN to integer" once
    the call had run, its result lost."""
    clock = _Settable()
    breaker = so.CircuitBreaker("nan-clock", failure_threshold=1, window_s=window_s, clock=clock, instrument=False)
    ran: list[int] = []

    async def counted() -> int:
        ran.append(1)
        return 1

    async def main() -> None:
        clock.now = math.nan
        if window_s is None:  # read as the failure opens it, after the operation ran: its error, uncounted
            with pytest.raises(ValueError, match=r"^down$"):
                await breaker.call(_fail)
            assert breaker.state is so.BreakerState.CLOSED
        else:  # read as the call starts: refused before it runs
            with pytest.raises(ValueError, match=r"^clock must return finite seconds, got nan$"):
                await breaker.call(counted)
        assert ran == []
        clock.now = 1000.0
        with contextlib.suppress(ValueError):
            await breaker.call(_fail)
        with pytest.raises(so.CircuitOpenError):
            await breaker.call(_one)

    run_virtual(main())


def test_a_retry_budget_whose_clock_steps_back_counts_from_the_step_not_through_it() -> None:
    """Stepped back an hour after the first attempt, a retry with ``budget_s=10`` went on retrying for that hour
    (until its 1,000 attempts ran out): ``now - start`` stayed negative, as the breaker's reset timeout once did."""
    clock = FakeClock(10_000.0)
    runs: list[float] = []

    async def operation() -> None:
        runs.append(clock.now)
        if len(runs) == 1:
            clock.now -= 3600.0
        raise ValueError("down")

    retry = so.Retry(attempts=1000, budget_s=10.0, initial=1.0, multiplier=1.0, jitter="none", clock=clock,
                     sleep=clock.sleep, instrument=False)
    with pytest.raises(ValueError, match="down"):
        run_virtual(retry.call(operation))
    assert len(runs) == 11  # the first, then one a second for the 10 s counted from the step
    assert runs[-1] - runs[1] == 9.0


def test_a_last_good_value_whose_clock_steps_back_ages_from_the_step() -> None:
    """Stepped back a day after the value was stored, it was served at age 0 for that whole day, long past
    ``max_age=5``: its age counted from its own time, which the clock had not reached again."""
    clock = FakeClock(100_000.0)
    degrade = so.Degrade(last_good=True, max_age=5.0, on=ValueError, clock=clock, instrument=False)
    flaky = _good_once()

    async def main() -> None:
        assert (await degrade.call(flaky)).value == 1
        clock.now -= 86_400.0
        served = await degrade.call(flaky)
        assert served.degraded and served.age_s == 0.0
        clock.advance(6.0)
        with pytest.raises(ValueError, match="down"):
            await degrade.call(flaky)

    run_virtual(main())


@pytest.mark.parametrize(("started", "took"), [(956034.2718892494, 94.78280087844787),
                                               (605944.1656784625, 60.680566562350144)])
def test_a_call_taking_exactly_slow_call_s_on_virtual_time_is_slow(started: float, took: float) -> None:
    """``now - started`` rounded just under ``slow_call_s`` for about every other call that took exactly that long
    on the breaker's clock: counted not slow (the breaker stayed closed at a slow-call rate of 1.0)."""

    async def main() -> so.BreakerState:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.advance(started)
        breaker = so.CircuitBreaker("slow-edge", failure_threshold=None, slow_call_s=took, min_calls=1, window=1,
                                    clock=loop.time, instrument=False)

        async def operation() -> int:
            await asyncio.sleep(took)
            return 1

        assert await breaker.call(operation) == 1
        return breaker.state

    assert run_virtual(main()) is so.BreakerState.OPEN


def test_a_step_back_never_puts_an_older_last_good_value_over_a_newer_one() -> None:
    """One Degrade shared by event loops in two threads: serving a value after the clock stepped back wrote it back
    with the new time, over the newer value another thread had stored between the read and the write; the older
    value was then served, and counted as fresh."""
    degrade: so.Degrade

    async def newer() -> str:
        return "newer"

    def other_thread_stores_newer() -> float:
        thread = threading.Thread(target=lambda: asyncio.run(degrade.call(newer)))
        thread.start()
        thread.join()
        return 50.0  # the step back: earlier than the older value's 100

    # the readings in order (each call reads first as it starts): "older" stored; the failing call's read (meanwhile
    # the other thread's call starts and stores "newer" at 60); the last failing call's reads
    script: Iterator[Callable[[], float]] = iter([
        lambda: 100.0, lambda: 100.0, lambda: 100.0, other_thread_stores_newer, lambda: 60.0, lambda: 60.0,
        lambda: 70.0, lambda: 70.0,
    ])
    degrade = so.Degrade(last_good=True, on=ValueError, clock=lambda: next(script)(), instrument=False)
    outcomes = iter(["older"])

    async def flaky() -> str:
        value = next(outcomes, None)
        if value is None:
            raise ValueError("down")
        return value

    async def main() -> None:
        assert (await degrade.call(flaky)).value == "older"
        first = await degrade.call(flaky)  # read before the other thread stored: the older value, age 0
        assert (first.value, first.age_s) == ("older", 0.0)
        served = await degrade.call(flaky)
        assert (served.value, served.mode, served.age_s) == ("newer", "last_good", 10.0)

    asyncio.run(main())
