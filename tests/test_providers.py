"""One state object per MeterProvider (bridge, anomaly instruments, shared OTel hooks), one registry."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from opentelemetry.sdk.trace import TracerProvider

from shannon_otel import Wave
from shannon_otel import _telemetry as tm
from shannon_otel._hooks import otel_hook
from shannon_otel._otel._providers import bridge_for, provider_state
from shannon_otel.anomaly import LATENCY, AnomalyHook, DetectorConfig
from shannon_otel.testing import FakeClock, InMemoryTelemetry

EVERY_TICK = DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9)


def test_a_provider_has_one_state_holding_its_bridge_and_its_otel_hooks() -> None:
    otel = InMemoryTelemetry()  # registers its bridge, as configure() does
    state = provider_state(otel.meter_provider)
    assert provider_state(otel.meter_provider) is state
    assert state.bridge is not None and bridge_for(otel.meter_provider) is state.bridge
    hook = otel_hook(otel.tracer_provider, otel.meter_provider)
    assert otel_hook(otel.tracer_provider, otel.meter_provider) is hook
    assert otel_hook(None, otel.meter_provider) is not hook  # another tracer provider, another hook
    ref = weakref.ref(otel.meter_provider)
    otel.shutdown()
    del otel, hook, state
    for _ in range(50):  # a thread left by an earlier test may hold a frame a moment longer on a loaded machine
        gc.collect()
        if ref() is None:
            break
        time.sleep(0.01)
    assert ref() is None  # the state keeps no provider alive


def test_waves_on_two_tracer_providers_share_the_meter_providers_anomaly_gauge() -> None:
    otel, clock = InMemoryTelemetry(), FakeClock()
    other = TracerProvider()

    async def work() -> None:
        clock.advance(0.125)
        await asyncio.sleep(0)

    async def main() -> None:
        for name, tracer_provider in (("a", otel.tracer_provider), ("b", other)):
            detector = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, signals=[LATENCY])
            wave: Wave[None] = Wave(name, max_concurrency=1, hooks=(detector,), clock=clock,
                                    tracer_provider=tracer_provider, meter_provider=otel.meter_provider)
            await wave.run([work] * 8)

    asyncio.run(main())
    # Two OTel hooks (one per tracer provider) on one meter: one gauge, fed by both.
    series = {dict(p.attributes)[tm.ANOMALY_SERIES] for p in otel.points(tm.ANOMALY_SCORE.name)}
    assert series == {"a", "b"}
    otel.shutdown()
    other.shutdown()


def test_waves_on_two_tracer_providers_share_the_meter_providers_task_counters() -> None:
    otel, other = InMemoryTelemetry(), TracerProvider()

    async def noop() -> None:
        return None

    async def main() -> None:
        first: Wave[None] = Wave("a", **otel.providers)
        second: Wave[None] = Wave("b", tracer_provider=other, meter_provider=otel.meter_provider)
        await first.run([noop()])
        await second.run([noop(), noop()])

    asyncio.run(main())
    # The second OTel hook's observable counters would be dropped by the SDK (first instrument of a
    # name wins): both hooks feed the provider's one set of live counters instead.
    counts = {dict(p.attributes)[tm.WAVE_NAME]: p.value for p in otel.points(tm.TASK_OUTCOMES.name)}
    assert counts == {"a": 1, "b": 2}
    otel.shutdown()
    other.shutdown()
