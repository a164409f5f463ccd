"""A Timeout around one attempt opens its window once that attempt's start hooks have run, as a wave's
``task_timeout`` opens after ``task_started``: a hook's own time never counts against its own deadline. An
enclosing deadline (a Timeout around a Retry) includes the time of the hooks inside it (docs/architecture.md).

A hook "blocks" by moving the virtual-time loop's clock, as a blocking call would move a real one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _virtual_time import watched

from shannon_otel import Hook
from shannon_otel._events import AttemptFinished, CallObserver, CallStarted
from shannon_otel.recovery import Pipeline, Retry, Timeout
from shannon_otel.testing import InMemoryTelemetry, VirtualTimeLoop


class _Blocking(CallObserver):
    def __init__(self, seen: list[AttemptFinished]) -> None:
        self.seen = seen

    def attempt_started(self, attempt: int) -> Any:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.advance(0.2)  # a hook that held the loop for 0.2 s
        return None

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None:
        self.seen.append(event)


class _SlowHook(Hook):
    def __init__(self) -> None:
        self.seen: list[AttemptFinished] = []

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return _Blocking(self.seen)


def _operation(seconds: float) -> Any:
    async def op() -> str:
        await asyncio.sleep(seconds)
        return "done"

    return op


@pytest.mark.parametrize("pipeline", [False, True], ids=["alone", "innermost-in-pipeline"])
def test_a_slow_attempt_started_hook_does_not_time_out_the_attempt(pipeline: bool) -> None:
    hook = _SlowHook()
    tel = InMemoryTelemetry()
    timeout = Timeout(0.1)
    policy = (Pipeline(Retry(attempts=1), timeout, hooks=[hook], **tel.providers) if pipeline
              else Timeout(0.1, hooks=[hook], **tel.providers))

    async def main() -> str:
        return await policy.call(_operation(0.05))

    assert watched(main) == "done"  # before: TimeoutError, the window having closed while the hook ran
    [event] = hook.seen
    assert event.outcome == "success" and event.error is None
    tel.shutdown()


def test_the_window_still_bounds_the_operation_after_the_hooks() -> None:
    hook = _SlowHook()

    async def main() -> str:
        return await Timeout(0.1, hooks=[hook], instrument=False).call(_operation(0.15))

    with pytest.raises(TimeoutError, match=r"timed out after 0\.1 s"):
        watched(main)
    [event] = hook.seen
    assert event.outcome == "timeout"


def test_an_enclosing_deadline_includes_the_hooks_inside_it() -> None:
    hook = _SlowHook()

    async def main() -> str:
        return await Pipeline(Timeout(0.1), Retry(attempts=1), hooks=[hook], instrument=False).call(_operation(0.05))

    with pytest.raises(TimeoutError):
        watched(main)
    [event] = hook.seen
    assert event.outcome == "timeout"
