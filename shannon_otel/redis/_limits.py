"""A rate limit and a resource pool shared by every process through Redis."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .._validate import (
    awaitable_from,
    check_arity,
    check_makes_awaitable,
    check_telemetry_name,
    not_callable,
    shown,
)
from ..executor._limits import RateLimiter, ResourcePool
from ._store import RedisState, SharedStateUnavailableError, _redacted


class SharedRateLimit:
    """At most ``rate`` starts per second (bursts of ``burst``) across every process using the name.

    ``Wave("crawl", rate_limit=SharedRateLimit(shared, "search-api", rate=10))``. One atomic GCRA step
    per admission in Redis (server time, so clocks need not agree): the wait it returns is slept here.
    While Redis is unreachable, ``on_unavailable="local"`` falls back to a local limiter at the same rate
    (so N processes may then start up to N x ``rate``/s), ``"reject"`` raises
    :class:`SharedStateUnavailableError` (the task fails before it starts). ``sleep(seconds)`` waits out an
    admission's delay (a sync one: TypeError naming ``sleep`` at that wait; its error fails the task, unrun).
    """

    __slots__ = ("_args", "_burst", "_given_tat", "_key", "_local", "_name", "_rate", "_shared", "_sleep")

    def __init__(
        self, shared: RedisState, name: str, *, rate: float, burst: int = 1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not isinstance(shared, RedisState):
            raise TypeError(f"shared must be a RedisState, got {shared!r}")
        shared._check_open()
        if not isinstance(name, str) or not name:  # a wrong type is a TypeError, as everywhere else
            raise (ValueError if isinstance(name, str) else TypeError)(f"name must be a non-empty string, got {name!r}")
        check_telemetry_name("name", name)
        # At least one start in ~32 years: the bucket (burst / rate, up to 1e15 s) stays a TTL Redis can set
        # Not a number at all (a str, None, a bool): TypeError, as Wave(rate_limit=) raises; out of range: ValueError
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise TypeError(f"rate must be a number of starts per second in [1e-09, 1e6], got {shown(rate)}")
        if not 1e-9 <= rate <= 1e6:
            raise ValueError(f"rate must be a number of starts per second in [1e-09, 1e6], got {shown(rate)}")
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int in [1, 1000000], got {shown(burst)}")
        if not 1 <= burst <= 1_000_000:
            raise ValueError(f"burst must be an int in [1, 1000000], got {shown(burst)}")
        if not callable(sleep):
            raise not_callable("sleep", sleep, "an async callable taking seconds")
        check_makes_awaitable("sleep", sleep, "an async callable taking seconds")
        check_arity("sleep", sleep, 1, "an async callable taking seconds")
        self._shared, self._name, self._rate, self._burst, self._sleep = shared, name, float(rate), burst, sleep
        interval_ms = 1000.0 / rate
        # The bucket, and the server's time at its last admission (a clock that went back is seen by it: _scripts.RATE)
        self._key = [shared._key("rate", name, "tat"), shared._key("rate", name, "last")]
        self._args = [interval_ms, (burst - 1) * interval_ms, math.ceil(interval_ms * burst) + 1000]
        self._local: RateLimiter | None = None
        # The starts the shared bucket gave this process as a GCRA schedule of their own (its tat, on the event
        # loop's clock): handed to the local limiter of an outage, and to a bucket Redis lost
        self._given_tat = -math.inf

    # Read-only: the Redis script's arguments are computed from them once. Settable, `limit.rate = 100` changed
    # what the repr showed while every wave sharing the object still started at the old rate.
    @property
    def shared(self) -> RedisState:
        """The Redis state holding the schedule (read-only)."""
        return self._shared

    @property
    def name(self) -> str:
        """The limit's name, shared by every process using it (read-only)."""
        return self._name

    @property
    def rate(self) -> float:
        """Starts per second (read-only: make a new SharedRateLimit for another rate)."""
        return self._rate

    @property
    def burst(self) -> int:
        """Starts that may happen at once (read-only)."""
        return self._burst

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]:
        """What waits out an admission's delay (read-only)."""
        return self._sleep

    async def acquire(self) -> None:
        """Wait until this start is within the shared rate (the slot is reserved before the wait)."""
        try:
            # During a known outage Redis is not asked (each start would wait timeout_s): the store's
            # flusher pings it and marks it available again.
            _outage_check(self.shared)
            clock = asyncio.get_running_loop().time
            args = self._args
            # Starts not reached yet that the bucket may not know: those the local limiter of an outage reserved (or
            # queued for), which a bucket Redis lost (restarted without persistence) or left behind never saw, and
            # those it gave this process, lost with it (a restart, FLUSHALL). A fresh bucket gave a full rate at
            # once beside them. The script moves the bucket past them first (see _scripts.RATE).
            now = clock()
            local_s = self._local.reserved_until() - now if self._local is not None else 0.0
            given_s = self._given_tat - now
            if local_s > 0 or given_s > 0:
                args = [*args, max(local_s, 0.0) * 1000, max(given_s, 0.0) * 1000]
            wait_ms = float(await self.shared._script("RATE", self._key, args))
            # This start, at now + wait, counted as the bucket counts a start: the schedule moves to it (when it is
            # behind) and one interval on. Taken as the bucket's tat after it (start + tau + interval), the burst was
            # counted as spent at every start that waited nothing: with burst=3 and one start given, the local
            # limiter of an outage waited 100 s and 200 s for starts two more of the burst allowed at once.
            self._given_tat = max(self._given_tat, clock() + wait_ms / 1000) + self._args[0] / 1000
        except SharedStateUnavailableError:
            if self.shared.on_unavailable == "reject":
                raise
            if self._local is None:  # one schedule for every event loop (threads) using this limit
                loop = asyncio.get_running_loop()
                self._local = RateLimiter(self.rate, self.burst, loop.time, self.sleep)
            # The starts the bucket gave this process (sleeping for their slots, a burst spent) are starts too:
            # a fresh local limiter started a full rate beside them (a process at rate=50 started 69 in a second)
            self._local.hold_until(self._given_tat)
            await self._local.acquire()
            return
        if wait_ms > 0:
            # a sync sleep: a TypeError naming it (as a Wave's or a local limiter's), not Python's "object NoneType
            # can't be used in 'await' expression"
            await awaitable_from("sleep", self.sleep(wait_ms / 1000))

    def __repr__(self) -> str:
        return f"SharedRateLimit({self.name!r}, rate={self.rate}, burst={self.burst})"


