"""Which hooks a wave, policy or saga reports to: the OTel hook for its providers, then the user's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._events import Hook


def resolve_hooks(
    hooks: Iterable[Hook] | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    *,
    instrument: bool = True,
) -> tuple[Hook, ...]:
    """The hooks of one entry point, built once at its construction.

    The OTel hook comes first so that its scope is outermost: the other hooks see its span current.
    ``instrument=False`` leaves it out (only the given hooks are called).
    """
    from ._otel import OTelHook

    extra = tuple(hooks or ())
    if not instrument:
        return extra
    return (OTelHook(tracer_provider=tracer_provider, meter_provider=meter_provider), *extra)
