"""Anomaly events -> the score gauge, the events counter and the ``shannon.anomaly`` span event.

One :class:`AnomalyTelemetry` per MeterProvider (kept by its ``ProviderState``), shared by the OTel
hooks of that provider: the SDK keeps only the first observable gauge of a name on a meter, so a
second gauge would never export. The gauge reports the latest score of each series scored through
the provider, read at collection time (scoring pays nothing for it), and forgets a series once an
event says the detector evicted it (``Anomaly.evicted``); it keeps the newest
:data:`MAX_SERIES` series, so its memory and cardinality stay bounded like the detector's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from .. import _telemetry as tm
from .._fork import in_forked_child, release_held
from .._version import __version__
from ._instruments import instrument

if TYPE_CHECKING:
    from .._events import Anomaly

__all__ = ["MAX_SERIES", "AnomalyTelemetry"]

MAX_SERIES = 1000  # series the score gauge reports per provider (the detector's default max_series)


class AnomalyTelemetry:
    """The score gauge (latest score per series) and the anomaly events counter of one provider."""

    __slots__ = ("__weakref__", "_lock", "_scores", "events", "max_series")

    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = metrics.get_meter(tm.SCOPE_NAME, __version__, meter_provider, tm.SCHEMA_URL)
        self._scores: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.max_series = MAX_SERIES
        # The gauge callback runs on the metric reader's thread; events arrive on the event loop.
        self._lock = threading.Lock()
        in_forked_child(self._forked)  # a child forked during a collection would wait on it for good
        instrument(meter, tm.ANOMALY_SCORE, [self._observe])
        self.events: metrics.Counter = instrument(meter, tm.ANOMALY_EVENTS)

    def _forked(self) -> None:
        release_held(self._lock)

    def anomaly(self, event: Anomaly, tracing: bool, metering: bool) -> None:
        """Record one scored sample; an anomaly (``severity`` set) is also counted and becomes a span
        event on the current span (the anomaly hook makes the culprit's span current when it can)."""
        key = (event.series, event.signal)
        if metering:
            with self._lock:
                for gone in event.evicted:  # no longer watched: its last score is no current reading
                    self._scores.pop(gone, None)
                self._scores[key] = event.score
                self._scores.move_to_end(key)
                if len(self._scores) > self.max_series:
                    self._scores.popitem(last=False)
        severity = event.severity
        if severity is None:
            return
        if metering:
            self.events.add(1, {tm.ANOMALY_SERIES: event.series, tm.ANOMALY_SIGNAL: event.signal,
                                tm.ANOMALY_SEVERITY: severity.value})
        if tracing:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(tm.EVENT_ANOMALY, {
                    tm.ANOMALY_SERIES: event.series, tm.ANOMALY_SIGNAL: event.signal,
                    tm.ANOMALY_SCORE_ATTR: event.score, tm.ANOMALY_SEVERITY: severity.value,
                    tm.ANOMALY_VALUE: event.value,
                })

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            scores = list(self._scores.items())
        return [metrics.Observation(score, {tm.ANOMALY_SERIES: series, tm.ANOMALY_SIGNAL: signal})
                for (series, signal), score in scores]
