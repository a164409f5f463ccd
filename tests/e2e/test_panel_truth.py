"""Every panel shows the true number: a workload with known counts runs twice into the real stack (a
restart: a second process of the same service), and each dashboard query evaluated in Prometheus gives
the ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _prometheus import Points, Values, bar_totals, bars_of, dashboard_query, one, panel_exprs, values_at
from _stack import REPO, wait_until

from shannon_otel import (
    AnomalyHook,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    Hedge,
    Retry,
    Saga,
    SagaError,
    Step,
    Timeout,
    Wave,
    configure,
    record_cost,
    record_tokens,
)
from shannon_otel import _telemetry as tel
from shannon_otel.anomaly import LATENCY
from shannon_otel.assets import dashboards
from shannon_otel.testing import run_virtual

if TYPE_CHECKING:
    from _stack import Collector, Prometheus

pytestmark = pytest.mark.e2e
RUN = uuid.uuid4().hex[:8]
SERVICE = f"truth-{RUN}"
N_OK, N_FAIL, N_TIMEOUT = 14, 4, 2
TASK_S, TASK_TIMEOUT_S = 0.3, 1.0
RETRIED_CALLS = 10
BREAKER_FAILURES, BREAKER_REJECTED = 2, 3
SAGA_RUNS, SAGA_COMPENSATED_STEPS = 3, 2
TIMEOUTS, FALLBACKS, DEGRADATIONS, HEDGED = 4, 5, 2, 3
TOKENS_IN, TOKENS_OUT, COST = 100, 10, 0.25
TASKS = N_OK + N_FAIL + N_TIMEOUT
PHASES = 2
# Processes of the service: two instances (PROCESSES) run everything; between them the first restarts
# keeping its service.instance.id (the same series, counters reset) and runs only the waves: a counter
# whose value after a restart is what it was before (a breaker's one transition) shows no reset, which no
# query can tell from no change.
PROCESSES, WAVE_RUNS = 2, 3
WATCHED_ROUNDS = 60  # past the detector's warm-up (HOOK_DEFAULTS.min_history ticks)


class BoomError(Exception):
    """A failing task or call."""


async def workload(providers: dict[str, Any], between: Callable[[], None], *, policies: bool = True) -> None:
    """Two phases of the same waves and (``policies``) policies, ``between`` (a flush and a wait for
    scrapes) run between them."""
    clock = asyncio.get_running_loop().time
    options: dict[str, Any] = dict(providers, clock=clock)
    kinds = ["ok"] * N_OK + ["fail"] * N_FAIL + ["timeout"] * N_TIMEOUT
    wave: Wave[str] = Wave("truth", max_concurrency=len(kinds), task_timeout=TASK_TIMEOUT_S, **options)
    # A wave of its own for the anomaly detector (its tasks are left out of the truth wave's numbers).
    detector = AnomalyHook(tick_s=0.01, signals=(LATENCY,), clock=clock)
    watched: Wave[None] = Wave("watched", hooks=(detector,), **options)
    retry = Retry(attempts=3, initial=0.01, random=random.Random(1), name="truth.retry", **options)
    breaker = CircuitBreaker("truth.breaker", failure_threshold=BREAKER_FAILURES, reset_timeout=3600, **options)
    saga = Saga("truth.saga", **options)
    timeout = Timeout(0.1, name="truth.timeout", **options)
    fallback = Fallback(_spare, name="truth.fallback", **options)
    degrade: Degrade[list[Any]] = Degrade(default=[], name="truth.degrade", **options)
    hedge = Hedge(0.01, name="truth.hedge", **options)
    for phase in range(PHASES):
        if phase:
            await asyncio.to_thread(between)
        await wave.run([functools.partial(_task, k) for k in kinds])
        for _ in range(WATCHED_ROUNDS):
            await watched.run([_tick, _tick])
        if not policies:
            continue
        for _ in range(RETRIED_CALLS):
            await retry.call(_fails_once())
        for _ in range(BREAKER_FAILURES + BREAKER_REJECTED):  # opens in the first phase, stays open
            with contextlib.suppress(BoomError, CircuitOpenError):
                await breaker.call(_down)
        for _ in range(SAGA_RUNS):
            steps = [Step(f"s{i}", _pause, compensate=_undo) for i in range(SAGA_COMPENSATED_STEPS)]
            with contextlib.suppress(SagaError):
                await saga.run(*steps, Step("last", _down))
        for _ in range(TIMEOUTS):
            with contextlib.suppress(TimeoutError):
                await timeout.call(lambda: asyncio.sleep(1))
        for _ in range(FALLBACKS):
            await fallback.call(_down)
        for _ in range(DEGRADATIONS):
            await degrade.call(_late)
        for _ in range(HEDGED):
            await hedge.call(lambda: asyncio.sleep(0.05))


async def _task(kind: str) -> str:
    await asyncio.sleep(TASK_S)
    if kind == "fail":
        raise BoomError("task")
    if kind == "timeout":
        await asyncio.sleep(10 * TASK_TIMEOUT_S)
    record_tokens(input=TOKENS_IN, output=TOKENS_OUT)
    record_cost(COST)
    return kind


def _fails_once() -> Callable[[], Awaitable[int]]:
    tries = [0]

    async def flaky() -> int:
        tries[0] += 1
        if tries[0] == 1:
            raise BoomError("first attempt")
        return tries[0]

    return flaky


async def _down() -> None:
    raise BoomError("down")


async def _late() -> None:
    raise TimeoutError


async def _pause() -> None:
    await asyncio.sleep(0.001)


async def _tick() -> None:
    await asyncio.sleep(0.01)  # the detector's tick: one latency sample per round


async def _undo(_: object) -> None:
    await asyncio.sleep(0.001)


async def _spare(error: Exception) -> str:
    return "spare"


def run_process(endpoint: str, service: str = SERVICE, wait_s: float = 3.0, *, policies: bool = True) -> None:
    """One process of the service: its own providers, resource and service.instance.id."""
    with configure(service, exporter="otlp_grpc", endpoint=endpoint, metric_interval_s=0.5,
                   set_global=False) as telemetry:
        providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}

        def between() -> None:
            telemetry.meter_provider.force_flush(10_000)
            time.sleep(wait_s)

        run_virtual(workload(providers, between, policies=policies))
        assert telemetry.force_flush(10)


@dataclass(frozen=True)
class Runs:
    started: float
    at: float  # evaluation time, a few scrapes after the last export


def _instances(prometheus: Prometheus, finished: int) -> int:
    """Instances of the service whose finished-task count (wave "truth") reached ``finished``."""
    selector = f'sum by (instance) ({tel.TASK_OUTCOMES.prometheus}{{job="{SERVICE}", shannon_wave_name="truth"}})'
    return sum(float(s["value"][1]) == finished for s in prometheus.query(selector))


@pytest.fixture(scope="module")
def runs(collector: Collector, prometheus: Prometheus) -> Runs:
    """The workload in this process, its waves again with the same service.instance.id (a restart of the
    same instance), then everything in a second process (a new instance of the same service.name)."""
    wait_until(prometheus.targets_up, what="Prometheus scraping the collector")
    started = time.time()
    wait_s = 3.0 * prometheus.scrape_interval
    run_process(collector.otlp_grpc_endpoint, SERVICE, wait_s)
    wait_until(lambda: _instances(prometheus, PHASES * TASKS) == 1, what="the first process scraped")
    time.sleep(wait_s)
    # This Python process again: the SDK's service.instance.id is per process, so the same series.
    run_process(collector.otlp_grpc_endpoint, SERVICE, wait_s, policies=False)
    reset = f'resets({tel.TASK_OUTCOMES.prometheus}{{job="{SERVICE}", shannon_task_outcome="success"}}[1m]) > 0'
    wait_until(lambda: prometheus.query(reset) and _instances(prometheus, PHASES * TASKS) == 1,
               what="the restart keeping its instance scraped")
    time.sleep(wait_s)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    code = f"import test_panel_truth as t; t.run_process({collector.otlp_grpc_endpoint!r}, {SERVICE!r}, {wait_s})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)
    wait_until(lambda: _instances(prometheus, PHASES * TASKS) == PROCESSES, what="the restarted process scraped")
    time.sleep(wait_s)
    return Runs(started, time.time())


def show(prometheus: Prometheus, title: str, at: float, window: str, target: int = 0) -> Values:
    """Panel ``title``'s ``target`` at ``at`` for this service, ``$__range`` and ``$__rate_interval``
    both ``window``; labels added for the trace link (``service``) left out."""
    chosen = {"job": SERVICE, "wave": "truth", "__range": window, "__rate_interval": window}
    return values_at(prometheus, dashboard_query(prometheus, panel_exprs(title)[target], chosen), at, drop=("service",))


#: Grafana's $__interval for the bar panels, in scrape intervals: a bar spans two scrapes.
BAR_STEP = 2


def bars(prometheus: Prometheus, title: str, runs: Runs, target: int = 0) -> Points:
    """Panel ``title``'s ``target`` drawn over the runs as Grafana draws it, in steps of :data:`BAR_STEP`
    scrapes: each series' bars; labels added for the trace link (``service``) left out."""
    chosen = {"job": SERVICE, "wave": "truth"}
    return bars_of(prometheus, panel_exprs(title)[target], runs.started, runs.at,
                   BAR_STEP * prometheus.scrape_interval, chosen, drop=("service",))


