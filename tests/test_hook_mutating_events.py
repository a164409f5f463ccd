"""A hook that mutates what it is handed changes nothing the user gets back.

Events are frozen (dataclasses, or a NamedTuple for a task's result); the mappings a report and a
task's result carry are the same objects the user then reads: a hook that cleared ``report.counts``
emptied the user's report (``total`` 0), one that changed ``measurements`` changed the user's task result.
They refuse changes now, and still behave as dicts everywhere a user reads them.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from shannon_otel import Hook, Wave, WaveReport, record
from shannon_otel._events import CallStarted, TaskResult, WaveObserver, WaveStarted
from shannon_otel._telemetry import Outcome
from shannon_otel.recovery import Retry


class Mutating(Hook):
    """Tries every change to what it is handed; records what it managed to change."""

    def __init__(self) -> None:
        self.changed: list[str] = []

    def _try(self, what: str, change: Callable[[], object]) -> None:
        try:
            change()
        except (TypeError, AttributeError, dataclasses.FrozenInstanceError):
            return
        self.changed.append(what)

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        self._try("WaveStarted.wave", lambda: setattr(event, "wave", "other"))
        hook = self

        class Observer(WaveObserver):
            def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
                hook._try("TaskResult.value", lambda: setattr(event, "value", -1))
                if event.measurements is not None:
                    m: Any = event.measurements
                    hook._try("measurements[]=", lambda: m.__setitem__("tokens", -1))
                    hook._try("measurements.clear", m.clear)
                    hook._try("measurements.update", lambda: m.update(extra=1))

            def wave_finished(self, report: WaveReport) -> None:
                hook._try("WaveReport.counts", lambda: setattr(report, "counts", {}))
                for name in ("counts", "errors_by_type", "measurements"):
                    mapping: Any = getattr(report, name)
                    hook._try(f"{name}.clear", mapping.clear)
                    hook._try(f"{name}.pop", mapping.popitem)
                    hook._try(f"{name}[]=", lambda: mapping.__setitem__("x", 0))  # noqa: B023 (called at once)
                    hook._try(f"{name}|=", lambda: mapping.__ior__({"x": 0}))  # noqa: B023

        return Observer()

    def call_started(self, event: CallStarted) -> None:
        self._try("CallStarted.operation", lambda: setattr(event, "operation", "other"))


async def ok() -> int:
    record("tokens", 3)
    return 1


async def bad() -> int:
    raise ValueError("no")


def test_a_hook_changes_nothing_the_user_gets_back() -> None:
    hook = Mutating()
    wave: Wave[int] = Wave("w", hooks=[hook], policy=Retry(attempts=1, hooks=[hook]), instrument=False)
    result = asyncio.run(wave.run([lambda: ok(), lambda: bad()]))
    assert hook.changed == []  # nothing it was handed could be changed
    report = result.report
    assert report.counts == {Outcome.SUCCESS: 1, Outcome.FAILURE: 1, Outcome.TIMEOUT: 0, Outcome.CANCELLATION: 0}
    assert report.total == 2
    assert report.errors_by_type == {"ValueError": 1}
    assert report.measurements["tokens"].total == 3
    first = result.results[0]
    assert first.value == 1
    assert first.measurements == {"tokens": 3}


def test_the_read_only_mappings_still_read_as_dicts() -> None:
    wave: Wave[int] = Wave("w", instrument=False)
    result = asyncio.run(wave.run([ok, bad]))
    report = result.report
    for mapping in (report.counts, report.errors_by_type, report.measurements, result.results[0].measurements):
        assert isinstance(mapping, dict)
        assert pickle.loads(pickle.dumps(mapping)) == mapping
        assert copy.deepcopy(mapping) == mapping
        mutable = dict(mapping)  # the copy the error message suggests
        mutable["x"] = 0
    restored = pickle.loads(pickle.dumps(report))
    assert restored.counts == report.counts and restored.total == 2
    as_dict = dataclasses.asdict(report)
    assert as_dict["errors_by_type"] == {"ValueError": 1}
    assert json.loads(json.dumps(report.errors_by_type)) == {"ValueError": 1}
    with pytest.raises(TypeError, match="read-only"):
        report.counts[Outcome.SUCCESS] = 0  # type: ignore[index]
