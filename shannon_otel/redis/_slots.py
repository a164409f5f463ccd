"""``Slots``: how many Redis commands of one ``RedisState`` are sent at once (a slow start, as TCP's)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Slots:
    """Commands at once: ``first`` to start with, one more per command answered, up to ``most``; back to ``first``
    when Redis is lost (its connections are opened again).

    A command's ``timeout_s`` runs from when it has a slot. A new connection's set-up (TCP, ``HELLO``, ``CLIENT
    SETINFO`` twice, the script's load) is several round trips of the client's CPU: 98 of them at once (a wave's
    first commands) took ~0.2 s on an idle machine, over the default 0.25 s in a busy wave, and each that timed out
    dropped its connection, so the pool never filled: a healthy Redis was an outage. Waiting here is local and
    drains as Redis answers (at once when an outage begins, see ``RedisState._run``).
    """

    __slots__ = ("busy", "first", "limit", "most", "waiters")

    def __init__(self, first: int, most: int) -> None:
        self.most = most
        self.first = self.limit = min(first, most)
        self.busy = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served); the caller's cancellation is raised, its slot passed on."""
        if self.busy < self.limit and not self.waiters:
            self.busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter  # done when a slot is handed to it (counted in busy already)
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed a slot as it was cancelled: passed on
                self.release()
            else:
                with contextlib.suppress(ValueError):  # taken off by _hand already, cancelled
                    self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.busy -= 1
        self._hand()

    def answered(self) -> None:
        """A command was answered: one more may be sent at once (its connection is open, or opens as quickly)."""
        if self.limit < self.most:
            self.limit += 1
            self._hand()

    def lost(self) -> None:
        """Redis is lost: its connections open again, a few at a time (those busy finish, bounded by timeout_s)."""
        self.limit = self.first

    def _hand(self) -> None:
        while self.waiters and self.busy < self.limit:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.busy += 1
                waiter.set_result(None)
