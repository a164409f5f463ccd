"""Performance recommendations: what advice is, when it is given, and the advice one wave earns.

Pure functions of reports: :func:`advise_wave` reads one wave's report (queue wait, parallel
efficiency); :meth:`RunReport.recommendations` (``_run.py``) adds what only a run shows (breaker
flapping, retry storms, a latency anomaly on one operation). Every :class:`Recommendation` cites
the numbers it was derived from in ``message`` and ``evidence``. Nothing here blocks, raises on
odd data, or touches telemetry; the thresholds are an immutable :class:`AdviceThresholds`.

A leaf module: it imports no report. The executor's ``WaveReport`` offers this advice
(``report.recommendations``) and the run report builds on it, so the advice reads a wave's
report through the :class:`WaveFacts` protocol instead of importing it (no import cycle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DEFAULT_THRESHOLDS", "AdviceThresholds", "Recommendation", "WaveFacts", "advise_wave", "check_thresholds", "ms",
    "times",
]


def check_number(name: str, value: object, *, low: float, high: float | None = None, integer: bool = False,
                 low_open: bool = False) -> None:
    """``shannon_otel._validate.check_number``'s contract, local: the advice imports nothing of the package."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {value!r}")
    shown = value
    try:
        v = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int no float holds (10**400): refused by name, as _validate does
        v, shown = math.nan, "an int beyond the float range"
    if v != v or (v <= low if low_open else v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high if high is not None else 'inf'}"
                         f"{')' if high is None and integer else ']'}, got {shown}")  # a float takes inf


