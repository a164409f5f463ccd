"""The numbers the reports give, against what the tasks and calls really did (counted by the test
itself), on the virtual-time loop with the real SDK in memory. Each test failed before its fix."""

from __future__ import annotations

import asyncio
from collections import Counter

from shannon_otel import CircuitBreaker, Pipeline, RunRecorder, Wave
from shannon_otel.testing import InMemoryTelemetry, run_virtual


def test_an_operations_failed_calls_include_rejected_and_ignored_ones() -> None:
    # Every call below raised into its task: two KeyErrors the breaker ignores (call outcome "ignored"),
    # two ValueErrors it counts ("failure", opening it), then two calls it rejected ("rejected"). All six
    # operation spans are ERROR and all six tasks failed, yet OperationStats.failed (the CLI's "failed:
    # calls that raised into their task") counted only the two "failure" calls.
    tel = InMemoryTelemetry()
    recorder = RunRecorder()

    async def main() -> int:
        clock = asyncio.get_running_loop().time
        breaker = CircuitBreaker("dep", failure_threshold=2, reset_timeout=100.0, ignore=(KeyError,), clock=clock,
                                 hooks=[recorder], **tel.providers)
        policy = Pipeline(breaker, name="op", clock=clock, hooks=[recorder], **tel.providers)

        async def call(i: int) -> None:
            await asyncio.sleep(0.1)
            raise (KeyError if i < 2 else ValueError)(i)

        wave = Wave("w", max_concurrency=1, policy=policy, clock=clock, hooks=[recorder], **tel.providers)
        return (await wave.map(call, range(6))).report.failed

    failed_tasks = run_virtual(main())
    spans = Counter((s.status.status_code.name, (s.attributes or {}).get("shannon.call.outcome")) for s in tel.spans("op"))
    assert spans == {("ERROR", "ignored"): 2, ("ERROR", "failure"): 2, ("ERROR", "rejected"): 2}
    op = recorder.report().operations["op"]
    assert (op.calls, op.rejected) == (6, 2)
    assert op.failed == failed_tasks == 6
    tel.shutdown()
