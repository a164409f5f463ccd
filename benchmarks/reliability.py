"""Reliability: backend faults and a soak, all local (127.0.0.1 sockets this script starts and stops).

Faults (interleaved repetitions, medians; each run is a fresh ``configure(set_global=False)`` with the
OTLP/HTTP exporter and a 2 s shutdown budget, then a wave of N tasks that record a cost and return a value):
  healthy      an OTLP sink that accepts and discards (the baseline of ``overhead``)
  down         a port nothing listens on (connection refused)
  black_hole   a socket that accepts and never answers
  restart      the sink is stopped after the first third of the tasks and restarted on the same
               port after the second third; ``resumed`` says spans arrived after the restart
Per scenario: ``results_identical`` (values equal to the healthy run's), ``overhead`` (median wave
wall time / healthy median), ``exit_s`` (max time ``Telemetry.shutdown()`` took), ``dropped``
(spans + metric points counted as not delivered, last repetition).

Soak: N streamed tasks (1,000,000; --quick 50,000) through ``Wave.stream`` with SDK metrics on
(in-memory reader, collected every chunk) and a detector fed 10,000 series every chunk. RSS is
sampled per chunk; ``rss_growth_mb`` is max RSS after warm-up (the first 20% of the tasks) minus
RSS at the end of warm-up. Bound stated in docs/reliability.md.

bad_inputs: the table of ``benchmarks/_bad_inputs.py`` (the one tests/test_bad_inputs.py runs): every
public parameter found by introspection fed its declared bad values; ``clear`` counts the cases
refused with a TypeError/ValueError naming the parameter before any work ran; the other kinds
(silent, obscure, hang) are listed too, with the known open cases.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from benchmarks import _bad_inputs as bad_inputs
from benchmarks._backends import BlackHole, OtlpSink, down_endpoint
from shannon_otel import Wave, configure, record_cost
from shannon_otel.anomaly import AnomalyDetector, DetectorConfig

SCENARIOS = ("healthy", "down", "black_hole", "restart")
SHUTDOWN_BUDGET_S = 2.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _work(i: int) -> int:
    await asyncio.sleep(0)
    record_cost(0.001)
    return i * 2


class _Faults:
    """One backend per scenario, created lazily and reused across repetitions."""

    def __init__(self) -> None:
        self.sink = OtlpSink()
        self.hole = BlackHole()
        self.down = down_endpoint()
        self.restart_sink: OtlpSink | None = OtlpSink()
        self.resumed = True

    def endpoint(self, scenario: str) -> str:
        if scenario == "healthy":
            return self.sink.endpoint
        if scenario == "down":
            return self.down
        if scenario == "black_hole":
            return self.hole.endpoint
        assert self.restart_sink is not None
        return self.restart_sink.endpoint

    def on_progress(self, scenario: str, n: int) -> Callable[[int], None] | None:
        if scenario != "restart":
            return None
        state = {"stopped": False, "restarted": False}

        def at(done: int) -> None:
            if not state["stopped"] and done >= n // 3:
                state["stopped"] = True
                assert self.restart_sink is not None
                self._port = self.restart_sink.port
                self.restart_sink.close()
            elif state["stopped"] and not state["restarted"] and done >= 2 * n // 3:
                state["restarted"] = True
                self.restart_sink = OtlpSink(self._port)

        return at

    def close(self) -> None:
        self.sink.close()
        self.hole.close()
        if self.restart_sink is not None:
            self.restart_sink.close()


def _one_fault_run(faults: _Faults, scenario: str, n: int) -> dict[str, Any]:
    handle = configure(
        f"reliability-{scenario}", exporter="otlp_http", endpoint=faults.endpoint(scenario), set_global=False,
        shutdown_timeout_s=SHUTDOWN_BUDGET_S, metric_interval_s=0.5, export_timeout_s=5.0,
    )
    at = faults.on_progress(scenario, n)
    wave: Wave[int] = Wave(
        "reliability", max_concurrency=100, tracer_provider=handle.tracer_provider,
        meter_provider=handle.meter_provider,
        on_progress=(lambda p: at(p.done)) if at is not None else None, progress_interval=0.001,
    )
    start = time.perf_counter()
    result = asyncio.run(wave.map(_work, range(n)))
    wall = time.perf_counter() - start
    if scenario == "restart":
        time.sleep(1.2)  # a couple of metric intervals / span batches after the restart
    exit_start = time.perf_counter()
    handle.shutdown()
    exit_s = time.perf_counter() - exit_start
    if scenario == "restart":
        restarted = faults.restart_sink  # a new sink, started on the old port after the outage
        faults.resumed = faults.resumed and restarted is not None and restarted.spans > 0
    dropped = sum(handle.dropped.values())
    return {"wall": wall, "exit_s": exit_s, "values": [r.value for r in result.results], "dropped": dropped}


def faults_suite(n: int, reps: int) -> dict[str, dict[str, Any]]:
    """Every scenario ``reps`` times, interleaved; per-scenario figures (see the module docstring)."""
    faults = _Faults()
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    try:
        _one_fault_run(faults, "healthy", n // 4)  # warm-up: imports, connections
        for _ in range(reps):
            for scenario in SCENARIOS:
                gc.collect()
                runs[scenario].append(_one_fault_run(faults, scenario, n))
    finally:
        faults.close()
    expected = [i * 2 for i in range(n)]
    healthy = statistics.median(r["wall"] for r in runs["healthy"])
    out: dict[str, dict[str, Any]] = {}
    for scenario, rs in runs.items():
        out[scenario] = {
            "results_identical": all(r["values"] == expected for r in rs),
            "overhead": round(statistics.median(r["wall"] for r in rs) / healthy, 3),
            "exit_s": round(max(r["exit_s"] for r in rs), 3),
            "dropped": rs[-1]["dropped"],
            "wall_s_median": round(statistics.median(r["wall"] for r in rs), 4),
        }
    out["restart"]["resumed"] = faults.resumed
    return out


def soak(n: int, series: int, chunks: int = 50) -> dict[str, Any]:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    detector = AnomalyDetector(DetectorConfig(max_series=series))
    names = [f"series-{i}" for i in range(series)]
    rng = np.random.default_rng(7)
    wave: Wave[int] = Wave(
        "soak", max_concurrency=100, meter_provider=meter_provider, tracer_provider=trace.NoOpTracerProvider(),
    )
    chunk = max(1, n // chunks)
    samples: list[tuple[int, float]] = []
    tick = [0]

    def feed() -> None:
        tick[0] += 1
        detector.update_many(names, rng.normal(1.0, 0.1, (series, 1)), np.array([float(tick[0])]))
        reader.get_metrics_data()
        gc.collect()
        samples.append((done, _rss_mb()))

    def inputs() -> Iterator[Callable[[], Any]]:
        for i in range(n):
            yield functools.partial(_work, i)

    done = 0
    checksum = 0

    async def main() -> None:
        nonlocal done, checksum
        async with wave.stream(inputs()) as results:
            async for result in results:
                done += 1
                checksum += result.value or 0
                if done % chunk == 0:
                    feed()

    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    meter_provider.shutdown()
    warm = [rss for at, rss in samples if at <= n // 5]
    after = [rss for at, rss in samples if at > n // 5]
    baseline = warm[-1] if warm else samples[0][1]
    return {
        "tasks": n, "series": series, "seconds": round(elapsed, 1),
        "rss_start_mb": round(samples[0][1], 1), "rss_after_warmup_mb": round(baseline, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_growth_mb": round(max(after, default=baseline) - baseline, 2),
        "results_correct": checksum == n * (n - 1), "detector_series": detector.stats.series,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks reliability")
    parser.add_argument("--quick", action="store_true", help="smaller waves, fewer repetitions, short soak")
    parser.add_argument("--soak-tasks", type=int, default=None, help="streamed tasks of the soak (default 1M)")
    parser.add_argument("--soak-only", action="store_true", help="run the soak alone (no fault scenarios)")
    args = parser.parse_args(argv)
    # The exporters log every retry against the dead backends; the figures below are what matter.
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    logging.getLogger("shannon_otel").setLevel(logging.ERROR)
    n, reps = (2_000, 3) if args.quick else (6_000, 5)
    soak_tasks = args.soak_tasks or (50_000 if args.quick else 1_000_000)
    faults = {} if args.soak_only else faults_suite(n, reps)
    for scenario, row in faults.items():
        print(f"{scenario:>11}: {row}")
    soaked = soak(soak_tasks, 10_000)
    print(f"       soak: {soaked}")
    bad = bad_inputs.totals()
    print(f" bad inputs: {bad}")
    print(json.dumps({
        "suite": "reliability", "quick": args.quick, "tasks_per_wave": n, "repetitions": reps,
        "shutdown_budget_s": SHUTDOWN_BUDGET_S,
        "faults": faults, "soak": soaked,
        "bad_inputs": bad,
    }))
    return 0
