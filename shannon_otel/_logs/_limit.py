"""The flood limiter: at most one record per (logger, subject, event) per interval.

The first occurrence of a key is let through at once and opens the key's window; later ones inside
the window are only counted. The first occurrence after the window has passed is let through with
the count it stands for (the caller turns it into a summary) and opens the next window. Memory is
bounded: past ``max_keys`` the key quiet the longest is evicted and its pending count handed back for a
summary, so no occurrence goes unreported. O(1) per occurrence; thread-safe (anomaly callbacks
may come from another thread than the event loop's). A forked child frees its lock and starts with no
windows: the counts it inherited are the parent's, which the parent summarises itself (the child told
them again, at its exit or its next occurrence of the key, so every held-back occurrence was reported twice).

A window keeps only what a summary needs: nothing for an occurrence let through, and ``keep(item)`` of
the latest one held back. The items are events carrying the user's exception, whose traceback holds
every frame of the failed call and their locals: kept as they are, the newest of each of up to
``max_keys`` keys stayed alive for as long as the process ran.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

from .._fork import in_forked_child, release_held

R = TypeVar("R")


class _Window(Generic[R]):
    __slots__ = ("count", "last", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0  # occurrences held back since the window opened
        self.last: R | None = None  # keep() of the latest one held back (what a summary describes)


class Limiter(Generic[R]):
    """Decides which occurrences become records; ``R`` is what the caller keeps per key (its record)."""

    __slots__ = ("__weakref__", "_clock", "_interval", "_keep", "_lock", "_max", "_windows")

    def __init__(self, interval_s: float, max_keys: int, clock: Callable[[], float],
                 keep: Callable[[R], R] | None = None) -> None:
        """``keep``: what a held-back item is kept as until its summary (default: the item itself)."""
        self._interval = interval_s
        self._keep = keep
        self._max = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # the default logging hook's is process-wide: a child forked while another thread's wave logged
        # would wait on it for good at its first logged event
        in_forked_child(self._forked)
        # Ordered by last occurrence, quietest first: the key evicted is the one quiet the longest.
        self._windows: OrderedDict[Hashable, _Window[R]] = OrderedDict()

    def _forked(self) -> None:
        release_held(self._lock)
        self._windows = OrderedDict()  # the parent's held-back counts are the parent's to summarise

    def admit(self, key: Hashable, item: R) -> tuple[int, float, list[tuple[R, int, float]]]:
        """One occurrence of ``key``: ``(n, seconds, evicted)``.

        ``n`` is 0 to drop it (counted), 1 to emit it as it is, more to emit a summary of ``n``
        occurrences over the last ``seconds``; ``evicted`` lists ``(item, n, seconds)`` summaries of
        keys pushed out to keep the memory bound.
        """
        now = self._clock()
        evicted: list[tuple[R, int, float]] = []
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= self._max:
                    oldest = next(iter(self._windows))
                    gone = self._windows.pop(oldest)
                    if gone.count:
                        evicted.append((cast("R", gone.last), gone.count, max(now - gone.start, 0.0)))
                self._windows[key] = _Window(now)
                return 1, 0.0, evicted
            elapsed = now - window.start
            if 0.0 <= elapsed < self._interval:
                window.count += 1
                window.last = item if self._keep is None else self._keep(item)
                # Kept by its window start, a key hit every 0.1 s was evicted as "the quietest" by keys
                # seen once, and wrote a summary and a record per eviction instead of one per interval.
                self._windows.move_to_end(key)
                return 0, elapsed, evicted
            # Past the window, or the clock went back (a wall clock stepped back): the window would
            # otherwise hold every occurrence back until the clock caught up with its start.
            n = window.count + 1
            elapsed = max(elapsed, 0.0)
            self._windows[key] = _Window(now)
            self._windows.move_to_end(key)
            return n, elapsed, evicted

    def drain(self, which: Callable[[R], bool] | None = None) -> list[tuple[R, int, float]]:
        """Take the pending counts (all, or of the keys whose item ``which`` accepts) for summaries."""
        now = self._clock()
        out: list[tuple[R, int, float]] = []
        with self._lock:
            for window in self._windows.values():
                last = window.last
                if window.count and (which is None or which(cast("R", last))):
                    out.append((cast("R", last), window.count, max(now - window.start, 0.0)))
                    window.count = 0
                    window.start = now
                    window.last = None
        return out
