"""Saying once that a recovery metric reached the SDK's cardinality limit.

The SDK keeps the first ``limit`` attribute sets of each instrument (2,000 by default) and counts later
ones in its ``otel.metric.overflow`` point, logging nothing: operations named per request vanished from
every dashboard and nothing said why. The executor folds its own counters (``ExecutorMeters.admit``); the
recovery policies' instruments are plain SDK instruments, so :class:`SeriesWatch` only notes the attribute
sets they were given, to log one warning at the first one the SDK folds. A reader of delta temporality
starts its attribute sets afresh at each collection (the limit is per export interval): when every reader of
the provider does, the sets seen over the process's life tell nothing, and nothing is said.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from .._telemetry import MetricSpec

_log = logging.getLogger("shannon_otel")


def sdk_limit() -> int | None:
    """The SDK's default cardinality limit (None before SDKs had one, or with no SDK loaded: nothing records)."""
    module = sys.modules.get("opentelemetry.sdk.metrics._internal._view_instrument_match")
    return getattr(module, "_DEFAULT_CARDINALITY_LIMIT", None)


class SeriesWatch:
    """The attribute sets recorded on each recovery instrument of one meter provider, up to the SDK's limit.

    One per meter provider (its ``ProviderState``), shared by the OTel hooks of every tracer provider used
    with it, as the SDK's streams are. :meth:`see` is O(1) (a dict lookup for a set seen already, nothing
    once it has warned); at most ``limit`` sets are kept per instrument, and none after the warning.
    """

    __slots__ = ("_provider", "_seen", "done")

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        """``meter_provider``: the provider watched (``None``: the global one); held weakly."""
        self._provider = None if meter_provider is None else weakref.ref(meter_provider)
        self._seen: dict[str, dict[tuple[Any, ...], None]] = {}
        self.done = False  # warned, or nothing to tell (delta readers): nothing more is noted

    def see(self, spec: MetricSpec, key: tuple[Any, ...]) -> None:
        """Note that ``key`` (the values of ``spec.attributes``, None for one left out) was recorded on
        ``spec``'s instrument; the first set past the limit logs the one warning. Never raises."""
        if self.done:
            return
        seen = self._seen.get(spec.name)
        if seen is None:
            seen = self._seen[spec.name] = {}
        elif key in seen:
            return
        limit = sdk_limit()
        if limit is None or len(seen) < limit:
            seen[key] = None
            return
        self.done = True
        self._seen = {}  # nothing more to say: the sets kept are let go
        if not self._kept_across_collections(spec):
            return
        folded = ", ".join(f"{name}={value!r}" for name, value in zip(spec.attributes, key, strict=True)
                           if value is not None)
        _log.warning(
            "the %s metric of one meter provider reached the SDK's default limit of %d attribute sets (%s): new "
            "ones, from %s on, are counted in its otel.metric.overflow point (unless a View or the reader sets a "
            "higher cardinality limit); name policies (name=), breakers and sagas after code paths, not per "
            "request, and raise errors of a fixed set of classes (error.type is the class's name). This warning "
            "is not repeated for any recovery metric", spec.name, limit, ", ".join(spec.attributes), folded)

    def _kept_across_collections(self, spec: MetricSpec) -> bool:
        """Whether some reader of the provider keeps ``spec``'s attribute sets from one collection to the next
        (cumulative temporality), so the SDK folds the sets past its limit seen over the process's life. A reader
        of delta temporality drops them at each collection: with only such readers, the limit is per export
        interval, and a warning at the 2,001st set of the process's life said sets were folded that never were.
        True when the readers cannot be told (the warning as before)."""
        try:
            provider = metrics.get_meter_provider() if self._provider is None else self._provider()
            # Newer SDKs keep the readers on the provider, older ones in its configuration (as _bridge.discover).
            readers = getattr(provider, "_metric_readers", None)
            if readers is None:
                readers = getattr(getattr(provider, "_sdk_config", None), "metric_readers", ())
            sdk_class = "_UpDownCounter" if spec.kind == "updowncounter" else "_Counter"
            temporalities = [
                temporality for reader in readers or ()
                for cls, temporality in getattr(reader, "_instrument_class_temporality", {}).items()
                if cls.__name__ == sdk_class
            ]
            return not temporalities or any(t.name != "DELTA" for t in temporalities)  # by name: the SDK's enum
        except Exception:  # an SDK of another shape: said as before
            return True
