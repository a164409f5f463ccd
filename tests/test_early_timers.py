"""What starts at a deadline waits for it on an event loop whose timers fire early: a ``Retry(wait_retry_after=True)``
reaches the breaker's reset timeout, a rate-limited wave starts no task ahead of its slot.

uvloop's timers count whole milliseconds: ``asyncio.sleep(d)`` there ends up to ~1.5 ms before ``d`` has passed on
``time.monotonic`` (the breaker's clock), and a sleep under 0.5 ms does not wait at all. A retry that slept a
rejection's ``retry_after_s`` then found the breaker still open (for a fraction of a millisecond) and was rejected
again: measured on uvloop, one wait in eight; with the default ``attempts=3`` one call in twenty got a
``CircuitOpenError`` although it had waited as told. The retry now makes up a sleep that ended just short of that
wait on its clock. Modelled here with an injected sleep that ends 0.4 ms early on a ``FakeClock`` both policies read.
A rate-limited wave's tasks likewise started up to 0.8 ms ahead of their slots on uvloop (measured), so more than
``burst + rate * t`` started in some ``t`` seconds; the limiter makes up its sleep the same way.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import shannon_otel as so
from shannon_otel.testing import FakeClock, run_virtual


class EarlySleep:
    """A sleep on ``clock`` that ends ``short`` seconds early when asked for more than that, as a millisecond timer
    does; shorter sleeps are exact."""

    def __init__(self, clock: FakeClock, short: float) -> None:
        self.clock = clock
        self.short = short
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds - self.short if seconds > 2 * self.short else seconds)


async def _fail() -> None:
    raise ConnectionError("down")


def _breaker_opened(clock: FakeClock) -> so.CircuitBreaker:
    breaker = so.CircuitBreaker("early", failure_threshold=1, reset_timeout=0.25, clock=clock, instrument=False)

    async def open_it() -> None:
        with contextlib.suppress(ConnectionError):
            await breaker.call(_fail)

    run_virtual(open_it())
    return breaker


@pytest.mark.parametrize("instrument", [False, True], ids=["bare", "watched"])
def test_a_retry_waiting_retry_after_on_a_loop_whose_timers_fire_early_is_not_rejected_again(instrument: bool) -> None:
    clock = FakeClock()
    breaker = _breaker_opened(clock)
    sleep = EarlySleep(clock, short=0.0004)
    runs = 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        return "ok"

    retry = so.Retry(attempts=2, wait_retry_after=True, clock=clock, sleep=sleep, instrument=instrument)
    assert run_virtual(retry.call(breaker.call, work)) == "ok"
    assert runs == 1
    assert sleep.slept == [pytest.approx(0.25), pytest.approx(0.0004)]  # the wait, then what it fell short
    assert breaker.state is so.BreakerState.CLOSED


def test_a_clock_the_sleep_does_not_move_is_not_waited_for() -> None:
    """A retry whose clock no sleep moves (a frozen fake clock, another clock's virtual time) sleeps the wait once,
    as before: it never waits for that clock. The breaker, on that frozen clock, rejects every attempt."""
    clock = FakeClock()
    breaker = _breaker_opened(clock)
    slept: list[float] = []

    async def instant(seconds: float) -> None:
        slept.append(seconds)

    retry = so.Retry(attempts=3, wait_retry_after=True, clock=clock, sleep=instant, instrument=False)
    with pytest.raises(so.CircuitOpenError):
        run_virtual(retry.call(breaker.call, _fail))
    assert slept == [pytest.approx(0.25), pytest.approx(0.25)]


def test_a_backoff_wait_is_slept_once() -> None:
    """Only a breaker's retry_after_s is made up: a backoff is a pause, not a deadline."""
    clock = FakeClock()
    sleep = EarlySleep(clock, short=0.0004)
    retry = so.Retry(attempts=2, initial=0.25, maximum=0.25, jitter="none", clock=clock, sleep=sleep, instrument=False)
    with pytest.raises(ConnectionError):
        run_virtual(retry.call(_fail))
    assert sleep.slept == [0.25]


def test_a_rate_limited_wave_on_a_loop_whose_timers_fire_early_starts_no_task_ahead_of_its_slot() -> None:
    async def main() -> list[float]:
        clock = asyncio.get_running_loop().time
        starts: list[float] = []

        async def early(seconds: float) -> None:  # a millisecond timer: ends 0.4 ms short of longer sleeps
            await asyncio.sleep(seconds - 0.0004 if seconds > 0.0008 else seconds)

        async def work() -> None:
            starts.append(clock())

        wave = so.Wave("early", max_concurrency=2, rate_limit=10, burst=1, clock=clock, sleep=early, instrument=False)
        await wave.run([work for _ in range(6)])
        return starts

    starts = sorted(run_virtual(main()))
    first = starts[0]
    assert starts == [pytest.approx(first + k / 10, abs=1e-9) for k in range(6)]
    assert all(start >= first + k / 10 - 1e-9 for k, start in enumerate(starts))
