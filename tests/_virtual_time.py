"""An asyncio event loop on virtual time, for tests whose outcome must not race the wall clock.

``loop.time()`` starts at 0 and jumps to the next timer whenever nothing is ready, so
``asyncio.sleep``, ``asyncio.timeout`` and ``call_later`` follow their deadlines exactly and
instantly, however slow or loaded the machine is. I/O still works (it is polled without waiting
while timers are pending); with no timer pending the loop waits for I/O as usual.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector:
    """Wraps the loop's selector: a wait for a timer becomes a jump of the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop, selector: selectors.BaseSelector) -> None:
        self._loop = loop
        self._selector = selector

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return self._selector.select(None)
        events = self._selector.select(0)
        if not events and timeout > 0:
            self._loop.advance(timeout)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        self._selector: Any = _JumpingSelector(self, self._selector)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)
