"""The policies' settings checked at construction, naming the parameter and the allowed range: non-finite
and huge numbers, windows too short or too large, exceptions no policy handles, unhashable keys."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import pytest

from shannon_otel import BreakerConfig, CircuitBreaker, Degrade, Fallback, Hedge, Retry, Saga, Timeout, Wave
from shannon_otel.testing import run_virtual


@pytest.mark.parametrize(("param", "settings"), [
    ("initial", {"initial": math.inf, "maximum": math.inf}),
    ("maximum", {"maximum": math.inf}),
    ("multiplier", {"multiplier": math.inf}),
])
def test_a_retry_refuses_non_finite_backoff_settings_naming_the_parameter(
    param: str, settings: dict[str, float],
) -> None:
    """They were accepted: maximum=inf let a backoff (or an inf Retry-After, which maximum is documented to
    cap) sleep forever, and initial=0 with multiplier=inf waited ``maximum`` (0 x inf is NaN) instead of 0."""
    with pytest.raises(ValueError, match=f"^{param} must be finite"):
        Retry(**settings)  # type: ignore[arg-type]


def test_a_breaker_with_a_huge_count_window_is_built_and_counts_calls_without_preallocating_it() -> None:
    """window=10**12 raised MemoryError at construction (and every transition re-allocated the ring)."""

    async def fail() -> None:
        raise ValueError("down")

    async def main() -> None:
        breaker = CircuitBreaker("huge-window", window=10**12, failure_threshold=None, failure_rate=0.5,
                                 min_calls=4, instrument=False)
        for _ in range(4):
            with contextlib.suppress(ValueError):
                await breaker.call(fail)
        assert breaker.state.value == "open"

    run_virtual(main())


async def _served(error: Exception) -> str:
    return "served"


@pytest.mark.parametrize("build", [
    lambda on: Retry(on=on),
    lambda on: Fallback(_served, on=on),
    lambda on: Degrade(default=0, on=on),
    lambda on: CircuitBreaker("on-check", on=on),
])
@pytest.mark.parametrize("on", [asyncio.CancelledError, (ValueError, KeyboardInterrupt), GeneratorExit])
def test_on_naming_an_exception_no_policy_ever_handles_is_refused(build: Callable[[Any], object], on: Any) -> None:
    """on=asyncio.CancelledError was accepted and silently did nothing: only Exception subclasses are
    ever retried, counted, or served (cancellation is an outcome, never an error)."""
    with pytest.raises(TypeError, match=r"^on .*Exception"):
        build(on)


def test_a_degrade_key_returning_an_unhashable_value_is_refused_before_the_operation_runs() -> None:
    """The operation ran (its side effects happened), then storing its last good value raised
    Python's "unhashable type: 'list'": the caller lost the result it had produced."""
    calls: list[list[int]] = []

    async def total(ids: list[int]) -> int:
        calls.append(ids)
        return sum(ids)

    degrade = Degrade(last_good=True, key=lambda args, kwargs: args[0], instrument=False)
    with pytest.raises(TypeError, match=r"^key must return a hashable value"):
        run_virtual(degrade.call(total, [1, 2]))
    assert calls == []


# ------------------------------------------------------------------ numbers beyond the float range
@pytest.mark.parametrize(("build", "name"), [
    (lambda v: Timeout(v), "seconds"),
    (lambda v: Retry(budget_s=v), "budget_s"),
    (lambda v: Retry(maximum=v), "maximum"),
    (lambda v: Hedge(v), "delay"),
    (lambda v: Wave("w", task_timeout=v), "task_timeout"),
    (lambda v: Wave("w", rate_limit=v), "rate_limit"),
    (lambda v: BreakerConfig(reset_timeout=v), "reset_timeout"),
    (lambda v: Saga("s", compensation_timeout_s=v), "compensation_timeout_s"),
    (lambda v: Degrade(last_good=True, max_age=v), "max_age"),
])
def test_an_int_beyond_the_float_range_is_refused_naming_the_parameter(
    build: Callable[[Any], object], name: str,
) -> None:
    """``Timeout(10**400)`` raised OverflowError ("int too large to convert to float") from the check itself."""
    with pytest.raises(ValueError, match=f"^{name} must be in .* within the float range"):
        build(10**400)


@pytest.mark.parametrize(("build", "name"), [
    (lambda v: Retry(attempts=v), "attempts"),
    (lambda v: Hedge(0.1, attempts=v), "attempts"),
    (lambda v: Wave("w", max_concurrency=v), "max_concurrency"),
    (lambda v: BreakerConfig(window=v), "window"),
])
def test_huge_ints_are_checked_exactly(build: Callable[[Any], object], name: str) -> None:
    """A huge count is a valid count (compared exactly), a huge negative one is refused by name, even one
    too long for ``str()`` (over 4,300 digits), which raised its own unrelated ValueError."""
    build(10**400)
    with pytest.raises(ValueError, match=f"^{name} must be in .*got an int of 16610 bits"):
        build(-(10**5000))


# ------------------------------------------------------------------ subnormal rates and windows
def test_a_rate_limit_so_small_that_its_interval_overflows_still_limits() -> None:
    """``rate_limit=1e-320``: 1/rate is inf, and the GCRA tolerance (burst - 1) * inf was 0 * inf = NaN,
    so every wait compared with NaN was no wait: every task started at once, no limit at all."""
    started: list[float] = []

    async def work() -> None:
        started.append(asyncio.get_running_loop().time())

    async def main() -> None:
        wave: Wave[None] = Wave("w", rate_limit=1e-320, clock=asyncio.get_running_loop().time, instrument=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3600.0):
                await wave.run([work, work, work])

    run_virtual(main())
    assert started == [0.0]  # the next start is 1e320 s later


def test_a_time_window_too_short_to_slice_is_refused_at_construction() -> None:
    """``window_s=5e-324`` was accepted; the breaker's first call raised ZeroDivisionError (its 10 time
    slices were 0 s wide)."""
    with pytest.raises(ValueError, match=r"^window_s must be in \[1e-06, inf\], got 5e-324"):
        CircuitBreaker("tiny-window", window_s=5e-324)


def test_a_failure_threshold_a_count_window_can_never_hold_is_refused() -> None:
    """``CircuitBreaker(failure_threshold=5, window=3)`` was accepted and could never open: a window of
    the last 3 calls never holds 5 failures."""
    with pytest.raises(ValueError, match=r"^failure_threshold \(5\) must be <= window \(3\)"):
        CircuitBreaker("never-opens", failure_threshold=5, window=3)
    CircuitBreaker("time-window", failure_threshold=5, window=3, window_s=10.0)  # a time window holds any number
