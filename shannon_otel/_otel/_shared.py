"""The shared-state (Redis) instruments of one MeterProvider: calls' errors and latency, and the
availability gauge, which reports every live :class:`~shannon_otel.redis.RedisState` of the provider.

One per provider (kept by its ``ProviderState``): the SDK keeps only the first observable gauge of a
name on a meter, so a gauge per ``RedisState`` made every state after the first invisible, while the
first one (closed or not) was reported, and kept alive, for the life of the provider.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

from opentelemetry import metrics

from .. import _telemetry as tm
from .._fork import in_forked_child, release_held
from .._version import __version__
from ._instruments import instrument

__all__ = ["SharedState", "SharedTelemetry"]


class SharedState(Protocol):
    """What the gauge reads of a shared state."""

    prefix: str
    available: bool


class SharedTelemetry:
    """``shannon.shared.errors``, ``shannon.shared.duration`` and ``shannon.shared.available`` of one provider."""

    __slots__ = ("__weakref__", "_lock", "_states", "available", "duration", "errors")

    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = metrics.get_meter(tm.SCOPE_NAME, __version__, meter_provider, tm.SCHEMA_URL)
        self.errors: metrics.Counter = instrument(meter, tm.SHARED_ERRORS)
        self.duration: metrics.Histogram = instrument(meter, tm.SHARED_DURATION)
        # The gauge callback runs on the metric reader's thread; states come and go on event loops.
        self._lock = threading.Lock()
        in_forked_child(self._forked)  # a child forked during a collection would wait on it for good
        self._states: weakref.WeakSet[Any] = weakref.WeakSet()
        self.available = instrument(meter, tm.SHARED_AVAILABLE, [self._observe])

    def _forked(self) -> None:
        release_held(self._lock)

    def watch(self, state: SharedState) -> None:
        """Report ``state`` on the gauge until :meth:`forget` (or until it is garbage)."""
        with self._lock:
            self._states.add(state)

    def forget(self, state: SharedState) -> None:
        with self._lock:
            self._states.discard(state)

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            states = list(self._states)
        # One series per prefix: several open states of one prefix (one per event loop) made one observation
        # each of the same series, and the SDK kept whichever came last (set order): a state that could not
        # reach Redis was shown as 1, or not, by chance. A prefix is available when all its states are.
        available: dict[str, int] = {}
        for s in states:
            available[s.prefix] = min(available.get(s.prefix, 1), 1 if s.available else 0)
        return [metrics.Observation(value, {tm.SHARED_PREFIX: prefix}) for prefix, value in available.items()]
