"""Recommendations: each must appear on a workload built to need it, cite its numbers, and stay silent otherwise."""

from __future__ import annotations

import asyncio

import pytest

from shannon_otel import BreakerState, BreakerTransition, Outcome, Summary, Wave, WaveReport
from shannon_otel.reporting._advice import AdviceThresholds, Recommendation, advise_wave
from shannon_otel.reporting._run import OperationStats, RunReport
from shannon_otel.testing import FakeClock

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def dist(mean: float, *, p50: float | None = None, p99: float | None = None, count: int = 24) -> Summary:
    p50 = mean if p50 is None else p50
    p99 = mean if p99 is None else p99
    return Summary(count, mean * count, mean, p50, max(p50, mean), p99, p99)


def report(
    wave: str = "w", *, run: Summary | None = None, wait: Summary | None = None, efficiency: float = 0.9,
    tasks: int = 24, concurrency: int = 6,
) -> WaveReport:
    return WaveReport(
        wave=wave, outcome=Outcome.SUCCESS, duration_s=1.0, concurrency=concurrency,
        counts={**dict.fromkeys(Outcome, 0), Outcome.SUCCESS: tasks}, errors_by_type={},
        latency=run or dist(0.050), queue_wait=wait or dist(0.0), parallel_efficiency=efficiency,
    )


def kinds(recs: list[Recommendation]) -> list[str]:
    return [r.kind for r in recs]


# --------------------------------------------------------------------------- queue wait
def test_queue_wait_dominating_is_advised_with_its_numbers() -> None:
    [rec] = advise_wave(report(run=dist(0.040), wait=dist(0.120)))
    assert rec.kind == "queue_wait" and rec.subject == "w"
    assert "120.0 ms" in rec.message and "40.0 ms" in rec.message and "3.0x" in rec.message
    assert "max_concurrency (now 6)" in rec.message
    assert rec.evidence["ratio"] == pytest.approx(3.0)


@pytest.mark.parametrize(("run", "wait"), [
    (0.040, 0.020),  # waiting less than running
    (0.0001, 0.0005),  # dominating, but half a millisecond is nothing to act on
])
def test_queue_wait_not_advised(run: float, wait: float) -> None:
    assert "queue_wait" not in kinds(advise_wave(report(run=dist(run), wait=dist(wait))))


def test_queue_wait_measured_on_a_real_wave() -> None:
    """One slot, ten 10 ms tasks on a fake clock: task i waits i x 10 ms, 45 ms on average."""
    clock = FakeClock()

    async def work() -> None:
        await clock.sleep(0.010)

    async def main() -> WaveReport:
        wave: Wave[None] = Wave("serial", max_concurrency=1, clock=clock, instrument=False)
        return (await wave.run([work for _ in range(10)])).report

    wave_report = asyncio.run(main())
    recs = wave_report.recommendations
    assert kinds(recs) == ["queue_wait"]
    assert recs[0].evidence["queue_wait_mean_s"] == pytest.approx(0.045)
    assert "45.0 ms" in recs[0].message and "now 1" in recs[0].message


# --------------------------------------------------------------------------- efficiency
def test_low_efficiency_blames_stragglers_when_the_tail_is_long() -> None:
    [rec] = advise_wave(report(run=dist(0.05, p50=0.02, p99=0.40), efficiency=0.31))
    assert rec.kind == "low_efficiency"
    assert "31%" in rec.message and "400.0 ms" in rec.message and "20.0x" in rec.message
    assert "timeout" in rec.message


def test_low_efficiency_with_even_latency_points_at_idle_slots() -> None:
    [rec] = advise_wave(report(run=dist(0.05), efficiency=0.2))
    assert rec.kind == "low_efficiency" and "20%" in rec.message and "rate limit" in rec.message


@pytest.mark.parametrize(("efficiency", "tasks", "concurrency"), [
    (0.8, 24, 6),  # efficient
    (0.2, 6, 6),  # one task per slot: the wave cannot be efficient, nothing to advise
])
def test_low_efficiency_not_advised(efficiency: float, tasks: int, concurrency: int) -> None:
    recs = advise_wave(report(efficiency=efficiency, tasks=tasks, concurrency=concurrency))
    assert "low_efficiency" not in kinds(recs)


