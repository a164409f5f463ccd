"""A process forked while another thread holds one of shannon-otel's locks (a metric reader collecting,
a scrape, a span ending) does not hang: the child frees the dead thread's lock, and its next wave,
collection, scrape or span goes on.

The lock is taken directly in the parent, as the reader's thread would hold it at that instant: a fork
landing inside a collection is otherwise a matter of luck. The SDK's own locks are free here (they are
its to handle; the SDK restarts its reader and processor threads in the child).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _forked import fork_while_locked

_SCRIPT = '''
import asyncio, json, os, sys, time
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shannon_otel import PrometheusReader, TailSampler, Wave
from shannon_otel._otel._providers import provider_state
from shannon_otel.testing import InMemoryTelemetry

which = sys.argv[1]
tel = InMemoryTelemetry()
state = provider_state(tel.meter_provider)

async def task():
    return 1

wave = Wave(name="w", **tel.providers)
asyncio.run(wave.run([task] * 3))  # the executor's instruments and the bridge's store exist now

def run_wave():
    assert asyncio.run(wave.run([task] * 3)).values() == [1, 1, 1]

if which == "executor":  # the executor's live counters, read by the reader's callbacks
    lock, child = state._executor.lock, run_wave
elif which == "bridge":  # the bridge's store, merged into each export, recorded into per task
    lock, child = state.bridge._shared._lock, run_wave
elif which == "anomaly":  # the anomaly score gauge's callback
    lock = state.anomaly_telemetry(tel.meter_provider)._lock
    child = tel.metrics
elif which == "shared":  # the shared-state availability gauge's callback
    lock = state.shared_telemetry(tel.meter_provider)._lock
    child = tel.metrics
elif which == "scrape":
    reader = PrometheusReader()
    MeterProvider(metric_readers=[reader]).get_meter("m").create_counter("c").add(1)
    lock, child = reader._lock, reader.scrape
elif which == "tail":
    sampler = TailSampler(SimpleSpanProcessor(InMemorySpanExporter()), healthy_ratio=1.0)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    def child():
        with provider.get_tracer("t").start_as_current_span("s"):
            pass
    lock = sampler._lock
elif which == "set_testing":  # another thread entering or leaving a set_testing() scope
    import shannon_otel.testing as sot
    lock = sot._SCOPES_LOCK
    def child():
        with sot.set_testing(True):
            pass
elif which == "recorder":  # a RunRecorder fed by another thread's event loop
    from shannon_otel import RunRecorder
    recorder = RunRecorder()
    wave = Wave(name="w", hooks=[recorder], **tel.providers)
    lock, child = recorder._lock, run_wave
elif which == "detector":  # a bare AnomalyDetector fed by another thread (no hook around it)
    from shannon_otel import AnomalyDetector
    det = AnomalyDetector()
    det.update("a", 1.0, 1.0)
    lock = det._lock
    def child():
        assert det.update("a", 2.0, 2.0) is None  # warming up
        det.update_many(["a"], [[3.0]], [3.0])
elif which == "default_logs":  # another thread building the process's first default logging hook
    from shannon_otel._logs._joined import _Default
    _Default.reset()
    lock = _Default._lock
    def child():  # a new wave asks for the default hook
        assert asyncio.run(Wave(name="w2", **tel.providers).run([task])).values() == [1]
'''

_SCRIPT_CHILD = '''
child()
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize(
    "which", ["executor", "bridge", "anomaly", "shared", "scrape", "tail", "set_testing", "recorder", "default_logs",
              "detector"],
)
def test_a_child_forked_while_a_lock_is_held_does_not_hang(tmp_path: Path, which: str) -> None:
    assert fork_while_locked(tmp_path, _SCRIPT, _SCRIPT_CHILD, which) == {"hung": False, "status": 0}


def test_every_after_fork_callback_runs_though_an_earlier_one_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: the one ``os.register_at_fork`` handler ran the live objects' callbacks in turn, so one raising
    skipped the rest: a lock they release stayed held by a thread the child does not have, and the child's next
    wave waited on it for good. Now each runs, and the first error is raised after them (Python reports it)."""
    from shannon_otel import _fork

    monkeypatch.setattr(_fork, "_CALLBACKS", {})  # this process's own objects' callbacks are for a child only
    ran: list[str] = []

    class Owner:
        def __init__(self, name: str, fail: bool) -> None:
            self.name, self.fail = name, fail

        def redo(self) -> None:
            ran.append(self.name)
            if self.fail:
                raise RuntimeError(self.name)

    first, second = Owner("first", fail=True), Owner("second", fail=False)
    _fork.in_forked_child(first.redo)
    _fork.in_forked_child(second.redo)
    with pytest.raises(RuntimeError, match=r"^first$"):
        _fork._after_in_child()
    assert ran == ["first", "second"]


def test_every_after_fork_callback_error_is_raised_not_only_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: of several after-fork callbacks that raised, only the first error was raised (for Python to report);
    the others vanished without a trace. Several are now raised together, in an ExceptionGroup, in their order."""
    from shannon_otel import _fork

    monkeypatch.setattr(_fork, "_CALLBACKS", {})  # this process's own objects' callbacks are for a child only

    class Owner:
        def __init__(self, name: str) -> None:
            self.name = name

        def redo(self) -> None:
            if self.name != "fine":
                raise RuntimeError(self.name)

    owners = [Owner("first"), Owner("fine"), Owner("third")]
    for owner in owners:
        _fork.in_forked_child(owner.redo)
    with pytest.raises(ExceptionGroup) as raised:
        _fork._after_in_child()
    assert [str(e) for e in raised.value.exceptions] == ["first", "third"]
    assert "2 of shannon-otel's after-fork callbacks raised" in str(raised.value)
