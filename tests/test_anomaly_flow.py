"""Anomalies flow one way: the detector hook emits ``Anomaly`` events to the other hooks of the same
entry point (the OTel hook exports them, the run recorder keeps them, user hooks see them); the
detector hook itself writes no telemetry."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest
from _retried_call import eight_calls_the_fourth_retried

from shannon_otel import Anomaly, Hook, Retry, RunRecorder, Wave
from shannon_otel import _telemetry as tm
from shannon_otel._telemetry import Severity
from shannon_otel.anomaly import ERROR_RATE, LATENCY, RETRY_RATE, THROUGHPUT, AnomalyHook, DetectorConfig
from shannon_otel.testing import FakeClock, InMemoryTelemetry

# Every scored tick is an anomaly (threshold ~0, no warm-up): each tick's event is visible.
EVERY_TICK = DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9)


class Listener(Hook):
    def __init__(self) -> None:
        self.events: list[Anomaly] = []

    def anomaly(self, event: Anomaly) -> None:
        self.events.append(event)


class Broken(Hook):
    def anomaly(self, event: Anomaly) -> None:
        raise RuntimeError("hook bug")


def _run_wave(clock: FakeClock, hooks: tuple[Hook, ...], n: int = 8, **kw: object) -> None:
    async def work(i: int) -> int:
        clock.advance(0.125 + 0.001 * (i % 8))  # the last task of each tick is its slowest
        await asyncio.sleep(0)
        return i

    async def main() -> None:
        wave: Wave[int] = Wave("w", max_concurrency=1, hooks=hooks, clock=clock, **kw)  # type: ignore[arg-type]
        result = await wave.run([functools.partial(work, i) for i in range(n)])
        assert result.values() == list(range(n))

    asyncio.run(main())


def test_an_anomaly_reaches_the_user_hook_the_recorder_the_callback_and_the_otel_hook() -> None:
    otel, clock = InMemoryTelemetry(), FakeClock()
    called: list[Anomaly] = []
    detector = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, signals=[LATENCY], on_anomaly=called.append)
    listener, recorder = Listener(), RunRecorder()
    _run_wave(clock, (detector, listener, recorder), **otel.providers)

    (event,) = listener.events  # one tick of 8 tasks
    assert (event.series, event.signal, event.severity) == ("w", LATENCY, Severity.CRITICAL)
    assert event.value == pytest.approx(0.1285)  # the tick's mean latency
    assert called == [event] and recorder.anomalies == [event]
    assert recorder.report().anomaly_waves == ("w",)
    # The OTel hook of the wave's providers turned it into telemetry: names and attributes as documented.
    assert otel.point(tm.ANOMALY_SCORE.name, **{tm.ANOMALY_SERIES: "w", tm.ANOMALY_SIGNAL: LATENCY}).value == (
        event.score)
    counted = otel.point(tm.ANOMALY_EVENTS.name, **{tm.ANOMALY_SERIES: "w", tm.ANOMALY_SIGNAL: LATENCY,
                                                     tm.ANOMALY_SEVERITY: "critical"})
    assert counted.value == 1
    (slowest,) = [s for s in otel.spans() if any(e.name == tm.EVENT_ANOMALY for e in s.events)]
    assert slowest.context is not None and format(slowest.context.span_id, "016x") == event.span_id
    (span_event,) = [e for e in slowest.events if e.name == tm.EVENT_ANOMALY]
    assert dict(span_event.attributes or {}) == {
        tm.ANOMALY_SERIES: "w", tm.ANOMALY_SIGNAL: LATENCY, tm.ANOMALY_SCORE_ATTR: event.score,
        tm.ANOMALY_SEVERITY: "critical", tm.ANOMALY_VALUE: event.value,
    }
    otel.shutdown()


def test_ordinary_scores_update_the_gauge_but_are_no_anomaly() -> None:
    otel, clock = InMemoryTelemetry(), FakeClock()
    called: list[Anomaly] = []
    quiet = DetectorConfig(buckets=1, min_history=1)  # default thresholds: steady ticks score low
    detector = AnomalyHook(quiet, tick_s=1.0, clock=clock, signals=[LATENCY], on_anomaly=called.append)
    listener, recorder = Listener(), RunRecorder()
    _run_wave(clock, (detector, listener, recorder), n=32, **otel.providers)

    assert [e.severity for e in listener.events] == [None] * 4  # four ticks scored, none unusual
    assert called == [] and recorder.anomalies == []
    assert otel.points(tm.ANOMALY_EVENTS.name) == []
    assert otel.point(tm.ANOMALY_SCORE.name).value == listener.events[-1].score
    assert not [s for s in otel.spans() if any(e.name == tm.EVENT_ANOMALY for e in s.events)]
    otel.shutdown()


def test_the_detector_writes_no_telemetry_of_its_own() -> None:
    otel, clock = InMemoryTelemetry(), FakeClock()
    detector, listener = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock), Listener()
    # Without the OTel hook in the wave's scope, nothing reaches the providers, yet the hooks hear it.
    _run_wave(clock, (detector, listener), instrument=False, **otel.providers)
    assert {e.signal for e in listener.events} == {LATENCY, ERROR_RATE, THROUGHPUT}
    assert otel.metrics() == {} and otel.spans() == []
    otel.shutdown()


def test_a_policy_scope_gets_the_retry_rate_anomaly() -> None:
    clock = FakeClock()
    detector, listener = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, min_tick_tasks=2), Listener()
    policy = Retry(attempts=3, initial=0.0, hooks=[detector, listener], instrument=False, clock=clock)
    tries = 0

    async def flaky() -> int:
        nonlocal tries
        tries += 1
        clock.advance(0.75)
        if tries % 2:
            raise ConnectionError("once per call")
        return tries

    async def main() -> list[int]:
        return [await policy(flaky)() for _ in range(2)]

    assert asyncio.run(main()) == [2, 4]
    assert [(e.series.rsplit(".", 1)[-1], e.signal, e.value) for e in listener.events] == [("flaky", RETRY_RATE, 1.0)]


def test_a_hook_failing_on_an_anomaly_costs_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    called: list[Anomaly] = []
    detector = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, signals=[LATENCY], on_anomaly=called.append)
    listener = Listener()
    with caplog.at_level(logging.ERROR):
        _run_wave(clock, (detector, Broken(), listener), instrument=False)
    assert len(listener.events) == 1 and called == listener.events
    assert "failed in anomaly" in caplog.text


def test_meter_provider_of_the_detector_is_deprecated() -> None:
    otel = InMemoryTelemetry()
    with pytest.warns(DeprecationWarning, match="meter_provider"):
        AnomalyHook(meter_provider=otel.meter_provider)
    otel.shutdown()


def test_an_anomaly_names_no_span_of_a_trace_sampled_out() -> None:
    """Before: ``Anomaly.trace_id`` / ``span_id`` named the culprit span even when its trace was sampled out,
    so the run summary's "trace ..." and ``on_anomaly`` callbacks linked a trace that was exported nowhere."""
    otel, clock = InMemoryTelemetry(sampled=False), FakeClock()
    listener = Listener()
    detector = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, signals=[LATENCY, ERROR_RATE, THROUGHPUT])
    _run_wave(clock, (detector, listener), **otel.providers)
    assert otel.spans() == []
    assert {e.signal for e in listener.events} == {LATENCY, ERROR_RATE, THROUGHPUT}
    assert [(e.trace_id, e.span_id) for e in listener.events] == [(None, None)] * 3


def test_a_rate_anomaly_names_a_call_that_was_retried_not_the_one_that_closed_the_tick() -> None:
    """Before: a ``retry_rate`` anomaly named whatever call closed its tick, often one that was never retried:
    the trace it linked showed no retry at all (``error_rate``: tests/test_anomaly_feed.py)."""
    otel, clock = InMemoryTelemetry(), FakeClock()
    listener = Listener()
    detector = AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, signals=[RETRY_RATE])
    retry = Retry(attempts=2, initial=0.0, name="op", clock=clock, hooks=(detector, listener), **otel.providers)

    asyncio.run(eight_calls_the_fourth_retried(retry, clock))  # one tick: the fourth call retried, the eighth closes it
    (event,) = listener.events
    (retried,) = [s for s in otel.spans("op") if any(e.name == tm.EVENT_RETRY_SCHEDULED for e in s.events)]
    assert retried.context is not None and event.span_id == format(retried.context.span_id, "016x")
