"""Graceful degradation: serve a declared degraded result, marked as such, instead of failing."""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Never, ParamSpec, TypeVar, cast

from .._deadline import cancel_base, cancel_requested
from .._events import Degraded
from .._validate import (
    awaitable_from,
    builtin_numbers,
    check_arity,
    check_bool,
    check_exceptions,
    check_makes_awaitable,
    check_name,
    check_number,
    check_sync_callable,
    not_callable,
    plain,
    sync_result,
)
from ._call import _Call, clock_logged, degraded, first_failed, observed, start_call
from ._circuit_open import CircuitOpenError
from ._decorated import (
    DecoratedCall,
    MisuseError,
    NotAwaitableError,
    NotSyncError,
    not_a_factory,
    takes_parameters,
)
from ._fallback import reason_of
from ._policy import Instrumented, Policy, next_step
from ._types import END, Chain, Factory

T = TypeVar("T")
P = ParamSpec("P")
if TYPE_CHECKING:  # what default= / cheaper= serve; a bare `Degrade` annotation is Degrade[Any], as before
    from typing_extensions import TypeVar as _DefaultedTypeVar

    D = _DefaultedTypeVar("D", covariant=True, default=Any)
else:
    D = TypeVar("D", covariant=True)


class _Missing(enum.Enum):
    """``default`` not given: one object that pickling and copying keep (an enum member comes back as itself). A bare
    ``object()`` came back from ``pickle.loads`` / ``copy.deepcopy`` of a Degrade as another object, taken for a
    declared default: ``Degrade(last_good=True)`` shipped to a Dask worker served ``<object object at ...>`` as the
    result of a failed call with nothing to serve, where the error was to be raised."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


# Typed Never, not Any: pyright solves D from the field's default, and took Any (Degrade[Any] for last_good=True
# alone, so Any in every result's type); Never adds nothing to what a call serves
_MISSING: Never = cast("Never", _Missing.MISSING)
_log = logging.getLogger("shannon_otel")
_INSTANCE: Hashable = object()  # the key of the one last good value of ``call(fn)`` without arguments


# no slots=True: with it, Python 3.11/3.12 raise TypeError on Served[X](...) (the frozen
# __setattr__ calls super() with the class as it was before slots rebuilt it)
@dataclass(frozen=True)
class Served(Generic[T]):
    """What a :class:`Degrade` call returns: the value, and whether (and why) it is degraded.

    ``mode``: "last_good", "cheaper" or "static"; ``reason``: "breaker_open", "timeout", "failure",
    or the reason given to :meth:`Degrade.flag`; ``age_s``: age of a last-good value.
    """

    value: T
    degraded: bool = False
    mode: str | None = None
    reason: str | None = None
    age_s: float | None = None
    error: BaseException | None = None


class _State:
    """What a Degrade and its decorated copies share: the flag and the last good values.

    ``goods`` maps a key — ``(function, key(args, kwargs))`` (or the function alone without
    ``key``; an unhashable function by identity, see :class:`_Same`) for a partial factory (the
    decorator's, ``call(fn, *args)``'s, ``Wave.map``'s),
    ``_INSTANCE`` for any other factory — to (value, clock time), least recently used first;
    bounded by ``max_keys``.
    """

    __slots__ = ("flag", "goods")

    def __init__(self) -> None:
        self.flag: str | None = None
        # A plain dict (insertion order: least recently used first; a use re-inserts the key at the end), not an
        # OrderedDict: a key compared in Python (a dataclass's __eq__) lets another thread in mid-lookup, and an
        # OrderedDict changed meanwhile crashed the interpreter (a segmentation fault, CPython 3.11-3.13) in
        # move_to_end; a dict's lookups start again after such a change
        self.goods: dict[Hashable, tuple[Any, float]] = {}


# Generic in what default= / cheaper= serve; no slots=True: with it, Python 3.11/3.12 raise TypeError on
# Degrade[X](...) (as for Served and Fallback)
@dataclass(frozen=True, kw_only=True)
class Degrade(Instrumented, Generic[D]):
    """Serve a degraded result when the operation fails with ``on`` (default: breaker open or
    timeout), or at once while flagged (:meth:`flag`, e.g. by an anomaly detector).

    The degraded result is the first available of: the last good value if ``last_good`` (and no
    older than ``max_age`` seconds), ``await cheaper()`` (when it raises, ``default`` is served if
    declared, else its error propagates; while flagged, the operation is tried instead, and its error, if
    any, raised), ``default``.
    With none available the original error is re-raised (or, when flagged, the operation is tried normally).
    Every call returns a :class:`Served`. Cancellation is never degraded, nor is an error raised in its place
    while the task is being cancelled (docs/architecture.md), by the operation or by ``cheaper`` (no ``default``
    is served for it: it propagates).

    Last good values are never shared across functions or keys, but for ``call(fn)`` without arguments (below).
    A decorated function,
    ``call(fn, *args, **kwargs)``, or a ``functools.partial`` factory (what ``Wave.map`` passes)
    keeps its own last good value per function (one Degrade may
    decorate several) and, with ``key``, per ``key(args, kwargs)``. ``key`` is a callable
    ``(args, kwargs) -> hashable`` (e.g. ``lambda args, kwargs: args[0]`` for ``get_user(uid)``);
    it is required when the function takes parameters — TypeError at decoration time, or at the
    call for ``call(fn, *args)`` — since the value of one call (one user's record) would be served
    to calls with other arguments. ``call(fn)`` of any other zero-argument factory (a lambda, or a
    function called without arguments: ``call(get_config)`` and ``call(get_flags)`` of one Degrade share
    it, one served for the other) keeps one last good value per Degrade instance; with ``key`` set it
    raises TypeError instead,
    as there are no arguments to key by. A ``Wave(policy=...)`` refuses ``last_good`` without
    ``key``: its tasks would share that one value. The newest ``max_keys`` keys (least
    recently used dropped first) each keep their own value; O(1) per call. Event loops in several
    threads may share one Degrade (its flag and last good values are one).

    A ``default`` or last good value is served as the object itself, the same one to every call (a mutable one
    changed by a caller is served changed). ``cheaper`` is not bounded by a ``Timeout`` inside the Degrade (it runs
    once that has ended); one around the Degrade bounds it.
    """

    default: D = _MISSING
    last_good: bool = False
    max_age: float | None = None
    key: Callable[[tuple[Any, ...], dict[str, Any]], Hashable] | None = None
    max_keys: int = 1024
    cheaper: Callable[[], Awaitable[D]] | None = None
    on: type[Exception] | tuple[type[Exception], ...] = (CircuitOpenError, TimeoutError)
    _on: tuple[type[BaseException], ...] = field(init=False, repr=False, compare=False)
    _state: _State = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_bool("last_good", self.last_good)
        if self.default is _MISSING and self.cheaper is None and not self.last_good:
            raise ValueError("declare a degraded result: default=, cheaper= or last_good=True")
        check_number("max_age", self.max_age, low=0, low_open=True, allow_none=True)
        if self.max_age is not None and not self.last_good:
            raise ValueError("max_age applies to last_good=True only")
        check_sync_callable("key", self.key, "a callable (args, kwargs) -> hashable", allow_none=True,
                            takes=2)
        if self.key is not None and not self.last_good:
            raise ValueError("key applies to last_good=True only")
        check_number("max_keys", self.max_keys, low=1, integer=True)
        builtin_numbers(self, "max_age", "max_keys")
        if self.cheaper is not None and not callable(self.cheaper):
            raise not_callable("cheaper", self.cheaper, "an async callable with no arguments")
        if self.cheaper is not None:
            check_makes_awaitable("cheaper", self.cheaper, "an async callable with no arguments")
            check_arity("cheaper", self.cheaper, 0, "an async callable with no arguments")
        object.__setattr__(self, "_on", check_exceptions("on", self.on, handled=True))
        object.__setattr__(self, "_state", _State())
        self._setup("degrade")

    def _named(self, name: str) -> Policy:
        # The decorator's named copy must share the flag and the last good values with this object.
        named = super()._named(name)
        object.__setattr__(named, "_state", self._state)
        return named

    def _keyed_by_arguments(self, func: Callable[..., Any]) -> bool:
        if not self.last_good:
            return False
        if self.key is None and takes_parameters(func):
            name = getattr(func, "__qualname__", repr(func))
            raise TypeError(
                f"Degrade(last_good=True) on {name}(...), which takes parameters, needs key=: without it one "
                "call's last good value would be served to calls with other arguments (another user's "
                "data). Pass key=lambda args, kwargs: <what identifies the result>, e.g. args[0]."
            )
        return True

    def flag(self, reason: str = "anomaly") -> None:
        """Serve degraded results from now on, without calling the operation, until :meth:`clear`."""
        check_name("reason", reason)
        self._state.flag = plain(reason)

    def clear(self) -> None:
        """Stop serving degraded results at once: calls run the operation again (undoes :meth:`flag`)."""
        self._state.flag = None

    @property
    def flagged(self) -> str | None:
        """The reason given to :meth:`flag` while flagged, else ``None``."""
        return self._state.flag

    def __call__(  # type: ignore[override]
        self, func: Callable[P, Awaitable[T]]
    ) -> Callable[P, Coroutine[Any, Any, Served[T | D]]]:
        """Decorate an async function: each call of it returns a :class:`Served` value (the function's result, or
        what ``default`` / ``cheaper`` serve)."""
        wrapped = Policy.__call__(self, func)  # its calls return what run() returns: Served[T | D]
        return cast("Callable[P, Coroutine[Any, Any, Served[T | D]]]", wrapped)

    async def call(  # type: ignore[override]
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs,
    ) -> Served[T | D]:
        if args or kwargs:
            fn = DecoratedCall(fn, *args, **kwargs)
        elif not callable(fn):
            raise not_a_factory(fn)
        call = None
        hooks = self._hooks
        if hooks:
            try:
                first = hooks[0].call_started(self._started)
            except Exception as exc:
                first = first_failed(hooks, exc)
            call = start_call(hooks, self._started, self.clock, first)
        if call is None:
            return await self.run(END, 0, fn, None)
        return await observed(self, END, 0, fn, call)  # type: ignore[arg-type]

    async def run(  # type: ignore[override]
        self, chain: Chain, i: int, fn: Factory[T], call: _Call | None,
    ) -> Served[T | D]:
        state = self._state
        key = self._key_of(fn) if self.last_good else _INSTANCE
        # Read before the operation runs, so a clock that cannot read (raises, NaN, inf) is refused while nothing has
        # run; a later reading that fails stamps the value with this one (older: never served past max_age)
        started = self.clock() if self.last_good else 0.0
        begun = cancel_base()  # as the call began: a count left before it (see cancel_base) is not its cancellation
        cheaper = True  # flagged with nothing served, the cheaper (if any) failed: not called again on a failure
        flag = state.flag  # read once: another thread may clear it meanwhile (a degraded result with reason None)
        if flag is not None:
            served = await self._serve(flag, None, call, key)
            if served is not None:
                return served
            cheaper = False
        try:
            value = await next_step(chain, i, fn, call)
        except Exception as exc:
            if not isinstance(exc, self._on) or isinstance(exc, MisuseError) or cancel_requested(exc, since=begun):
                raise  # cancel_requested: the error stands in for the caller's cancellation, never degraded
            served = await self._serve(reason_of(exc), exc, call, key, cheaper=cheaper)
            if served is None:
                raise
            return served
        if self.last_good:
            goods = state.goods
            # The operation has run: a clock failing now never costs its result (it raised ValueError in its place)
            at = self._reading("as its result was stored; that value is stamped with the call's start", call)
            # No lock, yet event loops in several threads may share this Degrade: between two of these steps
            # another thread may drop a key or empty the dict. Keys that cannot be compared (see _unmatched) cost the
            # value its place, never the caller its result.
            try:
                goods.pop(key, None)  # stored anew at the end: the most recently used
                goods[key] = (value, started if at is None else at)
            except Exception as exc:
                _unmatched(self._started.operation, "its result was stored; it is returned, not kept", exc)
            # The least recently used go first; dropping one compares keys too (OrderedDict.popitem raised a key's
            # __eq__ error in place of the result). A drop that failed (or raced another thread) is made up later.
            for _ in range(len(goods) - self.max_keys):
                try:
                    del goods[next(iter(goods))]
                except Exception:  # emptied or changed by another thread (StopIteration, KeyError); a key's __eq__
                    break
        return Served(value)

    def _key_of(self, fn: Factory[Any]) -> Hashable:
        """Which last good value a call reads and writes (see the class docstring). A call that cannot be keyed is a
        :class:`MisuseError`, raised through every policy around it (an outer ``Fallback`` served a result for it)."""
        if not isinstance(fn, functools.partial):
            if self.key is not None:
                raise MisuseError(
                    "Degrade(last_good=True, key=...) keys last good values by the call's arguments, and "
                    "call(fn) of a zero-argument factory has none: pass them, call(fn, *args, **kwargs)"
                )
            return _INSTANCE
        func = _function(fn.func)
        if self.key is not None:
            keyed = (func, sync_result("key", self.key(fn.args, fn.keywords), NotSyncError))
            try:
                hash(keyed)
            except TypeError:  # refused now, before the operation runs: not after, losing its result
                raise MisuseError(
                    f"key must return a hashable value (it keys the last good values), got {keyed[1]!r}"
                ) from None
            return keyed
        if fn.args or fn.keywords:
            raise MisuseError(
                f"Degrade(last_good=True) called with arguments for {getattr(fn.func, '__qualname__', fn.func)!r} "
                "needs key=: without it one call's last good value would be served to calls with other "
                "arguments. Pass key=lambda args, kwargs: <what identifies the result>, e.g. args[0]."
            )
        return func

    async def _serve(
        self, reason: str, error: Exception | None, call: _Call | None, key: Hashable, *, cheaper: bool = True,
    ) -> Served[Any] | None:
        if self.last_good:
            goods = self._state.goods
            try:
                good = goods.get(key)
            except Exception as exc:  # the operation's error (or the flag) goes on to what is next in line
                _unmatched(self._started.operation, "its last good value was looked up; none is served", exc)
                good = None
            if good is not None:
                # dropped meanwhile by another thread (see run), or the keys failed to compare as just before: served
                with contextlib.suppress(Exception):
                    goods[key] = goods.pop(key)  # serving it is a use: stored anew at the end
                value, at = good
                now = self._reading("as a last good value was aged; it is served only without max_age", call)
                if now is None:  # its age unknown: served only with no max_age to prove, its age_s None
                    if self.max_age is None:
                        return self._mark(Served(value, True, "last_good", reason, None, error), call)
                else:
                    if now < at:  # an injected clock that went back (a stepped wall clock): no negative age, and
                        at = now  # counted from here: a day back served the value as new for a day, past max_age
                        with contextlib.suppress(Exception):  # KeyError or a key's __eq__ (see _unmatched)
                            if goods.get(key) is good:  # not over a newer value another thread stored meanwhile
                                goods[key] = (value, at)
                    age = now - at
                    if self.max_age is None or age <= self.max_age:
                        return self._mark(Served(value, True, "last_good", reason, age, error), call)
        if self.cheaper is not None and cheaper:
            made: object = _MISSING
            base = cancel_base()  # a count the task holds already (a failed TaskGroup's, 3.11 / 3.12) is not its own
            try:
                # Called inside the try: a cheaper that raises as it is called (a lambda reading a cache
                # before building its coroutine) raised past a declared default, and past a flagged call's operation.
                made = self.cheaper()
                value = await awaitable_from("cheaper", made, NotAwaitableError)
            except Exception as exc:  # not available: the next in line, the declared default, is served
                if made is not _MISSING and not inspect.isawaitable(made):
                    raise  # a sync cheaper (awaitable_from's NotAwaitableError): refused, always
                if cancel_requested(exc, since=base):  # it stands in for the caller's cancellation: no default
                    raise  # served for it (one requested since the cheaper began: see Fallback.run)
                if self.default is _MISSING and error is not None:
                    # Flagged (no error), nothing is left to serve: the operation is tried, as with none available.
                    # Raising the cheaper's error failed calls that the operation, never run, would have served.
                    raise
            else:
                return self._mark(Served(value, True, "cheaper", reason, None, error), call)
        if self.default is not _MISSING:
            return self._mark(Served(self.default, True, "static", reason, None, error), call)
        return None

    def _mark(self, served: Served[Any], call: _Call | None) -> Served[Any]:
        if call is not None:
            degraded(call, Degraded(call.operation, served.mode or "", served.reason or "", served.error))
        return served

    def _reading(self, when: str, call: _Call | None) -> float | None:
        """``clock()``, or None when it cannot read (raises, or reads NaN or an infinity: refused by the policy's
        :class:`~shannon_otel._clock.Seconds`). Read once the operation has run: its outcome is what the caller gets,
        never the clock's error (a last good value served in place of the error the clock raised instead of the
        result). The error is logged ``when`` (what failed, and what follows), each time, watched or not, as the
        breaker and Retry log theirs: an unwatched Degrade logged nothing."""
        try:
            return self.clock()
        except Exception as exc:
            _log.warning("the clock of degrade %r failed %s", self._started.operation, when, exc_info=exc)
            clock_logged(call, self.clock)  # the watched call's own warning is not logged again
            return None


def _unmatched(operation: str, when: str, exc: Exception) -> None:
    """Log that the last good values could not be searched for a call's key: ``key=`` returned an object whose
    ``__eq__`` raises (a dict compares two keys of one hash), or whose ``__hash__`` raises after the first (a dict
    hashes the key at each lookup). Raised, that error replaced the call's result once the operation had returned, or
    the default served (or the operation's own error raised) once it had failed."""
    _log.warning("the key of a call of degrade %r could not be hashed or compared with another (key= returns objects "
                 "whose __hash__ or __eq__ raises) as %s", operation, when, exc_info=exc)


class _Same:
    """An unhashable function (a callable object whose class defines ``__eq__`` alone: a ``@dataclass`` with an async
    ``__call__``) as the function part of a last good value's key: the object itself, by identity. Keyed as it is,
    ``hash`` raised after the operation had run (its result lost, a TypeError "unhashable type" in its place) or,
    with ``key=``, the call was refused as if ``key`` had returned the unhashable value. Held by the key, the object
    stays alive while its value is kept, so its id is never another's."""

    __slots__ = ("func",)

    def __init__(self, func: object) -> None:
        self.func = func

    def __hash__(self) -> int:
        return id(self.func)

    def __eq__(self, other: object) -> bool:
        return type(other) is _Same and other.func is self.func


def _function(func: Any) -> Hashable:
    """``func`` as the function part of a last good value's key (see :class:`_Same`)."""
    try:
        hash(func)
    except TypeError:
        return _Same(func)
    return cast("Hashable", func)
