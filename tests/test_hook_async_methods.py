"""A hook method set on the instance (``hook.wave_started = fn``) as an ``async def`` is refused where the
hook is given, as one defined on the class is.

Accepted, it was called without await: its coroutine became the scope's "observer", every task failed on
``'coroutine' object has no attribute 'task_started'`` (counted on the hook, far from the cause), the
callback never ran and Python warned that the coroutine was never awaited.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shannon_otel import Hook, Wave
from shannon_otel.recovery import Retry, Saga


class Plain(Hook):
    pass


async def started(event: object) -> None:
    return None


ENTRY_POINTS: dict[str, Callable[[list[Hook]], object]] = {
    "Wave": lambda hooks: Wave("w", hooks=hooks),
    "Retry": lambda hooks: Retry(attempts=2, hooks=hooks),
    "Saga": lambda hooks: Saga("order", hooks=hooks),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("method", ["wave_started", "call_started", "saga_started", "anomaly", "hook_failed"])
def test_an_async_method_set_on_the_instance_is_refused(entry: str, method: str) -> None:
    hook = Plain()
    setattr(hook, method, started)
    with pytest.raises(TypeError, match=rf"plain functions \(called without await\): Plain\.{method} is async"):
        ENTRY_POINTS[entry]([hook])


def test_a_plain_method_set_on_the_instance_is_accepted() -> None:
    hook = Plain()
    hook.wave_started = lambda event: None  # type: ignore[method-assign]
    assert Wave("w", hooks=[hook]).hooks == (hook,)
