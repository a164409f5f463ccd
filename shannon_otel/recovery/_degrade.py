"""Graceful degradation: serve a declared degraded result, marked as such, instead of failing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .._events import Degraded
from ._core import (
    END,
    Chain,
    CircuitOpenError,
    Factory,
    Instrumented,
    Policy,
    _Call,
    check_exceptions,
    check_number,
    next_step,
    observed,
    start_call,
)
from ._fallback import reason_of

T = TypeVar("T")
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
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
    __slots__ = ("flag", "good", "good_at")

    def __init__(self) -> None:
        self.flag: str | None = None
        self.good: Any = _MISSING
        self.good_at = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Degrade(Instrumented):
    """Serve a degraded result when the operation fails with ``on`` (default: breaker open or
    timeout), or at once while flagged (:meth:`flag`, e.g. by an anomaly detector).

    The degraded result is the first available of: the last good value if ``last_good`` (and no
    older than ``max_age`` seconds), ``await cheaper()``, ``default``. With none available the
    original error is re-raised (or, when flagged, the operation is tried normally).
    Every call returns a :class:`Served`. Cancellation is never degraded.
    """

    default: Any = _MISSING
    last_good: bool = False
    max_age: float | None = None
    cheaper: Callable[[], Awaitable[Any]] | None = None
    on: type[Exception] | tuple[type[Exception], ...] = (CircuitOpenError, TimeoutError)
    _on: tuple[type[BaseException], ...] = field(init=False, repr=False, compare=False)
    _state: _State = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.default is _MISSING and self.cheaper is None and not self.last_good:
            raise ValueError("declare a degraded result: default=, cheaper= or last_good=True")
        check_number("max_age", self.max_age, low=0, low_open=True, allow_none=True)
        if self.max_age is not None and not self.last_good:
            raise ValueError("max_age applies to last_good=True only")
        if self.cheaper is not None and not callable(self.cheaper):
            raise TypeError(f"cheaper must be an async callable with no arguments, got {self.cheaper!r}")
        object.__setattr__(self, "_on", check_exceptions("on", self.on))
        object.__setattr__(self, "_state", _State())
        self._setup("degrade")

    def _named(self, name: str) -> Policy:
        # The decorator's named copy must share the flag and the last good value with this object.
        named = super(Degrade, self)._named(name)
        object.__setattr__(named, "_state", self._state)
        return named

    def flag(self, reason: str = "anomaly") -> None:
        """Serve degraded results from now on, without calling the operation, until :meth:`clear`."""
        self._state.flag = reason

    def clear(self) -> None:
        self._state.flag = None

    @property
    def flagged(self) -> str | None:
        return self._state.flag

    async def call(self, fn: Factory[T]) -> Served[T]:  # type: ignore[override]
        call = start_call(self._hooks, self._started, self.clock) if self._hooks else None
        if call is None:
            return await self.run(END, 0, fn, None)
        return await observed(self, END, 0, fn, call)  # type: ignore[arg-type]

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> Served[T]:  # type: ignore[override]
        state = self._state
        if state.flag is not None:
            served = await self._serve(state.flag, None, call)
            if served is not None:
                return served
        try:
            value = await next_step(chain, i, fn, call)
        except Exception as exc:
            if not isinstance(exc, self._on):
                raise
            served = await self._serve(reason_of(exc), exc, call)
            if served is None:
                raise
            return served
        if self.last_good:
            state.good, state.good_at = value, self.clock()
        return Served(value)

    async def _serve(self, reason: str, error: Exception | None, call: _Call | None) -> Served[Any] | None:
        state = self._state
        age: float | None = None
        if self.last_good and state.good is not _MISSING:
            age = self.clock() - state.good_at
            if self.max_age is None or age <= self.max_age:
                return self._mark(Served(state.good, True, "last_good", reason, age, error), call)
        if self.cheaper is not None:
            return self._mark(Served(await self.cheaper(), True, "cheaper", reason, None, error), call)
        if self.default is not _MISSING:
            return self._mark(Served(self.default, True, "static", reason, None, error), call)
        return None

    def _mark(self, served: Served[Any], call: _Call | None) -> Served[Any]:
        if call is not None:
            event = Degraded(call.operation, served.mode or "", served.reason or "", served.error)
            for observer in call.observers:
                observer.degraded(event)
        return served
