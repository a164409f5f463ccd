"""A policy's coroutine driven by hand, with no asyncio loop running (``coro.send(None)`` in a test harness, or
another event loop library): no asyncio task, so no cancellation was requested; the policy acts on the error.

Before, asking whether the error stood in for a cancellation called ``asyncio.current_task()``, which raised
``RuntimeError("no running event loop")`` in place of the operation's error: a ``Fallback`` or ``Degrade`` served
nothing, and a ``Retry`` raised that RuntimeError instead of the error it gave up on.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest

from shannon_otel import Degrade, Fallback, Policy, Retry, resilient
from shannon_otel.testing import InMemoryTelemetry


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to its end by hand, no event loop (the operations here never suspend)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


async def _down() -> str:
    raise ValueError("down")


async def _fallback(error: Exception) -> str:
    return "fallback"


def _policies(**providers: Any) -> list[tuple[Policy, Any]]:
    return [
        (Fallback(_fallback, on=ValueError, name="f", **providers), "fallback"),
        (Degrade(default="d", on=ValueError, name="d", **providers), "d"),
        (resilient(Degrade(default="d", on=ValueError), Retry(attempts=1), name="p", **providers), "d"),
    ]


@pytest.mark.parametrize("watched", [False, True])
def test_fallback_and_degrade_serve_with_no_loop(watched: bool) -> None:
    tel = InMemoryTelemetry()
    for policy, expected in _policies(**(tel.providers if watched else {"instrument": False})):
        result = _drive(policy.call(_down))
        assert getattr(result, "value", result) == expected
    if watched:
        assert {span.name for span in tel.spans()} >= {"fallback f", "f", "d", "p"}
    tel.shutdown()


def test_retry_raises_the_operations_error_with_no_loop() -> None:
    with pytest.raises(ValueError, match="down"):
        _drive(Retry(attempts=1, instrument=False).call(_down))
