"""The numbers the reports give, against what the tasks and calls really did (counted by the test
itself), on the virtual-time loop with the real SDK in memory. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shannon_otel import (
    AdviceThresholds,
    CircuitBreaker,
    Outcome,
    Pipeline,
    Retry,
    RunRecorder,
    Summary,
    Wave,
    WaveReport,
    advise_wave,
    record_tokens,
)
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
    spans = Counter(
        (s.status.status_code.name, (s.attributes or {}).get("shannon.call.outcome")) for s in tel.spans("op")
    )
    assert spans == {("ERROR", "ignored"): 2, ("ERROR", "failure"): 2, ("ERROR", "rejected"): 2}
    op = recorder.report().operations["op"]
    assert (op.calls, op.rejected) == (6, 2)
    assert op.failed == failed_tasks == 6
    tel.shutdown()


def test_a_latency_anomaly_against_instant_calls_quotes_no_infinite_ratio() -> None:
    # Three waves whose calls took no time (virtual time, a cache) and one whose calls took 10 ms: the advice
    # said "vs 0.0 ms typical (infx)"; the wave advice already leaves an infinite ratio out, as this does now.
    recorder = RunRecorder()

    async def main() -> None:
        clock = asyncio.get_running_loop().time
        policy = Pipeline(Retry(attempts=1), name="op", clock=clock, hooks=[recorder], instrument=False)
        for delay in (0.0, 0.0, 0.0, 0.01):
            async def call(i: int, delay: float = delay) -> int:
                await asyncio.sleep(delay)
                return i

            await Wave("w", policy=policy, clock=clock, hooks=[recorder], instrument=False).map(call, range(3))

    run_virtual(main())
    [advice] = recorder.report().recommendations()
    assert advice.kind == "latency_anomaly"
    assert advice.evidence["typical_s"] == 0.0 and advice.evidence["ratio"] == math.inf
    assert "inf" not in advice.message
    assert "mean latency 10.0 ms in wave 'w#4' vs 0.0 ms typical." in advice.message


def test_low_efficiency_advice_never_shows_the_efficiency_at_its_threshold() -> None:
    # Two slots for 1 s, busy 1.992 s: 99.6% efficient, below a low_efficiency of 1.0. The advice said
    # "parallel efficiency 100%" (rounded to nearest) while saying it was below 100%; it rounds down now.
    async def main() -> WaveReport:
        clock = asyncio.get_running_loop().time
        wave = Wave("w", max_concurrency=2, clock=clock, instrument=False)
        return (await wave.map(asyncio.sleep, [1.0, 0.992])).report

    report = run_virtual(main())
    assert report.parallel_efficiency == pytest.approx(0.996)
    [advice] = advise_wave(report, AdviceThresholds(low_efficiency=1.0, min_efficiency_tasks=1))
    assert advice.kind == "low_efficiency" and advice.evidence["parallel_efficiency"] == report.parallel_efficiency
    assert advice.message.startswith("wave 'w': parallel efficiency 99% (2 tasks, 2 slots, 1000.0 ms wall time)")


_CALL = st.tuples(st.sampled_from(["ok", "fail", "ignored"]), st.sampled_from([0.0, 0.5, 1.0, 3.0]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    waves=st.lists(st.lists(_CALL, max_size=6), min_size=1, max_size=6),
    max_waves=st.sampled_from([1, 2, 500]),
    attempts=st.sampled_from([1, 2]),
)
def test_a_runs_totals_and_operations_match_what_its_calls_did(
    waves: list[list[tuple[str, float]]], max_waves: int, attempts: int,
) -> None:
    # Several waves through one recorder (some evicted by max_waves), each task one call through a retry and a
    # breaker: the run's totals, token sums, latency quantiles and the operation's counts against a tally of
    # what the calls did. The breaker's threshold is never reached, so every try runs.
    recorder = RunRecorder(max_waves=max_waves)
    durations: list[float] = []
    tally = Counter[str]()

    async def main() -> None:
        clock = asyncio.get_running_loop().time
        breaker = CircuitBreaker("b", failure_threshold=1000, window=1000, ignore=(KeyError,), clock=clock,
                                 instrument=False)
        policy = Pipeline(Retry(attempts=attempts, initial=0.0, maximum=0.0, on=ValueError), breaker, name="op",
                          clock=clock, hooks=[recorder], instrument=False)
        for plan in waves:
            async def call(i: int, plan: list[tuple[str, float]] = plan) -> int:
                kind, seconds = plan[i]
                record_tokens(input=7, output=1)
                await asyncio.sleep(seconds)
                if kind == "fail":
                    raise ValueError(i)
                if kind == "ignored":
                    raise KeyError(i)
                return i

            await Wave("w", max_concurrency=2, policy=policy, clock=clock, hooks=[recorder],
                       instrument=False).map(call, range(len(plan)))
            for kind, seconds in plan:
                tries = attempts if kind == "fail" else 1
                durations.append(seconds * tries)
                tally["calls"] += 1
                tally["attempts"] += tries
                tally["retries"] += tries - 1
                tally["failed"] += kind != "ok"
                tally["tokens"] += 8 * tries

    run_virtual(main())
    totals = recorder.totals
    assert totals["waves"] == len(waves)
    assert (totals["success"], totals["failure"]) == (tally["calls"] - tally["failed"], tally["failed"])
    assert totals["retries"] == recorder.retries == tally["retries"]
    tokens = recorder.sums.get("shannon.task.tokens.input", 0.0) + recorder.sums.get("shannon.task.tokens.output", 0.0)
    assert tokens == tally["tokens"]
    report = recorder.report()
    assert len(report.waves) == min(len(waves), max_waves) and len(set(report.labels)) == len(report.labels)
    if tally["calls"]:
        op = report.operations["op"]
        assert (op.calls, op.attempts, op.retries, op.failed, op.rejected) == (
            tally["calls"], tally["attempts"], tally["retries"], tally["failed"], 0)
        ranked = sorted(durations)
        for q in (0.5, 0.95, 0.99):
            want = ranked[max(1, math.ceil(q * len(ranked))) - 1]
            assert recorder.latency.quantile(q) == pytest.approx(want, rel=0.01, abs=1e-9)


def test_advice_quotes_a_time_just_under_10_s_in_seconds() -> None:
    # Milliseconds below 10 s, chosen before rounding: a 9.99996 s wall time read "10000.0 ms".
    latency, no_wait = Summary(8, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1), Summary(8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    report = WaveReport("w", Outcome.SUCCESS, 9.99996, 4, {Outcome.SUCCESS: 8}, {}, latency, no_wait, 0.1)
    [advice] = advise_wave(report)
    assert advice.kind == "low_efficiency"
    assert "10.0 s wall time" in advice.message and "10000.0 ms" not in advice.message
