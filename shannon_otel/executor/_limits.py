"""Limits on when tasks may start: resource pools shared across waves and a per-run rate limiter."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, cast

from .._clock import made_up
from .._fork import release_held
from .._validate import awaitable_from, check_telemetry_name, other_number
from ._semaphore import Credits

if TYPE_CHECKING:
    from ._task import TaskSlot

# Which event loop a pool serves is decided under this lock: event loops in several threads may share a pool.
# Without it two loops could each find the pool idle and take it (more than `limit` tasks in at once, and one
# loop's release could wake the other loop's waiter from the wrong thread: a hang). Held for a few steps, never
# across an await; one lock for every pool keeps a pool picklable.
_OWNING = threading.Lock()
if hasattr(os, "register_at_fork"):  # a child forked while another thread held it would wait on it for good
    os.register_at_fork(after_in_child=lambda: release_held(_OWNING))


class ResourcePool:
    """At most ``limit`` concurrent tasks that name this pool, across every wave using it.

    A pool is shared state by design (``ResourcePool("db", 2)`` passed to several waves);
    the ``Wave`` policy that references it stays immutable. Its credits belong to the event
    loop that first waits on it; a pool idle in one loop may be reused by a later loop (a module-level pool used
    by one ``asyncio.run`` after another). Permits held by the tasks of a loop closed without cancelling them come
    back as the collector frees those tasks (its waiters, which can never run, are forgotten when the next loop
    asks).

    A task of a nested wave (run by a task that holds this pool) that names this pool too waits for a
    permit while its enclosing task keeps one. When its enclosing tasks hold every permit (a pool of limit
    1 nested once) it could never start: it fails at once with a RuntimeError naming the pool, instead of
    hanging. With permits to spare it waits as any task, but the enclosing tasks may come to hold them all
    and the inner tasks then wait forever: give nested waves a pool of their own.
    """

    __slots__ = ("_credits", "_limit", "_loop", "_name")

    def __init__(self, name: str, limit: int) -> None:
        pool = type(self).__name__  # errors name what the user built (a SharedPool is one too)
        if not isinstance(name, str) or not name:  # a wrong type is a TypeError, as everywhere else
            raise (ValueError if isinstance(name, str) else TypeError)(
                f"{pool} name must be a non-empty string, got {name!r}")
        check_telemetry_name(f"{pool} name", name)  # a SharedPool's is in its Redis keys
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"{pool} limit must be an int >= 1{other_number(limit, integer=True)}, got {limit!r}")
        if limit < 1:
            raise ValueError(f"{pool} limit must be an int >= 1, got {limit!r}")
        self._name = name
        self._limit = limit
        self._credits = Credits(limit)
        self._loop: asyncio.AbstractEventLoop | None = None

    # Read-only: the limit sized the credits (a new limit reached them only in a later event loop), and
    # waves look pools up by name.
    @property
    def name(self) -> str:
        """The pool's name (read-only)."""
        return self._name

    @property
    def limit(self) -> int:
        """At most this many tasks hold the pool at once (read-only)."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Permits held now."""
        return self.limit - self._credits.free

    async def acquire(self) -> None:
        """Wait for a permit (the executor calls it for a task naming the pool; pair it with :meth:`release`).

        A pool serves one event loop at a time: RuntimeError while another loop holds permits (one closed while
        its tasks held them too, until they are collected: the error says so)."""
        loop = asyncio.get_running_loop()
        with _OWNING:
            if loop is not self._loop:
                if self.in_use:
                    if self._loop is not None and self._loop.is_closed():  # said "another event loop": which?
                        # Its waiters can never run again; held, they kept its tasks (the ones holding permits
                        # too, in one wave) from the collector, and the permits never came back.
                        self._credits.abandon_waiters()
                        raise RuntimeError(
                            f"ResourcePool {self.name!r}: {self.in_use} permit(s) held in an event loop closed while "
                            "its tasks held them: they come back only as those tasks are collected (or release() "
                            "is called); cancel a loop's tasks before closing it (asyncio.run does)"
                        )
                    raise RuntimeError(f"ResourcePool {self.name!r} is in use by another event loop")
                self._credits, self._loop = Credits(self.limit), loop
            credits = self._credits
            if credits.take():  # taken under the lock: another loop sees it in use from now on
                return
        # None free: in use, so no other loop takes the pool over before this waiter is queued (it is queued
        # before this thread runs anything else, and only this loop's tasks give permits back)
        await credits.acquire()

    def release(self) -> None:
        """Give back a permit :meth:`acquire` took (from any task of its event loop).

        Raises ValueError, changing nothing, when no permit is held (a release without an acquire, or
        a second release of one): the extra permit let more than ``limit`` tasks in at once."""
        if self._credits.free >= self.limit:
            raise ValueError(
                f"ResourcePool {self.name!r} released more times than it was acquired (no permit is held): "
                "pair each release() with one acquire()"
            )
        self._credits.release()

    def __repr__(self) -> str:
        return f"ResourcePool({self.name!r}, limit={self.limit}, in_use={self.in_use})"


