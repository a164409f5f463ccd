"""``Wave.stream``: results in completion order, with bounded memory for inputs of any length."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sized
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._events import TaskResult
from ._semaphore import Credits

if TYPE_CHECKING:
    from ._report import WaveReport
    from ._wave import Wave

T = TypeVar("T")


class WaveStream(Generic[T]):
    """Async context manager and iterator over a streamed wave's results (completion order).

    At most ``buffer`` results are in flight or waiting to be consumed: workers pull the next input
    only when the consumer has made room. Leaving the ``async with`` block early cancels the rest;
    ``report`` is set once the wave has ended either way.
    """

    def __init__(self, wave: Wave[T], tasks: Iterable[Any], buffer: int) -> None:
        self._wave = wave
        self._tasks = tasks
        self._queue: asyncio.Queue[TaskResult[T] | None] = asyncio.Queue()
        self._gate = Credits(buffer)
        self._runner: asyncio.Task[WaveReport] | None = None
        self.report: WaveReport | None = None

    async def __aenter__(self) -> WaveStream[T]:
        size = len(self._tasks) if isinstance(self._tasks, Sized) else None
        queue = self._queue

        def on_report(report: WaveReport) -> None:
            self.report = report
            queue.put_nowait(None)

        self._runner = asyncio.create_task(
            self._wave._execute(self._tasks, size, queue.put_nowait, self._gate, on_report),
        )
        return self

    def __aiter__(self) -> WaveStream[T]:
        return self

    async def __anext__(self) -> TaskResult[T]:
        if self._runner is None:
            raise RuntimeError("iterate a wave stream inside `async with wave.stream(tasks) as results:`")
        item = await self._queue.get()
        if item is None:
            assert self._runner is not None
            await self._runner  # surfaces an internal error, if any
            raise StopAsyncIteration
        self._gate.release()
        return item

    async def __aexit__(self, *exc_info: object) -> None:
        runner = self._runner
        if runner is None:
            return
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
