"""Fallback: when the primary fails, serve the fallback; when both fail, raise both errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .._deadline import cancel_base, cancel_requested, timed_out
from .._events import FallbackStarted
from .._isolation import finish, start
from .._telemetry import Outcome
from .._validate import (
    awaitable_from,
    brief,
    check_arity,
    check_exceptions,
    check_makes_awaitable,
    not_callable,
)
from ._call import _Call
from ._circuit_open import CircuitOpenError
from ._decorated import MisuseError, NotAwaitableError
from ._policy import Instrumented, next_step, operation_name
from ._types import Chain, Factory

T = TypeVar("T")
F = TypeVar("F")  # what the fallback returns
P = ParamSpec("P")


class FallbackError(ExceptionGroup[Exception]):
    """The primary and the fallback both failed; ``.primary`` and ``.fallback`` are the two errors."""

    @property
    def primary(self) -> Exception:
        """The operation's own error."""
        return self.exceptions[0]

    @property
    def fallback(self) -> Exception:
        """The fallback's error."""
        return self.exceptions[1]


def reason_of(error: BaseException) -> str:
    """Why a protected call did not produce its result: breaker_open, timeout or failure."""
    if isinstance(error, CircuitOpenError):
        return "breaker_open"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "failure"


# Generic in what the fallback serves; no slots=True: with it, Python 3.11/3.12 raise TypeError on
# Fallback[X](...) (the frozen __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class Fallback(Instrumented, Generic[F]):
    """On an error matching ``on``, return ``await fallback(error)`` instead.

    Cancellation never triggers the fallback, nor does an error raised in its place while the task is being
    cancelled (docs/architecture.md); a cancellation while the fallback runs is raised as it is, and so is an error
    the fallback raises in its place (never a :class:`FallbackError`). If the fallback raises too,
    :class:`FallbackError` (an ``ExceptionGroup`` of the primary and the fallback error) is raised; a fallback that
    re-raises the error it was given declines to serve it, and that error is raised as it is (outer policies match it
    as without the fallback); a programming error (a sync
    ``fallback``, the TypeError of a policy refusing how it was called) is raised as it is, as through every policy.
    """

    fallback: Callable[[Exception], Awaitable[F]]
    on: type[Exception] | tuple[type[Exception], ...] = field(default=Exception, kw_only=True)
    _on: tuple[type[BaseException], ...] = field(init=False, repr=False, compare=False)

    if TYPE_CHECKING:  # what a call returns: the operation's result, or the fallback's
        async def call(  # type: ignore[override]
            self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs,
        ) -> T | F: ...

        def __call__(  # type: ignore[override]
            self, func: Callable[P, Awaitable[T]],
        ) -> Callable[P, Coroutine[Any, Any, T | F]]: ...
    else:
        def __call__(self, func: Any) -> Any:
            if not callable(func) and not isinstance(func, staticmethod | classmethod):
                # A bare @Fallback above `async def fetch(url)` is Fallback(fetch): fetch became the fallback, and
                # fetch("u") decorated "u" ("func must be an async function, got 'u'", saying nothing of why).
                name = operation_name(self.fallback)
                raise TypeError(
                    f"func must be an async function (a Fallback called decorates it), got {brief(func)}: a Fallback "
                    f"is applied as @Fallback(fallback) above the function. Under a bare @Fallback, {name!r} became "
                    f"the fallback, and calling it called the Fallback"
                )
            return Instrumented.__call__(self, func)

    def __post_init__(self) -> None:
        if not callable(self.fallback):
            raise not_callable("fallback", self.fallback, "an async callable taking the error")
        check_makes_awaitable("fallback", self.fallback, "an async callable taking the error")
        check_arity("fallback", self.fallback, 1, "an async callable taking the error")
        object.__setattr__(self, "_on", check_exceptions("on", self.on, handled=True))
        self._setup("fallback")

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        begun = cancel_base()  # as the call began: a count left before it (see cancel_base) is not its cancellation
        try:
            return await next_step(chain, i, fn, call)
        except Exception as exc:
            if not isinstance(exc, self._on) or isinstance(exc, MisuseError) or cancel_requested(exc, since=begun):
                raise  # cancel_requested: the error stands in for the caller's cancellation, never served
            primary = exc
        # A fallback declining the error (``raise error``) sets its ``__context__`` to what is handled where the
        # fallback runs (the caller's ``except`` block, or the fallback's own): it goes back to the one the operation
        # raised it with, None included (a fallback raising it while handling its cache miss chained it to the miss).
        context = primary.__context__
        base = cancel_base()  # a count the task holds already (a failed TaskGroup's, 3.11 / 3.12) is not its own
        tokens: list[Any] = []
        outcome: Outcome = Outcome.SUCCESS
        error: BaseException | None = None
        try:
            if call is not None:
                event = FallbackStarted(call.operation, reason_of(primary), primary)
                start(call.observers, call.owners, call.hooks, tokens, "fallback_started", event)
            result: T = await awaitable_from("fallback", self.fallback(primary), NotAwaitableError)
        except asyncio.CancelledError:  # cut off by a Timeout policy around it too, not only the wave's timeout
            outcome = Outcome.TIMEOUT if timed_out() else Outcome.CANCELLATION
            raise
        except MisuseError as exc:  # a sync fallback: a programming error, raised as it is (see its class)
            outcome, error = Outcome.FAILURE, exc
            raise
        except Exception as exc:
            outcome, error = Outcome.FAILURE, exc
            if exc is primary:  # the fallback declined it (``raise error``): FallbackError([e, e]) held it twice
                object.__setattr__(exc, "__context__", context)  # past __setattr__, as a raise sets it; None too
                raise
            # Raised while a cancellation requested since the fallback began was handled, it stands in for the caller's
            # cancellation: raised as it is, as a Degrade's cheaper's is (a FallbackError in its place was caught by
            # the caller's `except` as a failure). Only one requested since: with a count left from before, a fallback
            # that awaited a task it had cancelled itself lost the primary error (its own raised as it is).
            if cancel_requested(exc, since=base):
                raise
            raise FallbackError("the primary and the fallback both failed", [primary, exc]) from None
        except BaseException as exc:  # KeyboardInterrupt & co: propagates as it is, but the fallback failed
            outcome, error = Outcome.FAILURE, exc
            raise
        finally:
            if call is not None:
                finish(call.observers, call.owners, call.hooks, tokens, "fallback_finished", outcome, error)
        return result
