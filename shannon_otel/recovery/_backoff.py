"""Exponential backoff with jitter, as pure functions of the attempt number and a random source."""

from __future__ import annotations

import numbers
import random as _random
from collections.abc import Callable
from enum import StrEnum
from typing import Literal, cast

from .._validate import brief, check_sync_callable, sync_result
from ._decorated import NotSyncError

RandomSource = _random.Random | Callable[[], float]


class TestingMode:
    """The switch behind :func:`shannon_otel.testing.set_testing`: while ``on``, every ``Retry``
    waits zero seconds between attempts and makes at most ``attempts`` attempts (``None``: its own).

    Process-wide on purpose (like stamina's): it is for a user's test suite, flipped by a fixture.
    Read only on the retry path, so calls that succeed first time never look at it.
    """

    __slots__ = ("attempts", "on")
    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.on = False
        self.attempts: int | None = None


TESTING = TestingMode()


class Jitter(StrEnum):
    """How a backoff delay is randomised (AWS architecture blog "Exponential Backoff And Jitter").

    ``none``: ``base``; ``full``: uniform in ``[0, base]``; ``equal``: ``base/2`` plus uniform in
    ``[0, base/2]``; ``decorrelated``: uniform in ``[initial, 3 x previous delay]``, capped.
    """

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"


# What ``Retry(jitter=...)`` takes besides a Jitter: its values, so a type checker refuses a misspelt one as the
# constructor does (ValueError); typed `str`, `jitter="ful"` type-checked.
JitterName = Literal["none", "full", "equal", "decorrelated"]


def parse_jitter(value: object) -> Jitter:
    try:
        if isinstance(value, str):
            return Jitter(value)
    except ValueError:
        pass
    allowed = ", ".join(repr(j.value) for j in Jitter)
    raise ValueError(f"jitter must be one of {allowed}, got {value!r}")


def uniform_source(source: RandomSource | None) -> Callable[[], float]:
    """A zero-argument callable returning floats in ``[0, 1]`` (``random.random``'s ``[0, 1)``; 1.0: the full
    backoff)."""
    if source is None:
        return _random.random
    if isinstance(source, _random.Random):
        return source.random
    if callable(source):
        check_sync_callable("random", source, "a random.Random or a callable returning a number in [0, 1]", takes=0)
        return source
    raise TypeError(f"random must be a random.Random or a callable returning a number in [0, 1], got {source!r}")


def delay(jitter: Jitter, attempt: int, previous: float, initial: float, maximum: float,
          multiplier: float, rand: Callable[[], float]) -> float:
    """The delay before attempt ``attempt + 1`` after attempt ``attempt`` (1-based) failed."""
    if jitter is Jitter.DECORRELATED:
        high = min(maximum, max(initial, previous * 3.0))
        return initial + (high - initial) * _unit(rand)
    try:
        # float(): an int multiplier (multiplier=2) raised to n was an exact int of n bits, made anew at each retry:
        # a retry with unbounded attempts spent 0.3 s of CPU at attempt 10**7, holding the event loop, and more after
        base = min(maximum, initial * float(multiplier) ** (attempt - 1))
    except OverflowError:  # multiplier ** n beyond the float range (attempt 1025 at 2.0): 0 x it is still 0
        base = maximum if initial else 0.0
    if jitter is Jitter.FULL:
        return base * _unit(rand)
    if jitter is Jitter.EQUAL:
        return base / 2.0 + base / 2.0 * _unit(rand)
    # float: with int settings (initial=1, multiplier=2) the delay was an int, slept and reported as one (the span
    # event's shannon.retry.delay an OTLP int, a double for every other retry)
    return float(base)


def _unit(rand: Callable[[], float]) -> float:
    value: object = sync_result("random", rand(), NotSyncError)  # a lambda returning a coroutine: named, closed
    # a str or None raised Python's bare "'<=' not supported" in place of the user's error; a numpy
    # float32 was slept and reported as one
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"random (the jitter source) must return a number in [0, 1], got {brief(value)}")
    unit = cast("float", value)
    if not 0.0 <= unit <= 1.0:
        raise ValueError(f"random (the jitter source) must return values in [0, 1], got {brief(value)}")
    return float(unit)
