"""What a call raises when it is awaited inside an ``except`` block (the caller handling an error of its own)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


async def caught_in_except(call: Callable[[], Awaitable[Any]]) -> BaseException:
    """The exception ``call()`` raised (a KeyboardInterrupt too), awaited while a ``LookupError`` is handled: its
    ``__context__`` shows whether the library replaced the one it was raised with by the caller's."""
    try:
        raise LookupError("handled by the caller")
    except LookupError:
        try:
            await call()
        except BaseException as exc:  # the KeyboardInterrupt too
            return exc
    raise AssertionError("the call did not fail")