class _Distribution(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def mean(self) -> float: ...
    @property
    def p50(self) -> float: ...
    @property
    def p95(self) -> float: ...
    @property
    def p99(self) -> float: ...


class WaveFacts(Protocol):
    """What wave advice reads of a wave's report (``executor.WaveReport`` has all of it)."""

    @property
    def wave(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def parallel_efficiency(self) -> float: ...
    @property
    def total(self) -> int: ...
    @property
    def latency(self) -> _Distribution: ...
    @property
    def queue_wait(self) -> _Distribution: ...


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One piece of advice. ``kind`` is stable (tests and tools match on it); ``message`` cites numbers."""

    kind: str  # queue_wait | low_efficiency | breaker_flapping | retry_storm | latency_anomaly
    subject: str  # the wave, breaker or operation it is about
    message: str
    evidence: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class AdviceThresholds:
    """When advice is given. Defaults are deliberately conservative: silence beats noise."""

    queue_wait_ratio: float = 1.0  # mean queue wait / mean task time at or above which to advise
    min_queue_wait_s: float = 0.001  # ...and the mean wait must be at least this long
    low_efficiency: float = 0.5  # parallel efficiency below this is low...
    min_efficiency_tasks: int = 2  # ...for waves with at least this many tasks per slot
    straggler_ratio: float = 4.0  # p99 / p50 latency at or above which stragglers explain low efficiency
    flapping_reopens: int = 2  # failed half-open probes (re-opens) of one breaker at or above which to advise
    storm_rejected_retries: int = 5  # retries scheduled after a breaker rejection...
    storm_retry_share: float = 0.2  # ...making up at least this share of the operation's retries
    anomaly_ratio: float = 3.0  # one wave's mean latency of an operation vs its typical mean
    anomaly_min_delta_s: float = 0.002  # ...and at least this much slower in absolute terms
    anomaly_min_waves: int = 3  # other waves with samples needed to know what is typical
    min_idle_s: float = 0.001  # low efficiency: each slot must have sat idle this long (the rest is overhead)

    def __post_init__(self) -> None:
        for name in ("queue_wait_ratio", "straggler_ratio", "anomaly_ratio"):
            check_number(name, getattr(self, name), low=0, low_open=True)
        for name in ("min_queue_wait_s", "anomaly_min_delta_s", "min_idle_s"):
            check_number(name, getattr(self, name), low=0)
        for name in ("low_efficiency", "storm_retry_share"):
            check_number(name, getattr(self, name), low=0, high=1)
        for name in ("min_efficiency_tasks", "flapping_reopens", "storm_rejected_retries", "anomaly_min_waves"):
            check_number(name, getattr(self, name), low=1, integer=True)


DEFAULT_THRESHOLDS = AdviceThresholds()


def check_thresholds(thresholds: object) -> None:
    """TypeError naming ``thresholds`` unless it is an :class:`AdviceThresholds`."""
    if not isinstance(thresholds, AdviceThresholds):
        raise TypeError(f"thresholds must be an AdviceThresholds, got {thresholds!r}")


def ms(seconds: float) -> str:
    """Seconds as advice quotes them: milliseconds below 10 s (as shown: 9.99996 s is "10.0 s", not "10000.0 ms")."""
    return f"{seconds * 1000:.1f} ms" if seconds < 9.99995 else f"{seconds:.1f} s"


def _percent_below(value: float) -> str:
    """A share that is below a threshold, as a whole percentage rounded down: rounded to nearest, 99.6% efficient
    read "100%" in advice that it was below 100%. (The round to 6 places first: 0.29 * 100 is 28.999999999999996.)"""
    return f"{math.floor(round(value * 100, 6))}%"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 slot``, ``4 slots``: a count and its noun (``words``: its plural, when not ``word`` + s)."""
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def times(ratio: float) -> str:
    """`` (3.0x)``, or nothing for tasks that took no measurable time (an infinite ratio says nothing)."""
    return f" ({ratio:.1f}x)" if math.isfinite(ratio) else ""


def _raise(report: WaveFacts) -> str:
    """What to raise against a queue wait: with a slot for every task (of its batch: a batch's queue
    waits count from its start), max_concurrency held none back; nor in a stream, whose queue waits
    start when a worker with room pulls the task."""
    # a WaveFacts of a caller's own may have neither
    batch, buffer = getattr(report, "batch_size", None), getattr(report, "buffer", None)
    if buffer is not None:
        return ("A stream's queue wait starts when a slot is free, so a resource pool or the rate limit held "
                "the tasks back: raise that")
    wanted = report.total if batch is None else min(report.total, batch)
    if report.concurrency >= wanted:
        where = "" if batch is None else " per batch"
        return (f"Every task had a concurrency slot ({report.concurrency}{where}), so a resource pool or the "
                f"rate limit held them back: raise that")
    # A task waits for a slot only while every slot runs a task, which lasts at most busy time / slots (a batch's
    # task: its batch's busy time, at most batch / started of the wave's on average): a mean wait longer than that
    # is not max_concurrency's (5 slots 96% idle under a rate limit were told "Raise max_concurrency").
    started = report.queue_wait.count
    slots_busy = report.latency.mean * report.latency.count / report.concurrency
    if batch is not None and batch < started:
        slots_busy *= batch / started
    if report.queue_wait.mean > slots_busy * (1 + 1e-9):
        where = "" if batch is None or batch >= started else " per batch"
        # nor can the report tell a limit's wait from the executor's own per-task work (instant tasks, real clock)
        return (f"At most {ms(slots_busy)}{where} of that can be a wait for a slot (busy task time / "
                f"{plural(report.concurrency, 'slot')}), so the tasks mostly waited for a resource pool, the rate "
                f"limit or the event loop itself: raise the pool or the rate limit")
    return f"Raise max_concurrency (now {report.concurrency}), the resource pool size or the rate limit"


def advise_wave(
    report: WaveFacts, thresholds: AdviceThresholds = DEFAULT_THRESHOLDS, *, label: str | None = None,
) -> list[Recommendation]:
    """Queue-wait and parallel-efficiency advice for one wave (empty when nothing stands out).

    ``label`` names the wave in the advice instead of ``report.wave`` (runs repeating a wave name
    label each run, e.g. ``research#2``).
    """
    check_thresholds(thresholds)
    if not hasattr(report, "queue_wait") or not hasattr(report, "latency"):
        raise TypeError(f"report must be a WaveReport, got {report!r}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str or None, got {label!r}")
    out: list[Recommendation] = []
    wave = label or report.wave
    wait, run = report.queue_wait, report.latency
    if wait.count and run.count and not math.isnan(wait.mean) and wait.mean >= thresholds.min_queue_wait_s:
        ratio = wait.mean / run.mean if run.mean > 0 else math.inf
        if ratio >= thresholds.queue_wait_ratio:
            out.append(Recommendation(
                "queue_wait", wave,
                f"wave {wave!r}: tasks waited {ms(wait.mean)} on average to start (p95 {ms(wait.p95)}) "
                f"but ran only {ms(run.mean)}{times(ratio)}: queue wait dominates. {_raise(report)}, if the "
                f"dependency can take the load.",
                {"queue_wait_mean_s": wait.mean, "task_mean_s": run.mean, "ratio": ratio,
                 "concurrency": float(report.concurrency)},
            ))
    busy_tasks = report.total >= thresholds.min_efficiency_tasks * report.concurrency
    # A wave that took no measurable wall time (a fake clock) has no efficiency to judge: its 0.0 says so.
    # Nor does a wave whose slots idled less than min_idle_s each: the executor's own scheduling, on a
    # real clock (4 instant tasks on 2 slots read 2% efficient over 0.2 ms, "look for a rate limit").
    idle = (1.0 - report.parallel_efficiency) * report.duration_s  # per slot
    measured = report.duration_s > 0 and idle >= thresholds.min_idle_s
    if busy_tasks and measured and run.count and report.parallel_efficiency < thresholds.low_efficiency:
        eff = report.parallel_efficiency
        # tasks that all took no time have an even latency (p99 = p50 = 0), not an infinite tail
        tail = run.p99 / run.p50 if run.p50 > 0 else math.inf if run.p99 > 0 else 1.0
        buffer = getattr(report, "buffer", None)  # a stream's (a WaveFacts of a caller's own may not have it)
        if tail >= thresholds.straggler_ratio:
            how = f"{tail:.1f}x" if math.isfinite(tail) else "far above"  # a p50 of 0 has no multiple
            then = (" or start the next work without waiting for the whole wave (stream())" if buffer is None
                    else "")  # a stream already does
            why = (f"p99 latency {ms(run.p99)} is {how} the p50 {ms(run.p50)}: stragglers hold the wave "
                   f"open while slots idle. Set a per-task timeout{',' if then else ' or'} hedge the slow "
                   f"call{then}.")
        elif buffer is not None:  # a stream's workers also wait for room its consumer makes
            why = (f"latency is even, so slots sat idle between tasks: a stream runs only while its buffer "
                   f"({plural(buffer, 'result')}) has room, so look first at a consumer slower than the tasks, then at "
                   f"a rate limit or a resource pool smaller than max_concurrency.")
        else:
            why = ("latency is even, so slots sat idle between tasks: look for a rate limit, a resource pool "
                   "smaller than max_concurrency, or tasks awaiting something outside the wave.")
        out.append(Recommendation(
            "low_efficiency", wave,
            f"wave {wave!r}: parallel efficiency {_percent_below(eff)} ({plural(report.total, 'task')}, "
            f"{plural(report.concurrency, 'slot')}, {ms(report.duration_s)} wall time); {why}",
            {"parallel_efficiency": eff, "p50_s": run.p50, "p99_s": run.p99, "concurrency": float(report.concurrency),
             "idle_s": idle},
        ))
    return out
