"""One hook object given twice in one entry point's ``hooks=`` is refused where it is given.

Accepted, it saw every event twice: an anomaly hook counted each task twice (a throughput twice the
true one), a logging hook wrote each line twice, a user's counter counted double. The same hook on a
wave and on a policy inside it is two entry points, and each sees its own events once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from shannon_otel import Hook, Wave
from shannon_otel._events import CallObserver, CallStarted, WaveObserver, WaveStarted
from shannon_otel.anomaly import AnomalyHook
from shannon_otel.recovery import BreakerRegistry, CircuitBreaker, Pipeline, Retry, Saga


class Counting(Hook):
    """Counts the callbacks it gets, by name."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.seen[name] = self.seen.get(name, 0) + 1

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        self._count("wave_started")
        count = self._count

        class Tasks(WaveObserver):
            def task_finished(self, token: Any, event: Any) -> None:
                count("task_finished")

        return Tasks()

    def call_started(self, event: CallStarted) -> CallObserver:
        self._count("call_started")
        return CallObserver()


ENTRY_POINTS: dict[str, Callable[[list[Hook]], object]] = {
    "Wave": lambda hooks: Wave("w", hooks=hooks),
    "Retry": lambda hooks: Retry(attempts=2, hooks=hooks),
    "Pipeline": lambda hooks: Pipeline(Retry(attempts=2), hooks=hooks),
    "CircuitBreaker": lambda hooks: CircuitBreaker("db", hooks=hooks),
    "BreakerRegistry": lambda hooks: BreakerRegistry(hooks=hooks),
    "Saga": lambda hooks: Saga("order", hooks=hooks),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("hook", [Counting, AnomalyHook])
def test_the_same_hook_twice_is_refused_naming_hooks(entry: str, hook: Callable[[], Hook]) -> None:
    h = hook()
    with pytest.raises(ValueError, match=r"hooks must hold each hook once, got .* twice"):
        ENTRY_POINTS[entry]([h, Counting(), h])


def test_two_hooks_of_one_class_are_two_hooks() -> None:
    a, b = Counting(), Counting()

    async def one(i: int) -> int:
        return i

    wave: Wave[int] = Wave("w", hooks=[a, b], instrument=False)
    result = asyncio.run(wave.map(one, range(3)))
    assert result.values() == [0, 1, 2]
    assert a.seen == b.seen == {"wave_started": 1, "task_finished": 3}


def test_the_same_hook_on_a_wave_and_its_policy_sees_each_event_once() -> None:
    hook = Counting()

    async def one(i: int) -> int:
        return i

    wave: Wave[int] = Wave("w", hooks=[hook], policy=Retry(attempts=2, hooks=[hook]), instrument=False)
    assert asyncio.run(wave.map(one, range(3))).values() == [0, 1, 2]
    assert hook.seen == {"wave_started": 1, "task_finished": 3, "call_started": 3}
