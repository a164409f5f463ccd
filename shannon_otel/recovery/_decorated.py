"""What a decorator or ``call(fn, *args)`` hands a policy: the call with its arguments."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .._validate import brief, not_callable


class DecoratedCall(functools.partial):  # type: ignore[type-arg]
    """The factory of one call with its arguments (``func``, ``args`` and ``keywords``, as on any
    ``functools.partial``): what ``call(fn, *args, **kwargs)`` builds, and what a decorator passes
    when a policy keys state by the call's arguments (a plain ``partial`` otherwise)."""

    __slots__ = ()

    def __new__(cls, func: Any, /, *args: Any, **keywords: Any) -> DecoratedCall:
        if not callable(func):  # partial's own error ("the first argument must be callable") names nothing
            raise not_a_factory(func)
        return super().__new__(cls, func, *args, **keywords)


def not_a_factory(fn: object) -> MisuseError:
    """The TypeError of a policy's ``call`` given ``fn`` that cannot be called: raised before any policy
    acts on it (a retry would retry it, a fallback serve its fallback, a breaker count it), and a
    :class:`MisuseError`, so the policies around that call let it through too (``call(fetch())`` in a function
    an outer ``Retry`` runs was retried, under an outer ``Fallback`` served)."""
    error = not_callable("fn", fn, "a callable returning an awaitable (the policy calls it for each attempt)")
    return MisuseError(*error.args)


class MisuseError(TypeError):
    """A user callable of the wrong kind, found only when a call runs it (see the subclasses).

    A programming error: raised as it is through every policy, never retried, counted by a breaker, hedged again
    or answered by a fallback or degradation (each of those would run the mistake again, or hide it behind a
    result). A TypeError to the caller. Policies test ``isinstance(error, MisuseError)``.
    """


class MisuseValueError(MisuseError, ValueError):
    """An argument refused with ValueError where a call runs (``tx.step()``'s name: too long, or not UTF-8): a
    programming error as every ``MisuseError`` is, and a ValueError to the caller, as where the name is checked
    anywhere else."""


class NotAwaitableError(MisuseError):
    """What ``fn`` returned cannot be awaited (a sync function where an async one belongs), or is a coroutine already
    awaited handed to a re-run (a retry's next attempt, a hedge's later one: :func:`spent`), or ``fn`` could not be
    called at all (the call's arguments do not fit the function); or a policy's own async callable turned out sync at
    its first call (``Fallback(fallback)``, ``Degrade(cheaper=)``, ``Retry(sleep=)``, ``Hedge(sleep=)``, a saga's
    action or compensation), or a saga's action or compensation returned a coroutine already awaited.

    A first attempt awaits what ``fn()`` returned as it is, with or without telemetry (the check reads ``cr_frame``,
    too dear for the unobserved path): a coroutine awaited before the call raises what ``await`` raises there
    ("RuntimeError: cannot reuse already awaited coroutine"), which the policies act on as the operation's error (a
    breaker counts it, a fallback serves it); only a re-run that gets it again is refused with this error."""


class NotSyncError(MisuseError):
    """A callable a policy needs sync returned an awaitable at its first call (a lambda returning a coroutine):
    ``Retry(on=)`` predicate, ``Retry(next_delay=)``, ``Retry(random=)``, ``Degrade(key=)``. An outer ``Retry``
    retried its plain TypeError, an outer ``Fallback`` served a result for it."""


def not_awaitable(made: object) -> NotAwaitableError:
    """The error of an attempt whose ``fn()`` returned ``made``, which is not awaitable."""
    return NotAwaitableError(
        f"fn must return an awaitable (the policy awaits each call of it: a sync function where an async one "
        f"belongs?), it returned {type(made).__name__} {brief(made)}"
    )


def not_entered(error: BaseException) -> bool:
    """Whether ``error``, a TypeError raised by calling ``fn`` for an attempt, came from the call itself, no frame of
    ``fn`` entered: its arguments did not bind (``@Retry() async def get(uid)`` called as ``get()``). Its traceback
    then ends in the policy's frame that made the call; a TypeError raised inside ``fn`` has ``fn``'s frame too."""
    tb = error.__traceback__
    return tb is not None and tb.tb_next is None


def raise_wrong_call(error: TypeError) -> None:
    """Raise :func:`wrong_call`'s error from ``error`` if it came from calling ``fn`` itself (:func:`not_entered`);
    return otherwise, for the caller to re-raise ``error`` as the operation's own failure."""
    if not_entered(error):
        raise wrong_call(error) from error


def wrong_call(error: TypeError) -> NotAwaitableError:
    """The error of an attempt whose call of ``fn`` failed to bind its arguments (see :func:`not_entered`). Raised
    as that TypeError was the operation's failure: retried, counted by a breaker, served by a fallback, where
    Python raises it to the caller of the function."""
    return NotAwaitableError(
        f"fn could not be called with the call's arguments ({error}): a programming error, which no policy "
        f"retries, counts or serves"
    )


def spent(made: Any) -> NotAwaitableError:
    """The error of an attempt whose ``fn()`` returned ``made``, a coroutine already awaited (or being awaited):
    one coroutine returned again (``lambda: coro``) cannot run a second attempt. Checked where an attempt calls
    ``fn`` again (``made.cr_frame is None or made.cr_await is not None``: what CPython refuses to await);
    awaited, it raised a RuntimeError the retry retried in place of the operation's own error."""
    return NotAwaitableError(
        f"fn must return a new awaitable each time it is called (a retry or a hedge calls it again), it returned "
        f"a coroutine already awaited, {brief(made)}: pass the async function (or a lambda calling it), not a "
        f"lambda returning one coroutine"
    )


def takes_parameters(func: Callable[..., Any]) -> bool:
    """Whether ``func`` accepts any argument (True when its signature cannot be read)."""
    try:
        return bool(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return True
