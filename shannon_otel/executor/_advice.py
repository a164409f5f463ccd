"""Performance recommendations derived from what a wave or a whole run measured.

Pure functions of reports: :func:`advise_wave` reads one :class:`WaveReport` (queue wait, parallel
efficiency); :meth:`RunReport.recommendations` adds what only a run shows (breaker flapping, retry
storms, a latency anomaly on one operation). Every :class:`Recommendation` cites the numbers it
was derived from in ``message`` and ``evidence``. Nothing here blocks, raises on odd data, or
touches telemetry; the thresholds are an immutable :class:`AdviceThresholds`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .._events import BreakerTransition
from .._telemetry import BreakerState
from ._report import WaveReport

__all__ = ["AdviceThresholds", "AnomalyRecord", "OperationStats", "Recommendation", "RunReport", "advise_wave"]


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
    straggler_ratio: float = 4.0  # p99 / p50 latency above which stragglers explain low efficiency
    flapping_reopens: int = 2  # failed half-open probes (re-opens) of one breaker
    storm_rejected_retries: int = 5  # retries scheduled after a breaker rejection...
    storm_retry_share: float = 0.2  # ...making up at least this share of the operation's retries
    anomaly_ratio: float = 3.0  # one wave's mean latency of an operation vs its typical mean
    anomaly_min_delta_s: float = 0.002  # ...and at least this much slower in absolute terms
    anomaly_min_waves: int = 3  # other waves with samples needed to know what is typical


DEFAULT_THRESHOLDS = AdviceThresholds()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def advise_wave(
    report: WaveReport, thresholds: AdviceThresholds = DEFAULT_THRESHOLDS, *, label: str | None = None,
) -> list[Recommendation]:
    """Queue-wait and parallel-efficiency advice for one wave (empty when nothing stands out).

    ``label`` names the wave in the advice instead of ``report.wave`` (runs repeating a wave name
    label each run, e.g. ``research#2``).
    """
    out: list[Recommendation] = []
    wave = label or report.wave
    wait, run = report.queue_wait, report.latency
    if wait.count and run.count and not math.isnan(wait.mean) and wait.mean >= thresholds.min_queue_wait_s:
        ratio = wait.mean / run.mean if run.mean > 0 else math.inf
        if ratio >= thresholds.queue_wait_ratio:
            out.append(Recommendation(
                "queue_wait", wave,
                f"wave {wave!r}: tasks waited {_ms(wait.mean)} on average for a slot (p95 {_ms(wait.p95)}) "
                f"but ran only {_ms(run.mean)} ({ratio:.1f}x): queue wait dominates. Raise max_concurrency "
                f"(now {report.concurrency}) or the resource pool size, if the dependency can take the load.",
                {"queue_wait_mean_s": wait.mean, "task_mean_s": run.mean, "ratio": ratio,
                 "concurrency": float(report.concurrency)},
            ))
    busy_tasks = report.total >= thresholds.min_efficiency_tasks * report.concurrency
    if busy_tasks and run.count and report.parallel_efficiency < thresholds.low_efficiency:
        eff = report.parallel_efficiency
        tail = run.p99 / run.p50 if run.p50 > 0 else math.inf
        if tail >= thresholds.straggler_ratio:
            why = (f"p99 latency {_ms(run.p99)} is {tail:.1f}x the p50 {_ms(run.p50)}: stragglers hold the wave "
                   f"open while slots idle. Set a per-task timeout, hedge the slow call, or start the next "
                   f"work without waiting for the whole wave (stream()).")
        else:
            why = ("latency is even, so slots sat idle between tasks: look for a rate limit, a resource pool "
                   "smaller than max_concurrency, or tasks awaiting something outside the wave.")
        out.append(Recommendation(
            "low_efficiency", wave,
            f"wave {wave!r}: parallel efficiency {eff:.0%} ({report.total} tasks, {report.concurrency} "
            f"slots, {_ms(report.duration_s)} wall time); {why}",
            {"parallel_efficiency": eff, "p50_s": run.p50, "p99_s": run.p99, "concurrency": float(report.concurrency)},
        ))
    return out


@dataclass(frozen=True, slots=True)
class OperationStats:
    """What a run saw of one protected operation (a policy or pipeline name).

    ``latency_by_wave`` maps a wave name to (calls, mean seconds) of the operation's calls in it;
    ``trace_by_wave`` to the trace id (hex) of its slowest call there.
    """

    operation: str
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    rejected_retries: int = 0  # retries scheduled after a breaker rejected the attempt
    rejected: int = 0
    failed: int = 0
    degraded: int = 0
    fallbacks: int = 0
    latency_by_wave: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    trace_by_wave: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """An anomaly seen during a run: which series, where, how bad, and the trace to look at."""

    series: str
    signal: str
    score: float
    severity: str
    value: float | None = None
    wave: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything a run measured: its wave reports, protected operations, breaker transitions,
    saga compensations and anomalies. :meth:`recommendations` judges all of it."""

    waves: Sequence[WaveReport] = ()
    labels: Sequence[str] = ()  # unique names of ``waves``, same order; their ``wave`` names when empty
    operations: Mapping[str, OperationStats] = field(default_factory=dict)
    transitions: Sequence[BreakerTransition] = ()
    compensations: int = 0
    rollbacks: int = 0
    anomalies: Sequence[AnomalyRecord] = ()

    def recommendations(self, thresholds: AdviceThresholds = DEFAULT_THRESHOLDS) -> list[Recommendation]:
        """Wave advice (worst wave per kind), then breaker, retry and latency-anomaly advice."""
        best: dict[str, Recommendation] = {}
        affected: dict[str, int] = {}
        for i, report in enumerate(self.waves):
            label = self.labels[i] if i < len(self.labels) else None
            for rec in advise_wave(report, thresholds, label=label):
                affected[rec.kind] = affected.get(rec.kind, 0) + 1
                key = "ratio" if rec.kind == "queue_wait" else "parallel_efficiency"
                sign = 1 if rec.kind == "queue_wait" else -1
                held = best.get(rec.kind)
                if held is None or sign * rec.evidence[key] > sign * held.evidence[key]:
                    best[rec.kind] = rec
        out = []
        for kind in ("queue_wait", "low_efficiency"):
            found = best.get(kind)
            if found is not None and affected[kind] > 1:
                found = replace(
                    found, message=f"{affected[kind]} of {len(self.waves)} waves; the worst: {found.message}",
                    evidence={**found.evidence, "waves": float(affected[kind])},
                )
            if found is not None:
                out.append(found)
        out += _flapping(self.transitions, thresholds)
        out += [r for op in self.operations.values() if (r := _storm(op, thresholds)) is not None]
        out += [r for op in self.operations.values() if (r := _anomaly(op, thresholds)) is not None]
        return out


def _outages(events: Sequence[BreakerTransition]) -> list[float]:
    """Durations of one breaker's closed -> ... -> closed episodes; one still open at the end of the run
    ends at the breaker's last transition (a lower bound)."""
    out, start = [], None
    for t in events:
        if start is None and t.to_state is not BreakerState.CLOSED:
            start = t.time
        elif start is not None and t.to_state is BreakerState.CLOSED:
            out.append(t.time - start)
            start = None
    if start is not None:
        out.append(events[-1].time - start)
    return out


def _flapping(transitions: Sequence[BreakerTransition], th: AdviceThresholds) -> list[Recommendation]:
    out = []
    for name in dict.fromkeys(t.breaker for t in transitions):
        events = [t for t in transitions if t.breaker == name]
        reopens = sum(1 for t in events if t.from_state is BreakerState.HALF_OPEN and t.to_state is BreakerState.OPEN)
        if reopens < th.flapping_reopens:
            continue
        opened = [t.time for t in events if t.to_state is BreakerState.OPEN]
        probed = [t.time for t in events if t.to_state is BreakerState.HALF_OPEN]
        waits = [p - o for o, p in zip(opened, probed, strict=False) if p >= o]
        reset = statistics.median(waits) if waits else math.nan
        # Each outage separately: spanning first open to last close would merge outages minutes apart.
        outages = _outages(events)
        longest, typical = max(outages), statistics.median(outages)
        span = (f"a {_ms(longest)} outage" if len(outages) == 1 else
                f"{len(outages)} outages (median {_ms(typical)}, longest {_ms(longest)})")
        out.append(Recommendation(
            "breaker_flapping", name,
            f"breaker {name!r} flapped: opened {len(opened)} times, {reopens} of them re-opened by a failed "
            f"probe after ~{_ms(reset)} open, over {span}. The reset timeout is too short for "
            f"this dependency: raise reset_timeout towards {_ms(longest)} (or add backoff to it).",
            {"opens": float(len(opened)), "reopens": float(reopens), "reset_timeout_s": reset,
             "outage_s": longest, "median_outage_s": typical, "outages": float(len(outages))},
        ))
    return out


def _storm(op: OperationStats, th: AdviceThresholds) -> Recommendation | None:
    if op.rejected_retries < th.storm_rejected_retries or op.rejected_retries < th.storm_retry_share * op.retries:
        return None
    return Recommendation(
        "retry_storm", op.operation,
        f"operation {op.operation!r}: {op.rejected_retries} of {op.retries} retries were scheduled against an open "
        f"circuit ({op.rejected} calls rejected, {op.calls} calls, {op.attempts} attempts). Retrying an open "
        f"breaker only burns attempts and delays the fallback: take CircuitOpenError out of Retry(on=...) "
        f"(it is not retried by default), use Retry(wait_retry_after=True) to wait for the breaker's reset, "
        f"or put the breaker outside the retry.",
        {"rejected_retries": float(op.rejected_retries), "retries": float(op.retries),
         "rejected": float(op.rejected), "calls": float(op.calls)},
    )


def _anomaly(op: OperationStats, th: AdviceThresholds) -> Recommendation | None:
    waves = {w: mean for w, (n, mean) in op.latency_by_wave.items() if n > 0}
    if len(waves) < th.anomaly_min_waves + 1:
        return None
    worst = max(waves, key=lambda w: waves[w])
    typical = statistics.median(v for w, v in waves.items() if w != worst)
    value = waves[worst]
    if value - typical < th.anomaly_min_delta_s or value < th.anomaly_ratio * typical:
        return None
    ratio = value / typical if typical > 0 else math.inf
    trace = op.trace_by_wave.get(worst)
    where = f" (slowest call in trace {trace})" if trace else ""
    slow = [w for w, v in waves.items() if v - typical >= th.anomaly_min_delta_s and v >= th.anomaly_ratio * typical]
    if len(slow) == 1:
        scope = "Only this wave is affected: check what changed in that dependency then"
    else:
        names = ", ".join(map(repr, slow[:3])) + (", ..." if len(slow) > 3 else "")
        scope = (f"The slowdown recurs in {len(slow)} of {len(waves)} waves ({names}): not a one-off, so check "
                 f"the dependency's capacity and what those waves have in common")
    return Recommendation(
        "latency_anomaly", op.operation,
        f"operation {op.operation!r}: mean latency {_ms(value)} in wave {worst!r} vs {_ms(typical)} typical "
        f"({ratio:.1f}x){where}. {scope}; a Timeout or Degrade on it would bound the damage.",
        {"latency_s": value, "typical_s": typical, "ratio": ratio, "waves": float(len(slow))},
    )