def counted(prometheus: Prometheus, title: str, runs: Runs) -> Values:
    """What the bars of panel ``title`` add up to over the runs, per series."""
    return bar_totals(bars(prometheus, title, runs))


def _whole(runs: Runs) -> str:
    return f"{math.ceil(runs.at - runs.started) + 5}s"


# ---------------------------------------------------------------- totals over the dashboard's range
def test_range_stats_count_every_task_of_both_processes(prometheus: Prometheus, runs: Runs) -> None:
    window, ok = _whole(runs), WAVE_RUNS * PHASES * N_OK
    assert show(prometheus, "Tasks finished", runs.at, window) == {frozenset(): WAVE_RUNS * PHASES * TASKS}
    assert one(show(prometheus, "Task error ratio", runs.at, window)) == pytest.approx((N_FAIL + N_TIMEOUT) / TASKS)
    assert one(show(prometheus, "Tokens", runs.at, window)) == ok * (TOKENS_IN + TOKENS_OUT)
    assert one(show(prometheus, "Task cost", runs.at, window)) == pytest.approx(ok * COST)
    errors = counted(prometheus, "Task errors by type", runs)
    assert one(errors, error_type="TimeoutError") == WAVE_RUNS * PHASES * N_TIMEOUT
    assert one(errors, error_type=f"{__name__}.BoomError") == WAVE_RUNS * PHASES * N_FAIL


