"""The function a policy's decorator returns, and how to see through it to the function it decorates.

Neutral ground: the policies build the wrapper (``@Retry()``), the executor's ``task()`` reads through it to check
the decorated function's parameters. The wrapper takes ``*args, **kwargs`` whatever the function takes, so read
from its own code, ``task(fetch)`` of a decorated ``fetch(url)`` was accepted and each run failed its task.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from types import FunctionType
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


def forwarding(
    func: Callable[P, Awaitable[T]], run: Callable[[Callable[[], Awaitable[T]]], Awaitable[T]],
    factory: Callable[..., Callable[[], Awaitable[T]]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """An async function like ``func`` (``functools.wraps``); a call awaits ``run(factory(func, *args, **kwargs))``."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await run(factory(func, *args, **kwargs))

    return wrapper


def forwarded(fn: FunctionType) -> object:
    """The callable ``fn`` decorates if ``fn`` is a wrapper :func:`forwarding` made, else None. Only those: a user's
    own ``functools.wraps`` wrapper may supply arguments itself, so its ``__wrapped__`` says nothing of its call."""
    return fn.__dict__.get("__wrapped__") if fn.__code__ is _WRAPPER else None


async def _nothing() -> None:
    return None


_WRAPPER = forwarding(_nothing, lambda fn: fn(), functools.partial).__code__  # every wrapper's: one code object
