"""The OTel hook: turns executor, recovery and saga events into spans and metrics.

One :class:`OTelHook` per (tracer provider, meter provider) pair; it creates its instruments once.
Providers left as ``None`` fall back to the global ones through the API's proxies, so a hook made
before ``configure()`` still reports once the globals are set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from .. import _telemetry as tel
from .._events import (
    BreakerTransition,
    CallObserver,
    CallStarted,
    Hook,
    HookFailed,
    SagaObserver,
    SagaStarted,
    WaveObserver,
    WaveStarted,
)
from .._telemetry import SCOPE_NAME
from .._version import __version__
from ._executor import ExecutorTelemetry
from ._instruments import instrument
from ._recovery import RecoveryTelemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["OTelHook"]


class OTelHook(Hook):
    """Spans and metrics for every wave, task, protected call, breaker transition and saga, and the
    count of the other hooks' isolated errors (``shannon.hook.errors``)."""

    __slots__ = ("_errors", "_executor", "_recovery")

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None,
    ) -> None:
        tracer = trace.get_tracer(SCOPE_NAME, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider)
        self._executor = ExecutorTelemetry(tracer, meter, tracer_provider, meter_provider)
        self._recovery = RecoveryTelemetry(tracer, meter, tracer_provider, meter_provider)
        self._errors = instrument(meter, tel.HOOK_ERRORS)

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        return self._executor.wave_started(event)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return self._recovery.call_started(event)

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        return self._recovery.saga_started(event)

    def breaker_transition(self, event: BreakerTransition) -> None:
        self._recovery.breaker_transition(event)

    def hook_failed(self, event: HookFailed) -> None:
        # Rare by nature: a plain counter (a no-op until an SDK provider is there) is cheap enough.
        self._errors.add(1, {
            tel.HOOK_NAME: event.hook, tel.HOOK_METHOD: event.method, tel.ERROR_TYPE: event.error_type or "",
        })
