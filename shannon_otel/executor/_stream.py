"""``Wave.stream``: results in completion order, with bounded memory for inputs of any length."""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._deadline import cancel_base
from .._events import TaskResult
from .._reraise import raise_as_is
from .._telemetry import LATE_COUNT, LOG_EVENT_LATE_TASKS, LOG_EVENT_NAME, WAVE_NAME
from ._run import Interrupted, WaveRun, carried, live
from ._semaphore import Credits

if TYPE_CHECKING:
    from ._report import WaveReport
    from ._wave import Wave

_log = logging.getLogger("shannon_otel")
T = TypeVar("T")
A = TypeVar("A")


def known_size(tasks: Iterable[Any]) -> int | None:
    """How many items a streamed input holds: ``len()`` of a sized one; None (unknown: taken lazily, as an iterator's)
    for any other, and for one too long for ``len()`` (``range(10**20)``, an "endless" counter, raised Python's
    OverflowError "Python int too large to convert to C ssize_t", naming nothing, when the stream was entered)."""
    if not isinstance(tasks, Sized):
        return None
    try:
        return len(tasks)
    except OverflowError:
        return None


class Mapped(Generic[A, T]):
    """``functools.partial(fn, item)`` for each item of a sized input, made only as the wave takes it.

    ``stream_map`` built them all at the call: a million items blocked the loop ~0.9 s before the wave
    began, and held a million partials however early the consumer left. Sized (``len(items)``), so the
    wave still knows its size; iterated once per run, as ``items`` is.
    """

    __slots__ = ("_fn", "_items")

    def __init__(self, fn: Callable[[A], Awaitable[T]], items: Iterable[A]) -> None:
        self._fn = fn
        self._items = items  # Sized too (stream_map checked)

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Callable[[], Awaitable[T]]]:
        bind: Callable[[A], Callable[[], Awaitable[T]]] = functools.partial(functools.partial, self._fn)
        return live(self._items, bind)  # a list read as it grows (see Growing)


class _Shared:
    """What a stream's runner shares with the stream object: never the stream itself, so a stream its consumer
    drops without leaving its block (no ``async with``) is collected, and its finalizer ends the wave."""

    __slots__ = ("closed", "idle", "late_told", "report", "run", "size", "started", "waiting")

    def __init__(self) -> None:
        self.started = False  # the runner has begun the wave (so cancelling it ends the wave properly)
        self.closed = False
        self.report: WaveReport | None = None
        self.late_told = 0  # how many tasks a list gained too late were logged (see WaveStream._late)
        self.waiting = 0  # consumers waiting in __anext__ for the next result
        # The runner's wait for the consumer to have read every result (see settle in WaveStream.__aenter__)
        self.idle: asyncio.Future[None] | None = None
        self.run: WaveRun | None = None  # the wave's run state, while it runs (see _leave)
        self.size: Callable[[], int | None] = _unknown  # the input's length now

    def wake(self) -> None:
        """The consumer asks for a result with none left to read, or has left: the runner's wait is over."""
        idle = self.idle
        if idle is not None and not idle.done():
            idle.set_result(None)


def grows(tasks: Iterable[Any]) -> bool:
    """Whether a streamed input is a list its consumer may extend as it reads (stream's or stream_map's)."""
    return type(tasks) is list or (type(tasks) is Mapped and type(tasks._items) is list)


def _abandoned(loop: asyncio.AbstractEventLoop, runner: asyncio.Task[Any], shared: _Shared) -> None:
    """The stream was collected with its block never left: its wave ends as leaving the block ends it (its
    tasks cancelled, every span ended). Collected maybe in another thread: the end is handed to the loop."""
    if not runner.done():
        try:
            loop.call_soon_threadsafe(_leave, runner, shared)
        except RuntimeError:  # the loop is closed: nothing runs on it any more
            pass


def _unknown() -> int | None:
    return None


def _leave(runner: asyncio.Task[Any], shared: _Shared) -> None:
    """Its consumer is gone (block left, or stream collected): a wave waiting for it (see settle) ends as it is,
    not cancelled; one still running its tasks is cancelled."""
    shared.closed = True  # nothing reads its results any more
    if shared.idle is not None:
        # Every task taken has ended: cancelled, a wave whose every task had succeeded said "cancellation" (a
        # dropped stream's; the block's exit already woke it). What the list gained since is a left stream's rest.
        shared.wake()
        return
    run = shared.run
    if run is not None:
        try:
            size = shared.size()
        except Exception:  # an input whose length can no longer be read: its end unknown
            size = None
        if size is None and run.ahead is not None and run.taken == run.done and not (run.ended or run.stopped):
            # An input of unknown length, no task in flight, its end not yet found (its buffer full, its batch run
            # out): its next item is pulled now, as the consumer leaves, so a consumer leaving right after its last
            # result cuts nothing short (see Pulled.probe). An item found is closed and counted a cancelled task.
            run.ended = not run.ahead.probe()
        # Every task ended and none left, the wave not yet back from its workers: its cancellation cuts nothing
        # short, and the wave ends as it would have (a success, unless what the list gained since is cancelled).
        run.left_idle = run.done if run.idle(size) else None
    runner.cancel()


