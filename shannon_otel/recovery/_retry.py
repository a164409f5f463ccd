"""Retry: an immutable policy; the attempt counter and backoff state live in each call's frame."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .._events import RetryScheduled
from .._validate import check_exceptions, check_number
from ._backoff import Jitter, RandomSource, delay, parse_jitter, uniform_source
from ._core import (
    END,
    Chain,
    Factory,
    Instrumented,
    Sleep,
    _Call,
    first_failed,
    next_step,
    notify,
    observed,
    start_call,
)

T = TypeVar("T")
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
DelayHook = Callable[[BaseException, int], float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry(Instrumented):
    """Call again after a failure, with exponential backoff and jitter.

    ``attempts``: maximum attempts including the first (>= 1). ``timeout``: maximum total seconds
    (> 0) from the first attempt's start; a retry whose delay would end past it is not started (a
    running attempt is never cut short: put a :class:`Timeout` around the retry for that).
    ``initial``/``maximum``/``multiplier``: the backoff ``min(maximum, initial * multiplier**(n-1))``
    after failed attempt ``n``, randomised by ``jitter``. ``on``: exception types to retry, or a
    predicate; only ``Exception`` subclasses are ever retried (cancellation never is).
    ``next_delay(error, attempt)`` may return the delay before the next attempt (e.g. from a
    Retry-After value) or ``None`` to use the backoff. ``sleep`` and ``random`` (a
    ``random.Random`` or a callable returning ``[0, 1)``) are injectable for deterministic tests.

    Every call keeps its own attempt counter and previous delay: concurrent calls share nothing.
    """

    attempts: int = 3
    timeout: float | None = None
    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter | str = Jitter.FULL
    on: RetryOn = Exception
    next_delay: DelayHook | None = None
    sleep: Sleep = asyncio.sleep
    random: RandomSource | None = field(default=None, compare=False)
    _types: tuple[type[BaseException], ...] = field(init=False, repr=False, compare=False)
    _predicate: Callable[[BaseException], bool] | None = field(init=False, repr=False, compare=False)
    _rand: Callable[[], float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_number("attempts", self.attempts, low=1, integer=True)
        check_number("timeout", self.timeout, low=0, low_open=True, allow_none=True)
        check_number("initial", self.initial, low=0)
        check_number("maximum", self.maximum, low=0)
        if self.maximum < self.initial:
            raise ValueError(f"maximum must be >= initial ({self.initial}), got {self.maximum!r}")
        check_number("multiplier", self.multiplier, low=1)
        object.__setattr__(self, "jitter", parse_jitter(self.jitter))
        if isinstance(self.on, type | tuple):
            object.__setattr__(self, "_types", check_exceptions("on", self.on))
            object.__setattr__(self, "_predicate", None)
        elif callable(self.on):
            object.__setattr__(self, "_types", (Exception,))
            object.__setattr__(self, "_predicate", self.on)
        else:
            raise TypeError(f"on must be exception types or a predicate, got {self.on!r}")
        if self.next_delay is not None and not callable(self.next_delay):
            raise TypeError(
                f"next_delay must be a callable (error, attempt) -> seconds | None, got {self.next_delay!r}"
            )
        if not callable(self.sleep):
            raise TypeError(f"sleep must be an async callable taking seconds, got {self.sleep!r}")
        object.__setattr__(self, "_rand", uniform_source(self.random))
        self._setup("retry")

    async def call(self, fn: Factory[T]) -> T:
        # The hot path: first attempt inline, no clock read unless a total timeout is set.
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
        start = self.clock() if self.timeout is not None else 0.0
        try:
            return await fn()
        except Exception as exc:
            if not self._retryable(exc):
                raise
            error = exc
        return await self._resume(END, 0, fn, None, error, start)

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        start = self.clock() if self.timeout is not None else 0.0
        try:
            return await next_step(chain, i, fn, call)
        except Exception as exc:
            if not self._retryable(exc):
                raise
            error = exc
        return await self._resume(chain, i, fn, call, error, start)

    def _retryable(self, error: Exception) -> bool:
        if not isinstance(error, self._types):
            return False
        return self._predicate is None or bool(self._predicate(error))

    async def _resume(
        self, chain: Chain, i: int, fn: Factory[T], call: _Call | None, error: Exception, start: float,
    ) -> T:
        attempt = 1
        previous = self.initial
        while True:
            wait = self._schedule(error, attempt, previous, start, call)
            if wait is None:
                raise error
            await self.sleep(wait)
            attempt += 1
            previous = wait
            try:
                return await next_step(chain, i, fn, call)
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                error = exc

    def _schedule(
        self, error: Exception, attempt: int, previous: float, start: float, call: _Call | None,
    ) -> float | None:
        """The delay before the next attempt, or ``None`` to give up and re-raise ``error``."""
        if attempt >= self.attempts:
            return None
        wait = self.next_delay(error, attempt) if self.next_delay is not None else None
        if wait is None:
            wait = delay(self.jitter, attempt, previous, self.initial, self.maximum,  # type: ignore[arg-type]
                         self.multiplier, self._rand)
        elif not wait >= 0:
            raise ValueError(f"next_delay must return seconds >= 0 or None, got {wait!r}") from error
        if self.timeout is not None and self.clock() - start + wait > self.timeout:
            return None
        if call is not None:
            notify(call, "retry_scheduled", RetryScheduled(call.operation, attempt, wait, error))
        return wait


retry = Retry
