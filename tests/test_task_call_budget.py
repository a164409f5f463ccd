"""What a traced successful task costs the OTel hook, counted, not timed.

The traced wave's cost above a bare span per task (``python -m benchmarks executor``, traced / floor, target
1.25) is mostly the SDK's (the task span's three attributes); what the hook adds is one pair record and the
calls around it. Every Python call there is ~0.05-0.1 us per task on top of a ~20 us floor, and nothing timed
can see one more under a shared machine's noise, so these tests count them instead: the per-task calls into the
hook's modules (``shannon_otel/_otel/``, the metrics bridge), as the difference between two waves of different
sizes (a wave's own calls cancel out).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import shannon_otel
from shannon_otel import Wave
from shannon_otel.testing import InMemoryTelemetry

_PACKAGE = Path(shannon_otel.__file__).resolve().parent
_HOOK_CODE = (str(_PACKAGE / "_otel") + "/", str(_PACKAGE / "_metrics_bridge.py"))


async def _noop() -> int:
    return 1


def _hook_calls(otel: InMemoryTelemetry, tasks: int) -> Counter[str]:
    """The Python calls into the hook's modules while a traced wave of ``tasks`` successes runs."""
    wave: Wave[int] = Wave("budget", max_concurrency=4, **otel.providers)
    counts: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(_HOOK_CODE):
            counts[f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_qualname}"] += 1

    async def run() -> None:
        sys.setprofile(profile)
        try:
            results = await wave.run(_noop() for _ in range(tasks))
        finally:
            sys.setprofile(None)
        assert results.values() == [1] * tasks

    asyncio.run(run())
    return counts


def test_a_traced_success_makes_five_calls_into_the_hook() -> None:
    otel = InMemoryTelemetry()
    _hook_calls(otel, 2)  # first use: instruments, bridge sinks and the like made once
    small, large = _hook_calls(otel, 3), _hook_calls(otel, 13)
    per_task = {name: (large[name] - small[name]) / 10 for name in large | small if large[name] != small[name]}
    # task_started, task_finished (its short path), the pair record of the two histograms, and dropping the
    # exception notes as the span ends: forget() did it in three calls (forget, _take, _notes_of), 0.1-0.2 us a task;
    # and ending the span no earlier than its start (_end.end: a wall clock stepped back made spans end before they
    # started, c2ccfdc0), taken at one call a task: the SDK's end reads the clock either way
    assert per_task == {
        "_executor.py:_WaveTelemetry.task_started": 1,
        "_executor.py:_WaveTelemetry.task_finished": 1,
        "_metrics_bridge.py:BoundPair.record": 1,
        "_exception.py:forget": 1,
        "_end.py:end": 1,
    }, per_task
    assert len(otel.spans("task budget")) == 2 + 3 + 13  # every task traced: the calls counted are a traced task's
    otel.shutdown()
