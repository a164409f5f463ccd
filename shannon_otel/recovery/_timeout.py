"""Timeout: a cancel scope (``asyncio.timeout``) around the operation, raising ``TimeoutError``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

from .._events import TimedOut
from .._validate import check_number
from ._call import _Call, notify
from ._policy import Instrumented, next_step
from ._types import Chain, Factory

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeout(Instrumented):
    """Cut the operation off after ``seconds`` (> 0) and raise the builtin ``TimeoutError``.

    Where it sits in a :class:`Pipeline` decides what it bounds: outside a :class:`Retry` it is the
    budget of the whole call (backoff sleeps included), inside it bounds each attempt.
    A cancellation from outside is re-raised unchanged, never turned into a timeout.
    """

    seconds: float

    def __post_init__(self) -> None:
        check_number("seconds", self.seconds, low=0, low_open=True)
        self._setup("timeout")

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        if call is None:
            async with asyncio.timeout(self.seconds):
                return await next_step(chain, i, fn, call)
        scope = asyncio.timeout(self.seconds)
        call.timeouts.append(scope)  # lets the attempt tell its timeout from an outside cancellation
        try:
            async with scope:
                return await next_step(chain, i, fn, call)
        except TimeoutError:
            if scope.expired():
                notify(call, "timed_out", TimedOut(call.operation, self.seconds))
            raise
        finally:
            call.timeouts.remove(scope)
