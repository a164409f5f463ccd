"""Fetch the results of finished Dask futures, many per gather.

A gather is a round trip through the scheduler and a fetch from a worker: it costs the cluster
far more than the results it carries, and on a busy cluster it takes CPU from the tasks
themselves. So one gather is in flight at a time, and while the cluster is busy with at least
as many of our tasks as it has threads (a result fetched later leaves no thread idle), results
finishing within the window share one gather. Once fewer of our tasks are running than the
cluster has threads, a result is fetched at once: a wave with a low concurrency limit, waiting
for that result to start its next task, is never slowed down by the window.

A gather still in flight after ``STALL_S`` (a worker holding one of its results is hung: paused, swapping,
cut off; Dask's gather waits for it until the scheduler drops that worker, minutes later) no longer holds
the others back: later results start gathers of their own, and the results of its batch are fetched one
by one (the first answer wins), so only the hung worker's results wait for it. Before, every result of
the backend queued behind that one gather, and tasks that had finished on healthy workers timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client, Future

_log = logging.getLogger("shannon_otel.dask")
_Fetch = tuple["Future[Any]", "asyncio.Future[Any]"]
STALL_S = 1.0  # a gather in flight this long is taken as stuck on a hung worker (see above)


class Gatherer:
    """Owned by one :class:`DaskBackend`; every method runs on the client's event loop."""

    __slots__ = ("_batch", "_client", "_fetches", "_gathering", "_pending", "_running", "_stall", "_timer", "window_s")

    def __init__(self, client: Client, window_s: float) -> None:
        self._client = client
        self.window_s = window_s
        self._running = 0  # our futures awaited and not finished yet
        self._pending: list[_Fetch] = []  # finished, result not fetched yet
        self._gathering: asyncio.Future[None] | None = None  # the one gather in flight (not stalled)
        self._batch: list[_Fetch] = []  # its results
        self._stall: asyncio.TimerHandle | None = None  # when it is taken as stalled
        self._fetches: set[asyncio.Future[None]] = set()  # results of stalled gathers, fetched one by one
        self._timer: asyncio.TimerHandle | None = None  # the next gather, waiting for more results

    async def result(self, future: Future[Any]) -> Any:
        """Wait until ``future`` finishes and return its result, or raise its error as Dask does.

        Cancelling the caller leaves the future to the caller (the backend cancels it on the cluster).
        """
        self._running += 1
        try:
            # Finished (or failed, or cancelled), without fetching the result yet. In an asynchronous
            # client `Future.exception()` is a coroutine that awaits the future's state and returns
            # its error or None: ~4.5 us of client CPU against ~22 us for `distributed.wait([future])`
            # (which wraps the same await in a task, a tornado WaitIterator and done / not-done sets).
            await future.exception()
        finally:
            self._running -= 1
        if future.status != "finished":  # an error (or cancelled): raised from the client's state
            error: BaseException | None = None
            try:
                value = await future
            except BaseException as exc:
                error = _released(exc)
            del future  # this frame is in the error's traceback too
            if error is not None:
                raise error
            # Finished after all: between the wake-up and the check its result was lost (its worker died just
            # after it finished) or its key retried, and the await above waited for Dask to compute it again.
            return value
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((future, waiter))
        self._schedule()
        del future  # in the traceback of an error the waiter gets (see _released)
        return await waiter

    def _schedule(self) -> None:
        if self._gathering is not None or not self._pending:
            return  # the gather in flight schedules the next one when it ends
        threads = self._client.scheduler_info().get("total_threads") or 1
        if self.window_s > 0 and self._running >= threads:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.window_s, self._start)
            return
        self._start()  # the cluster has a thread free for a task that waits for this result

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gathering is not None:
            return
        batch = [(f, w) for f, w in self._pending if not w.done()]  # done: its task was cancelled
        self._pending = []
        if not batch:
            return
        self._gathering = gathering = asyncio.ensure_future(self._gather(batch))
        self._batch = batch
        self._stall = asyncio.get_running_loop().call_later(STALL_S, self._stalled)
        gathering.add_done_callback(self._gathered)

    def _stalled(self) -> None:
        """The gather in flight took ``STALL_S``: the next may start, and its results are fetched one by one."""
        self._stall = None
        batch, self._batch, self._gathering = self._batch, [], None
        if len(batch) > 1:  # a result of its own has nothing else to wait for
            fetch = asyncio.ensure_future(_one_by_one(batch))
            self._fetches.add(fetch)
            fetch.add_done_callback(self._fetches.discard)
        self._schedule()

    def _gathered(self, done: asyncio.Future[None]) -> None:
        if done is not self._gathering:  # a stalled gather ended: its results that came are delivered
            if done.cancelled():
                return
            if done.exception() is not None:  # pragma: no cover - already set on its tasks
                _log.error("fetching results failed", exc_info=done.exception())
            return
        self._gathering = None
        self._batch = []
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if done.cancelled():  # the loop is closing: nobody may wait forever
            batch, self._pending = self._pending, []
            for _, waiter in batch:
                waiter.cancel()
            return
        if done.exception() is not None:  # pragma: no cover - already set on its tasks
            _log.error("fetching results failed", exc_info=done.exception())
        self._schedule()

    async def _gather(self, batch: list[_Fetch]) -> None:
        try:
            try:
                values = await self._client.gather([f for f, _ in batch])
            except asyncio.CancelledError:
                raise
            except BaseException:  # one of them could not be fetched: fetch each on its own
                values = None
            for i, (future, waiter) in enumerate(batch):
                if waiter.done():  # its task was cancelled meanwhile
                    continue
                if values is not None:
                    waiter.set_result(values[i])
                    continue
                try:
                    value = await future
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    if not waiter.done():
                        waiter.set_exception(_released(exc))
                    continue
                # Its task may have stopped waiting during the fetch (cancelled, timed out), or a stalled gather's
                # one-by-one fetch delivered it first: setting it again raised InvalidStateError, which the
                # handler below then set as the error of every later task of the batch.
                if not waiter.done():
                    waiter.set_result(value)
        except asyncio.CancelledError:  # the loop is closing: nobody may wait forever
            for _, waiter in batch:
                waiter.cancel()
            raise
        except BaseException as exc:  # pragma: no cover - a bug here must still reach every task
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise


