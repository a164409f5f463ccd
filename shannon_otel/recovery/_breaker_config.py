"""When a breaker opens and closes: :class:`BreakerConfig`, validated at construction."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TypedDict

from .._validate import brief, builtin_numbers, check_exceptions, check_number, shown

_Exceptions = type[BaseException] | tuple[type[BaseException], ...]


class BreakerSettings(TypedDict, total=False):
    """The keywords ``CircuitBreaker(name, **settings)`` and ``BreakerRegistry.get(name, **settings)`` pass on
    to :class:`BreakerConfig`: its fields, typed (a test keeps the two the same)."""

    failure_threshold: int | None
    failure_rate: float | None
    window: int
    window_s: float | None
    min_calls: int
    slow_call_s: float | None
    slow_call_rate: float
    half_open_probes: int
    success_threshold: int
    reset_timeout: float
    on: _Exceptions
    ignore: _Exceptions
    count: _Exceptions | None


_COUNT_DEPRECATED = (
    "BreakerConfig(count=...) / CircuitBreaker(count=...) is deprecated: use on= (which chooses exceptions "
    "in every policy); count= goes in the next release"
)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a breaker opens and closes. Validated at construction; immutable.

    Opens (from CLOSED) when, over the rolling window, ``failures >= failure_threshold``, or, once
    the window holds ``min_calls`` calls, ``failures / calls >= failure_rate`` or
    ``slow calls / calls >= slow_call_rate`` (a call is slow when it takes ``>= slow_call_s``).
    The window is the last ``window`` calls, or the last ``window_s`` seconds (>= 1e-6) when that is set, kept
    in 10 slices of ``window_s / 10`` dropped whole: a call leaves it between 0.9 x and 1 x ``window_s`` after it
    ended (as resilience4j's time-based window drops whole one-second buckets).
    With a count window and a rate set, ``min_calls <= window`` is required (ValueError otherwise:
    the window could never hold ``min_calls`` calls, so the rate could never open the breaker); so is
    ``failure_threshold <= window`` (the window never holds more failures than that).
    After ``reset_timeout`` seconds OPEN admits up to ``half_open_probes`` probe calls (HALF_OPEN);
    ``success_threshold`` successful probes close it, a failed or slow probe re-opens it, and a
    cancelled or ignored probe gives its slot back. Exceptions that are instances of ``on`` and
    not of ``ignore`` count as failures; other errors and cancellation are not counted. ``count`` is
    the deprecated old name of ``on`` (DeprecationWarning; removed in the next release).
    """

    failure_threshold: int | None = 5
    failure_rate: float | None = None
    window: int = 100
    window_s: float | None = None
    min_calls: int = 10
    slow_call_s: float | None = None
    slow_call_rate: float = 1.0
    half_open_probes: int = 1
    success_threshold: int = 1
    reset_timeout: float = 30.0
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ignore: type[BaseException] | tuple[type[BaseException], ...] = ()
    count: type[BaseException] | tuple[type[BaseException], ...] | None = field(
        default=None, repr=False, compare=False,
    )

    def __post_init__(self) -> None:
        if self.count is not None:
            warnings.warn(_COUNT_DEPRECATED, DeprecationWarning, stacklevel=3)
            if self.on is not Exception:
                raise TypeError("pass on only (count is its deprecated old name)")
            check_exceptions("count", self.count)
            object.__setattr__(self, "on", self.count)
            object.__setattr__(self, "count", None)
        check_number("failure_threshold", self.failure_threshold, low=1, integer=True, allow_none=True)
        check_number("failure_rate", self.failure_rate, low=0, high=1, low_open=True, allow_none=True)
        if self.failure_threshold is None and self.failure_rate is None and self.slow_call_s is None:
            raise ValueError("set at least one of failure_threshold, failure_rate or slow_call_s")
        check_number("window", self.window, low=1, integer=True)
        # >= 1 us: the window is kept in 10 time slices indexed by clock() / slice width, which a
        # subnormal window_s made a division by zero (and one under ~1e-305 s an int(inf)) at the call
        check_number("window_s", self.window_s, low=1e-6, allow_none=True)
        check_number("min_calls", self.min_calls, low=1, integer=True)
        check_number("slow_call_s", self.slow_call_s, low=0, low_open=True, allow_none=True)
        check_number("slow_call_rate", self.slow_call_rate, low=0, high=1, low_open=True)
        check_number("half_open_probes", self.half_open_probes, low=1, integer=True)
        check_number("success_threshold", self.success_threshold, low=1, integer=True)
        if self.success_threshold > self.half_open_probes:  # said "must be in [1, 1]", naming no half_open_probes
            raise ValueError(
                f"success_threshold must be in [1, {self.half_open_probes}] (at most half_open_probes, the probes a "
                f"half-open breaker admits; raise half_open_probes too), got {brief(self.success_threshold)}"
            )
        check_number("reset_timeout", self.reset_timeout, low=0)
        builtin_numbers(self, "failure_threshold", "failure_rate", "window", "window_s", "min_calls", "slow_call_s",
                        "slow_call_rate", "half_open_probes", "success_threshold", "reset_timeout")
        if (self.window_s is None and self.min_calls > self.window
                and (self.failure_rate is not None or self.slow_call_s is not None)):
            # A count window never holds more than `window` calls: the rates could never be evaluated.
            raise ValueError(
                f"min_calls ({shown(self.min_calls)}) must be <= window ({self.window}) when failure_rate or "
                "slow_call_s is set with a count window: the window never holds min_calls calls, so the "
                f"breaker could never open on a rate; pass min_calls=<= {self.window} or a larger window"
            )
        if self.window_s is None and self.failure_threshold is not None and self.failure_threshold > self.window:
            # A count window never holds more than `window` failures: the threshold could never be reached.
            raise ValueError(
                f"failure_threshold ({shown(self.failure_threshold)}) must be <= window ({self.window}) with a count "
                "window: the window never holds more failures than calls, so the breaker could never open on "
                f"the threshold; pass failure_threshold=<= {self.window} or a larger window"
            )
        object.__setattr__(self, "on", check_exceptions("on", self.on, handled=True))
        object.__setattr__(self, "ignore", check_exceptions("ignore", self.ignore))
