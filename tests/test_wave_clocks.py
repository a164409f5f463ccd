"""A wave's injected ``clock`` that raises once the tasks ran: every span is ended, and the results are kept.

The clock is read when a task ends (its duration) and when the wave ends (the wave's duration). Read
there unguarded, its error skipped what follows: the task's (or the wave's) span was left open. Raised
after the spans ended, it cost the caller every result (tests/test_clock_later_readings.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Hook, TaskResult, Wave, WaveObserver, WaveStarted
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class ClockBrokeError(Exception):
    pass


class ArmedClock:
    """Reads 0.0 until armed, then raises."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self) -> float:
        if self.armed:
            raise ClockBrokeError("the clock broke")
        return 0.0


class _ArmOnFinish(WaveObserver):
    def __init__(self, clock: ArmedClock) -> None:
        self.clock = clock

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        self.clock.armed = True  # after the task's duration was read: the next reading is the wave's


class ArmOnFinish(Hook):
    def __init__(self, clock: ArmedClock) -> None:
        self.clock = clock

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        return _ArmOnFinish(self.clock)


@pytest.mark.parametrize("breaks", ["task end", "wave end"])
def test_a_clock_raising_as_a_task_or_the_wave_ends_leaves_no_span_open(breaks: str) -> None:
    otel = InMemoryTelemetry()
    spans = OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    clock = ArmedClock()

    async def work() -> int:
        await asyncio.sleep(0)
        if breaks == "task end":
            clock.armed = True
        return 1

    hooks = [ArmOnFinish(clock)] if breaks == "wave end" else []
    wave: Wave[int] = Wave("clocked", clock=clock, hooks=hooks, **otel.providers)
    # the task has run: its result is the wave's, never the clock's error (logged; see test_clock_later_readings)
    done = run_virtual(wave.run([work]))
    assert done.values() == [1]
    assert done.report.duration_s == 0.0
    assert spans.open == {}
    assert [s.name for s in otel.spans()] == ["task clocked", "wave clocked"]
    otel.shutdown()
