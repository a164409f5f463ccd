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
    """An async function like ``func`` (``functools.wraps``); a call awaits ``run(factory(func, *args, **kwargs))``.

    Copies what ``functools.wraps`` does, but only what a function can hold: a name that is no str (a
    ``Mock(spec=fetch)``'s ``__qualname__`` is a Mock), or a lookup that raises, is left as the wrapper's own (the
    policy names it after ``func``). ``wraps`` raised "__qualname__ must be set to a string object", or the
    object's own error, so ``@Retry()`` refused an ``AsyncMock(spec=fetch)`` the test meant to wrap."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await run(factory(func, *args, **kwargs))

    for attr in functools.WRAPPER_ASSIGNMENTS:
        try:
            value = getattr(func, attr)
            setattr(wrapper, attr, value)
        except Exception:  # missing (AttributeError), of a type a function refuses (TypeError), or its own error
            continue
    try:
        wrapper.__dict__.update(func.__dict__)
    except Exception:  # no __dict__ (AttributeError), or one that is no mapping
        pass
    wrapper.__wrapped__ = func  # type: ignore[attr-defined]
    return wrapper


def forwarded(fn: FunctionType) -> object:
    """The callable ``fn`` decorates if ``fn`` is a wrapper :func:`forwarding` made, else None. Only those: a user's
    own ``functools.wraps`` wrapper may supply arguments itself, so its ``__wrapped__`` says nothing of its call."""
    return fn.__dict__.get("__wrapped__") if fn.__code__ is _WRAPPER else None


async def _nothing() -> None:
    return None


_WRAPPER = forwarding(_nothing, lambda fn: fn(), functools.partial).__code__  # every wrapper's: one code object
