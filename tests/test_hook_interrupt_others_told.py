"""A hook raising ``KeyboardInterrupt`` while it is told of a breaker's registration or transition, or of an anomaly,
does not keep the hooks after it from being told: the interrupt propagates once every hook was (the rule of
``_isolation.notify``, which ends a call's observers the same way).

It used to propagate at once from the loop handing the event out: the hooks after the interrupting one never learnt
that the breaker had opened, a transition a hook made from inside its ``breaker_transition`` (``reset()``) was told
to no hook at all (the OTel state series said open, the breaker was closed), and the anomaly reached neither the
hooks after it nor ``on_anomaly``.
"""

from __future__ import annotations

import pytest

from shannon_otel import AnomalyHook, DetectorConfig, Hook
from shannon_otel._events import BreakerRegistered, BreakerTransition, TaskFinished, WaveStarted
from shannon_otel._hooks import otel_hook
from shannon_otel._telemetry import BreakerState, Outcome
from shannon_otel.anomaly import LATENCY, Anomaly
from shannon_otel.recovery import CircuitBreaker
from shannon_otel.testing import FakeClock, InMemoryTelemetry


class Seen(Hook):
    """Records what it is told."""

    def __init__(self) -> None:
        self.registered: list[BreakerRegistered] = []
        self.transitions: list[tuple[str, str, str]] = []
        self.anomalies: list[Anomaly] = []

    def breaker_registered(self, event: BreakerRegistered) -> None:
        self.registered.append(event)

    def breaker_transition(self, event: BreakerTransition) -> None:
        self.transitions.append((event.from_state.value, event.to_state.value, event.reason))

    def anomaly(self, event: Anomaly) -> None:
        self.anomalies.append(event)


class Interrupting(Seen):
    """Raises KeyboardInterrupt the first time it is told of what ``on`` names (a user's hook hit by Ctrl-C)."""

    def __init__(self, on: str) -> None:
        super().__init__()
        self.on = on
        self.breaker: CircuitBreaker | None = None

    def breaker_registered(self, event: BreakerRegistered) -> None:
        super().breaker_registered(event)
        if self.on == "breaker_registered":
            raise KeyboardInterrupt

    def breaker_transition(self, event: BreakerTransition) -> None:
        super().breaker_transition(event)
        if self.on == "breaker_transition" and len(self.transitions) == 1:
            assert self.breaker is not None
            self.breaker.reset()  # a transition of its own, told to every hook once this one is
            raise KeyboardInterrupt

    def anomaly(self, event: Anomaly) -> None:
        super().anomaly(event)
        if self.on == "anomaly" and len(self.anomalies) == 1:
            raise KeyboardInterrupt


def _states(otel: InMemoryTelemetry) -> dict[str, int]:
    return {p.attributes["shannon.breaker.state"]: p.value for p in otel.points("shannon.breaker.state")}


def test_every_hook_learns_of_a_new_breaker_before_a_hook_s_interrupt_propagates() -> None:
    otel, after = InMemoryTelemetry(), Seen()
    with pytest.raises(KeyboardInterrupt):
        CircuitBreaker("db", clock=FakeClock(5.0), hooks=[Interrupting("breaker_registered"), after], **otel.providers)
    assert after.registered == [BreakerRegistered("db", BreakerState.CLOSED, 5.0)]


def test_every_hook_is_told_every_transition_before_a_hook_s_interrupt_propagates() -> None:
    otel, interrupting, after = InMemoryTelemetry(), Interrupting("breaker_transition"), Seen()
    breaker = CircuitBreaker("db", clock=FakeClock(), hooks=[Seen(), interrupting, after], **otel.providers)
    interrupting.breaker = breaker
    assert _states(otel) == {"closed": 1, "open": 0, "half_open": 0}
    with pytest.raises(KeyboardInterrupt):
        breaker.force_open()
    told = [("closed", "open", "forced_open"), ("open", "closed", "reset")]
    assert after.transitions == told  # the hook after the interrupting one: told nothing
    assert interrupting.transitions == told
    assert breaker.state is BreakerState.CLOSED
    # the OTel hook (first) got the transition the interrupting hook made too: its series ended at open
    assert _states(otel) == {"closed": 1, "open": 0, "half_open": 0}
    assert sum(p.value for p in otel.points("shannon.breaker.transitions")) == 2
    breaker.force_open()  # the breaker, and its hooks, go on as usual
    assert after.transitions[-1] == ("closed", "open", "forced_open")


def test_every_hook_and_on_anomaly_get_an_anomaly_before_a_hook_s_interrupt_propagates() -> None:
    otel, interrupting, after, called = InMemoryTelemetry(), Interrupting("anomaly"), Seen(), list[Anomaly]()
    clock = FakeClock(1_000_000.0)
    hook = AnomalyHook(DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9), tick_s=1.0,
                       clock=clock, min_tick_tasks=8, signals=[LATENCY], on_anomaly=called.append)
    # the OTel hook after the interrupting one: the metric counts what it was told
    scoped = hook.for_scope((hook, interrupting, otel_hook(otel.tracer_provider, otel.meter_provider), after))
    observer = scoped.wave_started(WaveStarted("w", None, None, clock()))
    assert observer is not None
    for i in range(15):
        clock.advance(1 / 16)
        observer.task_finished(None, TaskFinished(wave="w", index=i, name="t", outcome=Outcome.SUCCESS, duration_s=0.1))
    assert called == []
    clock.advance(1 / 16)
    last = TaskFinished(wave="w", index=15, name="t", outcome=Outcome.SUCCESS, duration_s=0.1)
    with pytest.raises(KeyboardInterrupt):  # the 16th task closes the one-second tick: one latency sample, an anomaly
        observer.task_finished(None, last)
    assert len(interrupting.anomalies) == 1
    assert after.anomalies == interrupting.anomalies == called
    assert after.anomalies[0].signal == LATENCY and after.anomalies[0].severity is not None
    assert sum(p.value for p in otel.points("shannon.anomaly.events")) == 1
