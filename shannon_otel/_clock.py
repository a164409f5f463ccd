"""The library's default clocks, in one place: every ``clock=`` parameter defaults to one of these.

``monotonic`` times durations and deadlines (executor, recovery policies); ``wall`` stamps
events users compare with other systems' times (the anomaly hook's samples). Tests pass their own
clock (``shannon_otel.testing.FakeClock``) or run on ``shannon_otel.testing.VirtualTimeLoop``.

A clock the user injects is read through :func:`seconds`, built once where it is given (a wave, a policy,
a saga, a logging hook), so every reading the library computes with is a builtin ``float``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

from ._validate import brief, check_reading

monotonic = time.perf_counter
wall = time.time


def wall_ns() -> int:
    """Now, in nanoseconds since the epoch, on the clock the OTel SDK stamps spans and span events with (its module's
    ``time_ns`` once it is loaded: a clock a test or a time-travel tool put there is the spans' clock), without
    importing the SDK. What an event told later than it happened is stamped with (``Degraded.time_ns``,
    ``RetryScheduled.time_ns``), and what a span of ours ends at (``_otel._end``)."""
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    return (time.time_ns if sdk is None else sdk.time_ns)()


# clocks known to read builtin floats: used as they are, so the default's hot path costs no extra call
_FLOAT_CLOCKS = (time.perf_counter, time.monotonic, time.time)


class Seconds:
    """An injected clock read as ``float`` seconds: what each wave, policy, saga and logging hook keeps in place
    of a clock that is not known to read floats (:func:`seconds`).

    A reading of another real type (``numpy.float32``, ``numpy.int64``, ``Fraction``, an int) is checked
    (:func:`~shannon_otel._validate.check_reading`: TypeError/ValueError naming ``clock``) and converted: such
    a reading made every duration, report field and event of that type, and the OTel SDK warns of and drops
    (or exports as a string) an attribute value that is no builtin number. A finite float reading is returned as
    it is; a NaN or infinite one is refused too (ValueError naming ``clock``), at every reading: passed on, it made
    a breaker's time window raise Python's "cannot convert float NaN to integer" after the call had run (its result
    lost), and a breaker whose transition read NaN admitted every call, its reset timeout never counted.
    Compares equal to, and shows as, the clock it reads, so the object holding it looks as it was given.
    """

    __slots__ = ("clock",)

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def __call__(self) -> float:
        now = self.clock()
        if type(now) is float and now - now == 0.0:  # finite (NaN - NaN and inf - inf are NaN)
            return now
        check_reading("clock", now)
        try:
            return float(now)
        except OverflowError:  # an int beyond the float range (it compared as finite)
            raise ValueError(f"clock must return finite seconds within the float range, got {brief(now)}") from None

    def __eq__(self, other: object) -> bool:
        return bool(self.clock == (other.clock if isinstance(other, Seconds) else other))

    def __hash__(self) -> int:
        return hash(self.clock)

    def __repr__(self) -> str:
        return repr(self.clock)

    def __reduce__(self) -> tuple[object, ...]:
        return (Seconds, (self.clock,))


def seconds(clock: Callable[[], float]) -> Callable[[], float]:
    """``clock`` read as float seconds: itself when it is known to read floats (the defaults, so their hot
    path costs nothing more) or is wrapped already, else a :class:`Seconds` reading it. Called once, where a
    checked clock is stored (``clock`` is a sync callable taking no argument)."""
    if isinstance(clock, Seconds) or any(clock is c for c in _FLOAT_CLOCKS):
        return clock
    return Seconds(clock)


# How far short of its deadline a sleep may end and be made up (see made_up), and in how many sleeps at most
EARLY = 0.005
_TURNS = 100


async def made_up(
    read: Callable[[], float | None], sleep: Callable[[float], Awaitable[None]], before: float, deadline: float,
) -> None:
    """After a sleep meant to last until ``deadline`` on a clock (``read`` from ``before``, when it began), sleep what
    it fell short, for what starts at a deadline and is checked against that clock: a breaker's reset timeout, a
    rate limit's schedule. An event loop's timers may fire early: uvloop's count whole milliseconds, so a sleep there
    ends up to ~1.5 ms short of ``time.monotonic``, and one under 0.5 ms does not wait at all (a retry waiting a
    breaker's ``retry_after_s`` was rejected again, a rate-limited task started ahead of its slot).

    Only a shortfall of at most :data:`EARLY` on a clock the sleep moved is made up, in at most ``_TURNS`` sleeps: a
    clock no sleep drives (a frozen fake clock, another clock's virtual time) is never waited for. ``read`` returns
    ``None`` for a reading it cannot use (nothing more is waited), or raises what the caller wants raised."""
    for _ in range(_TURNS):
        now = read()
        if now is None or not before < now < deadline or deadline - now > EARLY:
            return
        before = now
        await sleep(deadline - now)
