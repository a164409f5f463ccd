"""Alarm quality of the anomaly hook: ``python -m benchmarks alarms [--quick] [--seed N]``.

Simulated services, each one long-running wave of tasks plus a protected call per task, are fed
through the real :class:`shannon_otel.anomaly.AnomalyHook` (public hook protocol: ``wave_started``
/ ``task_finished``, ``call_started`` / ``call_finished``) at its default tick and config, on a
simulated clock. A service behaves like a real one:

* task latency is lognormal (median 50 ms x a slow daily drift of +-15%, sigma 0.5), and one
  task in 1,000 is a single slow outlier (5-20 x: a GC pause, a cold cache);
* the load follows a daily cycle (+-30% around 10 tasks/s, 100 per tick); about six short bursts a day (1-3
  ticks) double it and add queueing (latency x1.15);
* 1% of tasks fail; a call retries 0.05 times on average (Poisson, at most 3).

Clean runs count every anomaly event (an ``on_anomaly`` callback, i.e. a score >= ``warning``)
as false, per series-day (4 series per service: latency, error_rate, throughput, retry_rate).
Shift runs warm a service up for ``WARM_TICKS`` ticks, then shift it for good (latency x2, error
rate 1% -> 10%, retry rate x3) and measure the delay until the first event on that signal, in
ticks: 1 means the first tick that holds shifted tasks. "Detected within 6 ticks" is delay <= 6.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shannon_otel import CallFinished, CallOutcome, CallStarted, Outcome, TaskResult, WaveStarted
from shannon_otel.anomaly import ERROR_RATE, LATENCY, RETRY_RATE, Anomaly, AnomalyHook

DAY_S = 86_400.0
SHIFTS = {LATENCY: "latency x2", ERROR_RATE: "error rate 1% -> 10%", RETRY_RATE: "retry rate x3"}
WARM_TICKS = 1_000  # history before a shift: under 3 hours at the default tick
AFTER_TICKS = 30  # ticks simulated after a shift
WITHIN = 6


@dataclass(slots=True)
class Service:
    """One simulated service; ``shift`` (a signal name) applies from ``shift_at`` (seconds) on."""

    rng: np.random.Generator
    tick_s: float
    rate: float = 10.0  # tasks per second, on average
    median_s: float = 0.05
    sigma: float = 0.5
    error_p: float = 0.01
    retries: float = 0.05
    shift: str | None = None
    shift_at: float = math.inf
    phase: float = field(init=False)
    burst_left: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.phase = float(self.rng.uniform(0.0, 2 * math.pi))

    def tick(self, start: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tasks finishing in [start, start + tick_s): finish times, latencies, failed flags, retries."""
        rng = self.rng
        day = math.sin(2 * math.pi * start / DAY_S + self.phase)
        load, slow = 1.0 + 0.3 * day, 1.0 + 0.15 * day
        if self.burst_left == 0 and rng.random() < self.tick_s / (DAY_S / 6):
            self.burst_left = int(rng.integers(1, 4))
        if self.burst_left:
            self.burst_left -= 1
            load, slow = load * 2.0, slow * 1.15
        n = int(rng.poisson(self.rate * self.tick_s * load))
        finish = np.sort(rng.uniform(start, start + self.tick_s, n))
        shifted = finish >= self.shift_at
        latency = self.median_s * slow * rng.lognormal(0.0, self.sigma, n)
        outlier = rng.random(n) < 1 / 1000
        latency[outlier] *= rng.uniform(5.0, 20.0, int(outlier.sum()))
        error_p = np.full(n, self.error_p)
        retries = np.full(n, self.retries)
        if self.shift == LATENCY:
            latency[shifted] *= 2.0
        elif self.shift == ERROR_RATE:
            error_p[shifted] = 0.10
        elif self.shift == RETRY_RATE:
            retries[shifted] *= 3.0
        failed = rng.random(n) < error_p
        return finish, latency, failed, np.minimum(rng.poisson(retries), 3)


