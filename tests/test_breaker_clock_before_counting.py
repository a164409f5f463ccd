"""A breaker whose clock fails (raises, reads NaN or an infinity) as a result is recorded leaves that result
uncounted, as its warning says: the clock is read before the result changes anything.

An untimed breaker reads its clock only for a transition. Read there, after the window (and a shared breaker's
counts for Redis) had taken the result, a failing reading left the result counted while the warning said "that
result is not counted": the next call, a success too, opened the breaker."""

from __future__ import annotations

import logging
import math

import pytest
from _failing_clock import BAD_READINGS, FailingClock

import shannon_otel as so
from shannon_otel.testing import run_virtual


async def _ok() -> str:
    return "ok"


async def _down() -> None:
    raise ConnectionError("down")


def _unclocked(clock: FailingClock, bad: float | str, outcome: str) -> object:
    """An operation that breaks the clock as it ends (its result is recorded on the broken clock)."""

    async def operation() -> str:
        clock.bad = bad
        if outcome == "failure":
            raise ConnectionError("down")
        return "ok"

    return operation


def _call(breaker: so.CircuitBreaker, operation: object, clock: FailingClock) -> str:
    try:
        return str(run_virtual(breaker.call(operation)))  # type: ignore[arg-type]
    except ConnectionError:
        return "failure"
    finally:
        clock.bad = None


def _warned(caplog: pytest.LogCaptureFixture) -> int:
    return sum("that result is not counted" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_failure_that_would_open_the_breaker_is_not_counted_when_the_clock_fails(
    bad: float | str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: the second failure went into the window, the transition's clock failed: CLOSED with two failures
    of two in the window, and the next call (a success) opened the breaker."""
    clock = FailingClock()
    breaker = so.CircuitBreaker("b", failure_threshold=2, clock=clock, instrument=False)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert _call(breaker, _down, clock) == "failure"
        assert _call(breaker, _unclocked(clock, bad, "failure"), clock) == "failure"
    assert _warned(caplog) == 1
    assert breaker.state is so.BreakerState.CLOSED
    assert _call(breaker, _ok, clock) == "ok"
    assert breaker.state is so.BreakerState.CLOSED  # the uncounted failure does not open it
    assert _call(breaker, _down, clock) == "failure"  # a second counted one does
    assert breaker.state is so.BreakerState.OPEN  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_success_that_would_open_the_breaker_is_not_counted_when_the_clock_fails(
    bad: float | str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A success completing min_calls with the failure rate reached opens the breaker; its clock failing left
    it in the window (the rate diluted: 1 of 3 where the breaker had counted 1 of 2)."""
    clock = FailingClock()
    breaker = so.CircuitBreaker("b", failure_threshold=None, failure_rate=0.5, min_calls=2, window=4, clock=clock,
                                instrument=False)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert _call(breaker, _down, clock) == "failure"
        assert _call(breaker, _unclocked(clock, bad, "success"), clock) == "ok"
    assert _warned(caplog) == 1
    assert breaker.state is so.BreakerState.CLOSED
    assert _call(breaker, _ok, clock) == "ok"  # 1 failure of 2 counted calls: opens
    assert breaker.state is so.BreakerState.OPEN  # type: ignore[comparison-overlap]


def test_an_untimed_breaker_reads_its_clock_only_for_a_result_that_could_open_it() -> None:
    """The hot path stays free of clock readings: a failure below the threshold, a success with no failure
    in the window, read nothing; the failure that opens it reads once (the transition's time)."""
    reads: list[float] = []

    def clock() -> float:
        reads.append(1.0)
        return 1.0

    breaker = so.CircuitBreaker("b", failure_threshold=3, window=5, clock=clock, instrument=False)
    plain = FailingClock()
    for operation in (_ok, _ok, _down, _ok, _down):
        _call(breaker, operation, plain)
    assert (reads, breaker.state) == ([], so.BreakerState.CLOSED)
    _call(breaker, _down, plain)
    assert (reads, breaker.state) == ([1.0], so.BreakerState.OPEN)


def test_a_timed_breaker_opens_on_the_reading_that_timed_the_result() -> None:
    """Bug: a timed breaker read its clock to time the result, recorded it, then read it again for the transition;
    that second reading failing left the failure counted (CLOSED, two failures in the window) under a warning
    that said it was not. One reading now times the result and the transition."""
    readings = iter([1000.0, 1000.0, 1001.0, 1001.0])  # two calls: each started and recorded

    def clock() -> float:
        return next(readings, math.nan)  # a third reading of the second result fails

    breaker = so.CircuitBreaker("b", failure_threshold=2, slow_call_s=5.0, clock=clock, instrument=False)
    plain = FailingClock()
    assert (_call(breaker, _down, plain), _call(breaker, _down, plain)) == ("failure", "failure")
    assert breaker.state is so.BreakerState.OPEN
