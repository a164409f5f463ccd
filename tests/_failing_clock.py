"""A clock that starts failing on demand, and the ways a reading can fail, for the tests of what a policy or a
wave does with a clock that breaks once user code has run (test_clock_after_the_call, test_clock_later_readings,
test_breaker_clock_before_counting)."""

from __future__ import annotations

import math


class FailingClock:
    """Reads ``now``; once ``bad`` is set, reads it instead (or raises, for "raise")."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.bad: float | str | None = None

    def __call__(self) -> float:
        if self.bad == "raise":
            raise RuntimeError("clock source unavailable")
        return self.now if self.bad is None else float(self.bad)


#: The failing readings: NaN, either infinity, and an error raised by the clock.
BAD_READINGS: list[float | str] = [math.nan, math.inf, -math.inf, "raise"]