class SharedPool(ResourcePool):
    """A :class:`ResourcePool` whose ``limit`` holds across every process using the name.

    Each slot is a lease in a Redis sorted set (``lease_s``, default 300 s: a process that dies while
    holding slots frees them when their leases run out; keep it above your longest task). A full pool
    is waited for without polling: a release is published and the waiters retry at once (and on the
    store's poll, should the message be missed). While Redis is unreachable, ``on_unavailable="local"``
    bounds this process alone by ``limit`` and ``"reject"`` raises :class:`SharedStateUnavailableError`.
    """

    __slots__ = ("_args", "_held", "_key", "lease_s", "shared")

    def __init__(self, shared: RedisState, name: str, limit: int, *, lease_s: float = 300.0) -> None:
        super().__init__(name, limit)
        if not isinstance(shared, RedisState):
            raise TypeError(f"shared must be a RedisState, got {shared!r}")
        shared._check_open()
        if isinstance(lease_s, bool) or not isinstance(lease_s, int | float):  # a wrong type is a TypeError
            raise TypeError(f"lease_s must be a number of seconds in [1, 86400], got {shown(lease_s)}")
        if not 1 <= lease_s <= 86_400:
            raise ValueError(f"lease_s must be a number of seconds in [1, 86400], got {shown(lease_s)}")
        self.shared: RedisState = shared
        self.lease_s: float = float(lease_s)
        self._key = [shared._key("pool", name, "holders"), shared._key("pool", name, "clock")]
        # One entry per slot held here, oldest first: its lease id (None: a local slot). A release does not know
        # which task ends, and ends the oldest lease: each task still running keeps a lease taken no earlier than
        # its own start. Ending the newest (a stack), a task that started later was left on an older task's lease,
        # which ran out (and its slot went to another process) before the task's own lease_s had passed.
        self._held: deque[str | None] = deque()

    async def acquire(self) -> None:
        await super().acquire()  # never more than `limit` from this process either
        # The lease's own length goes with it (other processes may give this pool another lease_s: _scripts)
        holder = f"{uuid.uuid4().hex}:{int(self.lease_s * 1000)}"
        try:
            while True:
                if self.shared._closing:  # no release or poll would ever wake a waiter: it would wait forever
                    raise RuntimeError(f"the RedisState of shared pool {self.name!r} is closed; make a new one")
                event = self.shared._pool_event(self.name)  # set by a release from now on (see RedisState)
                try:
                    _outage_check(self.shared)  # a known outage: not asked (each acquire would wait timeout_s)
                    granted = await self.shared._script(
                        "POOL_ACQUIRE", self._key, [self.limit, holder, int(self.lease_s * 1000)],
                    )
                except asyncio.CancelledError:  # granted or not, maybe later: its lease must not stay
                    self.shared._lost_admission(*self._release_args(holder))
                    self.shared._background(self._release_script(holder))
                    raise
                except SharedStateUnavailableError as exc:
                    if exc.__cause__ is not None:  # the script was sent: it may still run later
                        self.shared._lost_admission(*self._release_args(holder))
                    if self.shared.on_unavailable == "reject":
                        raise
                    self._held.append(None)
                    return
                if int(granted):
                    self._held.append(holder)
                    return
                await event.wait()
        except BaseException:
            super().release()
            raise

    def release(self) -> None:
        super().release()  # first: a release with no permit held raises before a holder's lease is dropped
        holder = self._held.popleft() if self._held else None
        if holder is not None:
            self.shared._background(self._release(holder))

    async def _release(self, holder: str) -> None:
        lost = self._release_args(holder)
        if self.shared._in_outage():  # not sent (it would wait timeout_s): released once Redis is back
            self.shared._lost_admission(*lost)
            return
        try:
            await self._release_script(holder)
        except SharedStateUnavailableError:
            # A Redis that keeps its state (restarted with persistence, a network cut) would hold the lease
            # for lease_s (300 s by default), the slot taken from every process: released once it is back.
            self.shared._lost_admission(*lost)

    def _release_args(self, holder: str) -> tuple[str, list[str], list[Any]]:
        return "POOL_RELEASE", self._key[:1], [self.shared.pool_channel, self.name, holder]

    def _release_script(self, holder: str) -> Awaitable[Any]:
        return self.shared._script(*self._release_args(holder))


def _outage_check(shared: RedisState) -> None:
    if shared._in_outage():
        raise SharedStateUnavailableError(
            f"Redis at {_redacted(shared.url)} unavailable (outage under way: {shared._outage_cause}); "
            f"prefix {shared.prefix!r}")
