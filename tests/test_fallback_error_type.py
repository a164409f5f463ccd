"""The ``fallback {operation}`` span's ``error.type`` follows the rule of every span of ours (docs/architecture.md,
the semantic conventions' "Recording errors"): set when the span ends in error, to the error it ended with.

It carried the primary's error type from its start: a fallback that served (status UNSET) still had
``error.type`` (the conventions: not set on success), so a search for that error type counted it as a failure;
and one a timeout cut off was ERROR "timeout" with the primary's ``ConnectionError`` where a timed-out attempt
has ``TimeoutError``. The primary's error stays where it occurred: its attempt span and ``shannon.fallbacks``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from opentelemetry.trace import StatusCode

from shannon_otel import Fallback, Pipeline, Timeout
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def _primary() -> str:
    raise ConnectionError("down")


async def _slow_primary() -> str:
    await asyncio.sleep(0.5)
    raise ConnectionError("down")


def _fallback_span(
    fallback: Callable[[Exception], Awaitable[str]], timeout: bool = False,
) -> tuple[InMemoryTelemetry, dict[str, object], object]:
    tel = InMemoryTelemetry()

    async def main() -> None:
        with contextlib.suppress(Exception):
            if timeout:  # the primary fails at 0.5 s, the Timeout cuts the fallback off at 1 s
                await Pipeline(Timeout(1.0), Fallback(fallback), name="get", **tel.providers).call(_slow_primary)
            else:
                await Fallback(fallback, name="get", **tel.providers).call(_primary)

    run_virtual(main())
    span = tel.span("fallback get")
    return tel, dict(span.attributes or {}), span.status.status_code


def test_a_fallback_that_served_has_no_error_type() -> None:
    async def cached(error: Exception) -> str:
        return "cached"

    tel, attributes, status = _fallback_span(cached)
    assert status is StatusCode.UNSET
    assert attributes["shannon.attempt.outcome"] == "success"
    assert "error.type" not in attributes
    assert dict(tel.span("attempt 1").attributes or {})["error.type"] == "ConnectionError"
    [point] = tel.points("shannon.fallbacks")
    assert dict(point.attributes)["error.type"] == "ConnectionError"


@pytest.mark.parametrize(("kind", "expected"), [("raises", "LookupError"), ("cut", "TimeoutError")])
def test_a_failed_fallback_has_the_error_type_of_its_own_end(kind: str, expected: str) -> None:
    async def fallback(error: Exception) -> str:
        if kind == "raises":
            raise LookupError("no cache")
        await asyncio.sleep(5.0)
        return "late"

    _, attributes, status = _fallback_span(fallback, timeout=kind == "cut")
    assert status is StatusCode.ERROR
    assert attributes["error.type"] == expected
