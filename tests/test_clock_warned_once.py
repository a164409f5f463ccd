"""A watched policy call whose clock fails once the operation has run logs one warning, as an unwatched one does.

The policy logged what it did about the failure (a breaker's result left uncounted, a retry budget that cannot be
checked, a last good value stamped with the call's start), and the watched call's end logged the same failure of the
same clock again ("durations it could not time are reported as 0"): two warnings for one failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from _failing_clock import BAD_READINGS, FailingClock

import shannon_otel as so
from shannon_otel.testing import InMemoryTelemetry, run_virtual

_POLICIES: dict[str, tuple[Callable[..., Any], bool]] = {  # name: (make it, whether the operation fails)
    "breaker-success": (lambda c, **kw: so.CircuitBreaker("b", slow_call_s=5.0, clock=c, **kw), False),
    "breaker-failure": (lambda c, **kw: so.CircuitBreaker("b", failure_threshold=1, clock=c, **kw), True),
    "retry-budget": (lambda c, **kw: so.Retry(attempts=3, budget_s=60.0, initial=0.0, on=KeyError, clock=c, **kw),
                     True),
    "degrade-last-good": (lambda c, **kw: so.Degrade(last_good=True, on=KeyError, clock=c, name="d", **kw), False),
}


@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
@pytest.mark.parametrize("policy", list(_POLICIES))
def test_a_clock_failing_after_the_operation_ran_is_logged_once_per_call(
    policy: str, bad: float | str, watched: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    make, fails = _POLICIES[policy]
    clock = FailingClock()
    tel = InMemoryTelemetry()
    p = make(clock, **(tel.providers if watched else {"instrument": False}))

    async def operation() -> int:
        clock.bad = bad  # every reading from now on fails
        if fails:
            raise KeyError("down")
        return 42

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        if fails:
            with pytest.raises(KeyError, match="down"):
                run_virtual(p.call(operation))
        else:
            result = run_virtual(p.call(operation))
            assert (result if isinstance(result, int) else result.value) == 42
    warned = [r.getMessage() for r in caplog.records
              if r.name.startswith("shannon_otel") and r.levelno == logging.WARNING and "clock" in r.getMessage()]
    assert len(warned) == 1, warned
    assert all(s.end_time is not None for s in tel.spans())