# The pools held by the wave tasks around the running code (each with its task's slot: held until the slot
# has ended), innermost last. Set in a task's own context, so a nested wave's tasks see their enclosing tasks'.
POOLS_HELD: ContextVar[tuple[tuple[ResourcePool, TaskSlot], ...]] = ContextVar("shannon_otel_pools_held", default=())


def check_not_held(pool: ResourcePool) -> None:
    """Raise RuntimeError when the enclosing wave tasks hold every permit of ``pool``: waiting for one
    would wait forever (they end only after the task asking has)."""
    held = POOLS_HELD.get()
    if held and sum(1 for p, slot in held if p is pool and not slot.ended) >= pool.limit:
        raise RuntimeError(
            f"ResourcePool {pool.name!r} (limit {pool.limit}) is held entirely by the wave tasks this task runs "
            "inside: a task of a nested wave naming it would wait for them, and they for it, forever; give the "
            "nested wave a pool of its own"
        )


def pools_by_name(pools: Iterable[ResourcePool]) -> Mapping[str, ResourcePool]:
    by_name: dict[str, ResourcePool] = {}
    for pool in pools:
        if not isinstance(pool, ResourcePool):
            raise TypeError(f"pools must hold ResourcePool objects, got {type(pool).__name__}")
        if pool.name in by_name:
            raise ValueError(f"pools holds two pools named {pool.name!r}")
        by_name[pool.name] = pool
    return by_name


