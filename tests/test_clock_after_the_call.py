"""A clock that fails once the operation has run (raises, reads NaN or an infinity) never costs its outcome.

A reading before anything runs is refused, naming ``clock`` (tests/test_clock_edges.py). One taken after the
operation ran is bookkeeping: a ``Degrade(last_good=True)`` stamping the value it keeps, a breaker recording the
result, a watched call timing its attempt. It raised ValueError ("clock must return finite seconds, got nan") or
the clock's own error in place of the user's result, or in place of the operation's error or of the last good
value to serve for it. Now the caller gets what the operation gave; every span still ends."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from _failing_clock import BAD_READINGS, FailingClock

import shannon_otel as so
from shannon_otel.testing import InMemoryTelemetry, run_virtual

_POLICIES: dict[str, Callable[..., Any]] = {
    "degrade-last-good": lambda c, **kw: so.Degrade(last_good=True, clock=c, **kw),
    "breaker-timed": lambda c, **kw: so.CircuitBreaker("timed", slow_call_s=5.0, clock=c, **kw),
    "breaker-time-window": lambda c, **kw: so.CircuitBreaker(
        "windowed", failure_threshold=None, failure_rate=0.5, min_calls=2, window_s=10.0, clock=c, **kw),
    "retry": lambda c, **kw: so.Retry(clock=c, **kw),
    "timeout": lambda c, **kw: so.Timeout(1.0, clock=c, **kw),
}


def _value(result: object) -> object:
    return result.value if isinstance(result, so.Served) else result


@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
@pytest.mark.parametrize("policy", list(_POLICIES))
def test_a_clock_failing_while_the_operation_runs_never_replaces_its_result(
    policy: str, bad: float | str, watched: bool,
) -> None:
    clock = FailingClock()
    tel = InMemoryTelemetry()
    made = _POLICIES[policy](clock, **(tel.providers if watched else {"instrument": False}))
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        clock.bad = bad
        return 42

    assert _value(run_virtual(made.call(operation))) == 42
    assert runs == [1]
    spans = tel.spans()
    assert all(s.end_time is not None for s in spans)
    if watched:
        assert dict(spans[-1].attributes or {}).get("error.type") is None


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_clock_failing_as_an_error_is_recorded_leaves_the_operations_error(bad: float | str) -> None:
    clock = FailingClock()
    breaker = so.CircuitBreaker("windowed", failure_threshold=None, failure_rate=0.5, min_calls=2, window_s=10.0,
                                clock=clock, instrument=False)

    async def operation() -> None:
        clock.bad = bad
        raise KeyError("down")

    with pytest.raises(KeyError, match="down"):
        run_virtual(breaker.call(operation))


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_last_good_value_with_no_max_age_is_served_when_the_clock_cannot_age_it(bad: float | str) -> None:
    """The clock's error was raised in place of the last good value (and of the operation's error)."""
    clock = FailingClock()
    degrade = so.Degrade(last_good=True, on=KeyError, clock=clock, instrument=False)

    async def good() -> int:
        return 42

    async def failing() -> int:
        clock.bad = bad
        raise KeyError("down")

    assert run_virtual(degrade.call(good)).value == 42
    served = run_virtual(degrade.call(failing))
    assert (served.value, served.degraded, served.mode, served.age_s) == (42, True, "last_good", None)


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_last_good_value_whose_age_cannot_be_read_is_not_served_past_max_age(bad: float | str) -> None:
    """With max_age, a value the clock cannot age is not served: the operation's own error is raised (or the next
    in line, the default, served), never the clock's."""
    clock = FailingClock()

    async def good() -> int:
        return 42

    async def failing() -> int:
        clock.bad = bad
        raise KeyError("down")

    degrade = so.Degrade(last_good=True, max_age=60.0, on=KeyError, clock=clock, instrument=False)
    run_virtual(degrade.call(good))
    with pytest.raises(KeyError, match="down"):
        run_virtual(degrade.call(failing))
    clock.bad = None
    with_default = so.Degrade(last_good=True, max_age=60.0, default=0, on=KeyError, clock=clock, instrument=False)
    run_virtual(with_default.call(good))
    assert run_virtual(with_default.call(failing)).mode == "static"


def test_a_value_stamped_by_a_failing_clock_is_aged_from_the_calls_start() -> None:
    """Stamped with the reading taken as the call started: older than it is, so never served past max_age."""
    clock = FailingClock()

    async def slow_then_bad() -> int:
        clock.now += 30.0  # the call took 30 s
        clock.bad = math.nan
        return 42

    async def failing() -> int:
        raise KeyError("down")

    degrade = so.Degrade(last_good=True, max_age=60.0, on=KeyError, clock=clock, instrument=False)
    assert run_virtual(degrade.call(slow_then_bad)).value == 42
    clock.bad = None
    clock.now += 20.0
    assert run_virtual(degrade.call(failing)).age_s == 50.0
    clock.now += 15.0
    with pytest.raises(KeyError):
        run_virtual(degrade.call(failing))


def test_a_clock_failing_at_the_start_of_a_call_is_refused_before_it_runs() -> None:
    clock = FailingClock()
    clock.bad = math.nan
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        return 1

    with pytest.raises(ValueError, match=r"^clock must return finite seconds, got nan$"):
        run_virtual(so.Degrade(last_good=True, clock=clock, instrument=False).call(operation))
    assert runs == []




@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_degrade_logs_each_clock_failure_after_the_operation_ran_watched_or_not(
    bad: float | str, watched: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """Like the breaker's, Retry's, a wave's and a saga's: a warning on the ``shannon_otel`` logger naming the
    Degrade, once per failed reading. Unwatched (``instrument=False``, no hook) it was silently ignored."""
    clock = FailingClock()
    tel = InMemoryTelemetry()
    degrade = so.Degrade(last_good=True, on=KeyError, clock=clock, name="prices",
                         **(tel.providers if watched else {"instrument": False}))

    async def good() -> int:
        return 42

    async def good_then_bad() -> int:
        clock.bad = bad
        return 42

    async def failing() -> int:
        clock.bad = bad
        raise KeyError("down")

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name.startswith("shannon_otel") and r.levelno == logging.WARNING
                and r.getMessage().startswith("the clock of degrade 'prices' failed")]

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert run_virtual(degrade.call(good_then_bad)).value == 42  # stored, stamped with the call's start
        assert warned() == ["the clock of degrade 'prices' failed as its result was stored; that value is stamped "
                            "with the call's start"]
        clock.bad = None
        run_virtual(degrade.call(good))
        assert len(warned()) == 1, "a clock that reads logs nothing"
        assert run_virtual(degrade.call(failing)).mode == "last_good"  # aged: unknown, served (no max_age)
        assert warned()[1:] == ["the clock of degrade 'prices' failed as a last good value was aged; it is served "
                                "only without max_age"]
    records = [r for r in caplog.records if r.getMessage().startswith("the clock of degrade")]
    if bad == "raise":
        assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in records)
