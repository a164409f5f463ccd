"""The demo's simulated workload: a seed reproduces it."""

from __future__ import annotations

import asyncio
from typing import Any

from shannon_otel._telemetry import TASK_COST_ATTR, TASK_INPUT_TOKENS, TASK_OUTPUT_TOKENS
from shannon_otel.cli._workload import WorkloadConfig, run_waves
from shannon_otel.reporting._recorder import RunRecorder
from shannon_otel.testing import run_virtual


def waves_of(seed: int) -> list[tuple[Any, ...]]:
    """Per wave: its outcome counts and its token and cost totals, for three ``plan`` waves.

    The loop runs on virtual time, with the policies on its clock: a timeout, a breaker reset or a
    slow call can then never race the wall clock (they did, now and then, on a loaded machine);
    ``scale`` keeps a slow LLM call past its timeout, so fallbacks happen.
    """
    recorder = RunRecorder()
    config = WorkloadConfig(waves=1, tasks=24, seed=seed, concurrency=8, scale=0.5)

    async def go() -> None:
        await run_waves(config, [recorder], {"instrument": False}, keep_going=lambda n: n < 3,
                        clock=asyncio.get_running_loop().time)

    run_virtual(go())
    rows = []
    for live in recorder.waves:
        report = live.report
        assert report is not None
        sums = tuple(round(report.measurements[name].total, 9)
                     for name in (TASK_INPUT_TOKENS, TASK_OUTPUT_TOKENS, TASK_COST_ATTR))
        rows.append((live.label, tuple(sorted((o.value, n) for o, n in report.counts.items())), sums))
    return rows


def test_a_seed_reproduces_each_waves_outcomes_tokens_and_cost() -> None:
    first, second = waves_of(11), waves_of(11)
    assert [label for label, _, _ in first] == ["plan", "plan#2", "plan#3"]
    assert first == second
    assert waves_of(12) != first