class RateLimiter:
    """Start at most ``rate`` tasks per second with bursts of ``burst`` (GCRA). Per-run state.

    One task at a time waits for its slot (the others of its event loop queue behind it), and once it has waited
    the next slot is counted from its start as it happened: each task sleeping for a slot of its own let the tasks
    whose slots passed while the event loop was blocked (sync code in a task) all start at once when it ran again.
    A slot is reserved before the wait, so the starts of other event loops sharing the limit (the local fallback of
    a ``SharedRateLimit`` used from threads) are counted too; a task cancelled while it waits gives it back. Each
    start waits once (and makes up an early timer, see :func:`~shannon_otel._clock.made_up`), counted from the slot
    before it at least: a clock the sleep does not move (a frozen fake clock, the real clock under virtual time)
    never makes a task wait again, nor longer."""

    __slots__ = (
        "_clock", "_interval", "_last", "_left", "_loop", "_queued", "_reached", "_sleep", "_tat", "_tau", "_turn",
    )

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._interval = 1.0 / rate
        # burst 1 is no tolerance at all: 0 * inf (a rate so small that 1/rate overflows) would be NaN,
        # and every wait compared with NaN is no wait: no limit at all
        try:  # a burst beyond the float range (10**400, a valid count) is no limit: inf, not OverflowError at run
            self._tau = (burst - 1) * self._interval if burst > 1 else 0.0
        except OverflowError:
            self._tau = math.inf
        # A rate so small that 1/rate overflows (below ~5.6e-309/s): no start after the first ``burst`` ever comes.
        # Counted, as the schedule cannot hold it: every start after the first made it inf, its tolerance was inf
        # too from a burst of 2, and inf - inf (NaN) waited for nothing: such a rate limited nothing at all.
        self._left: int | None = burst if math.isinf(self._interval) else None
        self._clock = clock
        self._sleep = sleep
        # No clock read here: the limiter is made as the run begins, after the hooks opened the wave (its span,
        # its pending tasks), and a clock that raised then left them open for good. The first acquire() reads it
        # (an error then fails that task); -inf: no start scheduled yet.
        self._tat = self._last = self._reached = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop whose queue ``_turn`` is
        self._turn = asyncio.Lock()  # FIFO: the task waiting for the next slot
        self._queued = 0  # starts queued behind it, no slot reserved yet (see reserved_until)

    async def acquire(self) -> None:
        if self._left is not None:
            if self._left > 0:
                self._left -= 1
                return
            await awaitable_from("sleep", self._sleep(math.inf))  # never admitted: waits until cancelled
            return
        # The lock taken and given back by hand, the start inline: ``async with`` and a method of its own for the
        # start cost ~10 % of an acquire that waits for nothing (one coroutine call and two frames more)
        turn = self._queue()
        self._queued += 1  # queued behind the head, no slot reserved yet (see reserved_until)
        try:
            await turn.acquire()
        finally:
            self._queued -= 1
        try:
            read = self._now()
            now = max(read, self._reached)
            slot = max(self._tat, now)
            self._tat = slot + self._interval  # reserved: another event loop's starts see it
            wait = slot - self._tau - now
            if wait > 0:
                try:
                    await awaitable_from("sleep", self._sleep(wait))
                    # the start is the slot's deadline: a sleep ending early (uvloop's millisecond timers) is made
                    # up, or the task started ahead of its slot and more than burst + rate * t started in some t s
                    await made_up(self._clock, self._nap, read, now + wait)
                except BaseException:
                    if self._tat == slot + self._interval:  # no later reservation: the next task takes this slot
                        self._tat = slot
                    raise
                # The slot is reached: the next task waits from it at least, so waits queued one behind the other
                # do not add up on a clock that shows less than the sleep waited (a coarse clock, one the sleep
                # does not move). The start as it happens counts: later than its slot when the loop was blocked
                # meanwhile (sync code in a task), and the next slot is counted from it.
                self._reached = now + wait
                self._tat = max(self._tat, max(self._now(), self._reached) + self._interval)
        finally:
            turn.release()

    def reserved_until(self) -> float:
        """The schedule's next free slot on this limiter's clock (its GCRA tat) once the starts queued now have
        theirs (-inf before any start)."""
        if not self._queued:
            return self._tat
        return max(self._tat, self._clock()) + self._queued * self._interval

    def hold_until(self, tat: float) -> None:
        """Take the starts another schedule reserved up to ``tat`` (a GCRA tat on this limiter's clock) as reserved
        here too: a :class:`~shannon_otel.redis.SharedRateLimit` falling back to this limiter when Redis goes away
        hands it the shared schedule it was last given."""
        self._tat = max(self._tat, tat)

    def _queue(self) -> asyncio.Lock:
        """This event loop's queue of waiting starts: a lock is bound to the loop it first queued a task on (a limit
        used again by a later ``asyncio.run()`` raised RuntimeError)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._turn = loop, asyncio.Lock()
        return self._turn

    def _now(self) -> float:
        now = self._clock()
        if now < self._last:  # the clock went back (an injected wall clock stepped): the schedule goes back with
            step = self._last - now  # it, or the next start waited the step too (a day back: a day)
            self._tat -= step
            self._reached -= step
        self._last = now
        return now

    def _nap(self, seconds: float) -> Awaitable[None]:
        return cast("Awaitable[None]", awaitable_from("sleep", self._sleep(seconds)))