def test_policy_event_panels_count_every_event_of_both_processes(prometheus: Prometheus, runs: Runs) -> None:
    window, runs_ = _whole(runs), PROCESSES * PHASES
    expected = {
        "Retries by operation": ("truth.retry", runs_ * RETRIED_CALLS),
        "Rejected calls by operation": ("truth.breaker", PROCESSES * (PHASES * (BREAKER_FAILURES + BREAKER_REJECTED)
                                                                      - BREAKER_FAILURES)),
        "Timeouts by operation": ("truth.timeout", runs_ * TIMEOUTS),
        "Fallbacks by operation": ("truth.fallback", runs_ * FALLBACKS),
        "Degradations": ("truth.degrade", runs_ * DEGRADATIONS),
        "Hedged attempts by operation": ("truth.hedge", runs_ * HEDGED),
    }
    for title, (operation, count) in expected.items():
        shown = counted(prometheus, title, runs)
        assert shown == {
            frozenset({"job": SERVICE, "shannon_operation": operation}.items()) | extra: count
            for extra in [frozenset(k for k in key if k[0] not in ("job", "shannon_operation")) for key in shown]
        }, title
    compensations = counted(prometheus, "Saga compensations", runs)
    assert one(compensations, shannon_saga_name="truth.saga", shannon_compensation_outcome="success") == (
        runs_ * SAGA_RUNS * SAGA_COMPENSATED_STEPS
    )
    transitions = counted(prometheus, "Breaker transitions", runs)
    assert transitions == {frozenset({"job": SERVICE, "service_name": SERVICE, "shannon_breaker_name": "truth.breaker",
                                      "shannon_breaker_state_to": "open"}.items()): PROCESSES}
    per_call = show(prometheus, "Most retried operations", runs.at, window)
    assert one(per_call, shannon_operation="truth.retry") == 1.0


def _bar_panels() -> list[str]:
    return [p["title"] for m in dashboards().values() for p in m["panels"]
            if p["type"] == "heatmap"
            or p.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("drawStyle") == "bars"]