def test_thresholds_are_configurable() -> None:
    strict = AdviceThresholds(low_efficiency=0.95)
    assert kinds(advise_wave(report(efficiency=0.9), strict)) == ["low_efficiency"]


# --------------------------------------------------------------------------- breaker flapping
def transitions(*moves: tuple[BreakerState, BreakerState, float]) -> list[BreakerTransition]:
    return [BreakerTransition("db", a, b, "r", t) for a, b, t in moves]


def test_flapping_breaker_is_advised_with_reset_timeout_and_outage() -> None:
    run = RunReport(transitions=transitions(
        (CLOSED, OPEN, 0.0), (OPEN, HALF, 0.1), (HALF, OPEN, 0.11), (OPEN, HALF, 0.21), (HALF, OPEN, 0.22),
        (OPEN, HALF, 0.32), (HALF, CLOSED, 0.33),
    ))
    [rec] = run.recommendations()
    assert rec.kind == "breaker_flapping" and rec.subject == "db"
    assert rec.evidence["opens"] == 3 and rec.evidence["reopens"] == 2
    assert rec.evidence["reset_timeout_s"] == pytest.approx(0.1)
    assert rec.evidence["outage_s"] == pytest.approx(0.33)
    assert "opened 3 times" in rec.message and "100.0 ms" in rec.message and "330.0 ms" in rec.message


def test_flapping_outage_is_measured_per_episode_not_across_the_run() -> None:
    flap = ((CLOSED, OPEN, 0.0), (OPEN, HALF, 0.1), (HALF, OPEN, 0.11), (OPEN, HALF, 0.21), (HALF, CLOSED, 0.22))
    later = [*((a, b, t + 60.0) for a, b, t in flap[:3]), (OPEN, HALF, 60.21), (HALF, CLOSED, 60.35)]
    [rec] = RunReport(transitions=transitions(*flap, *later)).recommendations()
    assert rec.evidence["outages"] == 2
    assert rec.evidence["outage_s"] == pytest.approx(0.35)  # the longest episode, not 0.0 .. 60.35
    assert rec.evidence["median_outage_s"] == pytest.approx(0.285)
    assert "2 outages" in rec.message and "towards 350.0 ms" in rec.message and "60" not in rec.message


def test_flapping_ignores_other_breakers_when_splitting_episodes() -> None:
    db = transitions((CLOSED, OPEN, 0.0), (OPEN, HALF, 0.1), (HALF, OPEN, 0.11), (OPEN, HALF, 0.21),
                     (HALF, OPEN, 0.22), (OPEN, HALF, 0.32), (HALF, CLOSED, 0.33))
    other = [BreakerTransition("cache", CLOSED, OPEN, "r", 0.05), BreakerTransition("cache", OPEN, HALF, "r", 5.0)]
    [rec] = RunReport(transitions=[*db[:2], *other, *db[2:]]).recommendations()
    assert rec.subject == "db" and rec.evidence["outage_s"] == pytest.approx(0.33)


def test_one_clean_open_close_cycle_is_not_flapping() -> None:
    run = RunReport(transitions=transitions((CLOSED, OPEN, 0.0), (OPEN, HALF, 0.1), (HALF, CLOSED, 0.11)))
    assert run.recommendations() == []


# --------------------------------------------------------------------------- retry storm
def test_retry_storm_against_an_open_circuit_is_advised() -> None:
    op = OperationStats("search", calls=40, attempts=30, retries=50, rejected_retries=45, rejected=60)
    [rec] = RunReport(operations={"search": op}).recommendations()
    assert rec.kind == "retry_storm" and rec.subject == "search"
    # 60 refusals in 40 calls: tries, not calls (one call is refused again at each retry)
    assert "45 of 50 retries" in rec.message and "60 tries rejected in 40 calls" in rec.message
    assert "CircuitOpenError" in rec.message


