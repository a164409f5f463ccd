"""One breaker's transitions over a whole run, counted as they come: :class:`BreakerCount` (live, O(1) per
transition) and the :class:`BreakerTally` it freezes into for a :class:`~shannon_otel.RunReport`.

The recorder keeps only the newest 1,000 transitions themselves (bounded memory for long runs), so what the
run report and the CLI count of a breaker (its transitions, openings, failed probes, outages) is counted
here from every one of them: counted from the kept ones, a breaker that changed state 1,400 times read
"1000 transitions", "opened 500 times", and an outage measured from the first kept transition.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .._events import BreakerTransition
from .._telemetry import BreakerState

__all__ = ["MEDIAN_OF", "BreakerCount", "BreakerTally"]

MEDIAN_OF = 100  # newest finished outages whose durations the median is taken over (a full tally: ~5 KB)


@dataclass(frozen=True, slots=True)
class BreakerTally:
    """What a run saw of one breaker, counted over every transition it heard.

    ``moves`` counts transitions by ``"from->to"`` (state values); ``opens`` those into ``open``, ``reopens``
    those ``half_open -> open`` (failed probes). An outage runs from a transition out of ``closed`` to the next
    one into ``closed``: ``outages`` counts those that ended, ``longest_s`` is the longest of them and
    ``median_s`` the median of the newest 100 (both NaN when none ended). ``open_for_s`` is how long an outage
    not over at the breaker's last transition had lasted then (a lower bound of its length), else ``None``.
    Measured on the breaker's clock: one that went back between two transitions (an injected wall clock
    stepped) moves the outage's start back with it, so a duration is never negative (the time between the
    last transition before the step and the first after it is not counted).
    """

    breaker: str
    moves: Mapping[str, int] = field(default_factory=dict)
    opens: int = 0
    reopens: int = 0
    outages: int = 0
    longest_s: float = float("nan")
    median_s: float = float("nan")
    open_for_s: float | None = None

    @property
    def transitions(self) -> int:
        """How many transitions the breaker made."""
        return sum(self.moves.values())


class BreakerCount:
    """A breaker's live tally: :meth:`add` each transition (O(1)), :meth:`tally` for the report. Not locked:
    the recorder calls it under its own lock."""

    __slots__ = ("_durations", "_last", "_longest", "_moves", "_outages", "_start", "breaker", "opens", "reopens")

    def __init__(self, breaker: str) -> None:
        self.breaker = breaker
        self.opens = 0
        self.reopens = 0
        self._moves: Counter[str] = Counter()
        self._outages = 0
        self._longest = float("nan")
        self._durations: deque[float] = deque(maxlen=MEDIAN_OF)
        self._start: float | None = None  # when the outage in progress began
        self._last = 0.0  # the time of the latest transition

    def add(self, event: BreakerTransition) -> None:
        self._moves[f"{event.from_state.value}->{event.to_state.value}"] += 1
        if self._start is not None and event.time < self._last:
            # The breaker's clock went back (an injected wall clock stepped by NTP or an operator): the outage's
            # start goes back with it, so the time up to the step still counts and no outage is negative (a
            # breaker open 30 s across a 1 h step back read "a -3570000.0 ms outage").
            self._start -= self._last - event.time
        self._last = event.time
        if event.to_state is BreakerState.OPEN:
            self.opens += 1
            if event.from_state is BreakerState.HALF_OPEN:
                self.reopens += 1
        if self._start is None and event.to_state is not BreakerState.CLOSED:
            self._start = event.time
        elif self._start is not None and event.to_state is BreakerState.CLOSED:
            duration = event.time - self._start
            self._start = None
            self._outages += 1
            self._durations.append(duration)
            if not duration <= self._longest:  # the first one too (NaN)
                self._longest = duration

    def tally(self) -> BreakerTally:
        return BreakerTally(
            self.breaker, dict(self._moves), self.opens, self.reopens, self._outages, self._longest,
            statistics.median(self._durations) if self._durations else float("nan"),
            None if self._start is None else self._last - self._start,
        )

    @classmethod
    def of(cls, breaker: str, events: Iterable[BreakerTransition]) -> BreakerTally:
        """The tally of ``breaker``'s transitions among ``events`` (a run report built without tallies)."""
        count = cls(breaker)
        for event in events:
            if event.breaker == breaker:
                count.add(event)
        return count.tally()