def _own_steps(prometheus: Prometheus, selector: str, points: list[tuple[float, float]],
               step: float) -> dict[float, float]:
    """The ground truth of bars at ``points``' times from the raw samples of ``selector``: each sample's growth
    (a series' first sample: its whole value; a drop, a restart: the new value) in the bar whose step holds it,
    the one at ``t`` with ``t - step < sample time <= t``."""
    first, last = points[0][0], points[-1][0]
    raw = prometheus.query(f"{selector}[{math.ceil(last - first + step) + 300}s]", at=last)
    step_ms, first_ms = round(step * 1000), round(first * 1000)
    bins: dict[float, float] = {}
    for series in raw:
        before: float | None = None
        for at, text in series["values"]:
            value = float(text)
            growth = value if before is None or value < before else value - before
            before = value
            if growth:
                index = -(-(round(float(at) * 1000) - first_ms) // step_ms)
                bins[(first_ms + index * step_ms) / 1000] = bins.get((first_ms + index * step_ms) / 1000, 0) + growth
    return bins


@pytest.mark.parametrize("title", _bar_panels())
def test_each_bar_counts_only_the_events_of_its_own_step(prometheus: Prometheus, runs: Runs, title: str) -> None:
    """Every bar is the growth the raw samples show in its own step, no other step's. Before: each bar counted
    the trailing $__rate_interval (4 scrapes at least: 4-5 bars at a 1-hour range's 15 s step), so the bars summed
    to several times the events (here, 1 m at a 2 s step: 94 timed-out tasks for 12, 310 retries for 40)."""
    step = BAR_STEP * prometheus.scrape_interval
    expr = panel_exprs(title)[0]
    chosen = {"job": SERVICE, "wave": "truth"}
    shown = bars_of(prometheus, f"sum(\n{expr}\n)", runs.started, runs.at, step, chosen)
    selector = re.search(r"shannon_\w+\{[^}]*\}", dashboard_query(prometheus, expr, chosen))
    assert selector is not None, expr
    if not shown:  # nothing of this service counted by the panel (hook errors, dropped telemetry...)
        assert not prometheus.query(selector.group(0)), title
        return
    (points,) = shown.values()
    assert {t: v for t, v in points if v} == _own_steps(prometheus, selector.group(0), points, step), title


def test_breaker_panels_show_one_breaker_open_whatever_the_instances(prometheus: Prometheus, runs: Runs) -> None:
    """Both processes left truth.breaker open; the state timeline shows one row, open; the stat counted
    one breaker per instance (2 after a restart, while the old instance's series lingered)."""
    window = _whole(runs)
    state = show(prometheus, "Breaker state", runs.at, window)
    assert state == {frozenset({"job": SERVICE, "service_name": SERVICE,
                                "shannon_breaker_name": "truth.breaker"}.items()): 2.0}
    expr = dashboard_query(prometheus, panel_exprs("Open breakers")[0], {"job": SERVICE, "breaker": "truth[.]breaker"})
    assert [float(s["value"][1]) for s in prometheus.query(expr, at=runs.at)] == [1.0]


# ---------------------------------------------------------------- rates, ratios and percentiles
def test_rate_panels_count_every_task_a_batch_process_exported(prometheus: Prometheus, runs: Runs) -> None:
    """Per-second panels over a rate interval spanning the runs: every task. With rate() the tasks of each
    series' first export were missing (each phase's tasks are all in one export; 4 phases of 6 showed)."""
    window = _whole(runs)
    # A per-second panel divides by the span of the $__interval steps it sums in the window (at least
    # the window: a closed window holds one step more), not by the window.
    step = prometheus.scrape_interval
    steps = prometheus.query(f"count_over_time(vector(1)[{window}:{step:g}s])", at=runs.at)
    seconds = float(steps[0]["value"][1]) * step
    everything = WAVE_RUNS * PHASES
    throughput = one(show(prometheus, "Task throughput by wave", runs.at, window)) * seconds
    assert throughput == pytest.approx(everything * TASKS)
    usage = show(prometheus, "Token usage rate", runs.at, window)
    assert one(usage, shannon_token_type="input") * seconds == pytest.approx(everything * N_OK * TOKENS_IN)
    cost = one(show(prometheus, "Cost per hour", runs.at, window))
    assert cost * seconds / 3600 == pytest.approx(everything * N_OK * COST)
    calls = show(prometheus, "Calls by outcome", runs.at, window)
    assert one(calls, shannon_call_outcome="rejected") * seconds == pytest.approx(
        PROCESSES * (PHASES * (BREAKER_FAILURES + BREAKER_REJECTED) - BREAKER_FAILURES))


def test_ratio_and_percentile_panels_of_the_runs(prometheus: Prometheus, runs: Runs) -> None:
    window = _whole(runs)
    outcomes = show(prometheus, "Task outcomes", runs.at, window)
    ratio = one(outcomes, shannon_task_outcome="failure") / sum(outcomes.values())
    assert ratio == pytest.approx(N_FAIL / TASKS)
    p50, p90, p99 = (one(show(prometheus, "Task duration percentiles by wave", runs.at, window, i)) for i in range(3))
    assert 0.25 < p50 <= 0.5 + 1e-9 and 0.25 < p90 <= 0.5 + 1e-9, "the 0.3 s tasks: bucket (0.25, 0.5]"
    assert 0.5 < p99 <= 2.5, "the tasks cut at 1 s"
    assert 0.5 < one(show(prometheus, "Slowest waves (p99 task duration)", runs.at, window)) <= 2.5
    assert one(show(prometheus, "Task queue wait percentiles by wave", runs.at, window, 1)) <= 0.001
    heatmap = counted(prometheus, "Task duration heatmap", runs)
    assert one(heatmap, le="0.25") == 0
    # Counted like the event bars: every task, those of a series' first export included.
    assert one(heatmap, le="+Inf") == WAVE_RUNS * PHASES * TASKS
    assert one(heatmap, le="0.5") == WAVE_RUNS * PHASES * (N_OK + N_FAIL)
    tokens = show(prometheus, "Tokens per task (p50, p99)", runs.at, window)
    assert 64 < one(tokens, shannon_token_type="input") <= 256
    assert 4 < one(tokens, shannon_token_type="output") <= 16
    assert one(show(prometheus, "Parallel efficiency", runs.at, window)) == pytest.approx(
        (N_OK * TASK_S + N_FAIL * TASK_S + N_TIMEOUT * TASK_TIMEOUT_S) / (TASK_TIMEOUT_S * TASKS), rel=0.01,
    )
    attempts = show(prometheus, "Attempts per call", runs.at, window)
    assert one(attempts, shannon_operation="truth.retry") == pytest.approx(2.0)
    assert one(attempts, shannon_operation="truth.hedge") == pytest.approx(2.0)
    assert one(show(prometheus, "Retry delay percentiles", runs.at, window, 1)) <= 0.01


def test_the_failure_ratio_of_an_operation_that_never_failed_is_zero(prometheus: Prometheus, runs: Runs) -> None:
    """Before: no series for it (no failure series to divide), as if it had no calls."""
    ratios = show(prometheus, "Call failure ratio by operation", runs.at, _whole(runs))
    assert one(ratios, shannon_operation="truth.timeout") == 1.0
    assert one(ratios, shannon_operation="truth.retry") == 0.0
    assert not any(math.isnan(v) for v in ratios.values()), ratios


@pytest.mark.parametrize("title", [
    "Task error ratio", "Call failure ratio by operation", "Most retried operations", "Attempts per call",
])
def test_ratio_panels_show_no_nan_when_idle(prometheus: Prometheus, runs: Runs, title: str) -> None:
    """A range (or rate interval) in which the series exist but nothing happened: 0 / 0 was NaN.
    (A percentile of no observations is NaN too, as everywhere in Prometheus; those are left.)"""
    values = show(prometheus, title, runs.at, "2s")
    assert not any(math.isnan(v) for v in values.values()), (title, values)


def test_watched_series_are_counted_once_whatever_the_instances(prometheus: Prometheus, runs: Runs) -> None:
    """Both processes scored the latency of wave "watched": one watched series, not one per instance."""
    scores = show(prometheus, "Anomaly score by series", runs.at, _whole(runs))
    assert set(scores) == {frozenset({"job": SERVICE, "service_name": SERVICE, "shannon_anomaly_series": "watched",
                                      "shannon_anomaly_signal": "latency"}.items())}
    assert show(prometheus, "Watched series", runs.at, _whole(runs)) == {frozenset(): 1.0}

