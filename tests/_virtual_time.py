"""The virtual-time loop (``shannon_otel.testing``); ``vclock``, its clock for the policies; and ``watched``: a test
body on it, stopped if it hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from shannon_otel.testing import VirtualTimeLoop, run_virtual

__all__ = ["VirtualTimeLoop", "run_virtual", "vclock", "watched"]


def vclock() -> float:
    """The running (virtual-time) loop's clock: a policy given it reads the time the loop jumps through."""
    return asyncio.get_running_loop().time()


def watched(main: Callable[[], Coroutine[Any, Any, Any]], *, eager: bool = False) -> Any:
    """``main()`` on the virtual-time loop (with asyncio's eager task factory if asked, Python 3.12+); a hang
    stops the loop after 60 virtual seconds (RuntimeError: event loop stopped), failing the test, not the suite."""

    async def run() -> Any:
        loop = asyncio.get_running_loop()
        if eager:
            # getattr: mypy checks against 3.11, which has no eager_task_factory (the tests using it skip there)
            loop.set_task_factory(getattr(asyncio, "eager_task_factory"))  # noqa: B009
        watchdog = loop.call_later(60, loop.stop)
        try:
            return await main()
        finally:
            watchdog.cancel()

    return run_virtual(run())