async def _one_by_one(batch: list[_Fetch]) -> None:
    """Fetch the results of a stalled gather's batch one after the other, each for at most ``STALL_S``.

    One after the other: Dask merges the gathers asked for at once into one (``Client._gather``), which
    would wait for the hung worker again. A result not fetched in time (the hung worker's) is left to the
    stalled gather, which delivers it if that worker comes back (or Dask recomputes it elsewhere).
    """
    for future, waiter in batch:
        if waiter.done():  # delivered by the stalled gather meanwhile, or its task was cancelled
            continue
        try:
            async with asyncio.timeout(STALL_S) as scope:
                value = await future
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if scope.expired():
                continue
            if not waiter.done():
                waiter.set_exception(_released(exc))
            continue
        if not waiter.done():
            waiter.set_result(value)


def _released(error: BaseException) -> BaseException:
    """``error`` as Dask raised it from a Future, without the frames it was raised through (cleared, and
    left out of its traceback): they hold the Future. Dask raises the very error it keeps for the key on
    the client, so with the Future in that error's traceback the Future never died, and the client kept
    the key (and the scheduler the erred task, its error and traceback) for as long as the client lived:
    every failed task of every wave, piling up. The worker's part of the traceback is kept.
    """
    tb = error.__traceback__
    if tb is None:  # pragma: no cover - a raised error has a traceback
        return error
    rest = tb.tb_next  # tb: the frame that caught it (still running); rest: Dask's (finished), the worker's
    frame_tb = rest
    while frame_tb is not None:
        with contextlib.suppress(RuntimeError, AttributeError):  # still running / a rebuilt remote frame
            frame_tb.tb_frame.clear()
        frame_tb = frame_tb.tb_next
    return error.with_traceback(rest)
