"""Rolling windows of call results for the circuit breaker, O(1) per recorded call.

Each call is recorded as flags: ``FAILED`` (1) and/or ``SLOW`` (2). The windows keep running
sums (calls, failures, slow calls) and update them on entry and eviction, never re-scanning.
"""

from __future__ import annotations

from typing import Final

FAILED: Final = 1
SLOW: Final = 2


class CountWindow:
    """The last ``size`` calls, in a ring buffer (grown as calls come, never allocated up front: a huge
    ``size`` costs only the calls recorded)."""

    __slots__ = ("_bad", "_pos", "_ring", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.reset()

    def reset(self) -> None:
        self._ring: list[int] = []
        self._pos = 0
        self._bad = 0  # entries with any flag set
        self.calls = 0
        self.failures = 0
        self.slow = 0

    @property
    def clean(self) -> bool:
        """Full, and every entry a plain success: recording another success changes nothing."""
        return not self._bad and self.calls == self.size

    def record(self, flags: int, now: float) -> None:
        # A full window holding only plain successes is unchanged by another success.
        if not flags and not self._bad and self.calls == self.size:
            return
        pos = self._pos
        if self.calls == self.size:
            old = self._ring[pos]
            if old:
                self._bad -= 1
                self.failures -= old & FAILED
                self.slow -= old >> 1
            self._ring[pos] = flags
        else:  # not full yet: pos is the ring's length
            self.calls += 1
            self._ring.append(flags)
        if flags:
            self._bad += 1
            self.failures += flags & FAILED
            self.slow += flags >> 1
        pos += 1
        self._pos = 0 if pos == self.size else pos


class TimeWindow:
    """The calls of the last ``seconds``, in ``buckets`` time slices (old slices are dropped whole)."""

    __slots__ = ("_calls", "_failures", "_head", "_slow", "_width", "buckets", "calls", "failures", "slow")

    def __init__(self, seconds: float, buckets: int = 10) -> None:
        self.buckets = buckets
        self._width = seconds / buckets
        self.reset()

    def reset(self) -> None:
        self._calls = [0] * self.buckets
        self._failures = [0] * self.buckets
        self._slow = [0] * self.buckets
        self._head: int | None = None  # index (time // width) of the newest slice
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def advance(self, now: float) -> None:
        """Drop the slices that fell out of the window by ``now`` (at most ``buckets`` of them)."""
        index = int(now // self._width)
        head = self._head
        if head is None:
            self._head = index
            return
        if index <= head:
            if index <= head - self.buckets:  # the clock went back a whole window or more (a stepped wall
                self.reset()  # clock): the calls kept are "from the future", which counted for the step (a day)
                self._head = index
            return
        for k in range(head + 1, min(index, head + self.buckets) + 1):
            b = k % self.buckets
            self.calls -= self._calls[b]
            self.failures -= self._failures[b]
            self.slow -= self._slow[b]
            self._calls[b] = self._failures[b] = self._slow[b] = 0
        self._head = index

    def record(self, flags: int, now: float) -> None:
        self.advance(now)
        b = (self._head or 0) % self.buckets
        self._calls[b] += 1
        self.calls += 1
        if flags:
            self._failures[b] += flags & FAILED
            self.failures += flags & FAILED
            self._slow[b] += flags >> 1
            self.slow += flags >> 1
