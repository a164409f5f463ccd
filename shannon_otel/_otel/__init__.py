"""The OTel hook: turns executor, recovery, saga and anomaly events into spans and metrics.

One :class:`OTelHook` per (tracer provider, meter provider) pair, kept by the meter provider's
``ProviderState`` (``_providers.py``); it creates its instruments once.
Providers left as ``None`` fall back to the global ones through the API's proxies, so a hook made
before ``configure()`` still reports once the globals are set.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from .. import _telemetry as tel
from .._events import (
    Anomaly,
    BreakerRegistered,
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
from .._telemetry import SCHEMA_URL, SCOPE_NAME
from .._version import __version__
from ._executor import ExecutorTelemetry
from ._instruments import instrument
from ._providers import NO_METRICS, provider_failed, provider_state
from ._recovery import RecoveryTelemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["OTelHook"]


class OTelHook(Hook):
    """Spans and metrics for every wave, task, protected call, breaker transition, saga and anomaly, and
    the count of the other hooks' isolated errors (``shannon.hook.errors``)."""

    __slots__ = ("_errors", "_executor", "_meter_provider", "_recovery")

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None,
    ) -> None:
        # A provider that raises making the tracer or the instruments is logged once and replaced by a no-op
        # one: the entry point being built goes on without its spans or metrics, never fails for it.
        try:
            tracer = trace.get_tracer(SCOPE_NAME, __version__, tracer_provider, SCHEMA_URL)
        except Exception as exc:
            provider_failed("tracer_provider", tracer_provider, exc)
            tracer_provider = trace.NoOpTracerProvider()
            tracer = tracer_provider.get_tracer(SCOPE_NAME, __version__, SCHEMA_URL)
        try:
            self._metering(tracer, tracer_provider, meter_provider)
        except Exception as exc:
            provider_failed("meter_provider", meter_provider, exc)
            self._metering(tracer, tracer_provider, NO_METRICS)

    def _metering(
        self, tracer: Tracer, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> None:
        meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider, SCHEMA_URL)
        state = provider_state(meter_provider)
        self._executor = ExecutorTelemetry(tracer, state.executor_meters(meter), tracer_provider, meter_provider)
        self._recovery = RecoveryTelemetry(
            tracer, meter, state.breaker_states, state.recovery_series, tracer_provider, meter_provider,
        )
        # Only to find the provider's state again when the first anomaly arrives: weak, so the
        # shared hook never keeps its provider alive.
        self._meter_provider = weakref.ref(meter_provider) if meter_provider is not None else None
        # A synchronous counter: a second one of the name on this meter is the same SDK instrument.
        self._errors = instrument(meter, tel.HOOK_ERRORS)

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        return self._executor.wave_started(event)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return self._recovery.call_started(event)

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        return self._recovery.saga_started(event)

    def breaker_registered(self, event: BreakerRegistered) -> None:
        self._recovery.breaker_registered(event)

    def breaker_transition(self, event: BreakerTransition) -> None:
        self._recovery.breaker_transition(event)

    def anomaly(self, event: Anomaly) -> None:
        recovery = self._recovery
        if not recovery.enabled():
            return
        ref = self._meter_provider
        provider = ref() if ref is not None else None
        if ref is not None and provider is None:
            return  # the provider is gone: nothing left to export to
        telemetry = provider_state(provider).anomaly_telemetry(provider)
        telemetry.anomaly(event, recovery.tracing_on, recovery.metrics_on)

    def hook_failed(self, event: HookFailed) -> None:
        # Rare by nature: a plain counter (a no-op until an SDK provider is there) is cheap enough.
        self._errors.add(1, {
            tel.HOOK_NAME: event.hook, tel.HOOK_METHOD: event.method, tel.ERROR_TYPE: event.error_type or "",
        })
