"""What every policy shares: the ``call(fn)`` protocol, chaining, and per-call observation.

A policy runs a zero-argument factory ``fn`` (so it can be called again for a retry) through
``_run(chain, i, fn, call)``, where ``chain[i:]`` are the policies inside it (empty when used
alone) and ``call`` is the per-call :class:`_Call` state, or ``None`` when no hook observes the
call. The ``None`` path is the hot path: it allocates nothing and builds no event.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from .. import _clock
from .._events import AttemptFinished, CallFinished, CallObserver, CallStarted
from .._hooks import resolve_hooks
from .._telemetry import CallOutcome, Outcome
from ..executor._task import task_timed_out

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook

T = TypeVar("T")
P = ParamSpec("P")
Factory = Callable[[], Awaitable[T]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Chain = tuple["Policy", ...]

END: Final[Chain] = ()
# Set inside the task of a hedged attempt so the attempt reports itself as a hedge.
_HEDGED: ContextVar[bool] = ContextVar("shannon_otel_hedged", default=False)


class CircuitOpenError(Exception):
    """Raised instead of calling the operation while a breaker rejects calls."""

    def __init__(self, breaker: str, state: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"circuit breaker {breaker!r} is {state}; call rejected")
        self.breaker = breaker
        self.state = state
        self.retry_after_s = retry_after_s


class _Call:
    """Per-call state of an observed call: its observers and attempt counter."""

    __slots__ = ("attempts", "clock", "ignored", "observers", "operation", "timeouts")

    def __init__(self, observers: list[CallObserver], operation: str, clock: Clock) -> None:
        self.observers = observers
        self.operation = operation
        self.clock = clock
        self.attempts = 0
        self.timeouts: list[asyncio.Timeout] = []
        self.ignored: BaseException | None = None  # the last error a breaker chose not to count


def start_call(
    hooks: tuple[Hook, ...], event: CallStarted, clock: Clock, first: CallObserver | None = None,
) -> _Call | None:
    """Ask each hook for an observer of one call; ``None`` when none of them watches it.

    The hot paths ask ``hooks[0]`` themselves (saving a call frame) and pass its answer as ``first``.
    """
    observers = [first] if first is not None else []
    for hook in hooks[0 if first is None else 1:]:
        observer = hook.call_started(event)
        if observer is not None:
            observers.append(observer)
    return _Call(observers, event.operation, clock) if observers else None


def next_step(chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> Awaitable[T]:
    """The awaitable of whatever is inside position ``i``: the next policy, or the attempt itself."""
    if i < len(chain):
        return chain[i].run(chain, i + 1, fn, call)
    if call is None:
        return fn()
    return _attempt(fn, call)


async def _attempt(fn: Factory[T], call: _Call) -> T:
    call.attempts += 1
    n = call.attempts
    observers = call.observers
    hedged = _HEDGED.get()
    tokens = [o.hedge_started(n) if hedged else o.attempt_started(n) for o in observers]
    start = call.clock()
    outcome = Outcome.SUCCESS
    error: BaseException | None = None
    try:
        return await fn()
    except asyncio.CancelledError:
        # A cancellation delivered by an expiring timeout policy, or by the per-task timeout of the
        # wave running this call, is that timeout. Only the recorded outcome says so: it is re-raised.
        expired = any(t.expired() for t in call.timeouts) or task_timed_out()
        outcome = Outcome.TIMEOUT if expired else Outcome.CANCELLATION
        raise
    except BaseException as exc:
        outcome, error = Outcome.FAILURE, exc
        raise
    finally:
        event = AttemptFinished(call.operation, n, outcome, call.clock() - start, error)
        for observer, token in zip(reversed(observers), reversed(tokens), strict=True):
            observer.attempt_finished(token, event)


async def observed(policy: Policy, chain: Chain, i: int, fn: Factory[T], call: _Call) -> T:
    """Run ``policy`` (at ``chain[i-1]``, or alone) as one observed operation."""
    start = call.clock()
    outcome = CallOutcome.SUCCESS
    error: BaseException | None = None
    try:
        return await policy.run(chain, i, fn, call)
    except asyncio.CancelledError as exc:
        if task_timed_out():
            # The wave's per-task timeout cut the call off: recorded like a Timeout policy's expiry
            # (failure, error.type TimeoutError), yet the cancellation goes on unchanged, uncounted
            # by breakers and never retried.
            outcome, error = CallOutcome.FAILURE, _wave_timeout(exc)
        else:
            outcome = CallOutcome.CANCELLATION
        raise
    except CircuitOpenError as exc:
        outcome, error = CallOutcome.REJECTED, exc
        raise
    except BaseException as exc:
        outcome = CallOutcome.IGNORED if exc is call.ignored else CallOutcome.FAILURE
        error = exc
        raise
    finally:
        event = CallFinished(call.operation, outcome, call.attempts, call.clock() - start, error)
        for observer in reversed(call.observers):
            observer.call_finished(event)


def _wave_timeout(cancelled: asyncio.CancelledError) -> TimeoutError:
    """The TimeoutError the wave's timeout scope turns ``cancelled`` into once it leaves the call."""
    error = TimeoutError()
    error.__cause__ = cancelled
    return error


