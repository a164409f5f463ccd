"""A failed wave's span carries ``error.type``, as the semantic conventions ask of every failed span.

"Recording errors on spans": when the operation failed, instrumentation "SHOULD set the span status code to
Error, SHOULD set the error.type attribute". The wave span was ERROR ("2 of 2 tasks failed", "the wave raised")
with no ``error.type`` at all, the one ERROR span of ours without it: a search ``error.type=...`` or a span metric
grouped by it missed every failed wave. Its value: the failed tasks' error type when they share one, else
``_OTHER`` (the conventions' fallback value) for several types. A wave that raised itself carries that error's type
(tests/test_wave_raised_exception_event.py).
"""

from __future__ import annotations

import asyncio

from opentelemetry.trace import StatusCode

from shannon_otel import Wave
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def _work(i: int) -> int:
    if i in (1, 2):
        raise ValueError(f"bad input {i}")
    if i == 3:
        await asyncio.sleep(100)  # cut off by task_timeout: TimeoutError
    return i


def _wave_span_attributes(tasks: range, name: str) -> tuple[StatusCode, dict[str, object]]:
    memory = InMemoryTelemetry()
    try:
        run_virtual(Wave(name, task_timeout=1.0, **memory.providers).map(_work, tasks))
        span = memory.span(f"wave {name}")
        return span.status.status_code, dict(span.attributes or {})
    finally:
        memory.shutdown()


def test_a_wave_whose_tasks_failed_with_one_error_type_carries_it() -> None:
    status, attributes = _wave_span_attributes(range(3), "one-type")
    assert status is StatusCode.ERROR
    assert attributes["error.type"] == "ValueError"


def test_a_wave_whose_tasks_failed_with_several_error_types_carries_other() -> None:
    status, attributes = _wave_span_attributes(range(4), "mixed")
    assert status is StatusCode.ERROR
    assert attributes["error.type"] == "_OTHER"


def test_a_wave_that_succeeded_carries_no_error_type() -> None:
    status, attributes = _wave_span_attributes(range(1), "fine")
    assert status is StatusCode.UNSET
    assert "error.type" not in attributes

