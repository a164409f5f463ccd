"""The anomaly instruments of a meter provider, shared by every :class:`AnomalyHook` on it.

The SDK keeps only the first observable gauge of a name on a meter and silently drops the
callbacks of later ones, so a second hook with its own ``shannon.anomaly.score`` gauge would
never export. Instead each provider gets one gauge whose callback reads every live hook of that
provider (the same problem, solved the same way, as ``shannon_otel._hooks.otel_hook``).
Weak keys and weak hooks: a provider's instruments die with it, a hook stops being read when
it is garbage.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics

from .. import _telemetry as tm
from .._otel._instruments import instrument
from .._version import __version__

if TYPE_CHECKING:
    from ._feed import AnomalyHook


class _Global:
    """Stands for "the global provider" (None) as a weak cache key."""


_GLOBAL = _Global()
_LOCK = threading.Lock()  # guards _BY_PROVIDER: hooks may be built on any thread


class Instruments:
    """One provider's score gauge (reading its hooks) and events counter."""

    __slots__ = ("_hooks", "_lock", "events")

    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        self._hooks: weakref.WeakSet[AnomalyHook] = weakref.WeakSet()
        # Its own lock, never held while calling the SDK: the reader calls _observe holding SDK locks.
        self._lock = threading.Lock()
        meter = metrics.get_meter(tm.SCOPE_NAME, __version__, meter_provider)
        # Observable: the latest score of every tracked series is read at collection time, so
        # scoring pays nothing for the gauge and evicted series simply stop being reported.
        instrument(meter, tm.ANOMALY_SCORE, [self._observe])
        self.events: metrics.Counter = instrument(meter, tm.ANOMALY_EVENTS)

    def add(self, hook: AnomalyHook) -> None:
        with self._lock:
            self._hooks.add(hook)

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:  # the reader's thread; a hook may be added meanwhile
            hooks = list(self._hooks)
        return [point for hook in hooks for point in hook._observe(options)]


_BY_PROVIDER: weakref.WeakKeyDictionary[object, Instruments] = weakref.WeakKeyDictionary()


def register(hook: AnomalyHook, meter_provider: metrics.MeterProvider | None) -> metrics.Counter:
    """Make the gauge of ``meter_provider`` (``None`` = the global one) read ``hook``.

    Called once per hook, from its constructor; returns the provider's shared events counter.
    """
    key = meter_provider if meter_provider is not None else _GLOBAL
    with _LOCK:
        found = _BY_PROVIDER.get(key)
        if found is None:
            found = _BY_PROVIDER[key] = Instruments(meter_provider)
    found.add(hook)
    return found.events