def run_service(service: Service, ticks: int, name: str) -> list[Anomaly]:
    """Feed ``ticks`` ticks of ``service`` through a fresh hook (default config and tick); its anomalies."""
    now = [0.0]
    found: list[Anomaly] = []
    hook = AnomalyHook(on_anomaly=found.append, clock=lambda: now[0], tick_s=service.tick_s)
    wave = hook.wave_started(WaveStarted(name, None, None, 0.0))
    assert wave is not None
    started = hook.call_started
    start_event = CallStarted(name, "retry")
    finished = wave.task_finished
    index = 0
    for k in range(ticks):
        times, latency, failed, retries = service.tick(k * service.tick_s)
        for t, lat, bad, extra in zip(times.tolist(), latency.tolist(), failed.tolist(), retries.tolist(),
                                      strict=True):
            now[0] = t
            outcome = Outcome.FAILURE if bad else Outcome.SUCCESS
            finished(None, TaskResult(name, index, name, outcome, duration_s=lat))
            call = started(start_event)
            if call is not None:
                call.call_finished(CallFinished(name, CallOutcome.FAILURE if bad else CallOutcome.SUCCESS,
                                                1 + extra, lat))
            index += 1
    return found


def clean(services: int, days: float, tick_s: float, seed: int) -> dict[str, object]:
    ticks = int(days * DAY_S / tick_s)
    events: list[Anomaly] = []
    for i in range(services):
        events += run_service(Service(np.random.default_rng([seed, 0, i]), tick_s), ticks, f"svc{i}")
    series_days = services * 4 * ticks * tick_s / DAY_S
    by_signal = {s: sum(e.signal == s for e in events) for s in sorted({e.signal for e in events})}
    by_severity = {s: sum(e.severity is not None and e.severity.value == s for e in events)
                   for s in ("warning", "critical")}
    return {"series_days": round(series_days, 1), "events": len(events),
            "per_series_day": len(events) / series_days,
            "per_series_day_by_severity": {k: v / series_days for k, v in by_severity.items()},
            "events_by_signal": by_signal}


def shifted(trials: int, tick_s: float, seed: int) -> tuple[dict[str, float], dict[str, float | None],
                                                             dict[str, list[int | None]]]:
    within: dict[str, float] = {}
    median: dict[str, float | None] = {}
    delays: dict[str, list[int | None]] = {}
    for j, signal in enumerate(SHIFTS):
        got: list[int | None] = []
        for i in range(trials):
            rng = np.random.default_rng([seed, 1 + j, i])
            warm = WARM_TICKS  # the service's random daily phase puts the shift at a random time of day
            shift_at = warm * tick_s
            service = Service(rng, tick_s, shift=signal, shift_at=shift_at)
            events = run_service(service, warm + AFTER_TICKS, f"svc{i}")
            # ticks close at their first task after the boundary: tick m holds tasks up to ~ m x tick_s
            hits = [e for e in events if e.signal == signal and e.time >= shift_at]
            got.append(math.ceil((hits[0].time - shift_at) / tick_s) if hits else None)
        found = [d for d in got if d is not None]
        within[signal] = sum(d <= WITHIN for d in found) / len(got)
        median[signal] = statistics.median(found) if found else None
        delays[signal] = got
    return within, median, delays


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks alarms")
    parser.add_argument("--quick", action="store_true", help="fewer simulated days and shifts (< 1 min)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    tick_s = AnomalyHook().tick_s  # the default tick
    services, days, trials = (3, 1.0, 15) if args.quick else (6, 4.0, 40)
    start = time.perf_counter()
    quiet = clean(services, days, tick_s, args.seed)
    within, median, delays = shifted(trials, tick_s, args.seed)
    spent = time.perf_counter() - start
    print(f"clean: {quiet['events']} events in {quiet['series_days']} series-days = "
          f"{quiet['per_series_day']:.3f} per series-day {quiet['per_series_day_by_severity']} "
          f"by signal {quiet['events_by_signal']}", file=sys.stderr)
    for signal, label in SHIFTS.items():
        print(f"{label:22s} detected within {WITHIN} ticks {within[signal]:6.1%}  median delay "
              f"{median[signal]} ticks  delays {delays[signal]}", file=sys.stderr)
    print(f"{spent:.1f} s", file=sys.stderr)
    fmt: Callable[[float], float] = lambda v: round(v, 4)  # noqa: E731
    print(json.dumps({"suite": "alarms", "false_per_series_day": fmt(float(quiet["per_series_day"])),  # type: ignore[arg-type]
                      "false_per_series_day_by_severity": {k: fmt(v) for k, v in
                                                           quiet["per_series_day_by_severity"].items()},  # type: ignore[attr-defined]
                      "series_days": quiet["series_days"], "tick_s": tick_s,
                      "detected_within_6_ticks": {k: fmt(v) for k, v in within.items()},
                      "median_delay_ticks": median}))
    return 0