class WaveStream(Generic[T]):
    """Async context manager and iterator over a streamed wave's results (completion order).

    At most ``buffer`` results are in flight or waiting to be consumed: workers pull the next input
    only when the consumer has made room (of an input of unknown length, one item more is pulled as the consumer
    leaves with no task in flight, to find its end: see ``Wave.stream``). Leaving the ``async with`` block early
    cancels the rest; ``report`` is set once the wave has ended either way. A stream entered without ``async with`` and
    dropped unclosed cancels its wave when it is collected, as leaving the block does. A stream runs once:
    entering it again raises RuntimeError (call ``wave.stream(...)`` or ``stream_map(...)`` again), and iterating
    it after its block yields nothing.
    """

    def __init__(self, wave: Wave[Any], tasks: Iterable[Any], buffer: int, call: str = "wave.stream(tasks)") -> None:
        self._wave = wave
        self._call = call  # what the user called, as its errors name it (stream_map's said wave.stream(tasks))
        self._tasks = tasks
        self._queue: asyncio.Queue[TaskResult[T] | None] = asyncio.Queue()
        self._gate = Credits(buffer)
        self._runner: asyncio.Task[WaveReport] | None = None
        self._shared = _Shared()
        # The task that entered the block and its cancellation requests then (see cancel_base): a count left
        # on it before the block is not a cancellation of the block.
        self._owner: asyncio.Task[Any] | None = None
        self._base = 0

    @property
    def report(self) -> WaveReport | None:
        """The wave's report, once it has ended (``None`` before)."""
        return self._shared.report

    async def __aenter__(self) -> WaveStream[T]:
        if self._runner is not None:
            # Its queue and credits still hold the first run's results: a second run would yield stale
            # results, then wait forever for credits the consumer of the first run never gave back.
            raise RuntimeError(f"a wave stream runs once; call {self._call} again for another run")
        tasks, wave, gate = self._tasks, self._wave, self._gate
        size = known_size(tasks)
        queue, shared = self._queue, self._shared  # what the runner holds: never `self` (see _Shared)
        loop = asyncio.get_running_loop()
        if size is not None:
            shared.size = functools.partial(known_size, tasks)

        def put(item: TaskResult[T] | None) -> None:
            try:
                queue.put_nowait(item)
            except RuntimeError:
                if not loop.is_closed():
                    raise
                # The stream was abandoned pending with its loop closed and the collector is closing its wave: no
                # consumer can wake. Raised, "Event loop is closed" stopped the wave's end: its span stayed open.

        def on_report(report: WaveReport) -> None:
            shared.report = report
            put(None)

        def deliver(result: TaskResult[T]) -> None:
            # Once the block is over nothing can read the queue: the results of the tasks drained when the
            # consumer left early (a sized input's every task not started) would only hold memory, O(input).
            if not shared.closed:
                put(result)

        def wanted() -> bool:  # whether the results of tasks never started are read (see deliver)
            return not shared.closed

        async def settle() -> None:
            # A list the consumer extends as it reads: its wave stays open, every task taken having ended, until
            # the consumer has read every result and asks for the next (what it appended as it read them is then in
            # the list, as for a `for` loop over it), or has left. It ended once its workers found the list's end:
            # the links a crawler appended as it read the last pages never ran.
            while not shared.closed and not (shared.waiting and queue.empty()):
                shared.idle = loop.create_future()
                try:
                    await shared.idle
                finally:
                    shared.idle = None

        def on_run(run: WaveRun) -> None:
            shared.run = run

        async def run() -> WaveReport:
            shared.started = True
            try:
                return await wave._execute(
                    tasks, size, deliver, gate, on_report, wanted, settle if grows(tasks) else None, on_run,
                )
            except (KeyboardInterrupt, SystemExit) as exc:  # raised in the consumer's task, not out of the loop
                raise Interrupted(exc) from None
            finally:
                shared.run = None
                if shared.report is None:
                    # The wave failed before it had a report (a clock that raises at its first reading):
                    # the end is queued all the same, else the consumer would wait for it forever.
                    put(None)

        self._owner, self._base = asyncio.current_task(), cancel_base()
        self._runner = runner = asyncio.create_task(run())
        # Dropped with its block never left (entered without `async with`): the runner waited for the consumer for
        # ever, its wave span never ended, and the collector then destroyed its pending tasks mid-wave.
        weakref.finalize(self, _abandoned, loop, runner, shared).atexit = False
        return self

    def _being_cancelled(self) -> bool:
        """Whether the running task has a cancellation request not taken back, made since it entered the block
        if it is the task that did."""
        current = asyncio.current_task()
        return current is not None and current.cancelling() > (self._base if current is self._owner else 0)

    def __aiter__(self) -> WaveStream[T]:
        return self

    async def __anext__(self) -> TaskResult[T]:
        if self._runner is None:
            raise RuntimeError(f"iterate a wave stream inside `async with {self._call} as results:`")
        if self._shared.closed:  # its block is over: nothing more will ever be queued
            raise StopAsyncIteration
        shared = self._shared
        shared.waiting += 1
        try:
            if self._queue.empty():
                shared.wake()  # every result read: the wave may look for tasks its list gained (see settle)
            item = await self._queue.get()
        finally:
            shared.waiting -= 1
        if item is None:
            self._queue.put_nowait(None)  # the end, for every consumer of this stream (not just this one)
            assert self._runner is not None
            interrupt = None
            try:
                await self._runner  # surfaces an internal error, if any
            except asyncio.CancelledError:
                if not self._shared.closed or self._being_cancelled():
                    raise
                # The block's exit cancelled the runner (its consumer left early): for a consumer in another
                # task the stream has ended, it was not cancelled itself.
            except Interrupted as exc:
                interrupt = exc.interrupt
            if interrupt is not None:
                raise_as_is(interrupt)  # outside the handler, its own __context__ kept
            self._late()
            raise StopAsyncIteration
        self._gate.release()
        return item

    def _late(self) -> None:
        """Tasks a list gained after its wave had taken its last one never run (no worker is left to take them):
        said, as a WARNING, when a consumer has read every result, and again for those gained since when the block
        is left, never lost without a word. Said once a consumer had read the end: what another consumer of the
        stream, still handling its last result then, appended was lost unlogged."""
        shared, report = self._shared, self._shared.report
        if report is None:
            return
        try:
            now = known_size(self._tasks)
        except Exception:  # an input whose length can no longer be read: nothing to compare
            return
        late = (0 if now is None else now - report.total) - shared.late_told
        if late > 0:
            shared.late_told += late
            _log.warning(
                "wave %r: %d task(s) added to its input after it had taken its last task never ran; extend a "
                "streamed list only while it still holds tasks not taken, and run later ones in another wave",
                report.wave, late,
                extra={LOG_EVENT_NAME: LOG_EVENT_LATE_TASKS, WAVE_NAME: report.wave, LATE_COUNT: late},
            )

    async def __aexit__(self, *exc_info: object) -> None:
        runner = self._runner
        if runner is None or self._shared.closed:
            return
        self._shared.closed = True
        # The caller's cancellation while the wave ends: raised once it has ended, itself (`await runner`
        # raised the runner's CancelledError in its place, without the caller's cancel(msg) message).
        interrupted: asyncio.CancelledError | None = None
        if not self._shared.started:
            # Cancelled before its first step, the runner would never run the wave's own clean-up:
            # no report, no wave span, the input's coroutines never closed. Its first step was
            # scheduled at __aenter__, before this task's next one: one yield lets it begin.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as exc:  # the wave is still ended, and waited for, first
                interrupted = exc
        _leave(runner, self._shared)
        while not runner.done():
            try:
                await asyncio.wait((runner,))
            except asyncio.CancelledError as exc:
                interrupted = interrupted or exc
                runner.cancel()  # passed on, as awaiting the runner did
        self._late()
        error = None if runner.cancelled() else runner.exception()
        if error is not None:
            raise_as_is(carried(error) or error)  # the wave's own failure (a task's KeyboardInterrupt & co, ours)
        if isinstance(exc_info[1], asyncio.CancelledError):
            return  # the block is left by the caller's own cancellation: that one propagates, unchanged
        if interrupted is not None:
            raise interrupted
        if runner.cancelled() and self._being_cancelled():
            runner.result()  # raises the runner's CancelledError: the caller is being cancelled
