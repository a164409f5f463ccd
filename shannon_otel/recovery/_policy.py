"""What every policy shares: the ``call(fn)`` protocol, chaining, and the common fields.

A policy runs a zero-argument factory ``fn`` (so it can be called again for a retry) through
``_run(chain, i, fn, call)``, where ``chain[i:]`` are the policies inside it (empty when used
alone) and ``call`` is the per-call :class:`_Call` state, or ``None`` when no hook observes the
call. The ``None`` path is the hot path: it allocates nothing and builds no event.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from .. import _clock
from .._events import CallStarted
from .._forwarding import forwarding
from .._hooks import check_hooks, rebuilt, resolve_hooks
from .._validate import (
    check_default_name,
    check_sync_callable,
    check_telemetry_name,
    empty_or_not_str,
    not_callable,
    plain,
)
from ._call import _attempt, _Call, first_failed, observed, start_call
from ._decorated import DecoratedCall, not_a_factory, not_awaitable, raise_wrong_call
from ._types import END, Chain, Clock, Factory

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook

T = TypeVar("T")
P = ParamSpec("P")
_Coroutine = types.CoroutineType


def next_step(chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> Awaitable[T]:
    """The awaitable of whatever is inside position ``i``: the next policy, or the attempt itself."""
    if i < len(chain):
        return chain[i].run(chain, i + 1, fn, call)
    if call is None:
        try:
            made = fn()
        except TypeError as exc:
            raise_wrong_call(exc)
            raise
        if type(made) is not _Coroutine and not inspect.isawaitable(made):  # a coroutine: one check
            raise not_awaitable(made)
        return made
    return _attempt(fn, call)


class Policy:
    """Base of every policy: ``await policy.call(fn)`` and ``@policy`` on an async function.

    The library's own policies implement it through private state and a ``run`` method that are not API.
    ``call`` may be awaited from any task; it never shares per-call state.

    Not built itself (TypeError). A class of your own overriding :meth:`call` alone decorates functions and
    serves as a ``Wave``'s ``policy=``; a :class:`Pipeline` refuses it (TypeError): apply it outside the pipeline.
    """

    __slots__ = ()

    def __init__(self) -> None:
        if type(self) is Policy:  # it has no run(): each call raised AttributeError '_hooks' (or NotImplementedError)
            raise TypeError(
                "Policy is the base of every policy, not one itself: create one, Retry(...), Timeout(...), ..."
            )

    if TYPE_CHECKING:
        _hooks: tuple[Hook, ...]
        _started: CallStarted

        @property
        def clock(self) -> Clock: ...  # read-only: a frozen field, or a property

    def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> Awaitable[T]:
        """This policy's step of a call: policy ``i`` of ``chain`` around the rest (used by :meth:`call` and
        ``Pipeline``; not an entry point of its own: call :meth:`call`)."""
        raise NotImplementedError

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` under this policy (called again for a retry); raises what the
        policy lets through (never swallows cancellation).

        ``call(fn)`` with no arguments takes ``fn`` as the factory itself and allocates nothing for it;
        with arguments the factory is a ``functools.partial`` of it (a private subclass), so a
        ``Degrade(last_good=True, key=...)`` can key its last good values by them. ``Retry``,
        ``CircuitBreaker`` and ``Pipeline`` repeat this prologue inline on purpose: moving it into a helper
        costs one more call (~0.06 us), a fifth of the breaker's per-call budget.
        """
        if args or kwargs:
            fn = DecoratedCall(fn, *args, **kwargs)
        elif not callable(fn):
            raise not_a_factory(fn)
        hooks = self._hooks
        if hooks:
            try:
                first = hooks[0].call_started(self._started)
            except Exception as exc:
                first = first_failed(hooks, exc)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, self._started, self.clock, first)
                if call is not None:
                    return await observed(self, END, 0, fn, call)
        return await self.run(END, 0, fn, None)

    def _named(self, name: str) -> Policy:
        """This policy reporting under operation ``name`` (used by the decorator when unnamed)."""
        return self

    def _reporting_to(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> Policy | Scoped:
        """This policy as run by an entry point with these providers (a :class:`~shannon_otel.Wave`).

        Called once, when the wave is built. A policy given no provider of its own reports its calls
        to the wave's (:class:`Scoped`); one given providers keeps them, and is returned as it is.
        """
        return self

    def _unused_in_pipeline(self) -> tuple[str, ...]:
        """The settings of this policy a :class:`Pipeline` would not use (it refuses them)."""
        return ()

    def _keyed_by_arguments(self, func: Callable[..., Any]) -> bool:
        """Whether decorating ``func`` needs the call's arguments passed down (as a :class:`DecoratedCall`).

        Called once, at decoration time; may raise TypeError when ``func`` cannot be decorated safely.
        """
        return False

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: each call of it runs through this policy.

        Raises TypeError now when ``func`` is not callable, is a ``staticmethod`` / ``classmethod`` object
        (put the policy below that decorator), or is itself a policy (``Retry()(Timeout(1))``
        does not stack them: :class:`Pipeline` does), or when a policy inside keeps per-call state that must
        not be shared across arguments (``Degrade(last_good=True)`` without ``key=``) and ``func`` takes
        parameters.
        """
        what = "an async function (a policy awaits each call of it)"
        if isinstance(func, staticmethod | classmethod):
            # A staticmethod is callable: wrapped, it became a plain function, which an instance binds, so
            # obj.f(x) called f(obj, x); that TypeError was the operation's failure, retried, counted by a
            # breaker, answered by a fallback. (A classmethod is not callable: its error said nothing of order.)
            kind = type(func).__name__
            raise TypeError(
                f"func must be {what}, got a {kind}: put the policy below @{kind} (decorate the function, "
                f"then make it a {kind})"
            )
        if not callable(func):
            raise not_callable("func", func, what)
        if isinstance(func, Policy | Scoped):
            # Callable (this very method), so it was taken: each call then ran func() with no function, a
            # TypeError that an outer Retry retried, a Fallback served, a breaker counted.
            raise TypeError(
                f"func must be {what}, got a {type(func).__name__} policy: a policy is not an operation. Stack "
                f"policies with Pipeline(outer, inner) or @resilient(outer, inner), or decorate the function with each"
            )
        if inspect.isasyncgenfunction(func):
            raise TypeError(f"func must be {what}, got {func!r}")
        if getattr(self, "name", "") is None:  # named after func
            check_default_name("func's qualified name (the operation's default name)", operation_name(func),
                               "give the policy a shorter name=")
        policy = self._named(operation_name(func))
        factory = DecoratedCall if policy._keyed_by_arguments(func) else functools.partial

        wrapper = forwarding(func, policy.call, factory)
        if wrapper.__qualname__ == _WRAPPER_NAME:  # not copied from func: a partial's, a callable object's
            # A partial or a callable object has no name for wraps() to copy: the wrapper was
            # "Policy.__call__.<locals>.wrapper", so a second decorator's operation (and a Dask task) was named that.
            name = operation_name(func)
            wrapper.__qualname__, wrapper.__name__ = name, name.rpartition(".")[2]
        return wrapper


_WRAPPER_NAME: Final = forwarding.__qualname__ + ".<locals>.wrapper"  # a wrapper func gave no name


def operation_name(func: object) -> str:
    """The operation a decorated ``func`` reports as (and a ``Timeout`` names): its qualified name, a partial's
    function's, a callable object's class's. Read as ``getattr(func, "__qualname__", "operation")``, every
    partial and callable object was one operation "operation": one span name and metric series for them all,
    "operation 'operation' timed out after 1 s"."""
    while isinstance(func, functools.partial):
        func = func.func
    try:
        name = getattr(func, "__qualname__", None)
    except Exception:  # an object's own __getattr__ raising: it has no name to give
        name = None
    if not isinstance(name, str) or not name:  # a Mock(spec=fetch)'s is a Mock
        name = type(func).__qualname__
    return name if isinstance(name, str) else "operation"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrumented(Policy):
    """Fields every policy has: the operation name, the clock, and where its telemetry goes.

    ``name`` names the operation (the span name); the decorator fills it with the function's
    qualified name (a partial's function's, a callable object's class's) when left ``None``.
    ``hooks`` are called in addition to the OTel hook for ``tracer_provider`` / ``meter_provider``
    (the globals when ``None``); ``instrument=False`` leaves the OTel hook out. A :class:`Pipeline`
    is one observed operation: it refuses (TypeError) a policy given ``name``, ``hooks`` or a
    provider, which belong on the pipeline itself (its ``instrument`` decides too; a policy's
    ``instrument=False`` asks for nothing, so it is allowed).
    """

    name: str | None = None
    clock: Clock = _clock.monotonic
    hooks: Iterable[Hook] | None = field(default=None, repr=False, compare=False)
    tracer_provider: TracerProvider | None = field(default=None, repr=False, compare=False)
    meter_provider: MeterProvider | None = field(default=None, repr=False, compare=False)
    instrument: bool = field(default=True, repr=False)
    _hooks: tuple[Hook, ...] = field(init=False, repr=False, compare=False)
    _started: CallStarted = field(init=False, repr=False, compare=False)

    def __new__(cls, *args: Any, **kwargs: Any) -> Instrumented:
        # A policy taking keywords only (Retry, Degrade) given a positional argument: a bare decorator.
        if args and all(f.kw_only for f in fields(cls) if f.init):
            name = cls.__name__
            raise TypeError(
                f"{name} takes keyword arguments only ({name}(...)); as a decorator, call it: @{name}() "
                f"or @{name}(...) on the async function"
            )
        return object.__new__(cls)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied from its arguments (see rebuilt)
        return rebuilt(self)

    def _setup(self, kind: str) -> None:
        """Validate the common fields and resolve the hooks; called once from ``__post_init__``."""
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise empty_or_not_str(self.name)(f"name must be a non-empty str or None, got {self.name!r}")
        check_telemetry_name("name", self.name)
        if self.name is not None:
            object.__setattr__(self, "name", plain(self.name))
        check_sync_callable("clock", self.clock, "a callable returning seconds", takes=0)
        object.__setattr__(self, "clock", _clock.seconds(self.clock))
        hooks = check_hooks(self.hooks)
        object.__setattr__(self, "hooks", hooks)
        resolved = resolve_hooks(hooks, self.tracer_provider, self.meter_provider, instrument=self.instrument)
        object.__setattr__(self, "_hooks", resolved)
        object.__setattr__(self, "_started", CallStarted(self.name or kind, kind))

    def _named(self, name: str) -> Policy:
        return self if self.name is not None else replace(self, name=name)

    def _reporting_to(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> Policy | Scoped:
        return scoped(self, END, self.hooks, (self.tracer_provider, self.meter_provider),
                      (tracer_provider, meter_provider), instrument=self.instrument)

    def _unused_in_pipeline(self) -> tuple[str, ...]:
        unused = {
            "name": self.name is not None, "hooks": bool(self.hooks),
            "tracer_provider": self.tracer_provider is not None,
            "meter_provider": self.meter_provider is not None,
        }
        return tuple(k for k, v in unused.items() if v)


def scoped(
    policy: Policy, chain: Chain, hooks: Iterable[Hook] | None,
    own: tuple[TracerProvider | None, MeterProvider | None],
    scope: tuple[TracerProvider | None, MeterProvider | None], *, instrument: bool,
) -> Policy | Scoped:
    """``policy`` reporting to the providers of ``scope`` where its ``own`` are ``None``.

    ``policy`` itself when that changes nothing (its own providers, or ``instrument=False``).
    """
    tracer_provider = own[0] if own[0] is not None else scope[0]
    meter_provider = own[1] if own[1] is not None else scope[1]
    if not instrument or (tracer_provider is own[0] and meter_provider is own[1]):
        return policy
    return Scoped(policy, chain, resolve_hooks(hooks, tracer_provider, meter_provider))


class Scoped:
    """A policy object run with the hooks of an enclosing scope's providers (a wave's).

    Not a copy: every call runs the same policy object (``policy.run``), so a breaker's state, a
    degradation's last good values stay one; only the hooks its calls report to differ. The
    executor calls :meth:`call` with each task's factory, as it would ``policy.call``.
    """

    __slots__ = ("_chain", "_hooks", "policy")

    def __init__(self, policy: Policy, chain: Chain, hooks: tuple[Hook, ...]) -> None:
        self.policy = policy
        self._chain = chain  # what policy.run gets: END, or a pipeline's own chain
        self._hooks = hooks

    async def call(self, fn: Factory[T], /) -> T:
        """``policy.call(fn)`` reporting to this scope's hooks; raises what the policy lets through."""
        policy, hooks = self.policy, self._hooks
        if not callable(fn):
            raise not_a_factory(fn)
        if hooks:
            try:
                first = hooks[0].call_started(policy._started)
            except Exception as exc:
                first = first_failed(hooks, exc)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, policy._started, policy.clock, first)
                if call is not None:
                    return await observed(policy, self._chain, 0, fn, call)
        return await policy.run(self._chain, 0, fn, None)
