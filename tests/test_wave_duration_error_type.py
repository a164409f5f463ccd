"""``shannon.wave.duration`` carries ``error.type`` when the wave ended in error, the value its span has.

The semantic conventions' duration metrics (``http.server.request.duration`` and the like) carry ``error.type``
when the operation ended in error, and "for a given error, the same value is used as the error.type attribute on
spans and metrics". ``shannon.task.duration`` did; the wave's duration had only its name and outcome, so a failed
wave's latency could not be told by its error while its span said which (its own error's type, its failed tasks'
one type, else ``_OTHER``). The values are the task error types (already metric attributes) and ``_OTHER``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shannon_otel import Wave
from shannon_otel import _telemetry as tel
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def _ok() -> int:
    return 1


async def _key() -> int:
    raise KeyError("k")


async def _value() -> int:
    raise ValueError("v")


def _wave_point(bridged: bool, name: str, tasks: list[Callable[[], Awaitable[int]]]) -> tuple[dict[str, Any], Any]:
    memory = InMemoryTelemetry(bridged=bridged)
    try:
        run_virtual(Wave(name, **memory.providers).run(tasks))
        [point] = memory.points(tel.WAVE_DURATION.name)
        return dict(point.attributes), memory.span(f"wave {name}").attributes
    finally:
        memory.shutdown()


@pytest.mark.parametrize("bridged", [True, False])
@pytest.mark.parametrize(("tasks", "expected"), [
    ([_ok, _ok], None),
    ([_ok, _key], "KeyError"),
    ([_key, _key], "KeyError"),
    ([_key, _value], tel.ERROR_TYPE_OTHER),
])
def test_a_wave_duration_has_the_error_type_of_its_span(
    bridged: bool, tasks: list[Callable[[], Awaitable[int]]], expected: str | None,
) -> None:
    attributes, span = _wave_point(bridged, "w", tasks)
    assert attributes.get(tel.ERROR_TYPE) == expected == (span or {}).get(tel.ERROR_TYPE)
    assert attributes[tel.WAVE_NAME] == "w"
    assert set(attributes) <= set(tel.WAVE_DURATION.attributes)
