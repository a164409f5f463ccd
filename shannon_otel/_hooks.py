"""Which hooks a wave, policy or saga reports to: the OTel hook for its providers (joined by the
default logging hook), then the user's."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._events import Hook
    from ._otel import OTelHook

# One OTel hook per (tracer provider, meter provider) pair. Several hooks on one meter would create
# the same observable instruments twice, and the SDK keeps only the first one's callbacks: every
# policy must share the live counters those callbacks read. Weak keys: a provider's hook dies with it.
class _Global:
    """Stands for "the global provider" (None) as a weak cache key."""


_GLOBAL = _Global()
_CACHE: weakref.WeakKeyDictionary[object, weakref.WeakKeyDictionary[object, OTelHook]] = (
    weakref.WeakKeyDictionary()
)


def otel_hook(tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> OTelHook:
    """The shared OTel hook of a provider pair (``None`` = the global provider)."""
    from ._otel import OTelHook

    by_meter = _CACHE.setdefault(
        tracer_provider if tracer_provider is not None else _GLOBAL, weakref.WeakKeyDictionary(),
    )
    meter_key = meter_provider if meter_provider is not None else _GLOBAL
    hook = by_meter.get(meter_key)
    if hook is None:
        hook = by_meter[meter_key] = OTelHook(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return hook


def resolve_hooks(
    hooks: Iterable[Hook] | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    *,
    instrument: bool = True,
) -> tuple[Hook, ...]:
    """The hooks of one entry point, built once at its construction.

    The OTel hook comes first so that its scope is outermost: the other hooks see its span current.
    The default logging hook rides on it (``_logs._joined``: a hook of its own would cost every call);
    a :class:`~shannon_otel.LoggingHook` among ``hooks`` replaces that default, ``SHANNON_OTEL_LOGS=off``
    turns it off. ``instrument=False`` leaves both out (only the given hooks are called).
    """
    from ._logs import with_default_logs

    extra = tuple(hooks or ())
    if not instrument:
        return extra
    return (with_default_logs(otel_hook(tracer_provider, meter_provider), extra), *extra)
