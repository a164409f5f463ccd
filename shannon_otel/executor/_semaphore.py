"""A counting semaphore whose release is O(1) with many waiters.

asyncio.Semaphore (3.11) scans every waiter on each release; with a hundred workers waiting on a
stream's gate or a busy pool that scan cost more than the tasks themselves. Waiters are served in
arrival order; a waiter cancelled after it was handed a credit gives it back.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Credits:
    """``acquire`` waits for a credit; ``release`` returns one. Event-loop only, one loop at a time."""

    __slots__ = ("_free", "_stale", "_waiters")

    def __init__(self, credits: int) -> None:
        self._free = credits
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._stale = 0  # cancelled waiters left in _waiters (or fewer: a release drops those it meets)

    @property
    def free(self) -> int:
        return self._free

    def take(self) -> bool:
        """Take a credit if one is free and nobody waits for one (never waits): whether one was taken."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a credit just as it was cancelled: pass it on
            else:
                # Left in the queue (a release skips a done waiter) until the cancelled ones are half of it, then
                # dropped together. Removed one by one, each from anywhere in the queue (a TaskGroup cancels its
                # tasks in no set order), 100_000 waiters on a pool took ~30 s to cancel: a scan of the queue each.
                self._stale += 1
                if 2 * self._stale > len(self._waiters):
                    self._waiters = deque(w for w in self._waiters if not w.done())
                    self._stale = 0
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            # A waiter of a closed loop (its task left pending as the loop closed) never runs again: handed the
            # credit, it kept it for good, and set_result raised "Event loop is closed" into the releasing task
            # (the collector closing a task that held the credit in that loop: an "Exception ignored" traceback).
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)
                return
        self._free += 1

    def abandon_waiters(self) -> None:
        """Forget every waiter (their loop is closed: none can be woken). Held here, they kept their tasks, and
        everything those tasks hold, from the collector for good."""
        self._waiters.clear()
        self._stale = 0
