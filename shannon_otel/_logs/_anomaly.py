"""Anomaly events -> log records (only anomalies: scored samples with a severity)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _telemetry as t
from ._records import N, Record, S, word

if TYPE_CHECKING:
    from .._events import Anomaly


def record(anomaly: Anomaly, messages: bool) -> Record:
    """The record of one anomaly (level WARNING, one step up for severity ``critical``)."""
    severity = anomaly.severity.value if anomaly.severity is not None else "none"
    fields: dict[str, Any] = {
        t.ANOMALY_SERIES: anomaly.series, t.ANOMALY_SIGNAL: anomaly.signal,
        t.ANOMALY_SCORE_ATTR: anomaly.score, t.ANOMALY_SEVERITY: severity,
        t.ANOMALY_VALUE: anomaly.value,
    }
    signal = word(anomaly.signal)
    what = f"{severity} {signal} anomaly on {anomaly.series!r}"
    return Record(
        t.LOGGER_ANOMALY, t.EVENT_ANOMALY, "%s: %s = %.4g (score %.3f)",
        (what, signal, anomaly.value, anomaly.score), fields,
        f"{N} {signal} anomalies on {anomaly.series!r} in the last {S} s "
        f"(last: {severity}, value {anomaly.value:.4g}, score {anomaly.score:.3f})",
    )
