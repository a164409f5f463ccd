"""What can be shipped to a Dask worker, checked on the client before anything is submitted."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle


class UnshippableTaskError(TypeError):
    """A task cannot run on a Dask worker; raised on the client before anything is submitted."""


def check_function(fn: Any) -> None:
    """Refuse what a worker could not run, or would run with other state than the caller's.

    A coroutine object has started life on this loop and cannot be pickled; a closure's captured
    variables would be copied to the worker, so writes to them would silently never come back.
    """
    if inspect.iscoroutine(fn):
        fn.close()  # never awaited: close it so Python does not warn about it later
        raise UnshippableTaskError(
            "fn is a coroutine object; pass the async function and its arguments instead "
            "(backend.task(fetch, url), not backend.task(fetch(url)))",
        )
    if not callable(fn):
        raise UnshippableTaskError(f"fn must be a callable (a function defined at module level), got {fn!r}")
    target = fn
    while isinstance(target, functools.partial):  # partial(closure) is the closure, arguments bound
        target = target.func
    target = inspect.unwrap(target) if inspect.isfunction(target) else target
    if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
        # it would run on the worker, then fail to send back its generator (which cannot be pickled)
        raise UnshippableTaskError(
            f"fn {qualified_name(target)!r} is a generator function; a worker sends back what fn returns, and a "
            "generator cannot be sent: return a list instead",
        )
    code = _code_run(target)
    # __class__: the cell the compiler gives a method that calls super() (its class), not local state
    free = [n for n in getattr(code, "co_freevars", ()) if n != "__class__"]
    if free:
        names = ", ".join(free)
        raise UnshippableTaskError(
            f"fn {qualified_name(target)!r} is a closure over local state ({names}); the worker would "
            "get a copy of it and changes would never come back. Define it at module level and pass that "
            "state as arguments",
        )
    _check_pickles("fn", fn)


def _code_run(target: Any) -> Any:
    """The code ``target(...)`` runs when it has closure cells, else None: a function's own; a bound method's
    function's; a callable object's ``__call__`` (an instance of a class defined in a function whose methods
    close over that function's variables is a closure over local state as much as a nested function is)."""
    if inspect.ismethod(target):
        target = target.__func__
    elif not inspect.isfunction(target) and not isinstance(target, type):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - the class's __call__, not callable()
        target = call if inspect.isfunction(call) else None
    if inspect.isfunction(target):  # a decorator's wrapper (functools.wraps): the code it wraps, as for fn
        target = inspect.unwrap(target)
    return getattr(target, "__code__", None) if getattr(target, "__closure__", None) else None


def check_arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Every argument must pickle (it is sent to the worker)."""
    for i, arg in enumerate(args):
        _check_argument(f"argument {i}", arg)
    for key, value in kwargs.items():
        _check_argument(f"keyword argument {key!r}", value)


def _check_argument(what: str, value: Any) -> None:
    if inspect.iscoroutine(value):
        value.close()  # never awaited: closed, as fn's, so Python does not warn about it later
        raise UnshippableTaskError(
            f"{what} is a coroutine object, which cannot be sent to a worker; pass the async function and "
            "its arguments as a task of their own",
        )
    _check_pickles(what, value)


_ALWAYS_PICKLES = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _check_pickles(what: str, value: Any) -> None:
    if type(value) in _ALWAYS_PICKLES:  # exact types: a subclass may define its own pickling
        return  # the common item of a map, checked for free (pickling it to check costs ~5 us)
    try:
        # Protocol 5 with a buffer callback hands large buffers (numpy arrays) out of band, uncopied:
        # checking a 160 MB array no longer makes a 160 MB bytes copy of it.
        cloudpickle.dumps(value, protocol=5, buffer_callback=_discard)
    except Exception as exc:
        raise UnshippableTaskError(
            f"{what} ({type(value).__name__}) cannot be pickled for a Dask worker: {type(exc).__name__}: {exc}",
        ) from exc


def is_async_callable(fn: Any) -> bool:
    """``fn(...)`` returns a coroutine: an ``async def`` (maybe in a partial), or an object whose
    ``__call__`` is one (``inspect.iscoroutinefunction`` says False for such an instance)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's __call__, not callable()
    return not inspect.isfunction(fn) and not inspect.ismethod(fn) and inspect.iscoroutinefunction(call)


def _discard(_: object) -> None:
    return None


def qualified_name(fn: Callable[..., Any]) -> str:
    """The name of what ``fn`` calls: a ``functools.partial`` is named after the function it binds (the docs'
    way to pass ``fn`` its own ``name=``), not ``partial``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)
