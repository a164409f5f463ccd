"""Anomalies -> log records: the adapter for what the anomaly feed hands out today.

The feed delivers an :class:`~shannon_otel.anomaly.Anomaly` to its ``on_anomaly`` callback; when
anomalies become a hook event this adapter is the one place to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _telemetry as t
from ._records import Record

if TYPE_CHECKING:
    from ..anomaly import Anomaly


def record(anomaly: Anomaly, messages: bool) -> Record:
    """The record of one anomaly (level WARNING, one step up for severity ``critical``)."""
    fields: dict[str, Any] = {
        t.ANOMALY_SERIES: anomaly.series, t.ANOMALY_SIGNAL: anomaly.signal,
        t.ANOMALY_SCORE_ATTR: anomaly.score, t.ANOMALY_SEVERITY: anomaly.severity.value,
        t.ANOMALY_VALUE: anomaly.value,
    }
    what = f"{anomaly.severity.value} {anomaly.signal} anomaly on {anomaly.series}"
    return Record(
        t.LOGGER_ANOMALY, t.EVENT_ANOMALY, "%s: %s = %.4g (score %.3f)",
        (what, anomaly.signal, anomaly.value, anomaly.score), fields,
        f"{{n:,}} {anomaly.signal} anomalies on {anomaly.series} in the last {{s:.0f}} s "
        f"(last: {anomaly.severity.value}, value {anomaly.value:.4g}, score {anomaly.score:.3f})",
    )
