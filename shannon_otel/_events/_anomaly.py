"""The anomaly event: one scored sample of a watched series."""

from __future__ import annotations

from dataclasses import dataclass

from .._telemetry import Severity


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One scored sample of a watched series (see ``shannon_otel.anomaly.AnomalyHook``).

    Emitted by the anomaly hook to the other hooks of the same entry point (:meth:`Hook.anomaly`)
    for every scored sample, so that the OTel hook can keep the score gauge current; ``severity``
    is ``None`` for an ordinary score and set from the warning threshold up: only those are
    anomalies (counted, span event, ``on_anomaly``, the run report).
    """

    series: str  # wave or operation name
    signal: str  # "latency", "error_rate", "throughput" or "retry_rate"
    score: float  # detector score in [0, 1] (see DetectorConfig)
    severity: Severity | None  # None below the warning threshold
    value: float  # the sample that scored (e.g. the tick's mean latency)
    # Hex ids of the tick's slowest task span for latency, of its last failed or timed-out task for
    # error_rate, of its last call retried after a failed or refused try for retry_rate (a slowest task ended in
    # another run of the wave, or no such call: the span current at detection); of the span current at detection (the
    # task that closed the tick) for throughput. None when there was no span, or its
    # trace was not sampled (exported nowhere: no link to follow).
    trace_id: str | None  # 32 hex digits
    span_id: str | None  # 16 hex digits
    time: float  # the anomaly hook's clock
    # (series, signal) pairs the hook's detector stopped watching (evicted past max_series) since the
    # hook's previous event: a view keeping a value per series (the OTel score gauge) forgets them.
    evicted: tuple[tuple[str, str], ...] = ()
