"""Detector throughput: ``python -m benchmarks detector [--quick]``.

Side by side in one process, samples per second of: the naive design this project grew from
(deque + statistics.mean/stdev per sample), our detector streaming one series through the
batch API, 1,000 series (window 100) x 100 samples each per call (``update_many``), one-sample
calls (``update``), and river's GaussianScorer as a peer. Ratios are against the naive baseline
measured in the same run (the JSON's ``vs_naive``: each wall-clock key of ``samples_per_s`` and
``extra_samples_per_s`` over ``naive``, so a run on a slower or busier machine still compares with another).
Last line: one JSON object.

What "many_series" means: each timed ``update_many`` call carries 100 consecutive samples of
each of the 1,000 series (100 ticks batched into one call), so per-call overhead is spread over
100,000 samples. It runs the default engine (numba when installed) with ``threads`` = the
machine's cores (series are independent, so a block splits across threads; the JSON names the
count); the extra keys give the same case on one thread and on the numpy engine, and the
one-series batch on the numpy engine.
``many_series_one_sample_per_tick`` is the literal "per tick" reading: one new sample per series
per call (1,000 samples per call), where per-call overhead dominates. ``cpu_samples_per_s`` gives the
one-thread cases per second of process CPU (what other work on shared cores does not change). Rates are medians of
repeated runs; the compiled kernel is loaded before any timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from shannon_otel.anomaly import AnomalyDetector, DetectorConfig

STEP_S = 60.0


def _series(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10.0 + np.sin(t * 2 * np.pi / 1440) + rng.normal(0.0, 0.3, n)


_last_cpu_rate = [0.0]  # the process-CPU rate of the last _rate() (read by _median_rates)


def _rate(samples: int, fn: Callable[[], object]) -> float:
    """Samples per wall-clock second of ``fn``; its rate per second of process CPU goes to ``_last_cpu_rate``."""
    cpu = time.process_time()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    _last_cpu_rate[0] = samples / max(time.process_time() - cpu, 1e-9)
    return samples / wall


def naive(values: np.ndarray, window: int = 100) -> float:
    def run() -> None:
        win: deque[float] = deque(maxlen=window)
        for v in values.tolist():
            if len(win) >= 2:
                mu, sd = statistics.mean(win), statistics.stdev(win)
                _ = abs(v - mu) / sd if sd > 0 else 0.0
            win.append(v)
    return _rate(len(values), run)


def single_series_batch(values: np.ndarray, block: int = 10_000, engine: str = "auto") -> float:
    det = AnomalyDetector(engine=engine)
    times = np.arange(len(values)) * STEP_S

    def run() -> None:
        for lo in range(0, len(values), block):
            det.update_series("s", values[lo : lo + block], times[lo : lo + block])
    return _rate(len(values), run)


def many_series(ticks: int, series: int = 1000, per_tick: int = 100, window: int = 100,
                engine: str = "auto", threads: int = 1) -> float:
    """``series`` series with a ``window``-value history each, ``per_tick`` samples per series per call."""
    det = AnomalyDetector(DetectorConfig(window=window), engine=engine, threads=threads)
    names = [f"s{i}" for i in range(series)]
    rng = np.random.default_rng(3)
    blocks = [rng.normal(5.0, 1.0, (series, per_tick)) for _ in range(min(ticks, 4))]
    det.update_many(names, blocks[0], np.arange(per_tick) * STEP_S)  # allocate series first

    def run() -> None:
        for k in range(1, ticks + 1):
            times = (k * per_tick + np.arange(per_tick)) * STEP_S
            det.update_many(names, blocks[k % len(blocks)], times)
    return _rate(ticks * series * per_tick, run)


def per_sample_calls(values: np.ndarray) -> float:
    det = AnomalyDetector()
    pairs = list(zip(values.tolist(), (np.arange(len(values)) * STEP_S).tolist(), strict=True))

    def run() -> None:
        update = det.update
        for v, t in pairs:
            update("s", v, t)
    return _rate(len(values), run)


def river_gaussian(values: np.ndarray) -> float | None:
    try:
        from river import anomaly
    except ImportError:
        return None

    def run() -> None:
        scorer = anomaly.GaussianScorer(window_size=100, grace_period=100)  # type: ignore[no-untyped-call]
        for v in values.tolist():
            scorer.score_one(None, v)  # type: ignore[no-untyped-call]
            scorer.learn_one(None, v)  # type: ignore[no-untyped-call]
    return _rate(len(values), run)


def vs_naive(rates: dict[str, float | None]) -> dict[str, float | None]:
    """Each rate over ``rates["naive"]`` (same run), to one decimal; None where a rate or the baseline is missing."""
    base = rates.get("naive")
    return {k: None if v is None or not base else round(v / base, 1) for k, v in rates.items() if k != "naive"}


def _median_rate(reps: int, fn: Callable[[], float]) -> float:
    return _median_rates(reps, fn)[0]


def _median_rates(reps: int, fn: Callable[[], float]) -> tuple[float, float]:
    """Medians of ``reps`` runs: samples per wall-clock second, and per second of process CPU (on a machine
    whose cores other work shares, the steadier figure of a one-thread case)."""
    runs = [(fn(), _last_cpu_rate[0]) for _ in range(reps)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks detector")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    scale = 1 if args.quick else 5
    values = _series(200_000 * scale)
    engine = AnomalyDetector().engine
    threads = len(os.sched_getaffinity(0)) if engine == "numba" else 1
    single_series_batch(values[:1000])  # numba: load the compiled kernel before timing
    reps = 3 if args.quick else 5
    single, single_cpu = _median_rates(reps, lambda: single_series_batch(values))
    calls, calls_cpu = _median_rates(reps, lambda: per_sample_calls(values[: 100_000 * scale]))
    one_thread, one_thread_cpu = _median_rates(reps, lambda: many_series(ticks=4 * scale))
    rates: dict[str, float | None] = {
        "naive": naive(values[: 10_000 * scale]),
        "single_series_batch": single,
        "many_series": _median_rate(reps, lambda: many_series(ticks=4 * scale, threads=threads)),
        "per_sample_calls": calls,
        "river": river_gaussian(values[: 20_000 * scale]),
    }
    cpu = {"single_series_batch": single_cpu, "per_sample_calls": calls_cpu, "many_series_1_thread": one_thread_cpu}
    extra = {
        "many_series_1_thread": one_thread,
        "many_series_numpy_engine": _median_rate(reps, lambda: many_series(ticks=4 * scale, engine="numpy")),
        "single_series_batch_numpy_engine": single_series_batch(values, engine="numpy"),
        "many_series_one_sample_per_tick": many_series(ticks=100 * scale, per_tick=1),
    }
    base = rates["naive"] or 1.0
    print(f"engine {engine}, many_series on {threads} thread(s)", file=sys.stderr)
    for name, rate in {**rates, **extra}.items():
        shown = "n/a" if rate is None else f"{rate:14,.0f} samples/s  x{rate / base:8.1f} vs naive"
        print(f"{name:34s} {shown}", file=sys.stderr)
    for name, rate in cpu.items():
        print(f"{name + ' (process CPU)':34s} {rate:14,.0f} samples/s", file=sys.stderr)
    print(json.dumps({"suite": "detector", "engine": engine, "many_series_threads": threads,
                      "samples_per_s": {k: None if v is None else round(v) for k, v in rates.items()},
                      "extra_samples_per_s": {k: None if v is None else round(v) for k, v in extra.items()},
                      "cpu_samples_per_s": {k: round(v) for k, v in cpu.items()},
                      "vs_naive": vs_naive({**rates, **extra})}))
    return 0