def test_a_retry_storm_of_one_call_says_one_call_and_one_attempt() -> None:
    # One call retried 6 times against an open circuit (Retry(attempts=7, on=CircuitOpenError)) after its first
    # attempt failed read "(6 tries rejected in 1 calls, 1 attempts run)".
    op = OperationStats("search", calls=1, attempts=1, retries=6, rejected_retries=6, rejected=6)
    [rec] = RunReport(operations={"search": op}).recommendations()
    assert "(6 tries rejected in 1 call, 1 attempt run)" in rec.message


@pytest.mark.parametrize(("retries", "rejected_retries"), [
    (4, 2),  # a couple of retries hit the open breaker: normal
    (100, 6),  # plenty of retries, few of them against an open circuit
])
def test_retry_storm_not_advised(retries: int, rejected_retries: int) -> None:
    op = OperationStats("search", calls=200, attempts=300, retries=retries, rejected_retries=rejected_retries)
    assert RunReport(operations={"search": op}).recommendations() == []


# --------------------------------------------------------------------------- latency anomaly
def latencies(*means: float) -> dict[str, tuple[int, float]]:
    return {f"w{i}": (10, m) for i, m in enumerate(means)}


def test_latency_anomaly_on_one_operation_is_advised_with_its_trace() -> None:
    op = OperationStats("vector-db", calls=50, latency_by_wave=latencies(0.005, 0.006, 0.004, 0.080, 0.005),
                        trace_by_wave={"w3": "ab" * 16})
    [rec] = RunReport(operations={"vector-db": op}).recommendations()
    assert rec.kind == "latency_anomaly" and rec.subject == "vector-db"
    assert "'w3'" in rec.message and "80.0 ms" in rec.message and "5.0 ms" in rec.message
    assert "16.0x" in rec.message and "ab" * 16 in rec.message


def test_latency_anomaly_in_one_wave_says_only_that_wave_is_affected() -> None:
    op = OperationStats("vector-db", calls=50, latency_by_wave=latencies(0.005, 0.006, 0.004, 0.080, 0.005))
    [rec] = RunReport(operations={"vector-db": op}).recommendations()
    assert "Only this wave is affected" in rec.message and rec.evidence["waves"] == 1


def test_latency_anomaly_recurring_in_several_waves_says_so() -> None:
    means = (0.005, 0.006, 0.060, 0.004, 0.005, 0.080, 0.005, 0.070, 0.012)  # 0.012: 2.4x, under the ratio
    op = OperationStats("vector-db", calls=90, latency_by_wave=latencies(*means))
    [rec] = RunReport(operations={"vector-db": op}).recommendations()
    assert "'w5'" in rec.message and "Only this wave" not in rec.message
    assert "recurs in 3 of 9 waves ('w2', 'w5', 'w7')" in rec.message
    assert rec.evidence["waves"] == 3


@pytest.mark.parametrize("means", [
    (0.005, 0.006, 0.004, 0.007, 0.005),  # steady
    (0.005, 0.006, 0.040),  # too few waves to know what is typical
    (0.0001, 0.0001, 0.0001, 0.0009),  # 9x, but under a millisecond slower
])
def test_latency_anomaly_not_advised(means: tuple[float, ...]) -> None:
    op = OperationStats("vector-db", calls=50, latency_by_wave=latencies(*means))
    assert RunReport(operations={"vector-db": op}).recommendations() == []


# --------------------------------------------------------------------------- run report
def test_run_report_names_the_worst_wave_by_label_and_counts_the_others() -> None:
    waves = [report("research", run=dist(0.04), wait=dist(w)) for w in (0.05, 0.2, 0.01)]
    [rec] = RunReport(waves=waves, labels=("research", "research#2", "research#3")).recommendations()
    assert rec.kind == "queue_wait" and rec.subject == "research#2"
    assert rec.message.startswith("2 of 3 waves; the worst: wave 'research#2'")
    assert rec.evidence["waves"] == 2


def test_a_healthy_run_gets_no_advice() -> None:
    op = OperationStats("llm", calls=100, attempts=103, retries=3, latency_by_wave=latencies(0.03, 0.031, 0.029, 0.03))
    run = RunReport(waves=[report()] * 3, operations={"llm": op},
                    transitions=transitions((CLOSED, OPEN, 0.0), (OPEN, HALF, 1.0), (HALF, CLOSED, 1.1)))
    assert run.recommendations() == []
