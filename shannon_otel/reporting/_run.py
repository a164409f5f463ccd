"""The report of a whole run (its waves, protected operations, breaker transitions, sagas and
anomalies) and the advice only a run shows: breaker flapping, retry storms, a latency anomaly on
one operation. Built by the :class:`~shannon_otel.reporting.RunRecorder` hook; pure data and
pure functions, nothing here touches telemetry.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .._telemetry import BreakerState
from ._advice import (
    DEFAULT_THRESHOLDS,
    AdviceThresholds,
    Recommendation,
    advise_wave,
    check_thresholds,
    ms,
    plural,
    times,
)
from ._breakers import MEDIAN_OF, BreakerCount, BreakerTally

if TYPE_CHECKING:
    from .._events import Anomaly, BreakerTransition
    from ..executor._report import WaveReport

__all__ = ["OUTSIDE_WAVES", "OperationStats", "RunReport"]

OUTSIDE_WAVES = ""  # the latency_by_wave key of calls made outside any wave


def _where(label: str) -> str:
    return "outside any wave" if label == OUTSIDE_WAVES else f"in wave {label!r}"

@dataclass(frozen=True, slots=True)
class OperationStats:
    """What a run saw of one protected operation (a policy or pipeline name).

    ``latency_by_wave`` maps a wave's label (its name, ``name#n`` for the n-th run of a name, as in
    :attr:`RunReport.labels`) to (calls, mean seconds) of the operation's calls in it;
    ``trace_by_wave`` to the trace id (hex) of its slowest call there (none when that call's trace was
    not sampled; a healthy slow call's trace is one a tail sampler keeps only at its healthy ratio, as
    histogram exemplars: docs/architecture.md#tail-sampling). Calls made outside any wave
    are under ``""`` (:data:`OUTSIDE_WAVES`, never a wave's name: a wave's name is non-empty).
    """

    operation: str
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    rejected_retries: int = 0  # retries scheduled after a breaker rejected the attempt
    rejected: int = 0  # tries a breaker refused: one call is refused again at each retry
    failed: int = 0  # calls that raised into their caller: call outcome failure, rejected or ignored
    degraded: int = 0
    fallbacks: int = 0
    latency_by_wave: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    trace_by_wave: Mapping[str, str] = field(default_factory=dict)


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
    anomalies: Sequence[Anomaly] = ()  # the anomaly hook's events with a severity, oldest first
    anomaly_waves: Sequence[str | None] = ()  # the wave label each of ``anomalies`` was found in, same order
    # ``rollbacks``: failed sagas whose every compensation succeeded (``SagaResult.rolled_back``);
    # ``failed_rollbacks``: failed sagas with a compensation that failed, its step left in effect
    failed_rollbacks: int = 0
    # every breaker heard, counted over all its transitions (``transitions`` holds only the newest 1,000
    # a recorder kept); a report built without them counts ``transitions`` instead
    breakers: Mapping[str, BreakerTally] = field(default_factory=dict)

    def tallies(self) -> dict[str, BreakerTally]:
        """Each breaker's tally: ``breakers``, and for a breaker only ``transitions`` has, counted from them."""
        out = dict(self.breakers)
        for name in dict.fromkeys(t.breaker for t in self.transitions):
            if name not in out:
                out[name] = BreakerCount.of(name, self.transitions)
        return out

    def recommendations(self, thresholds: AdviceThresholds = DEFAULT_THRESHOLDS) -> list[Recommendation]:
        """Wave advice (worst wave per kind), then breaker, retry and latency-anomaly advice."""
        check_thresholds(thresholds)
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
        out += _flapping(self.tallies(), self.transitions, thresholds)
        out += [r for op in self.operations.values() if (r := _storm(op, thresholds)) is not None]
        out += [r for op in self.operations.values() if (r := _anomaly(op, thresholds)) is not None]
        return out


def _flapping(
    tallies: Mapping[str, BreakerTally], transitions: Sequence[BreakerTransition], th: AdviceThresholds,
) -> list[Recommendation]:
    out = []
    for name, tally in tallies.items():
        if tally.reopens < th.flapping_reopens:
            continue
        # each probe against the opening just before it (of the transitions kept): an opening that ended
        # otherwise (reset()) has none
        waits, last_open = [], None
        for t in transitions:
            if t.breaker != name:
                continue
            if t.to_state is BreakerState.OPEN:
                last_open = t.time
            elif t.to_state is BreakerState.HALF_OPEN and last_open is not None and t.time >= last_open:
                waits.append(t.time - last_open)
        reset = statistics.median(waits) if waits else math.nan
        probe = f" after ~{ms(reset)} open" if waits else ""
        # Each outage separately: spanning first open to last close would merge outages minutes apart. One not
        # over at the breaker's last transition is only known to have lasted that long: it is said so.
        ended, ongoing = tally.outages, tally.open_for_s
        longest = max((x for x in (tally.longest_s, ongoing) if x is not None and not math.isnan(x)), default=0.0)
        typical = tally.median_s if ended else longest
        span = ""
        if ended == 1:
            span = f"a {ms(tally.longest_s)} outage"
        elif ended:
            of = f" of the newest {MEDIAN_OF}" if ended > MEDIAN_OF else ""
            span = f"{ended} outages (median {ms(tally.median_s)}{of}, longest {ms(tally.longest_s)})"
        if ongoing is not None:
            still = f"an outage not over after {ms(ongoing)}"
            span = f"{span} and {still}" if ended else still
        towards = f"towards {ms(longest)}" + (" or more" if ongoing is not None and ongoing >= longest else "")
        out.append(Recommendation(
            "breaker_flapping", name,
            f"breaker {name!r} flapped: opened {tally.opens} times, {tally.reopens} of them re-opened by a failed "
            f"probe{probe}, over {span}. The reset timeout is too short for "
            f"this dependency: raise reset_timeout {towards} (or add backoff to it).",
            {"opens": float(tally.opens), "reopens": float(tally.reopens), "reset_timeout_s": reset,
             "outage_s": longest, "median_outage_s": typical, "outages": float(ended + (ongoing is not None)),
             "open_at_end": float(ongoing is not None)},
        ))
    return out


def _storm(op: OperationStats, th: AdviceThresholds) -> Recommendation | None:
    if op.rejected_retries < th.storm_rejected_retries or op.rejected_retries < th.storm_retry_share * op.retries:
        return None
    return Recommendation(
        "retry_storm", op.operation,
        f"operation {op.operation!r}: {op.rejected_retries} of {op.retries} retries were scheduled against an open "
        f"circuit ({plural(op.rejected, 'try', 'tries')} rejected in {plural(op.calls, 'call')}, "
        f"{plural(op.attempts, 'attempt')} run). Retrying an open "
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
        scope = (f"Only {'these calls are' if worst == OUTSIDE_WAVES else 'this wave is'} affected: check what "
                 f"changed in that dependency then")
    else:
        shown = (repr(w) if w != OUTSIDE_WAVES else "outside any wave" for w in slow[:3])
        names = ", ".join(shown) + (", ..." if len(slow) > 3 else "")
        scope = (f"The slowdown recurs in {len(slow)} of {len(waves)} waves ({names}): not a one-off, so check "
                 f"the dependency's capacity and what those waves have in common")
    return Recommendation(
        "latency_anomaly", op.operation,
        f"operation {op.operation!r}: mean latency {ms(value)} {_where(worst)} vs {ms(typical)} typical"
        f"{times(ratio)}{where}. {scope}; a Timeout or Degrade on it would bound the damage.",
        {"latency_s": value, "typical_s": typical, "ratio": ratio, "waves": float(len(slow))},
    )