class Policy:
    """Base of every policy: ``await policy.call(fn)`` and ``@policy`` on an async function.

    Subclasses have ``_hooks``, ``_started`` (the prebuilt :class:`CallStarted`) and ``clock``, and
    implement :meth:`run`. ``call`` may be awaited from any task; it never shares per-call state.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        _hooks: tuple[Hook, ...]
        _started: CallStarted
        clock: Clock

    def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> Awaitable[T]:
        raise NotImplementedError

    async def call(self, fn: Factory[T]) -> T:
        """Run ``fn()`` under this policy; raises what the policy lets through (never swallows cancellation).

        ``Retry``, ``CircuitBreaker`` and ``Pipeline`` repeat this prologue inline on purpose: moving it
        into a helper costs one more call (~0.06 us), a fifth of the breaker's per-call budget.
        """
        hooks = self._hooks
        if hooks:
            first = hooks[0].call_started(self._started)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, self._started, self.clock, first)
                if call is not None:
                    return await observed(self, END, 0, fn, call)
        return await self.run(END, 0, fn, None)

    def _named(self, name: str) -> Policy:
        """This policy reporting under operation ``name`` (used by the decorator when unnamed)."""
        return self

    def _keyed_by_arguments(self, func: Callable[..., Any]) -> bool:
        """Whether decorating ``func`` needs the call's arguments passed down (as a :class:`DecoratedCall`).

        Called once, at decoration time; may raise TypeError when ``func`` cannot be decorated safely.
        """
        return False

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: each call of it runs through this policy.

        Raises TypeError now when a policy inside keeps per-call state that must not be shared across
        arguments (``Degrade(last_good=True)`` without ``key=``) and ``func`` takes parameters.
        """
        policy = self._named(getattr(func, "__qualname__", "operation"))
        factory = DecoratedCall if policy._keyed_by_arguments(func) else functools.partial

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await policy.call(factory(func, *args, **kwargs))

        return wrapper


class DecoratedCall(functools.partial):  # type: ignore[type-arg]
    """The factory a decorator passes for one call when a policy keys state by the call's arguments
    (``args`` and ``keywords``, as on any ``functools.partial``); a plain ``partial`` otherwise."""

    __slots__ = ()


def takes_parameters(func: Callable[..., Any]) -> bool:
    """Whether ``func`` accepts any argument (True when its signature cannot be read)."""
    try:
        return bool(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrumented(Policy):
    """Fields every policy has: the operation name, the clock, and where its telemetry goes.

    ``name`` names the operation (the span name); the decorator fills it with the function's
    qualified name when left ``None``. ``hooks`` are called in addition to the OTel hook for
    ``tracer_provider`` / ``meter_provider`` (the globals when ``None``); ``instrument=False``
    leaves the OTel hook out. Inside a :class:`Pipeline` only the pipeline's hooks observe calls.
    """

    name: str | None = None
    clock: Clock = _clock.monotonic
    hooks: Iterable[Hook] | None = field(default=None, repr=False, compare=False)
    tracer_provider: TracerProvider | None = field(default=None, repr=False, compare=False)
    meter_provider: MeterProvider | None = field(default=None, repr=False, compare=False)
    instrument: bool = field(default=True, repr=False)
    _hooks: tuple[Hook, ...] = field(init=False, repr=False, compare=False)
    _started: CallStarted = field(init=False, repr=False, compare=False)

    def _setup(self, kind: str) -> None:
        """Validate the common fields and resolve the hooks; called once from ``__post_init__``."""
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a str or None, got {self.name!r}")
        if not callable(self.clock):
            raise TypeError(f"clock must be a callable returning seconds, got {self.clock!r}")
        hooks = tuple(self.hooks or ())
        object.__setattr__(self, "hooks", hooks)
        resolved = resolve_hooks(hooks, self.tracer_provider, self.meter_provider, instrument=self.instrument)
        object.__setattr__(self, "_hooks", resolved)
        object.__setattr__(self, "_started", CallStarted(self.name or kind, kind))

    def _named(self, name: str) -> Policy:
        return self if self.name is not None else replace(self, name=name)


