"""The wall clock stepped back while spans of ours are open (NTP, an operator, a VM resumed and resynced).

The SDK stamps a span's start and end with ``time.time_ns``: stepped back an hour while a task ran, its task span,
the wave span around it, the policy's operation and attempt spans and the saga's spans (9 of them) ended an hour
before they started (a negative duration a backend shows, or drops). They now end at their start at the latest
(``shannon_otel._otel._end``). The step is made by replacing the SDK's wall clock with one the test moves: a
deterministic stand-in for the system clock being stepped.
"""

from __future__ import annotations

import asyncio

import opentelemetry.sdk.trace as sdk_trace
import pytest

from shannon_otel import CircuitBreaker, CircuitOpenError, Pipeline, Retry, Saga, SagaError, Wave
from shannon_otel.testing import InMemoryTelemetry

HOUR_NS = 3600 * 10**9


class Wall:
    """A wall clock in nanoseconds that moves 1 ms a reading and is stepped by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        self.now += 10**6
        return self.now

    def step_back(self) -> None:
        self.now -= HOUR_NS


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Wall:
    clock = Wall()
    monkeypatch.setattr(sdk_trace, "time_ns", clock)  # what the SDK stamps spans with, and _end reads
    return clock


def test_spans_open_across_a_step_back_of_the_wall_clock_never_end_before_they_start(wall: Wall) -> None:
    tel = InMemoryTelemetry()
    tp, mp = tel.tracer_provider, tel.meter_provider
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout=60.0, tracer_provider=tp, meter_provider=mp)
    saga = Saga("order", tracer_provider=tp, meter_provider=mp)
    tries = 0

    async def flaky() -> int:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise ConnectionError("first try fails")
        wall.step_back()  # the second try, its operation and task span are open across the step
        return 7

    async def failing() -> int:
        wall.step_back()
        raise ConnectionError("down")

    async def reserve() -> str:
        wall.step_back()
        return "reserved"

    async def release(_: str) -> None:
        wall.step_back()

    async def rolled_back() -> None:
        async with saga.begin() as tx:
            await tx.step("reserve", reserve, compensate=release)
            raise ValueError("rolled back")

    async def main() -> None:
        wave = Wave("w", policy=Retry(attempts=2, initial=0.0, jitter="none"), tracer_provider=tp, meter_provider=mp)
        result = await wave.run([flaky])
        assert result.values() == [7]
        guarded = Pipeline(breaker, name="op", tracer_provider=tp, meter_provider=mp)
        with pytest.raises(ConnectionError):
            await guarded.call(failing)  # opens the breaker
        with pytest.raises(CircuitOpenError):
            await guarded.call(failing)  # rejected: its span takes no time
        with pytest.raises(SagaError, match=r"compensated \['reserve'\]"):
            await rolled_back()

    asyncio.run(main())
    spans = tel.spans()
    names = {s.name for s in spans}
    assert {"wave w", "task w", "attempt 1", "attempt 2", "op", "saga order", "step reserve",
            "compensate reserve"} <= names, names
    stamps = [(s.name, s.start_time or 0, s.end_time or 0) for s in spans]
    assert all(end > 0 for _, _, end in stamps)  # every span ended
    backwards = [(name, (end - start) / 1e9) for name, start, end in stamps if end < start]
    assert backwards == []
