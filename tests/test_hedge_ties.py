"""Hedged attempts that end in the same step of the event loop: the hedge decides between them by launch order.

Found by a seeded composition fuzzer: the same program on the same virtual-time loop returned one attempt's value
in one run and another's in the next, with or without telemetry. The hedge read ``asyncio.wait``'s ``done`` set,
whose order is the tasks' hashes (their memory addresses): of two attempts ended together, the winner (or the
error raised, "the attempt that failed last") was whichever the set listed first. Here a task factory gives each
task a hash that lists the later-launched attempt first, which is what the addresses did in some runs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator
from contextvars import Context
from typing import Any

import pytest
from _virtual_time import run_virtual

from shannon_otel import Hedge, Pipeline, Retry
from shannon_otel.testing import InMemoryTelemetry


class _ReversedTask(asyncio.Task):  # type: ignore[type-arg]
    """A task whose hash lists the hedge's later attempts first in a small set (slots 7, 6, ...)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], *, loop: asyncio.AbstractEventLoop,
                 context: Context | None = None, slots: Iterator[int]) -> None:
        name = getattr(coro, "__qualname__", "")
        self._hash = next(slots) if name == "_attempt" else id(self) >> 4  # set before the loop hashes it
        super().__init__(coro, loop=loop, context=context)

    def __hash__(self) -> int:
        return self._hash


async def _tied(outcome: str, policy: Hedge | Pipeline) -> list[Any]:
    """Two hedged attempts blocked on one event, released together: both end in the same loop step."""
    slots = itertools.count(7, -1)
    asyncio.get_running_loop().set_task_factory(
        lambda loop, coro, **kw: _ReversedTask(coro, loop=loop, context=kw.get("context"), slots=slots))
    go = asyncio.Event()
    started: list[int] = []

    async def attempt() -> str:
        n = len(started) + 1
        started.append(n)
        if n == 2:
            go.set()  # both attempts now wait on go, and wake in one step
        await go.wait()
        if outcome == "value":
            return f"attempt {n}"
        raise ValueError(f"attempt {n}")

    try:
        return [await policy.call(attempt), started]
    except ValueError as exc:
        return [exc, started]


@pytest.mark.parametrize("instrument", [False, True])
def test_the_first_launched_of_two_tied_successes_wins(instrument: bool) -> None:
    tel = InMemoryTelemetry() if instrument else None
    kwargs = tel.providers if tel else {"instrument": False}
    value, started = run_virtual(_tied("value", Hedge(0.0, attempts=2, **kwargs)))
    assert started == [1, 2]
    assert value == "attempt 1"


@pytest.mark.parametrize("instrument", [False, True])
def test_the_last_launched_of_two_tied_failures_is_raised(instrument: bool) -> None:
    tel = InMemoryTelemetry() if instrument else None
    kwargs = tel.providers if tel else {"instrument": False}
    error, started = run_virtual(_tied("error", Pipeline(Hedge(0.0, attempts=2), Retry(attempts=1), **kwargs)))
    assert started == [1, 2]
    assert isinstance(error, ValueError)
    assert str(error) == "attempt 2"  # the last attempt's error; the earlier one is in its __context__
    assert isinstance(error.__context__, ExceptionGroup)
    assert [str(e) for e in error.__context__.exceptions] == ["attempt 1"]
